"""A test's window on a running graph: a node in the test's own rclpy context that keeps every
/diagnostics status it hears and waits on predicates with a deadline (no sleeps)."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor

from ros_helpers import spin_until
from uservlm_ros.ros import qos


class Probe:
    def __init__(self, context, namespace: str = "", name: str = "probe"):
        import rclpy

        self.node = rclpy.create_node(name, namespace=namespace, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.diagnostics: list[DiagnosticStatus] = []
        self.node.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda m: self.diagnostics.extend(m.status),
            qos.DIAGNOSTICS,
        )

    def until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def status_of(self, name: str) -> list[DiagnosticStatus]:
        return [s for s in self.diagnostics if s.name.endswith(f"/{name}")]

    def latest(self, name: str) -> DiagnosticStatus | None:
        statuses = self.status_of(name)
        return statuses[-1] if statuses else None

    def latest_level(self, name: str, level: int, text: str = "") -> bool:
        """The newest status of ``name`` has ``level`` (and ``text`` in its message)."""
        status = self.latest(name)
        return status is not None and status.level == level and text in status.message

    def value(self, name: str, key: str) -> str | None:
        status = self.latest(name)
        if status is None:
            return None
        return next((item.value for item in status.values if item.key == key), None)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
