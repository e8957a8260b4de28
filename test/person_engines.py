"""Building PersonEngines for the tests (the real models), and a clock the tests move."""

from __future__ import annotations

from uservlm_ros.engines.person import PersonConfig, PersonEngine


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def engine(clock=None, on_forgotten=None, **config) -> PersonEngine:
    kwargs = {} if clock is None else {"clock": clock}
    return PersonEngine(PersonConfig(**config), on_forgotten=on_forgotten, **kwargs).load()
