"""tts_node's memory over a long run: with ``piper_release_memory`` (the default) each Piper
synthesis gives its memory back, so the process does not keep the memory of the longest sentence
it ever synthesized. Measured in a process of its own (glibc's settings are process-wide):
resident memory after sentences of growing length must come back near where it started."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
from uservlm_ros.engines.tts import TTSConfig, TTSEngine

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

engine = TTSEngine(TTSConfig(backend="piper", piper_release_memory=sys.argv[1] == "release"))
engine.load()
engine.synthesize("Hello there.")
start = rss_mib()
for words in (5, 25):
    assert engine.synthesize(" ".join(["business meeting"] * words) + ".").samples.size
print(f"{start:.1f} {rss_mib():.1f}")
"""


def grown_mib(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    start, end = map(float, result.stdout.split()[-2:])
    return end - start


def test_each_synthesis_gives_its_memory_back():
    pytest.importorskip("piper")
    kept = grown_mib("keep")
    released = grown_mib("release")
    assert kept > 100, f"the arena should keep the longest sentence's memory ({kept:.0f} MiB)"
    assert released < 40, f"{released:.0f} MiB kept after the longest sentence"
