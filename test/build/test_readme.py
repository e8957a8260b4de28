"""README.md stays true to the tree: its ROS API section is what the nodes declare, its layout
names every module of the package and nothing that is not there, and its first two commands are
the ones CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def layout_block() -> str:
    section = README.split("## Layout", 1)[1]
    return section.split("```", 2)[1]


def test_ros_api_section_is_what_the_nodes_declare():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_ros_api.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_layout_names_every_module_of_the_package_and_only_those():
    block = layout_block()
    words = set(re.findall(r"[a-z_0-9]+(?:\.py)?", block))
    package = REPO / "uservlm_ros"
    modules = {
        path
        for path in package.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py") and "__pycache__" not in path.parts
    }
    missing = sorted(
        str(path.relative_to(REPO))
        for path in modules
        if path.stem not in words and f"{path.stem}.py" not in words
    )
    assert not missing, f"README's layout does not name {missing}"
    folders = re.findall(r"^\s*([a-z_]+)/", block, re.M)
    for folder in folders:
        assert any(
            p.is_dir()
            for p in (
                REPO / folder,
                package / folder,
                package / "engines" / folder,
                package / "tools" / folder,
            )
        ), f"no folder {folder}/"
    named = set(re.findall(r"(?<![.\w])([a-z_0-9]+)\.py\b", block))
    stems = {path.stem for path in REPO.rglob("*.py") if ".venv" not in path.parts}
    assert named <= stems, (
        f"README's layout names files that do not exist: {sorted(named - stems)}"
    )


def test_the_first_two_commands_are_the_demo_and_the_tests_ci_runs():
    commands = re.findall(r"^(bash scripts/bootstrap\.sh && [^#\n]+?)\s+#", README, re.M)
    assert commands[:2] == [
        "bash scripts/bootstrap.sh && .venv/bin/uservlm demo",
        'bash scripts/bootstrap.sh && .venv/bin/python -m pytest -m "not slow"',
    ]
    assert commands[1] in (REPO / ".ci" / "run").read_text()
