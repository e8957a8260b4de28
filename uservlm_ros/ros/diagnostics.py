"""/diagnostics messages (diagnostic_msgs/DiagnosticArray), one status per node."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def publish_status(node, publisher, level, message: str, values) -> None:
    """Publish one DiagnosticStatus named after the node. ``values``: dict or (key, value)
    pairs."""
    items = values.items() if isinstance(values, dict) else values
    status = DiagnosticStatus(
        name=f"uservlm: {node.get_fully_qualified_name()}",
        hardware_id="uservlm",
        level=level,
        message=message,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in items],
    )
    array_msg = DiagnosticArray(status=[status])
    array_msg.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(array_msg)
