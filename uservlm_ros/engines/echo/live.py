"""An :class:`EchoRecording` heard live, against a real speaker: the microphone for a capture time.

The recordings place the robot's answer at a fixed time; a real speaker starts it when it starts
and stops it when it is told to. :class:`LiveRecording` moves the recording to the speaker's
real start (:meth:`LiveRecording.started`, the stamp the speaker reported, on the microphone's
clock) and, once the speaker has stopped early (:meth:`LiveRecording.stopped`), mixes the echo
of what it played until then only. The person keeps their place relative to the answer's start.
Before the start and after the recording's end the microphone hears the recording's own noise
(its first ``LEAD_S`` seconds, looped), so the noise floor never changes.

Thread-safe in the way the node-level bench uses it: one thread reads :meth:`samples` while
another reports the start and the stop (each replaces whole arrays).
"""

from __future__ import annotations

import numpy as np

from uservlm_ros.engines.echo.recordings import EchoRecording
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, float_to_int16


class LiveRecording:
    """See the module docstring. ``with_person=False``: the echo-only version."""

    def __init__(self, recording: EchoRecording, with_person: bool = True):
        self.recording = recording if with_person else recording.without_person()
        lead = max(ASR_SAMPLE_RATE // 10, recording.index_of(recording.reference_start))
        self._idle = np.asarray(recording.noise[:lead], dtype=np.float32)
        self._whole = self.recording.mic()  # the speaker never stopped
        self._mix: np.ndarray | None = None
        self.offset: float | None = None  # microphone clock - recording time
        self.stopped_at: float | None = None

    # ------------------------------------------------------------------ the speaker's reports

    def started(self, stamp: float) -> None:
        """The speaker's first sample went out at ``stamp`` (microphone clock)."""
        if self.offset is None:
            self._mix = self._whole
            self.offset = stamp - self.recording.reference_start

    def stopped(self, stamp: float) -> None:
        """The speaker stopped at ``stamp``: the echo of what it would have played after is
        gone from the microphone."""
        if self.offset is None or self.stopped_at is not None:
            return
        self.stopped_at = stamp
        self._mix = self.recording.mic(stop_at=stamp - self.offset)

    # ------------------------------------------------------------------ ground truth, mic clock

    def _to_mic(self, recording_time: float | None) -> float | None:
        if recording_time is None or self.offset is None:
            return None
        return recording_time + self.offset

    @property
    def person_onset(self) -> float | None:
        return self._to_mic(self.recording.person_onset)

    @property
    def person_end(self) -> float | None:
        return self._to_mic(self.recording.person_end)

    @property
    def end(self) -> float | None:
        """Capture time of the recording's last sample."""
        return self._to_mic(self.recording.time_of(self.recording.samples))

    # ------------------------------------------------------------------ the microphone

    def samples(self, stamp: float, count: int) -> np.ndarray:
        """int16: what the microphone captured in ``count`` samples from ``stamp`` on."""
        position = int(round(stamp * ASR_SAMPLE_RATE))  # the idle noise runs on, chunk to chunk
        out = self._idle[(position + np.arange(count)) % self._idle.size]
        mix, offset = self._mix, self.offset
        if mix is None or offset is None:
            return float_to_int16(out)
        first = self.recording.index_of(stamp - offset)
        lo, hi = max(0, first), min(mix.size, first + count)
        if hi > lo:
            out[lo - first : hi - first] = mix[lo:hi]
        return float_to_int16(out)


__all__ = ["LiveRecording"]
