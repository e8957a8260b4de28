"""The installed node executables (lib/uservlm_ros/<module>_node, what `ros2 run` and
`ros2 launch` start) run with the interpreter the package was built with, as pip's and colcon's
console scripts do, not with whatever `python3` comes first on PATH: from a venv that is not
activated, `#!/usr/bin/env python3` started the system Python ("No module named uservlm_ros")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from uservlm_ros.bringup.graph import GRAPH

LIB = Path(sys.prefix) / "lib" / "uservlm_ros"


def interpreter(executable: Path) -> str:
    """The interpreter an executable names: its `#!` line, or pip's /bin/sh trampoline for paths
    the kernel cannot take."""
    lines = executable.read_text().splitlines()
    if lines[0] == "#!/bin/sh":
        return lines[1].split('"')[1]  # '''exec' "<python>" "$0" "$@"
    return lines[0][2:].strip()


@pytest.mark.parametrize("spec", GRAPH, ids=lambda spec: spec.executable)
def test_each_executable_names_this_environment_s_python(spec):
    executable = LIB / spec.executable
    assert os.access(executable, os.X_OK), f"not installed: {executable}"
    python = Path(interpreter(executable))
    assert python.is_absolute() and os.access(python, os.X_OK), python
    # The venv's own bin/ (python and python3 there are links to one base interpreter: comparing
    # resolved files would accept the base interpreter, which cannot import the package).
    assert python.parent.resolve() == Path(sys.executable).parent.resolve(), python


def test_an_executable_runs_without_the_venv_on_path():
    # pepper_audio_node needs naoqi_bridge_msgs, which is not here: it imports the package and
    # exits 2 saying so, which proves it started in an interpreter that has the package.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"],
    }
    result = subprocess.run(
        [str(LIB / "pepper_audio_node")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "naoqi_bridge_msgs" in result.stderr
