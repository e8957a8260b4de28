#!/usr/bin/env python3
"""Barge-in through the real nodes: reaction time and false barge-ins per 100 answers.

asr_node and speaker_node run in their own processes (the speaker in file mode, in real time);
the test recordings (scripts/make_echo_recordings.py's corpus: Piper answers heard back as echo
20-80 ms late, 0 to -12 dB relative to the person, RT60 0.2-0.5 s, each in its own room; a
second, higher voice cutting in at 30-70 % of the answer) are played as the microphone on
``audio`` in 40 ms chunks stamped with their capture time, their echo following what the
speaker reports it played and when (uservlm_ros/tools/barge_in.py). The echo canceller's
reference is the speaker's own ``speech_played``. Every answer is played twice, the echo alone
and then with the person, one after another through the same nodes (as on a robot).

- reaction time: the person's onset -> the speaker stopped (the stamp of its robot_speaking
  false, reason barge_in), median / p95 / max, split at the capture time of the audio that
  decided the barge-in (``detected``: speech needed + the gate's onset estimate) and after it
  (the microphone chunk, asr_node, the barge_in message, the speaker stopping);
- false barge-ins per 100 answers: any barge-in on the echo alone, and any dated more than
  0.3 s before the person's onset;
- what asr_node then publishes on ``speech``: the person's utterance (start before the onset:
  nothing cut) and its word error rate against what they said;
- asr_node's echo gate CPU share and the speaker's stop latency (from its /diagnostics).

    PYTHONPATH=. nice -n 10 .venv/bin/python scripts/bench_barge_in_nodes.py --count 24
    ... --echo-gain 0 6 --asr barge_in.min_speech_ms=96.0     # echo louder than the person
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
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 200)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)

import yaml  # noqa: E402

from uservlm_ros.engines.echo.recordings import GAIN_RANGE_DB, make_corpus  # noqa: E402
from uservlm_ros.speech.audio import word_error_rate  # noqa: E402
from uservlm_ros.tools.barge_in import BargeInRig, start_nodes, summary  # noqa: E402


def ms(seconds: float | None) -> str:
    return "   -" if seconds is None else f"{1000 * seconds:4.0f}"


def percentile(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=24, help="answers (each played twice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--namespace", default="barge_in_bench")
    parser.add_argument(
        "--attach", action="store_true", help="use asr_node and speaker_node already running"
    )
    parser.add_argument(
        "--echo-gain",
        type=float,
        nargs=2,
        default=GAIN_RANGE_DB,
        metavar=("LOW", "HIGH"),
        help="echo level relative to the person, dB (drawn per answer)",
    )
    parser.add_argument(
        "--asr",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an asr_node parameter, e.g. barge_in.min_speech_ms=96.0 (YAML value)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON here")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.asr:
        name, _, value = item.partition("=")
        overrides[name.strip()] = yaml.safe_load(value)

    import rclpy
    from rclpy.context import Context

    corpus = make_corpus(args.count, seed=args.seed, gain_range_db=tuple(args.echo_gain))
    work = Path(tempfile.mkdtemp(prefix="barge_in_bench_"))
    nodes = (
        None
        if args.attach
        else start_nodes(work / "logs", args.namespace, work / "speech", asr=overrides)
    )
    context = Context()
    rclpy.init(context=context)
    rig = BargeInRig(context, args.namespace)
    runs, errors, starts, parts = [], [], [], []
    try:
        rig.idle(corpus[0])
        if not rig.until(rig.ready, 180):
            raise SystemExit(f"asr_node / speaker_node not up (logs in {work / 'logs'})")
        rig.until(lambda: rig.diagnostic("asr_node", "state") == "active", 60)
        began = time.monotonic()
        for recording in corpus:
            echo = rig.play(recording, with_person=False, settle=1.0)
            heard = rig.play(recording)
            runs += [echo, heard]
            said = heard.heard_person()
            line = (
                f"{recording.name}: echo {recording.path.gain_db:+5.1f} dB "
                f"{1000 * recording.path.delay_s:3.0f} ms RT60 {recording.path.rt60_s:.2f} s | "
                f"false {echo.false_barge_ins + heard.false_barge_ins} | "
            )
            if heard.reaction is None:
                line += (
                    "stopped by a false barge-in before the person spoke"
                    if heard.reason == "barge_in"
                    else f"not stopped ({heard.reason})"
                )
            else:
                decided = [
                    e.detected.sec + e.detected.nanosec * 1e-9
                    for e, _ in rig.barge_in_events
                    if e.header.frame_id == heard.turn
                ]
                split = (decided[0] - heard.person_onset, heard.stopped - decided[0])
                parts.append(split)
                line += (
                    f"stopped {ms(heard.reaction)} ms after the onset "
                    f"({ms(split[0])} + {ms(split[1])})"
                )
            if said is not None:
                errors.append(word_error_rate(heard.person_text, said[2]))
                starts.append(said[0] - heard.person_onset)
                line += f" | heard from {ms(starts[-1])} ms: {said[2]!r}"
            else:
                line += " | the person's words were not published"
            print(line, flush=True)
        elapsed = time.monotonic() - began
        figures = summary(runs)
        asr = dict(rig.diagnostics.get("asr_node", {}))
        speaker = dict(rig.diagnostics.get("speaker_node", {}))
    finally:
        rig.close()
        rclpy.try_shutdown(context=context)
        if nodes is not None:
            nodes.stop()

    n = figures["answers"]
    print()
    low, high = args.echo_gain
    print(
        f"answers: {n} (seed {args.seed}, echo {low:+.0f} to {high:+.0f} dB relative to the "
        f"person{', asr_node ' + ' '.join(args.asr) if args.asr else ''}), each the echo alone "
        f"and then with a person, one after another through asr_node + speaker_node "
        f"({elapsed:.0f} s)"
    )
    print(
        f"reaction (person's onset -> speaker stopped): median "
        f"{ms(figures['reaction_median_s'])} ms, p95 {ms(figures['reaction_p95_s'])} ms, max "
        f"{ms(figures['reaction_max_s'])} ms (n={figures['stopped_for_person']})"
    )
    if parts:
        first, second = zip(*parts)
        print(
            f"  onset -> audio that decided it: median {ms(statistics.median(first))} ms; "
            f"-> speaker stopped: median {ms(statistics.median(second))} ms, "
            f"p95 {ms(percentile(second, 95))} ms"
        )
    print(
        f"missed (the speaker did not stop for the person): {figures['missed']} of {n}; "
        f"stopped by a false barge-in before they spoke: {figures['stopped_before_person']}"
    )
    print(
        f"false barge-ins: {figures['false_barge_ins']} in {2 * n} runs = "
        f"{figures['false_per_100_answers']:.1f} per 100 answers"
    )
    if starts:
        print(
            f"the person's utterance on `speech`: {len(starts)} of {n}, starting "
            f"{ms(-max(starts))}-{ms(-min(starts))} ms before the onset (median "
            f"{ms(-statistics.median(starts))}); Whisper base WER "
            f"{100 * statistics.mean(errors):.1f} %"
        )
    print(
        f"asr_node echo gate CPU: {asr.get('echo_gate_cpu_percent', '?')} % of one core; "
        f"unreferenced blocks {asr.get('unreferenced_blocks', '?')}; speaker's last stop "
        f"{speaker.get('last_stop_ms', '?')} ms after the request reached it"
    )
    if args.out:
        args.out.write_text(
            json.dumps({"summary": figures, "runs": [asdict(r) for r in runs]}, indent=1)
        )
        print(f"runs written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
