"""The robot-side nodes (camera, microphone, pepper_audio, speaker, dialogue) must run on ROS 2
Humble (JetPack 6 on the Jetson: Ubuntu 22.04, rclpy 3.3, Python 3.10). No Humble wheel exists on
PyPI, so they are checked against Humble's API instead of run on it:

- every rclpy name and keyword argument the robot side's modules use (the five nodes and every
  uservlm_ros module they import, transitively) exists in rclpy 3.3.15, except the ones listed in
  JAZZY_ONLY, each of which has a fallback (tested in test/ros/test_humble_fallbacks.py);
- those modules compile under Python 3.10 (when a python3.10 is at hand) and use none of the
  standard library that came with 3.11.

test/data/rclpy_humble_api.json holds the names and parameter names defined in rclpy 3.3.15's
sources (ros2/rclpy, tag 3.3.15); the Jazzy side is read from the rclpy installed here."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROBOT_NODES = ("camera", "microphone", "pepper_audio", "speaker", "dialogue")
# Jazzy-only rclpy names the robot side uses, and what it does without them.
JAZZY_ONLY = {
    "EventsExecutor": "runner/executors.single_thread_executor(): SingleThreadedExecutor instead",
}
# Standard library names that came with Python 3.11 (Humble's Python is 3.10).
PYTHON_311 = {
    "tomllib",
    "StrEnum",
    "ExceptionGroup",
    "BaseExceptionGroup",
    "TaskGroup",
    "Self",
    "LiteralString",
    "Never",
    "assert_never",
    "reveal_type",
    "file_digest",
    "add_note",
    "chdir",
    "exp2",
    "cbrt",
    "getbufferview",
    "UTC",
}


def _assigned(node) -> list:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def rclpy_api(root: Path) -> dict:
    """What a checkout of rclpy defines: each module's top-level names, each class's members
    (methods, class attributes, attributes set on self) and each function's parameter names:
    the same extraction that produced test/data/rclpy_humble_api.json from rclpy 3.3.15."""
    modules, classes, parameters = {}, {}, {}

    def add_parameters(function) -> None:
        args = function.args
        parameters.setdefault(function.name, set()).update(
            a.arg for a in args.posonlyargs + args.args + args.kwonlyargs
        )

    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        tree = ast.parse(path.read_text())
        top = modules.setdefault(".".join(parts[:-1] if parts[-1] == "__init__" else parts), set())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                top.add(node.name)
                if not isinstance(node, ast.ClassDef):
                    add_parameters(node)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                top.update(t.id for t in _assigned(node) if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                top.update((a.asname or a.name).split(".")[0] for a in node.names)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            members = classes.setdefault(cls.name, set())
            for node in cls.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(node.name)
                    add_parameters(node)
                    members.update(
                        t.attr
                        for inner in ast.walk(node)
                        if isinstance(inner, (ast.Assign, ast.AnnAssign))
                        for t in _assigned(inner)
                        if isinstance(t, ast.Attribute)
                        and isinstance(t.value, ast.Name)
                        and t.value.id == "self"
                    )
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    members.update(t.id for t in _assigned(node) if isinstance(t, ast.Name))
    return {"modules": modules, "classes": classes, "parameters": parameters}


def robot_side_modules() -> dict[str, Path]:
    """The five robot-side node modules and every uservlm_ros module they import."""
    found, todo = {}, [f"uservlm_ros.nodes.{name}" for name in ROBOT_NODES]
    while todo:
        module = todo.pop()
        base = REPO / module.replace(".", "/")
        path = base.with_suffix(".py")
        path = path if path.is_file() else base / "__init__.py"
        if module in found or not path.is_file():
            continue
        found[module] = path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("uservlm_ros"):
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("uservlm_ros")]
    return found


def used(paths) -> tuple[set[str], set[tuple[str, str]], dict[str, set[str]]]:
    """Attribute names used; (module, name) imported from rclpy (name "" for a whole module);
    the keyword arguments passed, per called name."""
    attributes, imports, keywords = set(), set(), {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                attributes.add(node.attr)
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") in ("getattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
            ):
                attributes.add(node.args[1].value)  # getattr(client, "service_name", ...)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rclpy"):
                imports.update((node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                imports.update((a.name, "") for a in node.names if a.name.startswith("rclpy"))
            elif isinstance(node, ast.Call):
                func = node.func
                called = (
                    func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                )
                if called:
                    passed = keywords.setdefault(called, set())
                    passed.update(k.arg for k in node.keywords if k.arg)
    return attributes, imports, keywords


@pytest.fixture(scope="module")
def humble():
    data = json.loads((REPO / "test" / "data" / "rclpy_humble_api.json").read_text())
    return {
        kind: {name: set(values) for name, values in data[kind].items()}
        for kind in ("modules", "classes", "parameters")
    }


@pytest.fixture(scope="module")
def jazzy():
    rclpy = pytest.importorskip("rclpy")
    return rclpy_api(Path(rclpy.__file__).parent)


def test_the_robot_side_is_what_the_nodes_import():
    modules = robot_side_modules()
    assert {f"uservlm_ros.nodes.{name}" for name in ROBOT_NODES} <= set(modules)
    assert "uservlm_ros.ros.runner" in modules and "uservlm_ros.ros.executors" in modules
    assert not any(".engines" in module or ".vlm" in module for module in modules), (
        "the robot side must not pull in the model code"
    )


def test_only_the_listed_jazzy_apis_are_used(humble, jazzy):
    attributes, imports, _ = used(robot_side_modules().values())
    missing = set()
    for module, name in imports:
        if module not in humble["modules"] and not module.startswith("rclpy._"):
            missing.add(name or module)  # a module Humble's rclpy does not have
        elif name and name not in humble["modules"].get(module, {name}):
            missing.add(name)
    # members that Humble's class of the same name lacks (a method, property or attribute) and
    # that no class of Humble's rclpy has (Future.cancel is Humble's; Task.cancel is new)
    anywhere = set().union(*humble["classes"].values())
    newer = {
        member
        for cls, members in jazzy["classes"].items()
        if cls in humble["classes"]
        for member in members - humble["classes"][cls] - anywhere
        if not member.startswith("_")
    }
    missing |= attributes & newer
    assert missing == set(JAZZY_ONLY), (
        f"not in Humble's rclpy: {sorted(missing - set(JAZZY_ONLY))}; "
        f"listed but no longer used: {sorted(set(JAZZY_ONLY) - missing)}"
    )


def test_no_keyword_argument_is_jazzy_only(humble, jazzy):
    _, _, keywords = used(robot_side_modules().values())
    newer = {
        called: sorted(
            passed & (jazzy["parameters"][called] - humble["parameters"].get(called, set()))
        )
        for called, passed in keywords.items()
        if called in jazzy["parameters"]
    }
    assert not {called: passed for called, passed in newer.items() if passed}


def test_no_python_3_11_library_is_used():
    attributes, _, _ = used(robot_side_modules().values())
    names = attributes | {
        node.id
        for path in robot_side_modules().values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Name)
    }
    assert not names & PYTHON_311


def python_3_10() -> str | None:
    """A working Python 3.10 interpreter (Humble's), if this machine has one."""
    candidates = [
        shutil.which("python3.10"),
        *map(str, sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))),
    ]
    for candidate in filter(None, candidates):
        if (
            subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                capture_output=True,
            ).returncode
            == 0
        ):
            return candidate
    return None


def test_the_robot_side_compiles_under_python_3_10():
    python = python_3_10()
    if python is None:
        pytest.skip("no Python 3.10 on this machine")
    sources = [str(path) for path in robot_side_modules().values()]
    script = "import sys\nfor p in sys.argv[1:]:\n    compile(open(p).read(), p, 'exec')\n"
    result = subprocess.run(
        [python, "-c", script, *sources], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
