"""Route (b): the package builds with colcon, as on a ROS 2 install, and its tests pass there.

colcon-common-extensions from PyPI runs against the ROS 2 wheels of this venv (see README, "Build
glue"); the workspace is a copy of the tracked sources in tmp_path.
"""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def copy_sources(destination: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    destination.mkdir(parents=True)
    archive = destination.parent / "src.tar"
    with tarfile.open(archive, "w") as tar:
        for name in files:
            if (REPO / name).is_file():
                tar.add(REPO / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")


@pytest.mark.colcon
def test_colcon_build_and_test(tmp_path):
    workspace = tmp_path / "ws"
    copy_sources(workspace / "src" / "uservlm_ros")
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=sys.prefix,
        CMAKE_PREFIX_PATH=sys.prefix,
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
    )
    env.pop("PYTHONPATH", None)
    colcon = str(VENV_BIN / "colcon")
    build = subprocess.run(
        [colcon, "build"], cwd=workspace, env=env, capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]

    install = workspace / "install" / "uservlm_ros"
    for executable in ("asr_node", "tts_node", "vlm_node"):
        assert os.access(install / "lib" / "uservlm_ros" / executable, os.X_OK), executable
        # the interpreter colcon built with (this venv's), not `/usr/bin/env python3`
        shebang = (install / "lib" / "uservlm_ros" / executable).read_text().splitlines()[0]
        assert Path(shebang[2:]).parent.resolve() == VENV_BIN.resolve(), shebang
    assert (install / "share" / "uservlm_ros" / "launch" / "cloud.launch.py").is_file()
    assert (
        install / "share" / "ament_index" / "resource_index" / "packages" / "uservlm_ros"
    ).is_file()

    # The install's own copy serves both halves of the package: generated srv + hand-written nodes.
    site = next((install / "lib").glob("python3*/site-packages"))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import uservlm_ros.srv as s, uservlm_ros.bringup.graph as g; "
            "print(s.__file__); print(g.__file__)",
        ],
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(site)) for line in probe.stdout.split()), probe.stdout

    tested = subprocess.run(
        [colcon, "test", "--return-code-on-test-failure"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-4000:]
