#!/usr/bin/env python3
"""Measure echo-cancellation options on the barge-in test recordings (the closing note quotes it).

For each option: CPU per 10 ms frame, echo reduction (ERLE) on echo-only answers in the first
0.5 s of each answer and after it, how much of the person's voice survives double talk, how often
Silero (the project's VAD) still hears speech in the cancelled echo, and Whisper base's word error
rate on the person's words cut from the output (the echo going on under them: the worst case).
Every option gets the same input: 10 ms microphone blocks and the reference block the speaker
played at the same capture time (aligned by timestamps), each answer in a fresh room.

The candidates other than the project's own come from PyPI (and libspeexdsp from Debian); install
them apart from the project's venv, e.g.::

    pip install --target /tmp/aec_pkgs --no-deps livekit==1.2.1 aiofiles types-protobuf \\
        pywebrtc-audio==0.2.0 pyaec==1.0.1 adaptfilt==0.3 voiceclean==0.3.6 soxr
    apt-get install libspeexdsp1
    PYTHONPATH=/tmp/aec_pkgs:. nice -n 10 .venv/bin/python scripts/measure_echo_options.py

A missing one is reported as such and skipped.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uservlm_ros.engines.echo.canceller import BLOCK, WebRtcEchoCanceller  # noqa: E402
from uservlm_ros.engines.echo.recordings import make_corpus  # noqa: E402
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, resample, word_error_rate  # noqa: E402

INT16 = 32767.0


class BlockEchoCanceller:
    """The project's own candidate: a partitioned-block frequency-domain adaptive filter (PBFDAF,
    the structure of Speex's MDF and of AEC3's linear stage) in numpy, per-bin normalised step,
    gradient constraint. ``filter_ms`` covers delay + room tail."""

    def __init__(self, filter_ms: float = 300.0, step: float = 0.5, regularization: float = 1e-6):
        if not 10.0 <= filter_ms <= 2000.0:
            raise ValueError(f"filter_ms must be in [10, 2000], got {filter_ms}")
        if not 0.0 < step <= 1.0:
            raise ValueError(f"step must be in (0, 1], got {step}")
        self.partitions = int(math.ceil(filter_ms * ASR_SAMPLE_RATE / 1000.0 / BLOCK))
        self.step = float(step)
        self.regularization = float(regularization)
        self.reset()

    def reset(self) -> None:
        bins = BLOCK + 1
        self._weights = np.zeros((self.partitions, bins), dtype=np.complex128)
        self._spectra = np.zeros((self.partitions, bins), dtype=np.complex128)  # newest first
        self._previous = np.zeros(BLOCK)
        self._power = np.zeros(bins)
        self.echo_estimate = np.zeros(BLOCK, dtype=np.float32)

    def process(self, near: np.ndarray, far: np.ndarray, adapt: bool = True) -> np.ndarray:
        """One block: returns ``near`` minus the echo predicted from ``far`` (and its history).
        :attr:`echo_estimate` holds the prediction afterwards."""
        far = np.asarray(far, dtype=np.float64)
        near = np.asarray(near, dtype=np.float64)
        spectrum = np.fft.rfft(np.concatenate([self._previous, far]))
        self._previous = far
        self._spectra = np.roll(self._spectra, 1, axis=0)
        self._spectra[0] = spectrum
        estimate = np.fft.irfft(np.sum(self._weights * self._spectra, axis=0))[BLOCK:]
        error = near - estimate
        self.echo_estimate = estimate.astype(np.float32)
        power = np.abs(spectrum) ** 2
        self._power = 0.9 * self._power + 0.1 * power if self._power.any() else power
        if adapt and self._power.max() > self.regularization:
            error_spectrum = np.fft.rfft(np.concatenate([np.zeros(BLOCK), error]))
            memory = np.sum(np.abs(self._spectra) ** 2, axis=0)
            scale = self.step / (memory + self.regularization * 2 * BLOCK * self.partitions)
            gradient = np.conj(self._spectra) * (error_spectrum * scale)
            # Gradient constraint: keep each partition a linear (not circular) convolution.
            taps = np.fft.irfft(gradient, axis=1)
            taps[:, BLOCK:] = 0.0
            self._weights += np.fft.rfft(taps, axis=1)
        return error.astype(np.float32)


class _Int16Option:
    """Adapter for libraries that take int16 blocks."""

    def process(self, near, far):
        out = self._process(
            np.round(near * INT16).clip(-32768, 32767).astype(np.int16),
            np.round(far * INT16).clip(-32768, 32767).astype(np.int16),
        )
        return np.asarray(out, dtype=np.float32) / INT16


class LiveKitApm(_Int16Option):
    """livekit.rtc.AudioProcessingModule: WebRTC APM (AEC3) through LiveKit's FFI library."""

    def __init__(self):
        from livekit import rtc

        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True)

    def _process(self, near, far):
        rtc = self._rtc
        self._apm.process_reverse_stream(rtc.AudioFrame(far.tobytes(), ASR_SAMPLE_RATE, 1, BLOCK))
        self._apm.set_stream_delay_ms(0)
        frame = rtc.AudioFrame(near.tobytes(), ASR_SAMPLE_RATE, 1, BLOCK)
        self._apm.process_stream(frame)
        return np.frombuffer(frame.data, dtype=np.int16)


class PyAec(_Int16Option):
    """pyaec (aec-rs, a Rust port of Speex's MDF), 300 ms filter."""

    def __init__(self):
        import pyaec

        self._aec = pyaec.Aec(BLOCK, int(0.3 * ASR_SAMPLE_RATE), ASR_SAMPLE_RATE, True)

    def _process(self, near, far):
        return self._aec.cancel_echo(near.tolist(), far.tolist())


class SpeexMdf(_Int16Option):
    """libspeexdsp's MDF echo canceller (Debian libspeexdsp1) through ctypes, 300 ms filter."""

    def __init__(self):
        name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
        lib = ctypes.CDLL(name)
        lib.speex_echo_state_init.restype = ctypes.c_void_p
        lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * 3
        self._lib = lib
        self._state = lib.speex_echo_state_init(BLOCK, int(0.3 * ASR_SAMPLE_RATE))
        rate = ctypes.c_int(ASR_SAMPLE_RATE)
        lib.speex_echo_ctl(self._state, 24, ctypes.byref(rate))  # SPEEX_ECHO_SET_SAMPLING_RATE

    def _process(self, near, far):
        out = np.zeros(BLOCK, dtype=np.int16)
        self._lib.speex_echo_cancellation(
            self._state, near.ctypes.data, far.ctypes.data, out.ctypes.data
        )
        return out


class VoiceClean(_Int16Option):
    """voiceclean's AEC: cross-correlation against the reference, then spectral masking."""

    def __init__(self):
        from voiceclean.aec import AEC

        self._aec = AEC(sample_rate=ASR_SAMPLE_RATE, chunk_ms=10)

    def _process(self, near, far):
        self._aec.feed_reference(far.tobytes())
        out = self._aec.process(near.tobytes())
        return np.frombuffer(out, dtype=np.int16) if out else np.zeros(BLOCK, np.int16)


class AdaptfiltNlms:
    """adaptfilt.nlms (time-domain NLMS, a Python loop per sample), 300 ms filter, run per block
    with the coefficients carried over."""

    def __init__(self):
        from adaptfilt import nlms

        self._nlms = nlms
        self._taps = int(0.3 * ASR_SAMPLE_RATE)
        self._weights = np.zeros(self._taps)
        self._far = np.zeros(self._taps - 1)

    def process(self, near, far):
        u = np.concatenate([self._far, far.astype(np.float64)])
        desired = np.concatenate([np.zeros(self._taps - 1), near.astype(np.float64)])
        _, e, self._weights = self._nlms(
            u, desired, self._taps, 0.5, initCoeffs=self._weights, returnCoeffs=True
        )
        self._weights = self._weights[-1]
        self._far = u[-(self._taps - 1) :]
        return e.astype(np.float32)


class Passthrough:
    def process(self, near, far):
        return near


def options():
    """(name, factory, note) per option."""
    return [
        ("none (raw microphone)", Passthrough, "baseline"),
        ("own PBFDAF (numpy)", lambda: BlockEchoCanceller(300.0, 0.7), "this project"),
        ("pywebrtc-audio 0.2.0 (AEC3)", lambda: WebRtcEchoCanceller(0), "Apache-2.0"),
        ("livekit 1.2.1 APM (AEC3)", LiveKitApm, "Apache-2.0"),
        ("libspeexdsp 1.2.1 MDF (apt)", SpeexMdf, "BSD-3-Clause"),
        ("pyaec 1.0.1 (aec-rs)", PyAec, "no licence given"),
        ("voiceclean 0.3.6", VoiceClean, "MIT"),
        ("adaptfilt 0.3 NLMS", AdaptfiltNlms, "MIT"),
    ]


def aligned_far(recording) -> np.ndarray:
    far = np.zeros(recording.samples, dtype=np.float32)
    played = resample(recording.reference, recording.reference_rate, ASR_SAMPLE_RATE)
    start = recording.index_of(recording.reference_start)
    far[start : start + played.size] = played[: recording.samples - start]
    return far


def run(factory, mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, list[float]]:
    option = factory()
    out = np.zeros_like(mic)
    costs = []
    for start in range(0, mic.size - BLOCK + 1, BLOCK):
        began = time.perf_counter()
        block = slice(start, start + BLOCK)
        out[block] = option.process(mic[block], far[block])
        costs.append(time.perf_counter() - began)
    return out, costs


def db(num: float, den: float) -> float:
    return 10.0 * np.log10(max(num, 1e-20) / max(den, 1e-20))


def silero_speech_fraction(segmenter, audio: np.ndarray) -> float:
    """Fraction of Silero's 32 ms windows with speech probability >= 0.5."""
    segmenter.reset()
    windows = audio[: audio.size // 512 * 512].reshape(-1, 512)
    probabilities = segmenter._probabilities(windows)  # noqa: SLF001 - the same model, batched
    return float(np.mean(probabilities >= 0.5))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=12, help="answers (each in its own room)")
    parser.add_argument(
        "--slow-count",
        type=int,
        default=3,
        help="answers for options slower than real time (adaptfilt)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-whisper", action="store_true")
    args = parser.parse_args(argv)

    from uservlm_ros.engines.asr.vad import VoiceActivitySegmenter
    from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine

    corpus = make_corpus(args.count, seed=args.seed)
    segmenter = VoiceActivitySegmenter()
    asr = None
    if not args.no_whisper:
        asr = ASREngine(ASRConfig(model="base", beam_size=1, language="en"))
        asr.load()
    rows = []
    for name, factory, licence in options():
        try:
            factory()
        except Exception as exc:  # not installed, or its library missing
            rows.append((name, licence, f"unavailable: {type(exc).__name__}: {exc}"))
            continue
        count = args.slow_count if "adaptfilt" in name else args.count
        costs, first, later, kept, heard, errors = [], [], [], [], [], []
        for recording in corpus[:count]:
            far = aligned_far(recording)
            echo_only = recording.without_person()
            mic_echo = echo_only.mic()
            out_echo, cost = run(factory, mic_echo, far)
            costs += cost
            start = recording.index_of(recording.reference_start)
            split = start + ASR_SAMPLE_RATE // 2
            end = recording.index_of(recording.reference_end)
            tail = end + int(0.3 * ASR_SAMPLE_RATE)
            first.append(
                db(np.sum(mic_echo[start:split] ** 2), np.sum(out_echo[start:split] ** 2))
            )
            later.append(db(np.sum(mic_echo[split:end] ** 2), np.sum(out_echo[split:end] ** 2)))
            heard.append(silero_speech_fraction(segmenter, out_echo[start:tail]))
            mic = recording.mic()
            out, _ = run(factory, mic, far)
            a = recording.index_of(recording.person_onset) - int(0.3 * ASR_SAMPLE_RATE)
            b = recording.index_of(recording.person_end) + int(0.3 * ASR_SAMPLE_RATE)
            person = recording.person[a:b]
            passed = out[a:b] - out_echo[a:b]  # what the person added to the output
            kept.append(db(np.sum(passed.astype(np.float64) ** 2), np.sum(person**2)))
            if asr is not None:
                text = asr.transcribe(out[a:b], ASR_SAMPLE_RATE).text
                errors.append(word_error_rate(recording.person_text, text))
        row = (
            name,
            licence,
            f"{statistics.median(costs) * 1e6:7.0f} us | {np.percentile(costs, 95) * 1e6:7.0f} us",
            f"{statistics.median(first):5.1f} dB",
            f"{statistics.median(later):5.1f} dB",
            f"{statistics.median(kept):+5.1f} dB",
            f"{100 * statistics.mean(heard):5.1f} %",
            f"{100 * statistics.mean(errors):5.1f} %" if errors else "-",
            f"n={count}",
        )
        rows.append(row)
        print(" | ".join(row), flush=True)
    if asr is not None:
        clean = [
            word_error_rate(
                r.person_text,
                asr.transcribe(
                    r.person[r.index_of(r.person_onset) - 4800 : r.index_of(r.person_end) + 4800],
                    ASR_SAMPLE_RATE,
                ).text,
            )
            for r in corpus
        ]
        print(f"person alone (no echo): Whisper base WER {100 * statistics.mean(clean):.1f} %")
    print()
    print(
        "| option | licence | CPU / 10 ms frame (median, p95) | ERLE first 0.5 s | ERLE after |"
        " person kept (double talk) | Silero hears echo | Whisper WER (echo under) | n |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
