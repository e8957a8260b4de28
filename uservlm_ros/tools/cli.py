"""``uservlm``: the package's command line, the pip-only stand-in for the ros2 tools.

    uservlm ask "What should I wear to a business meeting?" --image face.jpg [--speak]
    uservlm up [--cloud | --robot] [--params-file F] [--namespace NS]
    uservlm demo
    uservlm record OUT | play BAG | bench [BAG]

Exit codes: 0 success, 1 the service answered with an error, 2 the service was unreachable or
timed out, 3 a node failed to start.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from uservlm_ros.bringup.graph import MODEL_ARGUMENTS
from uservlm_ros.tools.demo import PLACEHOLDER_WARNING  # noqa: E402  (one wording everywhere)

DEMO_QUESTION = "What should I wear to a business meeting?"


def bundled_photo() -> Path:
    return Path(str(resources.files("uservlm_ros") / "data" / "person.jpg"))


def _timings_line(response, round_trip: float) -> str:
    parts = [
        ("person", response.person_seconds),
        ("review", response.review_seconds),
        ("preprocess", response.preprocess_seconds),
        ("prefill", response.prefill_seconds),
        ("generation", response.generation_seconds),
    ]
    if response.synthesis_seconds:
        parts.append(("synthesis", response.synthesis_seconds))
    parts += [("server total", response.total_seconds), ("round trip", round_trip)]
    return "timings: " + " | ".join(f"{name} {seconds:.3f} s" for name, seconds in parts)


def _play_or_write(audio, wav_path: Path | None) -> str:
    """Play through the default output device; write a WAV when asked or when there is none."""
    import numpy as np

    from uservlm_ros.speech.audio import write_wav

    samples = (
        np.frombuffer(audio.data, dtype=np.int16) if len(audio.data) else np.zeros(0, np.int16)
    )
    seconds = len(samples) / max(audio.sample_rate, 1)
    if wav_path is None:
        try:
            import sounddevice

            sounddevice.check_output_settings(
                samplerate=audio.sample_rate, channels=1, dtype="int16"
            )
            sounddevice.play(samples, audio.sample_rate, blocking=True)
            return f"audio: played {seconds:.1f} s at {audio.sample_rate} Hz"
        except Exception as error:  # no device (servers, CI): fall back to a file
            wav_path = Path("uservlm_answer.wav")
            reason = f"no audio output device ({type(error).__name__})"
        else:  # pragma: no cover
            reason = ""
    else:
        reason = ""
    write_wav(wav_path, samples, audio.sample_rate)
    suffix = f"; {reason}" if reason else ""
    return f"audio: {wav_path.resolve()} ({seconds:.1f} s at {audio.sample_rate} Hz{suffix})"


def print_ask_response(reply, wav_path: Path | None = None, out=sys.stdout) -> int:
    response = reply.response
    if not response.success:
        print(f"error: {response.error}", file=out)
        return 1
    if response.clarification:
        print(f"clarifying question (ethics review): {response.answer}", file=out)
    else:
        print(f"answer: {response.answer}", file=out)
        if response.placeholder_model:
            print(PLACEHOLDER_WARNING, file=out)
    review = f"   review: {response.review_decision}" if response.review_decision else ""
    who = response.person_id or "anonymous"
    print(
        f"model: {response.model}   image: {response.image_source}   person: {who}"
        f"{f' ({response.person_status})' if response.person_status else ''}   "
        f"tokens: {response.generated_tokens}{review}",
        file=out,
    )
    print(_timings_line(response, reply.round_trip_seconds), file=out)
    if len(response.audio.data):
        print(_play_or_write(response.audio, wav_path), file=out)
    return 0


def cmd_ask(args) -> int:
    from uservlm_ros.ros.conversions import encoded_image_format, read_image_file
    from uservlm_ros.tools.client import ServiceError, UserVLMClient

    image = None
    if args.image:
        try:
            image = Path(args.image).read_bytes()
            if not encoded_image_format(image):  # a JPEG or PNG goes as it is (compressed_image)
                image = read_image_file(args.image)
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 64
    with UserVLMClient(namespace=args.namespace) as client:
        try:
            reply = client.ask(
                args.question,
                image=image,
                user_id=args.user_id,
                speak=args.speak,
                timeout=args.timeout,
            )
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return print_ask_response(reply, Path(args.wav) if args.wav else None)


def cmd_up(args) -> int:
    from uservlm_ros.bringup.graph import compose_cloud, model_overrides, nodes
    from uservlm_ros.tools.cpu_latency import CpuLatencyHold, LatencyError
    from uservlm_ros.tools.launcher import GraphProcesses, interrupt_on

    side = "cloud" if args.cloud else "robot" if args.robot else "all"
    specs = nodes(side, naoqi=args.naoqi, naoqi_prefix=args.naoqi_prefix)
    if args.compose:
        specs = compose_cloud(specs)
    overrides = model_overrides({name: getattr(args, name) for name in MODEL_ARGUMENTS})
    if args.respawn_delay < 0:
        print("error: --respawn-delay must be >= 0", file=sys.stderr)
        return 64
    graph = GraphProcesses(
        specs,
        params_file=Path(args.params_file) if args.params_file else None,
        namespace=args.namespace,
        overrides=overrides,
        respawn=tuple(s.name for s in specs) if args.respawn else (),
        respawn_delay=args.respawn_delay,
    )
    hold = CpuLatencyHold(0)
    if args.low_latency:
        try:
            hold.acquire()  # held as long as this process runs the graph
        except LatencyError as error:
            print(f"error: --low-latency: {error}", file=sys.stderr)
            return 2
    print(
        f"starting {', '.join(s.name for s in specs)} (Ctrl-C stops them); {hold.describe()}",
        flush=True,
    )
    try:
        with interrupt_on():  # SIGTERM, SIGHUP: stop the graph as Ctrl-C does
            graph.start()
            return graph.wait()
    except KeyboardInterrupt:  # a signal during start-up: start() has not returned
        graph.stop()
        return 130
    finally:
        hold.release()


def cmd_demo(args) -> int:
    from uservlm_ros.tools.demo import run_demo
    from uservlm_ros.tools.launcher import interrupt_on

    try:
        with interrupt_on():  # SIGTERM, SIGHUP: the demo's graph stops as on Ctrl-C
            return run_demo(
                Path(args.out), startup_timeout=args.startup_timeout, turn_timeout=args.timeout
            )
    except KeyboardInterrupt:
        print("[demo] interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uservlm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="call /uservlm/ask and print the answer and timings")
    ask.add_argument("question")
    ask.add_argument(
        "--image", help="image file of the person (default: the robot's newest camera frame)"
    )
    ask.add_argument("--user-id", default="", help="who is asking (consent memory)")
    ask.add_argument("--speak", action="store_true", help="also synthesize the answer")
    ask.add_argument(
        "--wav",
        help="write the spoken answer here (default: play it, or "
        "./uservlm_answer.wav when there is no audio device)",
    )
    ask.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    ask.add_argument("--namespace", default="", help="robot namespace of the services")
    ask.set_defaults(func=cmd_ask)

    up = sub.add_parser("up", help="bring the node graph up (as pepper.launch.py does)")
    which = up.add_mutually_exclusive_group()
    which.add_argument("--cloud", action="store_true", help="only the cloud side")
    which.add_argument("--robot", action="store_true", help="only the robot side")
    up.add_argument("--params-file", help="parameter YAML applied after config/*.yaml")
    up.add_argument("--namespace", default="", help="namespace for this robot")
    up.add_argument(
        "--naoqi",
        action="store_true",
        help="a Pepper running naoqi_driver2 supplies camera and microphones",
    )
    up.add_argument(
        "--naoqi-prefix", default="/naoqi_driver", help="namespace of naoqi_driver2's topics"
    )
    up.add_argument(
        "--compose",
        action="store_true",
        help="run the cloud nodes in one process (cloud_node), joined by dialogue_node when both "
        "sides run here: the ask, review and synthesis calls stay in-process; separate "
        "processes (default) isolate crashes",
    )
    up.add_argument(
        "--low-latency",
        action="store_true",
        help="hold the kernel's CPU wake-up latency at 0 µs while the graph runs "
        "(/dev/cpu_dma_latency; needs root or write access): idle CPUs poll instead of sleeping",
    )
    up.add_argument(
        "--respawn",
        action="store_true",
        help="start a node again when it exits (as launch_ros's respawn=True), until Ctrl-C",
    )
    up.add_argument(
        "--respawn-delay",
        type=float,
        default=2.0,
        help="seconds before a node is started again (doubled while it keeps exiting at once)",
    )
    for argument, (_, _, help_text) in MODEL_ARGUMENTS.items():
        up.add_argument(
            f"--{argument.replace('_', '-')}", dest=argument, default="", help=help_text
        )
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser(
        "demo", help="offline demo: the whole spoken loop on a bundled recording"
    )
    demo.add_argument(
        "--out",
        default="out/demo",
        help="folder for the spoken WAVs, the consent store and the node logs",
    )
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each turn")
    demo.add_argument(
        "--startup-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the services (the first run builds the tiny model)",
    )
    demo.set_defaults(func=cmd_demo)

    from uservlm_ros.tools.bags.cli import add_play_parser, add_record_parser
    from uservlm_ros.tools.bench.run import add_bench_parser

    add_record_parser(sub)
    add_play_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
