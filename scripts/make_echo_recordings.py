#!/usr/bin/env python3
"""Write the barge-in test recordings: the robot's answers heard back as echo, a person cutting in.

For each answer: ``<name>_mic.wav`` (16 kHz: echo + the person + noise), ``<name>_echo_mic.wav``
(the same without the person), ``<name>_reference.wav`` (what the speaker played, Piper's
22.05 kHz) and one ``manifest.json`` with the ground truth: capture time of the first microphone
sample, the time the reference's first sample went out, the echo path (delay, level, RT60), the
person's onset / end and words. Deterministic for a seed (Piper's noise off); see
uservlm_ros/engines/echo/recordings.py for the model.

    PYTHONPATH=. .venv/bin/python scripts/make_echo_recordings.py --out /tmp/echo --count 24
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uservlm_ros.engines.echo.recordings import make_corpus  # noqa: E402
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, write_wav  # noqa: E402


def write_corpus(out: Path, count: int, seed: int) -> Path:
    """Write ``count`` recordings to ``out``; returns the manifest's path."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for recording in make_corpus(count, seed=seed):
        name = recording.name
        write_wav(out / f"{name}_mic.wav", recording.mic(), ASR_SAMPLE_RATE)
        write_wav(out / f"{name}_echo_mic.wav", recording.without_person().mic(), ASR_SAMPLE_RATE)
        write_wav(out / f"{name}_reference.wav", recording.reference, recording.reference_rate)
        entries.append(
            {
                "name": name,
                "answer": recording.answer,
                "mic_start": recording.mic_start,
                "reference_start": recording.reference_start,
                "reference_rate": recording.reference_rate,
                "path": asdict(recording.path),
                "person_text": recording.person_text,
                "person_onset": recording.person_onset,
                "person_end": recording.person_end,
            }
        )
    manifest = out / "manifest.json"
    manifest.write_text(
        json.dumps({"seed": seed, "sample_rate": ASR_SAMPLE_RATE, "recordings": entries}, indent=1)
    )
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/echo_recordings")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_corpus(Path(args.out), args.count, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
