"""`uservlm up --respawn` (GraphProcesses' respawn, modelled on launch_ros's respawn=True): a node
that exits is started again after a delay, a node that keeps dying at once is started again
ever more slowly, and the rest of the graph is left alone. (ros2 launch's respawn:=true is
checked in test_launch_real.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from process_tree import alive, children, command_line
from uservlm_ros.bringup.graph import GRAPH
from uservlm_ros.tools.launcher import GraphProcesses

SPECS = {spec.name: spec for spec in GRAPH}


def test_a_crash_loop_is_respawned_with_a_growing_delay(tmp_path):
    # Without naoqi_bridge_msgs (not on PyPI) pepper_audio_node exits with 2 as soon as it starts.
    said: list[str] = []
    graph = GraphProcesses(
        [SPECS["pepper_audio_node"]],
        log_dir=tmp_path,
        respawn=("pepper_audio_node",),
        respawn_delay=0.2,
        log=said.append,
    )
    graph.start()
    try:
        deadline = time.monotonic() + 60
        while graph.respawns.get("pepper_audio_node", 0) < 3 and time.monotonic() < deadline:
            graph.respawn_exited()
            time.sleep(0.05)
        assert graph.respawns["pepper_audio_node"] == 3, said
        delays = [float(re.search(r"respawning in ([\d.]+) s", line).group(1)) for line in said]
        assert delays == [0.2, 0.5, 1.0], said
        assert all("exited with code 2" in line for line in said)
    finally:
        graph.stop()


def test_respawn_names_must_be_nodes_of_the_graph():
    with pytest.raises(ValueError, match="not in the graph"):
        GraphProcesses([SPECS["speaker_node"]], respawn=("vlm_node",))
    with pytest.raises(ValueError, match="respawn_delay"):
        GraphProcesses([SPECS["speaker_node"]], respawn_delay=-1)


def node_pids(up: subprocess.Popen) -> dict[str, int]:
    found = {}
    for pid in children(up.pid):
        module = next(
            (arg for arg in command_line(pid) if arg.startswith("uservlm_ros.nodes.")), ""
        )
        if module:
            found[module.rsplit(".", 1)[1] + "_node"] = pid
    return found


def test_up_respawn_starts_a_killed_node_again_and_leaves_the_others(tmp_path):
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uservlm_ros.tools.cli",
            "up",
            "--robot",
            "--respawn",
            "--respawn-delay",
            "0.5",
            "--namespace",
            "respawn",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(node_pids(up)) < 4:
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        time.sleep(2.0)  # past their imports
        before = node_pids(up)
        os.kill(before["speaker_node"], signal.SIGKILL)
        while node_pids(up).get("speaker_node") in (None, before["speaker_node"]):
            assert time.monotonic() < deadline + 30, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        after = node_pids(up)
        assert {name: pid for name, pid in after.items() if name != "speaker_node"} == {
            name: pid for name, pid in before.items() if name != "speaker_node"
        }
        said = (tmp_path / "up.log").read_text()
        assert "speaker_node exited with code -9; respawning in 0.5 s" in said, said
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=20) == 0
        assert not [pid for pid in after.values() if alive(pid)]
    finally:
        if up.poll() is None:
            up.kill()
