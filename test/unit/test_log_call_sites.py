"""rclpy raises ``ValueError: Logger severity cannot be changed between calls`` when one call site
logs at two severities, e.g. ``log = logger.error if bad else logger.info; log(text)``, which is
how microphone_node died on its first status change. No module of the package (or its scripts)
may choose a logger's severity at run time: each severity gets a call site of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEVERITIES = {"debug", "info", "warn", "warning", "error", "fatal"}
SOURCES = sorted(
    [
        *(REPO / "uservlm_ros").rglob("*.py"),
        *(REPO / "scripts").glob("*.py"),
        *(REPO / "launch").glob("*.py"),
    ]
)


def _is_logger(node: ast.AST) -> bool:
    """``self.get_logger()``, ``node.get_logger()``, ``rclpy.logging.get_logger(x)`` ..."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "get_logger") or (
        isinstance(func, ast.Name) and func.id == "get_logger"
    )


def varying_severity_sites(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, why) for each place where an rclpy logger's severity is not fixed by the code."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SEVERITIES and _is_logger(node.value):
            parent = parents.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node):
                found.append((node.lineno, f"get_logger().{node.attr} taken without being called"))
        elif isinstance(node, ast.Attribute) and node.attr == "log" and _is_logger(node.value):
            found.append((node.lineno, "get_logger().log(message, severity)"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and node.args
            and _is_logger(node.args[0])
        ):
            found.append((node.lineno, "getattr(get_logger(), ...)"))
    return found


def test_no_call_site_logs_at_a_severity_chosen_at_run_time():
    assert len(SOURCES) > 50, "the audit must see the package"
    sites = [
        f"{path.relative_to(REPO)}:{line}: {why}"
        for path in SOURCES
        for line, why in varying_severity_sites(ast.parse(path.read_text(), str(path)))
    ]
    assert not sites, "\n".join(sites)


@pytest.mark.parametrize(
    "source",
    [
        "log = self.get_logger().error if bad else self.get_logger().info\nlog('x')",
        "self.get_logger().log('x', level)",
        "getattr(self.get_logger(), name)('x')",
        "emit = node.get_logger().warning\nemit('x')",
    ],
)
def test_the_audit_finds_each_form(source):
    assert varying_severity_sites(ast.parse(source))


def test_the_audit_accepts_one_call_site_per_severity():
    source = "if bad:\n    self.get_logger().error('x')\nelse:\n    self.get_logger().info('x')"
    assert varying_severity_sites(ast.parse(source)) == []
