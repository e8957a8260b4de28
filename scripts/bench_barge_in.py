#!/usr/bin/env python3
"""Barge-in at the engine level: reaction time, false barge-ins, cost, and what ASR then hears.

Over ``--count`` answers (scripts/make_echo_recordings.py's corpus: Piper answers played back
as echo 20-80 ms late, 0 to -12 dB relative to the person, RT60 0.2-0.5 s; a second, higher voice
cutting in at 30-70 % of the answer), each through a fresh EchoGate (a cold canceller: the
robot's first answer, the worst case), the microphone in 40 ms chunks and the reference in 50 ms
pieces:

- reaction time: the person's onset -> the end of the microphone chunk whose processing reported
  the barge-in (the gate cannot answer before the chunk has arrived), median / p95 / max;
- false barge-ins per 100 answers: on the echo-only version of each answer, plus any barge-in
  dated more than 0.3 s before the person's onset in the versions with a person;
- CPU per 40 ms chunk (median / p95) and the share of it in AEC3 and Silero;
- with Whisper (not ``--no-whisper``): word error rate of the person's words in the gate's
  output, the speaker stopping ``--stop-after`` s after the barge-in (the node-level loop) and,
  for comparison, never stopping.

    PYTHONPATH=. nice -n 10 .venv/bin/python scripts/bench_barge_in.py --count 24
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uservlm_ros.engines.echo.gate import EchoGate, EchoGateConfig  # noqa: E402
from uservlm_ros.engines.echo.recordings import make_corpus  # noqa: E402
from uservlm_ros.engines.echo.replay import replay  # noqa: E402
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, word_error_rate  # noqa: E402

EARLY_S = 0.3  # a barge-in dated this long before the person's onset is a false one


def percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-ms", type=int, default=40)
    parser.add_argument(
        "--reference-lag",
        type=float,
        default=0.0,
        help="seconds the reference arrives after it was played",
    )
    parser.add_argument(
        "--stop-after",
        type=float,
        default=0.15,
        help="seconds from the barge-in to the speaker stopping",
    )
    parser.add_argument("--no-whisper", action="store_true")
    args = parser.parse_args(argv)

    config = EchoGateConfig()
    corpus = make_corpus(args.count, seed=args.seed)
    reactions, onset_errors, chunk_costs = [], [], []
    cancel_s = vad_s = audio_s = 0.0
    false, missed = 0, 0
    asr = None
    if not args.no_whisper:
        from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine

        asr = ASREngine(ASRConfig(model="base", beam_size=1, language="en"))
        asr.load()
    errors_stopped, errors_running, errors_clean = [], [], []
    for recording in corpus:
        echo_gate = EchoGate(config)
        echo = replay(
            recording.without_person(),
            echo_gate,
            args.chunk_ms,
            reference_lag_s=args.reference_lag,
        )
        false += len(echo.barge_ins)
        chunk_costs += echo.chunk_seconds
        stats = echo_gate.stats()
        cancel_s += stats.cancel_seconds
        vad_s += stats.vad_seconds
        audio_s += recording.samples / ASR_SAMPLE_RATE
        gate = EchoGate(config)
        heard = replay(recording, gate, args.chunk_ms, reference_lag_s=args.reference_lag)
        onset = recording.person_onset
        true_ones = [
            (b, at)
            for b, at in zip(heard.barge_ins, heard.detected_in_chunk)
            if b.onset >= onset - EARLY_S
        ]
        false += len(heard.barge_ins) - len(true_ones)
        if not true_ones:
            missed += 1
        else:
            reactions.append(true_ones[0][1] - onset)
            onset_errors.append(true_ones[0][0].onset - onset)
        path = recording.path
        line = (
            f"{recording.name}: echo {path.gain_db:+5.1f} dB {1000 * path.delay_s:3.0f} ms "
            f"RT60 {recording.path.rt60_s:.2f} s | false {len(echo.barge_ins)} | "
            + (f"reaction {1000 * reactions[-1]:4.0f} ms" if true_ones else "missed")
        )
        if asr is not None:
            a = onset - 0.3
            b = recording.person_end + 0.3
            stopped = replay(
                recording,
                EchoGate(config),
                args.chunk_ms,
                reference_lag_s=args.reference_lag,
                stop_after_s=args.stop_after,
            )
            texts = []
            for runs, errors in ((stopped, errors_stopped), (heard, errors_running)):
                texts.append(asr.transcribe(runs.heard(a, b), ASR_SAMPLE_RATE).text)
                errors.append(word_error_rate(recording.person_text, texts[-1]))
            clean = recording.person[recording.index_of(a) : recording.index_of(b)]
            clean = clean.astype(np.float32)
            errors_clean.append(
                word_error_rate(recording.person_text, asr.transcribe(clean, ASR_SAMPLE_RATE).text)
            )
            line += f" | heard (speaker stopped): {texts[0]!r}"
        print(line, flush=True)
    n = len(corpus)
    print()
    print(
        f"answers: {n} (seed {args.seed}), chunks of {args.chunk_ms} ms, reference lag "
        f"{1000 * args.reference_lag:.0f} ms; cold canceller per answer"
    )
    print(
        f"reaction time (onset -> barge-in reported): "
        f"median {1000 * statistics.median(reactions):.0f} ms, "
        f"p95 {1000 * percentile(reactions, 95):.0f} ms, max {1000 * max(reactions):.0f} ms "
        f"(n={len(reactions)})"
    )
    print(
        f"onset estimate - true onset: median {1000 * statistics.median(onset_errors):+.0f} ms, "
        f"p95 {1000 * percentile(onset_errors, 95):+.0f} ms"
    )
    print(f"missed barge-ins: {missed} of {n}")
    print(f"false barge-ins: {false} in {2 * n} runs = {100.0 * false / n:.1f} per 100 answers")
    print(
        f"CPU per {args.chunk_ms} ms chunk: "
        f"median {1000 * statistics.median(chunk_costs):.2f} ms, "
        f"p95 {1000 * percentile(chunk_costs, 95):.2f} ms; "
        f"AEC3 {100 * cancel_s / audio_s:.2f} % "
        f"and Silero {100 * vad_s / audio_s:.2f} % of one core (echo-only runs)"
    )
    if asr is not None:
        print(
            f"Whisper base WER of the person's words: "
            f"person alone {100 * statistics.mean(errors_clean):.1f} %, "
            f"gate output with the speaker stopped {1000 * args.stop_after:.0f} ms "
            f"after the barge-in "
            f"{100 * statistics.mean(errors_stopped):.1f} %, speaker never stopped "
            f"{100 * statistics.mean(errors_running):.1f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
