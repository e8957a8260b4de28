"""What the loudspeaker played, by time: the echo canceller's reference (thread-safe, numpy).

The speaker side reports each piece it plays with the time its first sample went out
(:meth:`ReferenceTimeline.add`), at its own rate (Piper's 22.05 kHz), and when it starts and
stops speaking (:meth:`ReferenceTimeline.set_speaking`), stamped on the same clock as the
microphone's capture stamps. Pieces that continue the previous one (within
``JOIN_TOLERANCE_S``) are joined into one stream, resampled to 16 kHz by one stateful resampler,
so joins do not click; a piece that starts elsewhere opens a new stream. Pieces may arrive before
they are played (early) or after the microphone audio they echo in (late): everything is placed
by its stamp. :meth:`ReferenceTimeline.window` returns the reference for any capture interval and
whether it is complete there (a missing reference cannot be told from silence otherwise).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.robot.resampler import StreamingResampler
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, to_float32

#: A piece starting within this of the previous piece's end continues it, seconds.
JOIN_TOLERANCE_S = 0.002


@dataclass
class _Stream:
    """Contiguous 16 kHz reference from ``start`` on; input pieces still arriving."""

    start: float  # time of samples[0]
    rate: int  # the input rate
    input_end: float  # time just after the last input sample
    resampler: StreamingResampler
    parts: list[np.ndarray] = field(default_factory=list)
    length: int = 0
    samples: np.ndarray | None = None  # parts joined, cached
    open: bool = True

    @property
    def end(self) -> float:
        return self.start + self.length / ASR_SAMPLE_RATE

    def append(self, audio: np.ndarray) -> None:
        if audio.size:
            self.parts.append(audio)
            self.length += audio.size
            self.samples = None

    def joined(self) -> np.ndarray:
        if self.samples is None:
            self.samples = np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
            self.parts = [self.samples]
        return self.samples

    def close(self) -> None:
        if self.open:
            self.append(self.resampler.flush())
            self.open = False


class ReferenceTimeline:
    """Loudspeaker output and speaking intervals by time; 16 kHz windows on demand.

    ``history_s``: how long played audio and intervals are kept behind the newest time seen.
    ``max_speaking_s``: an interval never closed (the speaker's "stopped" was lost) ends this long
    after it began, so a lost message cannot make the robot deaf for good.
    """

    def __init__(self, history_s: float = 30.0, max_speaking_s: float = 300.0):
        if not history_s > 0:
            raise ValueError(f"history_s must be > 0, got {history_s}")
        if not max_speaking_s > 0:
            raise ValueError(f"max_speaking_s must be > 0, got {max_speaking_s}")
        self.history = float(history_s)
        self.max_speaking = float(max_speaking_s)
        self._lock = threading.Lock()
        self._streams: list[_Stream] = []  # by start time
        self._intervals: list[tuple[float, float]] = []  # closed speaking intervals
        self._open_since: float | None = None
        self._latest = float("-inf")
        self.pieces = 0
        self.seconds_added = 0.0

    # ------------------------------------------------------------------ input (any thread)

    def add(self, samples: np.ndarray, sample_rate: int, start: float) -> None:
        """A piece the speaker played (int16 or float mono) whose first sample went out at
        ``start``. ValueError for unusable audio or rate."""
        audio = to_float32(np.asarray(samples))
        if audio.ndim != 1:
            raise ValueError(f"reference must be 1-D mono samples, got shape {audio.shape}")
        if (
            isinstance(sample_rate, bool)
            or not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE
        ):
            raise ValueError(
                f"reference sample_rate must be in [{MIN_SAMPLE_RATE}, "
                f"{MAX_SAMPLE_RATE}] Hz, got {sample_rate!r}"
            )
        if audio.size and not np.all(np.isfinite(audio)):
            raise ValueError("reference contains NaN or infinite samples")
        if not np.isfinite(start):
            raise ValueError(f"reference start must be a finite time, got {start!r}")
        if audio.size == 0:
            return
        rate = int(sample_rate)
        with self._lock:
            stream = self._continued(start, rate)
            if stream is None:
                resampler = StreamingResampler(rate, ASR_SAMPLE_RATE)
                stream = _Stream(
                    start=start - resampler.delay_seconds,
                    rate=rate,
                    input_end=start,
                    resampler=resampler,
                )
                bisect.insort(self._streams, stream, key=lambda s: s.start)
            stream.append(stream.resampler.process(audio))
            stream.input_end += audio.size / rate
            self.pieces += 1
            self.seconds_added += audio.size / rate
            self._latest = max(self._latest, stream.input_end)
            self._prune()

    def set_speaking(self, speaking: bool, stamp: float) -> None:
        """The speaker started (True) or stopped (False) at ``stamp``; repeats are ignored.
        Stopping ends the reference streams: a later piece opens a new one."""
        if not np.isfinite(stamp):
            raise ValueError(f"speaking stamp must be a finite time, got {stamp!r}")
        with self._lock:
            self._latest = max(self._latest, stamp)
            if speaking:
                if self._open_since is None:
                    self._open_since = stamp
            elif self._open_since is not None:
                start = self._open_since
                self._intervals.append((start, min(max(stamp, start), start + self.max_speaking)))
                self._intervals.sort()
                self._open_since = None
                for stream in self._streams:
                    stream.close()
            self._prune()

    # ------------------------------------------------------------------ queries

    def window(self, start: float, count: int) -> tuple[np.ndarray, bool]:
        """(16 kHz reference for ``count`` samples from ``start``, complete): ``complete`` is
        False when the speaker was speaking during part of it and no piece covers that part
        yet."""
        out = np.zeros(count, dtype=np.float32)
        end = start + count / ASR_SAMPLE_RATE
        with self._lock:
            covered = []
            for stream in self._streams:
                if stream.start >= end:
                    break
                if stream.end <= start or stream.length == 0:
                    continue
                samples = stream.joined()
                offset = int(round((stream.start - start) * ASR_SAMPLE_RATE))
                lo, hi = max(0, offset), min(count, offset + samples.size)
                if hi > lo:
                    out[lo:hi] = samples[lo - offset : hi - offset]
                    covered.append((start + lo / ASR_SAMPLE_RATE, start + hi / ASR_SAMPLE_RATE))
            complete = self._covered(start, end, covered)
        return out, complete

    def speaking_between(self, start: float, end: float, tail: float = 0.0) -> bool:
        """True if the speaker spoke (interval or reference) in ``[start - tail, end]``."""
        with self._lock:
            lo = start - tail
            for s, e in self._speaking_intervals():
                if s < end and e > lo:
                    return True
            return any(s.start < end and s.end > lo and s.length for s in self._streams)

    @property
    def speaking(self) -> bool:
        with self._lock:
            return self._open_since is not None

    @property
    def stuck(self) -> bool:
        """Speaking for longer than ``max_speaking_s`` without a stop."""
        with self._lock:
            return (
                self._open_since is not None
                and self._latest > self._open_since + self.max_speaking
            )

    def note_time(self, stamp: float) -> None:
        """The newest capture time seen: old audio is forgotten ``history_s`` behind it."""
        with self._lock:
            self._latest = max(self._latest, stamp)
            self._prune()

    # ------------------------------------------------------------------ internals

    def _speaking_intervals(self):
        yield from self._intervals
        if self._open_since is not None:
            yield self._open_since, self._open_since + self.max_speaking

    def _covered(self, start: float, end: float, covered: list[tuple[float, float]]) -> bool:
        """Whether every instant of [start, end) the speaker was speaking is in ``covered``."""
        tolerance = 1.0 / ASR_SAMPLE_RATE
        for s, e in self._speaking_intervals():
            lo, hi = max(s, start), min(e, end)
            if hi - lo <= tolerance:
                continue
            position = lo
            for a, b in sorted(covered):
                if a > position + tolerance:
                    break
                position = max(position, b)
            if position < hi - tolerance:
                return False
        return True

    def _continued(self, start: float, rate: int) -> _Stream | None:
        for stream in reversed(self._streams):
            if (
                stream.open
                and stream.rate == rate
                and abs(start - stream.input_end) <= JOIN_TOLERANCE_S
            ):
                return stream
        return None

    def _prune(self) -> None:
        horizon = self._latest - self.history
        self._streams = [
            s for s in self._streams if s.end >= horizon or s.open and s.input_end >= horizon
        ]
        self._intervals = [(s, e) for s, e in self._intervals if e >= horizon]


__all__ = ["JOIN_TOLERANCE_S", "ReferenceTimeline"]
