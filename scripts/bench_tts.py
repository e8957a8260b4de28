#!/usr/bin/env python3
"""Synthesis time per second of audio on this machine: Piper (the offline default) beside Coqui
Tacotron 2 (the paper's TTS), both through the project's TTSEngine.

    .venv/bin/python scripts/bench_tts.py [-n 3] [--threads 0]

Piper: the bundled en_US-joe-medium voice, real speech. Coqui: an UNTRAINED Tacotron 2 + HiFi-GAN
V2 built from coqui-tts's own configurations (random weights: ITS OUTPUT IS NOISE; see
``uservlm_ros.tools.untrained_tacotron2``), the shapes of tacotron2-DDC and its default
vocoder, so its cost per second of audio is the real model's. Its decoder always runs a fixed
number of steps (2.3 s per sentence), whatever the text. Each engine speaks the same sentences
N times; printed: load time, median synthesis seconds per sentence and per second of audio
(the real-time factor: below 1 = faster than real time), and the ratio. Coqui is skipped, with
the reason, where coqui-tts does not import (see requirements/coqui.txt).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uservlm_ros.engines.tts import TTSConfig, TTSEngine  # noqa: E402

SENTENCES = (
    "Good morning, it is nice to see you again.",
    "For a business meeting, wear a dark suit and a white shirt.",
    "Would you like me to recommend a vegetarian restaurant nearby?",
    "I think a short walk after lunch would do you good.",
)


def measure(engine: TTSEngine, repeats: int) -> dict:
    started = time.perf_counter()
    engine.load()
    load = time.perf_counter() - started
    per_sentence, per_audio_second = [], []
    for _ in range(repeats):
        for sentence in SENTENCES:
            speech = engine.synthesize(sentence)
            per_sentence.append(speech.synthesis_seconds)
            per_audio_second.append(speech.synthesis_seconds / speech.seconds)
    return {
        "voice": engine.voice,
        "rate": engine.sample_rate,
        "load_s": load,
        "sentence_s": statistics.median(per_sentence),
        "per_audio_second": statistics.median(per_audio_second),
        "runs": len(per_sentence),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3, help="repeats of the sentence set")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads for Coqui (0: default)"
    )
    args = parser.parse_args()

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {len(SENTENCES)} sentences x {args.n}\n"
    )
    results = [measure(TTSEngine(TTSConfig(backend="piper")), args.n)]
    try:
        import torch
        from TTS import __version__ as coqui_version
    except Exception as error:  # ImportError, or OSError from torchaudio's libraries
        reason = str(error).strip().splitlines()[-1]
        print(
            f"Coqui not measured: coqui-tts does not import here ({type(error).__name__}: "
            f"{reason})\n"
        )
    else:
        from uservlm_ros.tools.untrained_tacotron2 import build_untrained_tacotron2

        if args.threads:
            torch.set_num_threads(args.threads)
        print(
            f"coqui-tts {coqui_version}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)"
        )
        print(
            "*** Coqui Tacotron 2 here is UNTRAINED (random weights): its output is NOISE; "
            "only its cost is measured. ***\n"
        )
        with tempfile.TemporaryDirectory() as folder:
            model = build_untrained_tacotron2(folder)
            engine = TTSEngine(
                TTSConfig(
                    backend="coqui", coqui_model=str(model), coqui_vocoder=str(model / "vocoder")
                )
            )
            results.append(measure(engine, args.n))

    print("| voice | rate Hz | load s | synthesis s per sentence | synthesis s per audio s |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['voice']} | {r['rate']} | {r['load_s']:.1f} | {r['sentence_s']:.3f} | "
            f"{r['per_audio_second']:.3f} |"
        )
    if len(results) == 2:
        ratio = results[1]["per_audio_second"] / results[0]["per_audio_second"]
        print(
            f"\nTacotron 2 + HiFi-GAN V2 costs {ratio:.1f}x Piper's time per second of audio "
            f"(medians over {results[0]['runs']} sentences each, one run)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
