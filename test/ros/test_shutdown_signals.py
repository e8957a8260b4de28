"""`uservlm up`, `uservlm demo` and `uservlm bench` leave no node behind: SIGTERM (systemctl stop,
docker stop) and SIGHUP (a closed terminal) stop the graph as Ctrl-C does, and on SIGKILL of the
command the kernel ends its nodes (PR_SET_PDEATHSIG). Each case: the command runs as a user
would start it, its node processes are found under it, the signal goes to the command alone, and
no node process may be left 15 s later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from process_tree import alive, children

GONE_WITHIN = 15.0
ROBOT_NODES = 4  # camera, microphone, speaker, dialogue


def start(tmp_path: Path, *arguments: str) -> subprocess.Popen:
    log = open(tmp_path / "command.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "uservlm_ros.tools.cli", *arguments],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def node_processes(
    command: subprocess.Popen, count: int, tmp_path: Path, settle: float
) -> list[int]:
    """The command's ``count`` node processes, once they have all run for ``settle`` seconds
    (past their imports, into rclpy)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = children(command.pid)
        if len(found) >= count:
            time.sleep(settle)
            found = children(command.pid)
            if len(found) >= count:
                return found
        assert command.poll() is None, (tmp_path / "command.log").read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(
        f"{count} node processes did not start:\n" + (tmp_path / "command.log").read_text()[-3000:]
    )


def assert_all_gone(pids: list[int], command: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + GONE_WITHIN
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:  # do not leak them into the rest of the session
        os.kill(pid, signal.SIGKILL)
    assert not left, (
        f"{len(left)} node process(es) still running {GONE_WITHIN:.0f} s after the "
        f"signal:\n" + (tmp_path / "command.log").read_text()[-3000:]
    )
    try:
        command.wait(timeout=GONE_WITHIN)
    except subprocess.TimeoutExpired:
        command.kill()
        raise AssertionError("the command itself did not exit") from None


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=["SIGTERM", "SIGHUP", "SIGKILL"]
)
def test_up_takes_its_nodes_down_with_it(tmp_path, signum):
    command = start(tmp_path, "up", "--robot", "--namespace", f"signals_{signum}")
    try:
        pids = node_processes(command, ROBOT_NODES, tmp_path, settle=3.0)
        command.send_signal(signum)
        assert_all_gone(pids, command, tmp_path)
        if signum != signal.SIGKILL:
            assert command.returncode in (0, 130), (tmp_path / "command.log").read_text()[-3000:]
    finally:
        if command.poll() is None:
            command.kill()


@pytest.mark.parametrize("verb", ["demo", "bench"])
def test_demo_and_bench_stop_their_graph_on_sigterm(tmp_path, verb):
    arguments = (
        ["demo", "--out", str(tmp_path / "out")]
        if verb == "demo"
        else ["bench", "--turns", "1", "--out", str(tmp_path / "out")]
    )
    command = start(tmp_path, *arguments)
    try:
        # The cloud side is still loading its models: SIGTERM must not wait for that.
        pids = node_processes(command, 5, tmp_path, settle=2.0)
        command.send_signal(signal.SIGTERM)
        assert_all_gone(pids, command, tmp_path)
        assert command.returncode == 130, (tmp_path / "command.log").read_text()[-3000:]
    finally:
        if command.poll() is None:
            command.kill()


# Once, under the whole suite's load, the node ended by SIGINT (-2) with an empty log; never
# seen alone or under synthetic load: one rerun.
@pytest.mark.flaky(reruns=1)
def test_a_node_stops_on_sigterm_while_its_model_loads(tmp_path, rclpy_context):
    """What PR_SET_PDEATHSIG sends is SIGTERM: a node must not first finish loading its model
    (minutes for a real one) and then fail on its shut-down context."""
    import rclpy

    from uservlm_ros.bringup.graph import GRAPH
    from uservlm_ros.tools.launcher import GraphProcesses

    ethics = next(spec for spec in GRAPH if spec.name == "ethics_node")
    store = {"store_dir": str(tmp_path / "consent")}
    nodes = GraphProcesses(
        [ethics], log_dir=tmp_path, namespace="sigterm_load", overrides={"ethics_node": store}
    ).start()
    probe = rclpy.create_node("probe", context=rclpy_context)
    try:
        deadline = time.monotonic() + 60
        while ("ethics_node", "/sigterm_load") not in probe.get_node_names_and_namespaces():
            assert time.monotonic() < deadline and not nodes.exited(), (
                tmp_path / "ethics_node.log"
            ).read_text()
            time.sleep(0.05)
        process = nodes.processes["ethics_node"]
        process.send_signal(signal.SIGTERM)  # the node exists: its model is loading now
        code = process.wait(timeout=5)
        log = (tmp_path / "ethics_node.log").read_text()
        assert "configured in" not in log, "the load must be interrupted, not finished"
        assert code == 0 and "Traceback" not in log, log[-3000:]
    finally:
        probe.destroy_node()
        nodes.stop()
