"""Helpers for ROS tests: deadline loops instead of sleeps, and the cloud graph in subprocesses."""

from __future__ import annotations

import time
from pathlib import Path

from uservlm_ros.bringup.graph import nodes
from uservlm_ros.tools.client import UserVLMClient
from uservlm_ros.tools.launcher import GraphProcesses

# Smaller generation budget than deployment so the suite stays fast on 2 cores.
TEST_OVERRIDES = {"vlm_node": {"max_new_tokens": 12, "busy_timeout": 30.0}}


def spin_until(executor, predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return predicate()


def test_overrides(log_dir: Path) -> dict:
    """TEST_OVERRIDES plus a consent store of this test's own (never the user's real one)."""
    overrides = {name: dict(values) for name, values in TEST_OVERRIDES.items()}
    overrides["ethics_node"] = {"store_dir": str(log_dir / "consent")}
    return overrides


def start_cloud(
    log_dir: Path,
    overrides: dict | None = None,
    specs=None,
    services=("ask", "transcribe", "synthesize", "review"),
    timeout: float = 300.0,
    namespace: str = "",
) -> GraphProcesses:
    """Start the cloud nodes as separate processes and wait until their services answer."""
    graph = GraphProcesses(
        specs or nodes("cloud"),
        log_dir=log_dir,
        namespace=namespace,
        overrides=test_overrides(log_dir) if overrides is None else overrides,
    ).start()
    with UserVLMClient(node_name="uservlm_test_waiter", namespace=namespace) as client:
        deadline = time.monotonic() + timeout
        for service in services:
            while not client.wait_for(service, 1.0):
                if graph.exited() or time.monotonic() > deadline:
                    graph.stop()
                    logs = "\n".join(
                        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in log_dir.glob("*.log")
                    )
                    raise RuntimeError(
                        f"cloud side did not come up ({service}); exited={graph.exited()}\n{logs}"
                    )
    return graph
