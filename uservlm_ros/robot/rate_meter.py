"""Achieved event rate over a sliding window, for /diagnostics (plain Python, injectable time)."""

from __future__ import annotations

from collections import deque


class RateMeter:
    """Events per second from the intervals between the events of the last ``window`` seconds.

    Exact for a steady source from its second event on; a source that stops reads 0 once fewer
    than two of its events remain in the window (within ``window`` seconds).
    """

    def __init__(self, window: float = 2.0):
        if not window > 0:
            raise ValueError(f"rate window must be > 0 s, got {window}")
        self.window = float(window)
        self._times: deque = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()


__all__ = ["RateMeter"]
