"""The soak (scripts/soak_turns.py): spoken turns by bag replay through the whole graph for 30
minutes (USERVLM_SOAK_MINUTES to change it), bounded by turn count and time. Every turn must end,
no node may exit, and after the warm-up each node stays flat: memory growth per 100 turns under
LEAK_MIB_PER_100_TURNS, open file descriptors constant, threads within their pools' bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MINUTES = float(os.environ.get("USERVLM_SOAK_MINUTES", "30"))
LEAK_MIB_PER_100_TURNS = 4.0
# tts_node's onnxruntime memory arena grows to the longest sentence synthesized so far (the
# answers of the soak vary a little): the warm-up has to see the longest ones first.
WARMUP_TURNS = 40
# Thread pools fill lazily up to their size (an executor's 8 workers, torch's intra-op pool):
# threads may still appear after the warm-up, never more than one pool's worth.
THREADS_SLACK = 8


@pytest.mark.timeout(int(MINUTES * 60) + 1200)  # the project's 600 s default is for other tests
def test_soak_keeps_every_node_flat(tmp_path):
    command = [
        sys.executable,
        str(REPO / "scripts" / "soak_turns.py"),
        "--minutes",
        str(MINUTES),
        "--warmup-turns",
        str(WARMUP_TURNS),
        "--sample-every",
        "10",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=MINUTES * 60 + 900)
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    soak = json.loads((tmp_path / "soak.json").read_text())
    answered = soak["outcomes"].get("ok", 0)
    assert soak["turns"] >= WARMUP_TURNS + 30, soak["outcomes"]
    assert answered >= 0.95 * soak["turns"], soak["outcomes"]
    for name, node in soak["nodes"].items():
        growth = node["rss_growth_mib_per_100_turns_steady"]  # once the pools stopped growing
        assert growth < LEAK_MIB_PER_100_TURNS, (name, node)
        assert node["fds"][3] - node["fds"][2] <= 1, (name, node["fds"])
        assert node["threads"][3] - node["threads"][2] <= THREADS_SLACK, (name, node["threads"])
