"""Barge-in test recordings, made once per test process (Piper, about 10 s for 20 answers)."""

from __future__ import annotations

from functools import cache


@cache
def corpus(count: int = 20, seed: int = 0):
    from uservlm_ros.engines.echo.recordings import make_corpus

    return tuple(make_corpus(count, seed=seed))
