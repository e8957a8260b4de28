"""vlm_node faults: a failed load at configure is reported and the process stays up; an exception
inside the engine comes back as an error response and the next request is served."""

from __future__ import annotations

import threading

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter

from ros_helpers import spin_until
from uservlm_ros.bringup.graph import nodes
from uservlm_ros.ros import qos
from uservlm_ros.srv import Ask
from uservlm_ros.tools.launcher import GraphProcesses


def test_unknown_adapter_path_fails_configure_and_is_reported(tmp_path, rclpy_context):
    import rclpy

    vlm = [spec for spec in nodes("cloud") if spec.name == "vlm_node"]
    missing = tmp_path / "no-such-adapter"
    # Own namespace: the session's healthy cloud graph may be up on the same DDS domain.
    graph = GraphProcesses(
        vlm,
        log_dir=tmp_path,
        namespace="bad_adapter",
        overrides={"vlm_node": {"adapter": str(missing)}},
    ).start()
    try:
        node = rclpy.create_node("diagnostics_listener", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        seen = []
        node.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda msg: seen.extend(s for s in msg.status if "bad_adapter/vlm_node" in s.name),
            qos.DIAGNOSTICS,
        )
        assert spin_until(
            executor, lambda: any(s.level == DiagnosticStatus.ERROR for s in seen), 120
        ), (tmp_path / "vlm_node.log").read_text()
        error = next(s for s in seen if s.level == DiagnosticStatus.ERROR)
        assert "adapter not found" in error.message and str(missing) in error.message
        assert graph.exited() == {}, "a failed configure must not kill the node"
        ask = node.create_client(Ask, "/bad_adapter/uservlm/ask")
        # Its diagnostics already arrived, so its participant is discovered: give the service
        # endpoints a further second to show up, if they (wrongly) existed.
        spin_until(executor, ask.service_is_ready, 1.0)
        assert not ask.service_is_ready(), "an unconfigured node must not offer /uservlm/ask"
        assert "adapter not found" in (tmp_path / "vlm_node.log").read_text()
    finally:
        graph.stop()


@pytest.fixture
def vlm_in_process(rclpy_context):
    """vlm_node in this process (its own executor thread), on the tiny offline model."""
    from uservlm_ros.nodes.vlm import VLMNode

    # Own namespace: the session's cloud graph may serve /uservlm/ask on the same DDS domain, and a
    # request then goes to both servers (its answer, not this node's, could come back first).
    node = VLMNode(
        context=rclpy_context,
        namespace="fault",
        parameter_overrides=[Parameter("adapter", value=""), Parameter("max_new_tokens", value=4)],
    )
    assert node.autostart(), node.load_error
    executor = MultiThreadedExecutor(num_threads=4, context=rclpy_context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    thread.join(timeout=10)


@pytest.fixture
def ask_fault(vlm_in_process, rclpy_context):
    """``call(question) -> Ask.Response`` from a client of /fault/uservlm/ask
    (vlm_in_process's)."""
    import rclpy

    client_node = rclpy.create_node("fault_client", namespace="fault", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(client_node)
    ask = client_node.create_client(Ask, "uservlm/ask", qos_profile=qos.SERVICES)
    assert spin_until(executor, ask.service_is_ready, 30)

    def call(question):
        future = ask.call_async(Ask.Request(question=question))
        assert spin_until(executor, future.done, 60)
        return future.result()

    yield call
    client_node.destroy_node()


def test_engine_exception_becomes_error_response(vlm_in_process, ask_fault):
    node = vlm_in_process
    call = ask_fault
    real_answer = node.engine.answer

    def broken_answer(*args, **kwargs):  # fault injection: the engine raises mid-request
        raise RuntimeError("simulated CUDA error: device-side assert triggered")

    node.engine.answer = broken_answer
    try:
        failed = call("What should I cook tonight?")
    finally:
        node.engine.answer = real_answer
    assert not failed.success
    assert (
        failed.error.startswith("VLM engine failed: RuntimeError")
        and "device-side assert" in failed.error
    )
    served = call("What should I cook tonight?")
    assert served.success, served.error
    assert node.errors >= 1 and "device-side assert" in node.last_error

    # A bug outside the engine's guard (here: building the response) escapes the callback itself:
    # rclpy would send nothing and the client would wait out its timeout. serve() answers instead.
    real_fill = node.fill_response

    def broken_fill(*args, **kwargs):
        raise KeyError("timings")

    node.fill_response = broken_fill
    try:
        escaped = call("What should I cook tonight?")
    finally:
        node.fill_response = real_fill
    assert not escaped.success
    assert (
        escaped.error.startswith("uservlm/ask failed: internal error: KeyError")
        and "timings" in escaped.error
    )
    assert "internal error" in node.last_error
    assert call("What should I cook tonight?").success
