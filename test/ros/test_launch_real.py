"""launch/*.launch.py through the real ROS 2 tools: `ros2 launch`, `ros2 service call`,
`ros2 lifecycle get`, `ros2 node list` (ros2cli, launch and launch_ros at their Jazzy versions,
installed by ../shared/ros2-tools/install.sh; these tests skip where they are absent, as on a
fresh machine).

One graph, launched once for the module as a robot would run it (pepper.launch.py with
`respawn:=true`, on this machine with no camera, no sound device and no GPU, from a venv that is
not activated: PATH has no venv), serves every check: each node stays up for 60 s, /uservlm/ask
answers `ros2 service call`, the four model nodes are active, a node killed with SIGKILL is
started again by launch, and Ctrl-C ends every process cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from process_tree import alive, children, command_line
from ros_helpers import domain_of_its_own
from uservlm_ros.bringup.graph import nodes
from uservlm_ros.bringup.launch_description import ARGUMENTS, SIDE_ARGUMENTS

pytest.importorskip("launch_ros", reason="the ros2 tools are not installed (shared/ros2-tools)")
ROS2 = Path(sys.executable).parent / "ros2"
if not ROS2.is_file():
    pytest.skip("the ros2 command is not installed (shared/ros2-tools)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
MODEL_NODES = ("asr_node", "tts_node", "vlm_node", "ethics_node")
GRAPH_NODES = [spec.name for spec in nodes("all")]
ALIVE_SECONDS = 60.0


def tool_environment() -> dict:
    """What `source install/setup.bash` would set, and nothing of the venv on PATH; a DDS domain
    of its own, so that `ros2 service call` reaches the launched graph alone."""
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=sys.prefix,
        PATH="/usr/bin:/bin",
        ROS_DOMAIN_ID=domain_of_its_own(2),
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def ros2(*arguments: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROS2), *arguments],
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Launched:
    def __init__(self, process: subprocess.Popen, log: Path):
        self.process, self.log = process, log
        self.pids: dict[str, int] = {}
        self.up_at = 0.0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def node_pids(self) -> dict[str, int]:
        """node name -> pid, for the launch's running children."""
        found = {}
        for pid in children(self.process.pid):
            line = command_line(pid)
            name = next(
                (arg.split(":=", 1)[1] for arg in line if arg.startswith("__node:=")), None
            )
            if name:
                found[name] = pid
        return found


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("launch")
    params = folder / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "/**/ethics_node": {"ros__parameters": {"store_dir": str(folder / "consent")}},
                "/**/vlm_node": {"ros__parameters": {"max_new_tokens": 8}},
                "/**/speaker_node": {"ros__parameters": {"output_dir": str(folder / "speech")}},
            }
        )
    )
    log = folder / "launch.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(ROS2),
                "launch",
                str(REPO / "launch" / "pepper.launch.py"),
                f"params_file:={params}",
                "respawn:=true",
                "respawn_delay:=1.0",
            ],
            env=tool_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # its own process group: "Ctrl-C" below goes to it alone
    graph = Launched(process, log)
    try:
        deadline = time.monotonic() + 300
        while not all(f"[{name}]: active" in graph.text() for name in MODEL_NODES):
            assert process.poll() is None and time.monotonic() < deadline, graph.text()[-5000:]
            time.sleep(0.5)
        graph.pids = graph.node_pids()
        assert sorted(graph.pids) == sorted(GRAPH_NODES), graph.text()[-5000:]
        graph.up_at = time.monotonic()
        yield graph
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for pid in graph.node_pids().values():
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("name", ["pepper.launch.py", "robot.launch.py", "cloud.launch.py"])
def test_each_launch_file_loads_and_lists_its_arguments(name):
    result = ros2("launch", str(REPO / "launch" / name), "--show-args", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {**ARGUMENTS, **(SIDE_ARGUMENTS if name == "pepper.launch.py" else {})}
    listed = set(re.findall(r"^    '(\w+)':", result.stdout, flags=re.MULTILINE))
    assert listed == set(expected), result.stdout
    assert all(description in result.stdout for _, description in expected.values())


def test_the_four_model_nodes_are_active(launched):
    result = ros2("lifecycle", "get", "--no-daemon", "--spin-time", "5")
    assert result.returncode == 0, result.stderr
    states = dict(re.findall(r"^/?(\w+): (\w+)", result.stdout, flags=re.MULTILINE))
    states = {name: states.get(name) for name in MODEL_NODES}
    assert states == dict.fromkeys(MODEL_NODES, "active"), result.stdout


def test_every_node_is_listed(launched):
    result = ros2("node", "list", "--no-daemon", "--spin-time", "5")
    assert result.returncode == 0, result.stderr
    listed = {line.strip().lstrip("/") for line in result.stdout.splitlines()}
    assert set(GRAPH_NODES) <= listed, result.stdout


def test_ask_answers_ros2_service_call(launched):
    result = ros2(
        "service",
        "call",
        "/uservlm/ask",
        "uservlm_ros/srv/Ask",
        "{question: 'Recommend me a movie'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success=True" in result.stdout, result.stdout
    assert "placeholder_model=True" in result.stdout, result.stdout


def test_every_node_stays_up_for_a_minute_with_no_devices(launched):
    """No camera, no sound device, no GPU: the nodes report it and keep running. The same
    processes (respawn would hide a crash behind a new pid) and no death in launch's log."""
    while time.monotonic() < launched.up_at + ALIVE_SECONDS:
        assert "process has died" not in launched.text(), launched.text()[-5000:]
        time.sleep(1.0)
    assert launched.node_pids() == launched.pids, launched.text()[-5000:]
    assert "process has died" not in launched.text(), launched.text()[-5000:]
    assert "Traceback" not in launched.text(), launched.text()[-5000:]


def test_a_node_killed_with_sigkill_is_started_again(launched):
    before = launched.node_pids()["speaker_node"]
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while launched.node_pids().get("speaker_node") in (None, before):
        assert time.monotonic() < deadline, launched.text()[-5000:]
        time.sleep(0.2)
    assert re.search(r"\[speaker_node-\d+\]: process has died .*exit code -9", launched.text())
    result = ros2("node", "list", "--no-daemon", "--spin-time", "5")
    assert "/speaker_node" in result.stdout.split(), result.stdout


def test_ctrl_c_ends_every_process_cleanly(launched):
    pids = launched.node_pids()
    assert sorted(pids) == sorted(GRAPH_NODES)
    os.killpg(launched.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    assert launched.process.wait(timeout=60) == 0, launched.text()[-5000:]
    assert not [name for name, pid in pids.items() if alive(pid)]
    text = launched.text()
    for name in GRAPH_NODES:
        assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", text), (
            f"{name} did not finish cleanly:\n{text[-5000:]}"
        )
    assert "Traceback" not in text, text[-5000:]
