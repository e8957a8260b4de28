"""Helpers for ROS tests: deadline loops instead of sleeps, and the cloud graph in subprocesses."""

from __future__ import annotations

import os
import time
from pathlib import Path

from uservlm_ros.bringup.graph import nodes
from uservlm_ros.tools.client import UserVLMClient
from uservlm_ros.tools.launcher import GraphProcesses

# Smaller generation budget than deployment so the suite stays fast on 2 cores.
TEST_OVERRIDES = {"vlm_node": {"max_new_tokens": 12, "busy_timeout": 30.0}}


def domain_of_its_own(offset: int) -> str:
    """A ROS_DOMAIN_ID other than this session's, for a graph started with the default names: the
    session's cloud graph (conftest `cloud`) serves /uservlm/ask and /uservlm/review in it, and a
    service with two servers is answered by whichever replies first."""
    return str((int(os.environ["ROS_DOMAIN_ID"]) + offset - 1) % 200 + 1)


def spin_until(executor, predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return predicate()


def test_overrides(log_dir: Path) -> dict:
    """TEST_OVERRIDES plus a consent store and a face template store of this test's own (never
    the user's real ones)."""
    overrides = {name: dict(values) for name, values in TEST_OVERRIDES.items()}
    overrides["ethics_node"] = {"store_dir": str(log_dir / "consent")}
    overrides["person_node"] = {"store_dir": str(log_dir / "consent" / "faces")}
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


def forget_face(image, client: UserVLMClient | None = None, namespace: str = "") -> None:
    """Make whoever person_node resolves ``image`` to a stranger again (the shared graph may
    have met them in another test, with a clarification still pending)."""
    if client is None:
        with UserVLMClient(node_name="uservlm_test_forgetter", namespace=namespace) as own:
            return forget_face(image, own)
    met = client.identify(image).response
    assert met.success, met.error
    if met.person_id:
        assert client.forget(met.person_id).response.success
