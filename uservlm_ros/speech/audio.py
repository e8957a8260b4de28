"""Small numpy audio helpers shared by the engines, the nodes and the tests.

Conventions: "samples" are a 1-D numpy array, interleaved when there is more than one channel (the
layout of naoqi_bridge_msgs/AudioBuffer); int16 is PCM at full scale 32767, float32 is in [-1, 1].
No rclpy here.
"""

from __future__ import annotations

import math
import re
import unicodedata
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

#: Whisper and Silero VAD both work on 16 kHz mono.
ASR_SAMPLE_RATE = 16000
#: Rates accepted by :func:`validate_audio` (telephone band up to studio rates).
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000

_INT16_SCALE = 32768.0
_ACCEPTED_DTYPES = (np.dtype(np.int16), np.dtype(np.float32), np.dtype(np.float64))


def int16_to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1)."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise ValueError(f"expected int16 samples, got {samples.dtype}")
    return samples.astype(np.float32) / _INT16_SCALE


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] -> int16 PCM; values outside the range are clipped, not wrapped."""
    samples = np.asarray(samples)
    if samples.dtype.kind != "f":
        raise ValueError(f"expected floating-point samples, got {samples.dtype}")
    scaled = np.clip(np.rint(samples.astype(np.float64) * _INT16_SCALE), -32768, 32767)
    return scaled.astype(np.int16)


def to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 or float samples -> float32 in [-1, 1] (float input is only cast)."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return int16_to_float32(samples)
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    raise ValueError(f"unsupported sample dtype {samples.dtype}; expected int16 or float32")


def validate_audio(
    samples: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    channels: int = 1,
) -> float:
    """Check that ``samples`` is usable audio; return its duration in seconds.

    Raises ValueError naming the problem: not an array, wrong dtype or shape, zero samples, a
    sample
    count that is not a multiple of ``channels``, NaN or inf, an unsupported rate, or a duration
    over
    ``max_seconds``.
    """
    if not isinstance(samples, np.ndarray):
        raise ValueError(f"audio must be a numpy array, got {type(samples).__name__}")
    if samples.dtype not in _ACCEPTED_DTYPES:
        raise ValueError(
            f"unsupported audio dtype {samples.dtype}; expected int16 PCM or float32/float64 in "
            "[-1, 1]"
        )
    if samples.ndim != 1:
        raise ValueError(
            f"audio must be a 1-D array of (interleaved) samples, got shape {samples.shape}"
        )
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    if samples.size == 0:
        raise ValueError("audio has zero samples")
    if samples.size % channels:
        raise ValueError(
            f"{samples.size} samples is not a whole number of frames of {channels} interleaved "
            "channels"
        )
    if samples.dtype.kind == "f" and not np.all(np.isfinite(samples)):
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise ValueError(f"audio contains {bad} NaN or infinite sample(s)")
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE
    ):
        raise ValueError(
            f"unsupported sample rate {sample_rate!r}; expected an integer in "
            f"[{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz"
        )
    seconds = samples.size / channels / sample_rate
    if seconds > max_seconds:
        raise ValueError(f"audio is {seconds:.2f} s long; the maximum is {max_seconds:g} s")
    return seconds


def to_mono(samples: np.ndarray, channels: int, channel: int | None = None) -> np.ndarray:
    """Interleaved multi-channel samples -> mono.

    ``channel=None`` averages all channels (in float, so int16 input does not overflow; the dtype
    is
    kept); an index picks that one channel (e.g. one of Pepper's four microphones).
    """
    samples = np.asarray(samples)
    if channels < 1 or samples.ndim != 1 or samples.size % channels:
        raise ValueError(
            f"cannot split {samples.shape} samples into {channels} interleaved channel(s)"
        )
    if channels == 1:
        return samples
    frames = samples.reshape(-1, channels)
    if channel is not None:
        if not 0 <= channel < channels:
            raise ValueError(f"channel {channel} out of range for {channels} channels")
        return frames[:, channel].copy()
    mixed = frames.mean(axis=1, dtype=np.float64)
    if samples.dtype == np.int16:
        return np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
    return mixed.astype(samples.dtype)


def resample(samples: np.ndarray, from_rate: int, to_rate: int = ASR_SAMPLE_RATE) -> np.ndarray:
    """Anti-aliased polyphase resampling of mono audio; returns float32.

    resample_poly low-pass filters at the lower of the two Nyquist frequencies, so 48 kHz -> 16 kHz
    does not fold 8-24 kHz content into the speech band.
    """
    audio = to_float32(samples)
    if from_rate == to_rate:
        return audio
    ratio = Fraction(int(to_rate), int(from_rate))
    out = resample_poly(audio, ratio.numerator, ratio.denominator)
    return out.astype(np.float32, copy=False)


def prepare_for_asr(
    samples: np.ndarray,
    sample_rate: int,
    channels: int = 1,
    max_seconds: float = 30.0,
) -> np.ndarray:
    """Validate, downmix and resample: returns 16 kHz mono float32 ready for Whisper / Silero."""
    validate_audio(samples, sample_rate, max_seconds, channels)
    return resample(to_mono(samples, channels), sample_rate, ASR_SAMPLE_RATE)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, channels: int = 1) -> None:
    """Write 16-bit PCM WAV; float input is converted with :func:`float_to_int16`."""
    samples = np.asarray(samples)
    pcm = samples if samples.dtype == np.int16 else float_to_int16(samples)
    if pcm.ndim != 1 or pcm.size % channels:
        raise ValueError(
            f"expected 1-D interleaved samples for {channels} channel(s), got {pcm.shape}"
        )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.astype("<i2", copy=False).tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int, int]:
    """Read a 16-bit PCM WAV: returns (interleaved int16 samples, sample_rate, channels)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(
                f"{path}: only 16-bit PCM WAV is supported, got {8 * wav.getsampwidth()}-bit"
            )
        channels = wav.getnchannels()
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate, channels


_APOSTROPHES = re.compile(r"['\u2019\u02bc]")
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalize_text(text: str) -> list:
    """Lower case, apostrophes dropped ("don't" -> "dont"), other punctuation -> space; the
    words."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    return _NON_WORD.sub(" ", text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after :func:`normalize_text`.

    Can exceed 1.0 when the hypothesis has many extra words. Raises ValueError for a reference
    without words (the rate is undefined).
    """
    ref = normalize_text(reference)
    hyp = normalize_text(hypothesis)
    if not ref:
        raise ValueError("reference has no words; word error rate is undefined")
    # Levenshtein over words, one row at a time.
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1] / len(ref)


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for silence)."""
    audio = to_float32(np.asarray(samples)).astype(np.float64)
    if audio.size == 0:
        raise ValueError("audio has zero samples")
    rms = math.sqrt(float(np.mean(audio * audio)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf
