"""A clock the tests set by hand, for engines that take one (consent, session persons)."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
