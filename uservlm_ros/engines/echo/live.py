"""Microphones that hear a real speaker live: what the robot's microphone hears at a capture time.

The recordings place the robot's answer at a fixed time; a real speaker starts it when it starts
and stops it when it is told to. :class:`LiveRecording` moves the recording to the speaker's
real start (:meth:`LiveRecording.started`, the stamp the speaker reported, on the microphone's
clock) and, once the speaker has stopped early (:meth:`LiveRecording.stopped`), mixes the echo
of what it played until then only. The person keeps their place relative to the answer's start.
Before the start and after the recording's end the microphone hears the recording's own noise
(its first ``LEAD_S`` seconds, looped), so the noise floor never changes.

Thread-safe in the way the node-level bench uses it: one thread reads :meth:`samples` while
another reports the start and the stop (each replaces whole arrays).

:class:`LiveRoom` needs no recording: the robot's answer is whatever the speaker really played
(the whole spoken loop, its answers written by the model and synthesised as they come). The
speaker's reports of each block it plays (:meth:`LiveRoom.played`, stamped with when its first
sample went out) and of each stop (:meth:`LiveRoom.speaking`) go into a
:class:`~uservlm_ros.engines.echo.reference.ReferenceTimeline`; the microphone hears that, cut
where the speaker stopped, through an :class:`~uservlm_ros.engines.echo.room.EchoPath`, plus the
room's noise and a person's words placed at given capture times (:meth:`LiveRoom.say`).
"""

from __future__ import annotations

import threading

import numpy as np
from scipy.signal import fftconvolve

from uservlm_ros.engines.echo.recordings import (
    NOISE_BELOW_PERSON_DB,
    PERSON_DBFS,
    EchoRecording,
)
from uservlm_ros.engines.echo.reference import ReferenceTimeline
from uservlm_ros.engines.echo.room import (
    EchoPath,
    active_rms,
    convolve,
    impulse_response,
    mic_noise,
    onset_of,
)
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, float_to_int16, to_float32


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


#: Seconds of room noise generated once and looped.
NOISE_SECONDS = 10.0


class LiveRoom:
    """The microphone of a robot whose speaker really plays (see the module docstring).

    ``robot_voice``: a sample of the robot's voice (16 kHz, float or int16) that sets the echo's
    level: the echo of that voice is ``path.gain_db`` relative to the person (whose words are
    scaled to ``PERSON_DBFS`` of speech RMS); the noise is ``NOISE_BELOW_PERSON_DB`` under the
    person. Thread-safe: the speaker's reports, :meth:`say` and :meth:`samples` may come from
    different threads."""

    def __init__(self, path: EchoPath, robot_voice: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.path = path
        self.response = impulse_response(path, rng)
        voice = np.asarray(to_float32(np.asarray(robot_voice)), dtype=np.float64)
        unit_echo = active_rms(convolve(voice, self.response, voice.size + self.response.size))
        if not unit_echo > 0:
            raise ValueError("robot_voice is silent: it cannot set the echo's level")
        self.person_level = 10.0 ** (PERSON_DBFS / 20.0)
        self.echo_scale = self.person_level * 10.0 ** (path.gain_db / 20.0) / unit_echo
        self.noise = mic_noise(
            rng,
            int(NOISE_SECONDS * ASR_SAMPLE_RATE),
            self.person_level * 10.0 ** (-NOISE_BELOW_PERSON_DB / 20.0),
        )
        self.timeline = ReferenceTimeline(history_s=60.0)
        self._lock = threading.Lock()
        self._stops: dict[str, float] = {}  # turn -> when the speaker stopped it early
        self._words: list[tuple[int, np.ndarray]] = []  # (first sample index, 16 kHz float)
        self.cut_blocks = 0  # blocks reported before a stop that arrived after it, cut there

    # ------------------------------------------------------------------ the speaker's reports

    def played(self, samples: np.ndarray, rate: int, start: float, turn: str = "") -> None:
        """The speaker played ``samples`` (at ``rate``) from ``start`` on, for ``turn``."""
        with self._lock:
            stop = self._stops.get(turn) if turn else None
        if stop is not None:  # reported ahead of a stop whose report came first: cut there
            keep = int(max(0.0, stop - start) * rate)
            if keep < np.asarray(samples).size:
                self.cut_blocks += 1
                samples = np.asarray(samples)[:keep]
        if np.asarray(samples).size:
            self.timeline.add(samples, rate, start)

    def speaking(self, speaking: bool, stamp: float, turn: str = "", reason: str = "") -> None:
        """The speaker started or stopped (``reason``: why) at ``stamp``."""
        if not speaking and turn and reason not in ("", "finished"):
            with self._lock:
                self._stops[turn] = stamp
        self.timeline.set_speaking(speaking, stamp)

    # ------------------------------------------------------------------ the person

    def say(self, words: np.ndarray, at: float) -> tuple[float, float]:
        """The person says ``words`` (16 kHz, int16 or float; leading silence is skipped),
        speech starting at capture time ``at``. Returns their (onset, end) capture times."""
        audio = np.asarray(to_float32(np.asarray(words)), dtype=np.float64)
        first = onset_of(audio)
        audio = audio[first:] * (self.person_level / active_rms(audio))
        index = int(round(at * ASR_SAMPLE_RATE))
        with self._lock:
            self._words.append((index, audio))
        return at, at + audio.size / ASR_SAMPLE_RATE

    # ------------------------------------------------------------------ the microphone

    def samples(self, stamp: float, count: int) -> tuple[np.ndarray, bool]:
        """(int16: what the microphone captured in ``count`` samples from ``stamp`` on,
        complete): ``complete`` is False when the speaker spoke then and its report of what it
        played has not all arrived yet (the echo of the missing part is silence)."""
        start = int(round(stamp * ASR_SAMPLE_RATE))
        out = self.noise[(start + np.arange(count)) % self.noise.size].copy()
        history = self.response.size - 1
        reference, complete = self.timeline.window(
            (start - history) / ASR_SAMPLE_RATE, history + count
        )
        if np.any(reference):
            echo = fftconvolve(reference.astype(np.float64), self.response, mode="valid")
            out += echo[:count] * self.echo_scale
        with self._lock:
            self._words = [(i, w) for i, w in self._words if i + w.size > start - count]
            words = list(self._words)
        for index, audio in words:
            lo, hi = max(start, index), min(start + count, index + audio.size)
            if hi > lo:
                out[lo - start : hi - start] += audio[lo - index : hi - index]
        return float_to_int16(np.clip(out, -1.0, 1.0)), complete


__all__ = ["LiveRecording", "LiveRoom", "NOISE_SECONDS"]
