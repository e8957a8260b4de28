"""The echo canceller: WebRTC's AEC3 through ``pywebrtc-audio`` (Apache-2.0, a cp311 wheel).

AEC3 = a linear adaptive filter, its own delay estimator and a non-linear residual-echo
suppressor. scripts/measure_echo_options.py compares it with the other options measured (a
numpy frequency-domain filter, Speex's MDF, pyaec, voiceclean, adaptfilt, LiveKit's copy of the
same AEC3): only AEC3 removes enough echo from the first half second of an answer on for a voice
detector to stop hearing the robot.

Blocks are 16 kHz mono float32, :data:`BLOCK` samples (10 ms, WebRTC's frame), and the reference
block is what the loudspeaker played at the capture time of the microphone block (aligned by
timestamps), so AEC3 only has to find the acoustic delay.
"""

from __future__ import annotations

import numpy as np

from uservlm_ros.speech.audio import ASR_SAMPLE_RATE

#: Samples per block: 10 ms at 16 kHz (WebRTC's frame).
BLOCK = ASR_SAMPLE_RATE // 100


class WebRtcEchoCanceller:
    """WebRTC AEC3 through ``pywebrtc-audio``; not thread-safe (one per stream)."""

    def __init__(self, delay_hint_ms: int = 0):
        try:
            from pywebrtc_audio import EchoCanceller
        except ImportError as exc:
            raise RuntimeError(f"pywebrtc-audio is not installed: {exc}") from exc
        self._factory = lambda: EchoCanceller(
            sample_rate=ASR_SAMPLE_RATE, num_channels=1, stream_delay_ms=int(delay_hint_ms)
        )
        self.reset()

    def reset(self) -> None:
        self._aec = self._factory()
        self.echo_estimate = np.zeros(BLOCK, dtype=np.float32)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """One block: ``near`` (microphone) with the echo of ``far`` (reference) removed."""
        near = np.asarray(near, dtype=np.float32)
        out = self._aec.process(near, np.asarray(far, dtype=np.float32))
        self.echo_estimate = near - out
        return out


__all__ = ["BLOCK", "WebRtcEchoCanceller"]
