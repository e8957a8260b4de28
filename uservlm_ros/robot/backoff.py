"""Exponential backoff for reopening a camera or a microphone, on an injectable clock.

Nothing here sleeps: the owner asks :meth:`Backoff.due` from its own loop (a ROS timer), so a test
drives the schedule by advancing a fake clock.
"""

from __future__ import annotations


class Backoff:
    """Retry schedule: ``initial``, ``initial*factor``, ... capped at ``maximum`` (seconds).

    ``failure(now)`` books the next attempt; ``success()`` resets the delay to ``initial``.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 10.0, factor: float = 2.0):
        if not initial > 0:
            raise ValueError(f"initial backoff must be > 0 s, got {initial}")
        if maximum < initial:
            raise ValueError(f"maximum backoff ({maximum} s) must be >= initial ({initial} s)")
        if factor < 1.0:
            raise ValueError(f"backoff factor must be >= 1, got {factor}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self._delay = self.initial
        self.next_attempt: float | None = None  # None = no retry pending
        self.failures = 0  # consecutive failures since the last success

    def failure(self, now: float) -> float:
        """Book the next attempt after a failure at ``now``; returns the delay used."""
        delay = self._delay
        self.next_attempt = now + delay
        self.failures += 1
        self._delay = min(self._delay * self.factor, self.maximum)
        return delay

    def success(self) -> None:
        self._delay = self.initial
        self.next_attempt = None
        self.failures = 0

    def due(self, now: float) -> bool:
        """True when no attempt is booked or the booked time has come."""
        return self.next_attempt is None or now >= self.next_attempt

    def remaining(self, now: float) -> float:
        """Seconds until the next attempt (0 when due or none booked)."""
        if self.next_attempt is None:
            return 0.0
        return max(0.0, self.next_attempt - now)


__all__ = ["Backoff"]
