"""Building PersonEngines for the tests (the real models), and a clock the tests move."""

from __future__ import annotations

from uservlm_ros.engines.person import PersonConfig, PersonEngine


def engine(clock=None, on_forgotten=None, **config) -> PersonEngine:
    kwargs = {} if clock is None else {"clock": clock}
    return PersonEngine(PersonConfig(**config), on_forgotten=on_forgotten, **kwargs).load()
