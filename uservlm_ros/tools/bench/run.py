"""``uservlm bench``: start the graph, run the session, write the report (the command line)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from uservlm_ros.tools import bags
from uservlm_ros.tools.bench.config import DEFAULT_USER, BenchError, BenchOptions, SessionConfig
from uservlm_ros.tools.bench.graph import bench_specs, graph_overrides, session_config, watch
from uservlm_ros.tools.bench.netns import run_netns
from uservlm_ros.tools.bench.report import finish, hardware
from uservlm_ros.tools.bench.session import run_session
from uservlm_ros.tools.cpu_latency import CpuLatencyHold, LatencyError


def run_bench(options: BenchOptions, log=print) -> tuple[dict, str]:
    """Run the benchmark; returns (result, report text). Raises BenchError naming what failed."""
    out_dir = Path(options.out).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. a file of that name, no permission
        raise BenchError(f"--out {out_dir}: cannot create the output folder: {error}") from None
    if options.link not in ("loopback", "netns"):
        raise BenchError(f"--link must be loopback or netns, got {options.link!r}")
    if options.link == "netns" and options.attach:
        raise BenchError(
            "--attach uses a running graph; --link netns starts its own in two namespaces"
        )
    bags.read_bag(options.bag)  # fail early on a bad bag
    meta = {
        "hardware": hardware(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    }
    meta["cloud_processes"] = (
        "one process (cloud_node, --compose) with dialogue_node: review, synthesis and "
        "identify called in-process (the Ask action on loopback DDS), each node on its own "
        "executor thread"
        if options.compose
        else "one process per node"
    )
    hold = CpuLatencyHold(0)
    if options.low_latency:
        try:
            hold.acquire()  # system-wide: every process of the graph, either namespace
        except LatencyError as error:
            raise BenchError(f"--low-latency: {error}") from None
    meta["cpu_idle"] = hold.describe()
    try:
        return _run_bench(options, out_dir, meta, log)
    finally:
        hold.release()


def _run_bench(options: BenchOptions, out_dir: Path, meta: dict, log) -> tuple[dict, str]:
    from uservlm_ros.tools.launcher import GraphProcesses

    started = time.monotonic()
    if options.link == "loopback":
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        meta["link_text"] = (
            "loopback: all processes on this host, Fast DDS shared memory + UDPv4 "
            "(config/fastdds.xml)" + (", attached to a running graph" if options.attach else "")
        )
        graphs = []
        if not options.attach:
            specs = bench_specs("cloud", options.compose) + bench_specs("robot", options.compose)
            graph = GraphProcesses(
                specs,
                params_file=options.params_file,
                namespace=options.namespace,
                log_dir=out_dir / "logs",
                overrides=graph_overrides(options, out_dir),
            )
            log(
                f"[bench] starting {', '.join(s.name for s in graph.specs)} (logs in "
                f"{out_dir / 'logs'})"
            )
            graphs.append(graph.start())
        try:
            session = run_session(session_config(options), alive=watch(graphs), log=log)
        finally:
            for graph in graphs:
                graph.stop()
    else:
        session = run_netns(options, out_dir, meta, log)
    meta["seconds"] = time.monotonic() - started
    result = {"meta": meta, "session": session}
    return result, finish(result, out_dir, options.label)


def options_from_args(args) -> BenchOptions:
    from uservlm_ros.bringup.graph import MODEL_ARGUMENTS, model_overrides

    uplinks = (
        tuple(args.uplink)
        if args.uplink
        else (("jpeg", "raw") if args.link == "netns" else ("jpeg",))
    )
    overrides = model_overrides({name: getattr(args, name, "") for name in MODEL_ARGUMENTS})
    return BenchOptions(
        bag=Path(args.bag) if args.bag else bags.default_bag(),
        turns=args.turns,
        warmup=args.warmup,
        uplinks=uplinks,
        speed=args.speed,
        attach=args.attach,
        namespace=args.namespace,
        out=Path(args.out),
        link=args.link,
        link_rate=args.rate,
        params_file=Path(args.params_file) if args.params_file else None,
        overrides=overrides,
        consent=args.consent,
        user_id=args.user_id,
        startup_timeout=args.startup_timeout,
        turn_timeout=args.turn_timeout,
        stream_audio=args.stream_audio,
        compare=args.compare,
        compose=args.compose,
        low_latency=args.low_latency,
        label=args.label or (args.link if args.link != "loopback" else ""),
    )


def cmd_bench(args) -> int:
    from uservlm_ros.tools.netlink import LinkError

    if args.turns < 1 or args.warmup < 0:
        print("error: --turns must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 64
    from uservlm_ros.tools.launcher import interrupt_on

    try:
        with interrupt_on():  # SIGTERM, SIGHUP: the graph stops as on Ctrl-C
            _, report = run_bench(
                options_from_args(args), log=lambda text: print(text, flush=True)
            )
    except (BenchError, bags.BagError, LinkError) as error:
        print(f"[bench] error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[bench] interrupted", file=sys.stderr)
        return 130
    print("\n" + report, flush=True)
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """``uservlm bench``: add it to the CLI with ``bench.add_bench_parser(sub)``."""
    from uservlm_ros.bringup.graph import MODEL_ARGUMENTS

    parser = subparsers.add_parser(
        "bench",
        help="replay a bag through the graph N times; latency per stage and the ROS middleware "
        "share",
    )
    parser.add_argument("bag", nargs="?", help="rosbag2 directory (default: the bundled demo bag)")
    parser.add_argument("--turns", type=int, default=10, help="measured replays of the bag")
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured replays first (model warm-up)"
    )
    parser.add_argument(
        "--uplink",
        nargs="+",
        choices=("jpeg", "raw", "bag"),
        help="camera stream(s) to feed: JPEG (camera/image_raw/compressed), raw rgb8 "
        "(camera/image_raw) or both as recorded; several = one phase each "
        "(default: jpeg; with --link netns: jpeg raw)",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="replay speed factor (1 = original timing)"
    )
    parser.add_argument(
        "--link",
        choices=("loopback", "netns"),
        default="loopback",
        help="loopback: one host; netns: robot and cloud in two network namespaces over a shaped "
        "veth",
    )
    parser.add_argument(
        "--rate", default="100mbit", help="netns link rate each way, tc syntax (e.g. 20mbit)"
    )
    parser.add_argument(
        "--attach",
        action="store_true",
        help="use a running graph (uservlm up, without camera/microphone) instead of starting one",
    )
    parser.add_argument("--namespace", default="", help="robot namespace of the graph")
    parser.add_argument(
        "--consent",
        choices=("grant", "face", "anonymous"),
        default="grant",
        help="grant: a pre-consented bench user (full personalised path); face: no user id, the "
        "person resolved from the bag's face is pre-consented (person identification per turn); "
        "anonymous: no user id and no identification (the review answers generically, the face "
        "is withheld)",
    )
    parser.add_argument(
        "--user-id", default=DEFAULT_USER, help="the bench's user (forgotten at the end)"
    )
    parser.add_argument(
        "--stream-audio",
        action="store_true",
        help="speak each sentence as soon as it is synthesized (dialogue_node stream_audio); "
        "default off: the answer is spoken whole, which keeps the stage decomposition exact",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="three phases in one run: sequential (Whisper's standard 30 s window once the end "
        "of speech is confirmed, whole answer, then speech), short-window (the same with "
        "asr_node's shorter encoder window) and streamed (short window, speculative "
        "transcription, each sentence spoken as soon as it is synthesized); prints each "
        "one's time to first audio and its ratio to sequential",
    )
    parser.add_argument(
        "--compose",
        action="store_true",
        help="run the cloud nodes and dialogue_node in one process (cloud_node): the ethics "
        "review, TTS and identify are called in-process instead of over DDS",
    )
    parser.add_argument(
        "--low-latency",
        action="store_true",
        help="hold the kernel's CPU wake-up latency at 0 µs for the run (/dev/cpu_dma_latency; "
        "needs root or write access): idle CPUs poll instead of sleeping",
    )
    parser.add_argument("--params-file", help="parameter YAML applied after config/*.yaml")
    parser.add_argument(
        "--out", default="out/bench", help="folder for CSV, PNG, JSON, logs and spoken WAVs"
    )
    parser.add_argument("--label", default="", help="suffix of the output file names")
    parser.add_argument(
        "--startup-timeout", type=float, default=600.0, help="seconds to wait for the graph"
    )
    parser.add_argument(
        "--turn-timeout", type=float, default=180.0, help="seconds to wait for each turn"
    )
    for argument, (_, _, help_text) in MODEL_ARGUMENTS.items():
        parser.add_argument(
            f"--{argument.replace('_', '-')}", dest=argument, default="", help=help_text
        )
    parser.set_defaults(func=cmd_bench)
    return parser


def _session_main(config_path: str, result_path: str) -> int:
    """Entry of the robot-side session in its network namespace (``--link netns``)."""
    config = SessionConfig(**json.loads(Path(config_path).read_text()))
    try:
        result = run_session(config, log=lambda text: print(text, flush=True))
    except (BenchError, bags.BagError) as error:
        print(f"[bench] error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--session"] and len(argv) == 3:
        return _session_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(prog="uservlm")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    return args.func(args)
