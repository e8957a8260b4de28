#!/usr/bin/env python3
"""ASR latency and word error rate against the Whisper encoder window and language detection.

    .venv/bin/python scripts/bench_asr.py [--snr DB] [--windows 30,15,10,8,5] [--no-legacy] [-v]

Utterances: 20 English questions a visitor might ask a robot (films, food, clothes, travel,
weather, numbers, names), synthesised offline by the project's TTSEngine (Piper en_US-joe-medium,
resampled to 16 kHz), plus the bundled demo recordings question.wav and reply.wav. ``--snr`` adds
white Gaussian noise at that signal-to-noise ratio (signal power measured over the whole clip,
fixed seed).

Configurations: each window (30 = Whisper's standard window, ``window_seconds=0``; the others are
``ASRConfig.window_seconds``, i.e. the minimum window, grown to cover longer utterances) with the
language forced to "en" and detected; plus, unless ``--no-legacy``, faster-whisper's own language
detection on the standard window (it encodes the first window twice), for comparison. Defaults
follow config/cloud.yaml: Whisper base, int8, beam 1, VAD filter on.

Every utterance is transcribed once per configuration, the configurations taking turns (rotated
per utterance) so that other load on the machine spreads over all of them; one warm-up pass is not
counted. Piper's synthesis is random, so the audio (and a word or two of the WER) differs between
runs; within a run every configuration hears the same audio. Printed: median ASR seconds
(ASREngine.transcribe wall time), the ratio to the standard window with the language forced
("vs std"), the corpus WER (word-level Levenshtein distance summed over all
utterances / reference words; lower case, punctuation stripped) and how often "en" was detected.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import numpy as np  # noqa: E402

#: (reference, topic); numbers are written as digits, the way Whisper writes them.
SENTENCES = [
    ("Can you recommend a good science fiction movie for tonight?", "movies"),
    ("Who played the main character in the film Titanic?", "movies"),
    ("What should I cook for dinner with rice and chicken?", "food"),
    ("Is pizza healthier than a hamburger?", "food"),
    ("I am allergic to peanuts, which desserts can I eat?", "food"),
    ("Does this blue jacket go with my brown shoes?", "clothes"),
    ("Could you help me choose a warm sweater for the winter?", "clothes"),
    ("How long does the train from London to Paris take?", "travel"),
    (
        "I am planning a trip to Italy next summer, which cities should I visit first, "
        "and how many days should I stay in each of them?",
        "travel",
    ),
    ("Where is the nearest bus stop to the airport?", "travel"),
    ("Will it be sunny this weekend?", "weather"),
    ("Should I bring an umbrella to the museum today?", "weather"),
    ("How cold does it get in Canada in January?", "weather"),
    ("What is 12 times 7?", "numbers"),
    ("Please set a timer for 15 minutes.", "numbers"),
    ("How many people live in New York City?", "numbers"),
    ("My name is Alice. What is your name?", "names"),
    ("Can you tell my friend Michael where the kitchen is?", "names"),
    ("Hello Pepper, do you remember my brother David and his wife Emma?", "names"),
    (
        "Good morning robot, I would like some advice about what to wear to my sister's wedding "
        "on Saturday, because the weather forecast says it might rain in the afternoon.",
        "clothes",
    ),
]
#: The bundled recordings (uservlm_ros/data/demo/README.md gives their texts).
DEMO = [
    ("question.wav", "What should I wear to a business meeting?"),
    ("reply.wav", "Yes, please go ahead."),
]

_PUNCTUATION = re.compile(r"[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-case words with punctuation stripped ("Sister's" -> "sisters", "12," -> "12")."""
    return _PUNCTUATION.sub("", text.lower()).split()


def word_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word-level Levenshtein distance, reference words)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def corpus_wer(pairs) -> float:
    edits = refs = 0
    for reference, hypothesis in pairs:
        e, n = word_edits(reference, hypothesis)
        edits, refs = edits + e, refs + n
    return edits / refs


def with_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(samples.astype(np.float64) ** 2))
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), samples.size)
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)


def utterances(snr_db):
    """[(name, reference, 16 kHz float32 samples)]."""
    from uservlm_ros.engines.tts import TTSConfig, TTSEngine
    from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, read_wav, resample, to_float32
    from uservlm_ros.tools.demo import demo_file

    tts = TTSEngine(TTSConfig(backend="piper"))
    tts.load()
    items = []
    for i, (text, topic) in enumerate(SENTENCES):
        speech = tts.synthesize(text)
        items.append(
            (f"{topic}-{i}", text, resample(speech.samples, speech.sample_rate, ASR_SAMPLE_RATE))
        )
    for name, text in DEMO:
        samples, rate, channels = read_wav(demo_file(name))
        assert rate == ASR_SAMPLE_RATE and channels == 1, (name, rate, channels)
        items.append((name, text, samples))
    items = [(name, text, to_float32(np.asarray(s))) for name, text, s in items]
    if snr_db is not None:
        rng = np.random.default_rng(0)
        items = [(name, text, with_noise(s, snr_db, rng)) for name, text, s in items]
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snr", type=float, default=None, help="add white noise at this SNR, dB")
    parser.add_argument(
        "--windows",
        default="30,15,10,8,5",
        help="encoder windows, seconds (30 = standard, the others ASRConfig.window_seconds)",
    )
    parser.add_argument("--model", default="base")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--no-vad", action="store_true", help="without the Silero VAD filter")
    parser.add_argument(
        "--no-legacy",
        action="store_true",
        help="skip faster-whisper's own (two-encoder-pass) language detection",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="padding after the audio in a short window, seconds (default: the engine's)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every misrecognition")
    args = parser.parse_args()

    from uservlm_ros.engines.asr import whisper
    from uservlm_ros.engines.asr import window as asr_window
    from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine
    from uservlm_ros.speech.audio import ASR_SAMPLE_RATE

    if args.margin is not None:  # both modules read it
        asr_window.WINDOW_MARGIN_SECONDS = whisper.WINDOW_MARGIN_SECONDS = args.margin

    started = time.perf_counter()
    items = utterances(args.snr)
    lengths = [s.size / ASR_SAMPLE_RATE for _, _, s in items]
    print(
        f"{len(items)} utterances, {min(lengths):.1f}-{max(lengths):.1f} s (median "
        f"{statistics.median(lengths):.1f} s), noise: "
        f"{'none' if args.snr is None else f'{args.snr:g} dB SNR'}; "
        f"synthesised in {time.perf_counter() - started:.0f} s"
    )

    base = ASREngine(
        ASRConfig(model=args.model, beam_size=args.beam, vad=not args.no_vad, window_seconds=0)
    )
    base.load()
    windows = [float(w) for w in args.windows.split(",")]
    engines = {}
    for w in windows:
        engine = ASREngine(
            ASRConfig(
                model=args.model,
                beam_size=args.beam,
                vad=not args.no_vad,
                window_seconds=0 if w >= 30 else w,
            )
        )
        engine._model = base._model  # one loaded model; only the window differs
        engines[w] = engine

    def run(window, language):
        def transcribe(samples):
            t = engines[window].transcribe(samples, ASR_SAMPLE_RATE, language=language)
            return t.text, t.language, t.asr_seconds, t.window_seconds

        return transcribe

    def legacy(samples):
        """faster-whisper's own detection (language=None): the first window is encoded twice."""
        start = time.perf_counter()
        segments, info = base._model.transcribe(
            samples,
            language=None,
            chunk_length=30,
            beam_size=args.beam,
            vad_filter=not args.no_vad,
            condition_on_previous_text=False,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, info.language, time.perf_counter() - start, 30

    configs = []  # (label, window label, language label, function)
    for w in windows:
        name = "30 (standard)" if w >= 30 else f"{w:g}"
        configs.append((f"w{w:g}-en", name, "en (forced)", run(w, "en")))
        configs.append((f"w{w:g}-detect", name, "detect, 1 pass", run(w, "")))
    if not args.no_legacy:
        configs.append(("legacy-detect", "30 (standard)", "detect, 2 passes", legacy))

    for _, _, _, fn in configs:  # warm-up
        fn(items[0][2])
    results = {label: [] for label, *_ in configs}
    for i, (name, reference, samples) in enumerate(items):
        order = configs[i % len(configs) :] + configs[: i % len(configs)]
        for label, _, _, fn in order:
            results[label].append((name, reference) + fn(samples))

    reference_label = "w30-en" if "w30-en" in results else configs[0][0]  # the "vs std" baseline
    reference_median = statistics.median(r[4] for r in results[reference_label])
    header = (
        f"{'window s':<14} {'language':<17} {'median s':>8} {'vs std':>7} {'WER':>6} "
        f"{'errors':>7} {'en':>5} {'windows used':>12}"
    )
    print()
    print(
        f"model {args.model} int8, beam {args.beam}, VAD {'off' if args.no_vad else 'on'}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"window margin {asr_window.WINDOW_MARGIN_SECONDS:g} s, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(header)
    print("-" * len(header))
    for label, window, language, _ in configs:
        rows = results[label]
        median = statistics.median(r[4] for r in rows)
        edits = sum(word_edits(r[1], r[2])[0] for r in rows)
        refs = sum(word_edits(r[1], r[2])[1] for r in rows)
        english = sum(r[3] == "en" for r in rows)
        used = sorted({r[5] for r in rows})
        used_text = f"{used[0]}" if len(used) == 1 else f"{used[0]}-{used[-1]}"
        print(
            f"{window:<14} {language:<17} {median:>8.3f} {median / reference_median:>6.2f}x "
            f"{corpus_wer((r[1], r[2]) for r in rows):>6.3f} {f'{edits}/{refs}':>7} "
            f"{f'{english}/{len(rows)}':>5} {used_text:>12}"
        )
    if args.verbose:
        print()
        for label, *_ in configs:
            for name, reference, text, language, _, window in results[label]:
                if word_edits(reference, text)[0] or language != "en":
                    print(f"{label:<14} {name:<12} [{language}, {window} s] {text!r}")
    print(f"\n({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
