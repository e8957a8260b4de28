"""Keep the robot from transcribing itself: ignore microphone audio captured while it speaks.

The ASR side feeds the ``robot_speaking`` changes with their timestamps
(:meth:`SelfSpeechGate.set_speaking`) and asks, for each audio chunk, whether it overlaps the
robot's speech (:meth:`SelfSpeechGate.should_ignore`). A chunk is ignored when any part of
``[start, end]`` falls inside a speaking interval widened by ``lead_seconds`` before it and
``tail_seconds`` after it (0.3 s by default: room echo and the speaker's own buffer outlive the
last sample written). Decisions are by capture time, not arrival time, so a chunk that arrives
late is still judged against the interval it was captured in; intervals are kept for
``history_seconds`` for that reason.

A speaking state that is never closed (the publisher died between true and false) would make the
robot deaf forever; an open interval therefore counts as speaking for at most
``max_speaking_seconds`` (``stuck`` reports it).

Pure logic, thread-safe, any clock (seconds) as long as both sides use the same one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class SelfSpeechStats:
    speaking: bool
    stuck: bool
    ignored: int
    passed: int
    intervals: int


class SelfSpeechGate:
    def __init__(
        self,
        tail_seconds: float = 0.3,
        lead_seconds: float = 0.0,
        max_speaking_seconds: float = 300.0,
        history_seconds: float = 30.0,
    ):
        for name, value in (("tail_seconds", tail_seconds), ("lead_seconds", lead_seconds)):
            if not 0.0 <= value <= 10.0:
                raise ValueError(f"{name} must be in [0, 10] s, got {value}")
        if not max_speaking_seconds > 0:
            raise ValueError(f"max_speaking_seconds must be > 0, got {max_speaking_seconds}")
        if not history_seconds > 0:
            raise ValueError(f"history_seconds must be > 0, got {history_seconds}")
        self.tail = float(tail_seconds)
        self.lead = float(lead_seconds)
        self.max_speaking = float(max_speaking_seconds)
        self.history = float(history_seconds)
        self._lock = threading.Lock()
        self._closed: list[tuple[float, float]] = []  # (start, end), in time order
        self._open_start: float | None = None
        self._latest = float("-inf")  # newest time seen, for pruning
        self.ignored = 0
        self.passed = 0

    def set_speaking(self, speaking: bool, stamp: float) -> None:
        """A ``robot_speaking`` change at ``stamp``. Repeats of the current state are ignored."""
        with self._lock:
            self._latest = max(self._latest, stamp)
            if speaking:
                if self._open_start is None:
                    self._open_start = stamp
            elif self._open_start is not None:
                start = self._open_start
                end = min(max(stamp, start), start + self.max_speaking)
                self._closed.append((start, end))
                self._closed.sort()
                self._open_start = None
            self._prune()

    def should_ignore(self, start: float, end: float | None = None) -> bool:
        """True if audio captured over ``[start, end]`` (end defaults to start) may hold the
        robot's own voice. Counts the decision."""
        end = start if end is None else max(end, start)
        with self._lock:
            self._latest = max(self._latest, end)
            ignore = any(self._overlaps(s, e, start, end) for s, e in self._intervals())
            if ignore:
                self.ignored += 1
            else:
                self.passed += 1
            self._prune()
            return ignore

    @property
    def speaking(self) -> bool:
        with self._lock:
            return self._open_start is not None

    def stats(self) -> SelfSpeechStats:
        with self._lock:
            stuck = (
                self._open_start is not None
                and self._latest > self._open_start + self.max_speaking
            )
            return SelfSpeechStats(
                speaking=self._open_start is not None,
                stuck=stuck,
                ignored=self.ignored,
                passed=self.passed,
                intervals=len(self._closed) + (self._open_start is not None),
            )

    def _intervals(self):
        yield from self._closed
        if self._open_start is not None:
            yield self._open_start, self._open_start + self.max_speaking

    def _overlaps(self, speech_start: float, speech_end: float, start: float, end: float) -> bool:
        return start <= speech_end + self.tail and end >= speech_start - self.lead

    def _prune(self) -> None:
        horizon = self._latest - self.history
        while self._closed and self._closed[0][1] + self.tail < horizon:
            self._closed.pop(0)


__all__ = ["SelfSpeechGate", "SelfSpeechStats"]
