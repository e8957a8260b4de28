#!/usr/bin/env python3
"""Barge-in through the whole spoken loop: the speaker's stop on a cancel, the reaction to a
person talking over the robot's real answers, and false barge-ins per 100 answers.

The graph: asr_node, dialogue_node, vlm_node (the tiny placeholder model: meaningless answers,
``--max-new-tokens`` long), tts_node (Piper), ethics_node and speaker_node (file mode, real
time), each in its own process. The microphone is a LiveRoom (uservlm_ros/tools/barge_in_loop.py):
its echo is what speaker_node reports playing of each turn, through a room drawn per answer like
the test recordings' (echo 20-80 ms late, ``--echo-gain`` relative to the person, RT60
0.2-0.5 s); the person's words are the test recordings' second voice (``--voice robot``:
tts_node's own, the hardest case for telling them from the echo).

1. Cancel (``--cancels`` goals sent straight to /uservlm/ask: spoken, streamed), each cancelled
   once the speaker has started playing it: the cancel sent -> stop_speaking published by
   vlm_node -> the speaker stopped (the stamp of its robot_speaking false, reason stopped);
   and the speaker's own time from the request's arrival to the stop (its /diagnostics
   ``last_stop_ms``, read after each stop).
2. Barge-in (``--count`` answers by dialogue_node, to questions put on ``speech``, each heard
   twice): first with its echo alone, to its end (false barge-ins, the robot hearing itself);
   then with the person saying one of the test phrases over it 1-3 s after its first sample
   out: the person's onset -> the speaker stopped, split at the capture time of the audio that
   decided the barge-in; the interrupted turn's record (cancelled); the person's words on
   ``speech`` (from before their onset: nothing cut; Whisper's WER) and answered as the next
   turn.

    PYTHONPATH=. nice -n 10 .venv/bin/python scripts/bench_barge_in_loop.py --count 20 --cancels 20
    ... --drop-every 30        # one 40 ms microphone chunk in 30 lost (a stream with gaps)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)

from uservlm_ros.engines.echo.live import LiveRoom  # noqa: E402
from uservlm_ros.engines.echo.recordings import (  # noqa: E402
    DELAY_RANGE_S,
    GAIN_RANGE_DB,
    INTERRUPTIONS,
    RT60_RANGE_S,
    RecordingVoices,
)
from uservlm_ros.engines.echo.room import EchoPath  # noqa: E402
from uservlm_ros.speech.audio import word_error_rate  # noqa: E402
from uservlm_ros.tools.barge_in import EARLY_S  # noqa: E402
from uservlm_ros.tools.barge_in_loop import (  # noqa: E402
    LoopRig,
    robot_voice,
    stamp_of,
    start_loop_graph,
)

QUESTIONS = (
    "Tell me about the weather today.",
    "What is a good book to read?",
    "How do robots understand people?",
    "Tell me something about the moon.",
    "What can I cook tonight?",
)
#: The robot's tail after an answer: barge-ins and utterances until then belong to it, seconds.
TAIL_S = 0.6


def ms(seconds) -> str:
    return "   -" if seconds is None or seconds != seconds else f"{1000 * seconds:4.0f}"


def figures(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n=0"
    return (
        f"median {ms(statistics.median(values))} ms, p95 {ms(np.percentile(values, 95))} ms, "
        f"max {ms(max(values))} ms (n={len(values)})"
    )


def seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def settle(rig: LoopRig, quiet: float = 1.5, timeout: float = 120.0) -> None:
    """Stop whatever the robot says until it has been silent for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    since = time.monotonic()
    while time.monotonic() < deadline:
        speaking = bool(rig.states) and rig.states[-1][0].speaking
        if speaking:
            rig.stop_speaking("")
            since = time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise SystemExit("the robot did not fall silent")


def cancel_runs(rig: LoopRig, count: int) -> list[dict]:
    """``count`` goals cancelled once the speaker plays them (see the module docstring)."""
    from rclpy.action import ActionClient

    from uservlm_ros.action import Ask

    client = ActionClient(rig.node, Ask, "uservlm/ask")
    if not rig.until(client.server_is_ready, 60):
        raise SystemExit("no /uservlm/ask action server")
    runs = []
    for index in range(count):
        turn = f"cancel-{index}"
        mark = rig.mark()
        stages: list[str] = []
        sent = client.send_goal_async(
            Ask.Goal(
                question=QUESTIONS[index % len(QUESTIONS)],
                speak=True,
                stream_audio=True,
                publish_audio=True,
                turn_id=turn,
            ),
            feedback_callback=lambda m: stages.append(m.feedback.stage),
        )
        if not rig.until(sent.done, 30) or not sent.result().accepted:
            raise SystemExit(f"{turn}: goal not accepted")
        handle = sent.result()
        playing = rig.until(lambda: rig.started(mark), 60)
        if not playing or playing.turn_id != turn:
            raise SystemExit(f"{turn}: the speaker did not start it ({stages})")
        cancelled = time.time()
        handle.cancel_goal_async()
        ended = rig.until(lambda: rig.ended(mark, turn), 10)
        stop = rig.until(
            lambda: next((h for h in rig.since(mark, "stops") if h.frame_id == turn), None), 10
        )
        result = handle.get_result_async()
        rig.until(result.done, 30)
        previous = rig.diagnostic("speaker_node", "last_stop_ms")
        rig.until(lambda: rig.diagnostic("speaker_node", "last_stop_ms") != previous, 2.5)
        speaker_ms = rig.diagnostic("speaker_node", "last_stop_ms")
        run = {
            "turn": turn,
            "stages": stages,
            "reason": ended.reason if ended else None,
            "cancelled": bool(result.done() and result.result().result.cancelled),
            "cancel_to_stop_speaking": seconds(stop.stamp) - cancelled if stop else None,
            "stop_speaking_to_stopped": stamp_of(ended) - seconds(stop.stamp)
            if stop and ended
            else None,
            "cancel_to_stopped": stamp_of(ended) - cancelled if ended else None,
            "speaker_received_to_stopped": float(speaker_ms) / 1000 if speaker_ms else None,
        }
        runs.append(run)
        print(
            f"{turn}: {run['reason']}; cancel -> stop_speaking "
            f"{ms(run['cancel_to_stop_speaking'])} ms -> stopped "
            f"{ms(run['stop_speaking_to_stopped'])} ms; speaker: request -> stopped "
            f"{ms(run['speaker_received_to_stopped'])} ms",
            flush=True,
        )
        settle(rig, quiet=0.5)
    client.destroy()
    return runs


def answer(rig: LoopRig, question: str, timeout: float = 120.0):
    """Put ``question`` on ``speech``; (mark, the state that started its answer)."""
    mark = rig.mark()
    rig.publish_utterance(question)
    started = rig.until(lambda: rig.started(mark), timeout)
    if not started:
        raise SystemExit(f"no answer to {question!r}")
    return mark, started


def echo_alone(rig: LoopRig, question: str) -> dict:
    mark, started = answer(rig, question)
    ended = rig.until(lambda: rig.ended(mark, started.turn_id), 300)
    time.sleep(TAIL_S)
    heard = [u for u in rig.since(mark, "utterances") if seconds(u.end) > stamp_of(started)]
    return {
        "turn": started.turn_id,
        "seconds": stamp_of(ended) - stamp_of(started) if ended else None,
        "reason": ended.reason if ended else None,
        "false_barge_ins": len(rig.since(mark, "barge_ins")),
        "heard_itself": [u.text for u in heard],
    }


def with_person(rig: LoopRig, question: str, words, said: str, cut: float) -> dict:
    mark, started = answer(rig, question)
    turn = started.turn_id
    onset, end = rig.say(words, at=stamp_of(started) + cut)
    ended = rig.until(lambda: rig.ended(mark, turn), max(0.0, end - time.time()) + 300)
    run = {
        "turn": turn,
        "said": said,
        "cut_in_s": cut,
        "reason": ended.reason if ended else None,
        "reaction": None,
        "decided": None,
        "false_barge_ins": 0,
    }
    barge_ins = [b for b in rig.since(mark, "barge_ins") if b.header.frame_id == turn]
    run["false_barge_ins"] = sum(stamp_of(b) < onset - EARLY_S for b in barge_ins)
    if ended and ended.reason == "barge_in" and barge_ins and not run["false_barge_ins"]:
        run["reaction"] = stamp_of(ended) - onset
        run["decided"] = seconds(barge_ins[0].detected) - onset
    elif ended and stamp_of(ended) < onset:
        run["reason"] = f"{ended.reason} before the person spoke"
    heard = rig.until(
        lambda: next((u for u in rig.since(mark, "utterances") if seconds(u.end) > onset), None),
        max(0.0, end - time.time()) + 15,
    )
    if heard:
        run["heard"] = heard.text
        run["heard_from"] = seconds(heard.start) - onset
        run["wer"] = word_error_rate(said, heard.text)
    record = rig.until(lambda: rig.record(mark, turn), 30)
    run["record_error"] = record.error if record else None
    following = rig.until(lambda: rig.started(mark, skip=(turn,)), 30) if heard else None
    if following:
        run["end_to_next_answer"] = stamp_of(following) - end
        rig.stop_speaking(following.turn_id)
        answered = rig.until(lambda: rig.record(mark, following.turn_id), 30)
        run["next_answered"] = bool(answered and answered.success)
        run["next_transcript"] = answered.transcript if answered else None
    return run


def report(cancels: list[dict], echoes: list[dict], persons: list[dict]) -> None:
    def column(runs, key):
        return [run.get(key) for run in runs]

    if cancels:
        print("cancel while the speaker plays (goals sent straight to /uservlm/ask):")
        for key, what in (
            ("cancel_to_stop_speaking", "cancel sent -> stop_speaking published"),
            ("stop_speaking_to_stopped", "stop_speaking published -> speaker stopped"),
            ("speaker_received_to_stopped", "at the speaker, request received -> stopped"),
            ("cancel_to_stopped", "cancel sent -> speaker stopped"),
        ):
            print(f"  {what}: {figures(column(cancels, key))}")
        stopped = sum(c["reason"] == "stopped" for c in cancels)
        cancelled = sum(c["cancelled"] for c in cancels)
        print(
            f"  stopped with reason 'stopped': {stopped} of {len(cancels)}; "
            f"results cancelled: {cancelled}"
        )
    n = len(persons)
    print(f"person's onset -> speaker stopped: {figures(column(persons, 'reaction'))}")
    print(f"  onset -> the audio that decided it: {figures(column(persons, 'decided'))}")
    missed = [p for p in persons if p["reaction"] is None]
    why = ", ".join(sorted({str(p["reason"]) for p in missed})) or "none"
    print(f"missed (not stopped for the person): {len(missed)} of {n} ({why})")
    false = sum(e["false_barge_ins"] for e in echoes) + sum(p["false_barge_ins"] for p in persons)
    echo_seconds = sum(e["seconds"] or 0 for e in echoes)
    itself = sum(len(e["heard_itself"]) for e in echoes)
    print(
        f"false barge-ins: {false} in {2 * n} answers ({n} with the echo alone, "
        f"{echo_seconds:.0f} s of it) = {100.0 * false / max(n, 1):.1f} per 100 answers; "
        f"the robot heard itself {itself} times"
    )
    heard = [p for p in persons if "heard" in p]
    if heard:
        leads = [-p["heard_from"] for p in heard]
        cut = sum(lead < 0 for lead in leads)
        print(
            f"the person's words on `speech`: {len(heard)} of {n}, starting "
            f"{ms(statistics.median(leads))} ms before their onset (median; "
            f"{ms(max(leads))} .. {ms(min(leads))}), {cut} starting after it (first words cut); "
            f"Whisper base WER {100 * statistics.mean(p['wer'] for p in heard):.1f} %"
        )
    cancelled = sum(p["record_error"] == "cancelled: barge-in" for p in persons)
    answered = sum(bool(p.get("next_answered")) for p in persons)
    print(
        f"interrupted turns whose record ended 'cancelled: barge-in': {cancelled} of {n}; the "
        f"person's words answered as the next turn: {answered} of {n}, end of their words -> "
        f"next first audio {figures(column(persons, 'end_to_next_answer'))}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="answers (each heard twice)")
    parser.add_argument("--cancels", type=int, default=20, help="goals cancelled while spoken")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--namespace", default="barge_in_loop_bench")
    parser.add_argument("--max-new-tokens", type=int, default=60, help="vlm_node's answers")
    parser.add_argument(
        "--echo-gain",
        type=float,
        nargs=2,
        default=GAIN_RANGE_DB,
        metavar=("LOW", "HIGH"),
        help="echo level relative to the person, dB (drawn per answer)",
    )
    parser.add_argument(
        "--voice",
        choices=("other", "robot"),
        default="other",
        help="the person's voice: other (the test recordings' person: Piper pitched up, loaded "
        "here) or robot (tts_node's own voice: the echo and the person sound alike)",
    )
    parser.add_argument(
        "--drop-every",
        type=int,
        default=0,
        metavar="N",
        help="lose one microphone chunk in N during the answers (a stream with gaps)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON here")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.context import Context

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="barge_in_loop_bench_"))
    graph = start_loop_graph(
        work, args.namespace, {"vlm_node": {"max_new_tokens": args.max_new_tokens}}
    )
    context = Context()
    rclpy.init(context=context)
    rig = LoopRig(context, args.namespace)
    cancels, echoes, persons = [], [], []
    try:
        if not rig.until(rig.ready, 240):
            raise SystemExit(f"the loop's nodes are not up (logs in {work})")
        rig.until(lambda: rig.diagnostic("asr_node", "state") == "active", 120)
        rig.set_parameter("dialogue_node", "user_id", "")
        if args.voice == "robot":
            voices = [rig.voice(text) for text in INTERRUPTIONS]
        else:
            person = RecordingVoices()
            voices = [person.person(text) for text in INTERRUPTIONS]
        began = time.monotonic()
        cancels = cancel_runs(rig, args.cancels)
        rig.drop_chunks(args.drop_every)
        voice = robot_voice()
        for index in range(args.count):
            path = EchoPath(
                delay_s=float(rng.uniform(*DELAY_RANGE_S)),
                gain_db=float(rng.uniform(*args.echo_gain)),
                rt60_s=float(rng.uniform(*RT60_RANGE_S)),
            )
            rig.use_room(LiveRoom(path, voice, seed=args.seed + index))
            question = QUESTIONS[index % len(QUESTIONS)]
            echo = echo_alone(rig, question)
            settle(rig)
            said = INTERRUPTIONS[index % len(INTERRUPTIONS)]
            heard = with_person(
                rig, question, voices[index % len(voices)], said, float(rng.uniform(1.0, 3.0))
            )
            settle(rig)
            echo["room"] = heard["room"] = [path.delay_s, path.gain_db, path.rt60_s]
            echoes.append(echo)
            persons.append(heard)
            print(
                f"answer {index:02d}: echo {path.gain_db:+5.1f} dB {1000 * path.delay_s:3.0f} ms "
                f"RT60 {path.rt60_s:.2f} s | echo alone {echo['seconds'] or 0:4.1f} s "
                f"{echo['reason']}, false {echo['false_barge_ins']}, heard itself "
                f"{len(echo['heard_itself'])} | person at {heard['cut_in_s']:.1f} s: "
                + (
                    f"stopped {ms(heard['reaction'])} ms after the onset "
                    f"({ms(heard['decided'])} decided)"
                    if heard["reaction"] is not None
                    else f"not stopped for them ({heard['reason']})"
                )
                + f" | heard {heard.get('heard')!r} | record: {heard['record_error']!r}"
                + f" | next answered: {heard.get('next_answered')}",
                flush=True,
            )
        elapsed = time.monotonic() - began
        chunks = (rig.chunks_sent, rig.chunks_late, rig.chunks_dropped)
        gate = dict(rig.diagnostics.get("asr_node", {}))
    finally:
        rig.close()
        rclpy.try_shutdown(context=context)
        graph.stop()

    n = len(persons)
    print()
    print(
        f"{args.cancels} cancels, then {n} answers by dialogue_node (vlm_node "
        f"{args.max_new_tokens} new tokens, seed {args.seed}, the person's voice {args.voice}, "
        f"echo {args.echo_gain[0]:+.0f} to "
        f"{args.echo_gain[1]:+.0f} dB relative to the person"
        + (f", one microphone chunk in {args.drop_every} lost" if args.drop_every else "")
        + "), each with the echo alone and "
        f"then with a person, through the whole loop ({elapsed:.0f} s)"
    )
    report(cancels, echoes, persons)
    print(
        f"microphone chunks: {chunks[0]} sent ({chunks[2]} lost on purpose), {chunks[1]} before "
        f"the speaker's report of what it played had all arrived; asr_node echo gate CPU "
        f"{gate.get('echo_gate_cpu_percent', '?')} % of one core, unreferenced blocks "
        f"{gate.get('unreferenced_blocks', '?')}, audio gaps {gate.get('audio_gaps', '?')}"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"cancels": cancels, "echo_alone": echoes, "with_person": persons}, indent=1
            )
        )
        print(f"runs written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
