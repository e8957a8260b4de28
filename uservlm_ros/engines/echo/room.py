"""A synthetic room between the robot's loudspeaker and its microphones (numpy, deterministic).

Used to make test recordings of the robot's own voice coming back as echo: a direct path after
``delay_s``, then a diffuse tail of exponentially decaying Gaussian noise whose energy falls by
60 dB in ``rt60_s`` (the usual statistical model of late reverberation), band-limited to what a
small loudspeaker and a robot's microphones pass. Real rooms add early reflections and a
loudspeaker adds distortion; neither is modelled, which favours a linear echo canceller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from uservlm_ros.speech.audio import ASR_SAMPLE_RATE

#: Band of the echo path (a small loudspeaker: little below 150 Hz; microphones: up to 7 kHz).
PATH_BAND_HZ = (150.0, 7000.0)


@dataclass(frozen=True)
class EchoPath:
    """One loudspeaker-to-microphone path; validated on construction (ValueError)."""

    #: loudspeaker timestamp -> direct sound at the microphone, seconds.
    delay_s: float
    #: echo level relative to the person's voice at the microphone, dB (0 = as loud).
    gain_db: float
    #: reverberation time of the room, seconds.
    rt60_s: float
    #: direct-to-reverberant energy ratio, dB.
    drr_db: float = 6.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.delay_s <= 1.0:
            raise ValueError(f"delay_s must be in [0, 1] s, got {self.delay_s}")
        if not -60.0 <= self.gain_db <= 30.0:
            raise ValueError(f"gain_db must be in [-60, 30] dB, got {self.gain_db}")
        if not 0.05 <= self.rt60_s <= 2.0:
            raise ValueError(f"rt60_s must be in [0.05, 2] s, got {self.rt60_s}")
        if not -20.0 <= self.drr_db <= 40.0:
            raise ValueError(f"drr_db must be in [-20, 40] dB, got {self.drr_db}")


def impulse_response(
    path: EchoPath, rng: np.random.Generator, rate: int = ASR_SAMPLE_RATE
) -> np.ndarray:
    """Unit-direct-path impulse response (float64) of ``path``, ``delay + rt60`` long."""
    start = int(round(path.delay_s * rate))
    tail_len = int(round(path.rt60_s * rate))
    t = np.arange(tail_len) / rate
    tail = rng.standard_normal(tail_len) * np.exp(-3.0 * math.log(10.0) * t / path.rt60_s)
    tail[: int(0.001 * rate)] = 0.0  # the diffuse field builds up after the direct sound
    tail *= math.sqrt(10.0 ** (-path.drr_db / 10.0) / max(float(np.sum(tail**2)), 1e-12))
    response = np.zeros(start + tail_len)
    response[start] = 1.0
    response[start:] += tail
    band = butter(2, PATH_BAND_HZ, btype="bandpass", fs=rate, output="sos")
    return sosfilt(band, response)


def active_rms(samples: np.ndarray, rate: int = ASR_SAMPLE_RATE, floor_db: float = -30.0) -> float:
    """RMS over the 20 ms frames within ``floor_db`` of the loudest one (speech, not pauses)."""
    frame = max(1, int(0.02 * rate))
    count = samples.size // frame
    if count == 0:
        if not samples.size:
            return 0.0
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    frames = samples[: count * frame].reshape(count, frame)
    energy = np.mean(np.square(frames, dtype=np.float64), axis=1)
    loud = energy[energy >= energy.max() * 10.0 ** (floor_db / 10.0)]
    return float(np.sqrt(np.mean(loud))) if loud.size else 0.0


def convolve(signal: np.ndarray, response: np.ndarray, length: int) -> np.ndarray:
    """``signal`` through ``response``, cut or zero-padded to ``length`` samples (float64)."""
    out = fftconvolve(np.asarray(signal, dtype=np.float64), response)[:length]
    return np.pad(out, (0, length - out.size))


def mic_noise(rng: np.random.Generator, length: int, rms: float) -> np.ndarray:
    """Pinkish (first-order low-passed white) noise at ``rms``: a fan and the preamplifier."""
    white = rng.standard_normal(length + 64)
    coloured = sosfilt(butter(1, 1000.0, fs=ASR_SAMPLE_RATE, output="sos"), white)[64:]
    return coloured * (rms / max(float(np.sqrt(np.mean(coloured**2))), 1e-12))


def onset_of(samples: np.ndarray, rate: int = ASR_SAMPLE_RATE, below_db: float = -20.0) -> int:
    """Index of the first 5 ms frame whose RMS is within ``below_db`` of the active RMS."""
    frame = max(1, int(0.005 * rate))
    level = active_rms(samples, rate) * 10.0 ** (below_db / 20.0)
    count = samples.size // frame
    rms = np.sqrt(np.mean(np.square(samples[: count * frame].reshape(count, frame)), axis=1))
    loud = np.flatnonzero(rms >= level)
    if loud.size == 0:
        raise ValueError("no speech in the signal")
    return int(loud[0] * frame)


__all__ = [
    "EchoPath",
    "PATH_BAND_HZ",
    "active_rms",
    "convolve",
    "impulse_response",
    "mic_noise",
    "onset_of",
]
