"""uservlm_ros.ros.executors: inline callbacks run in the spin thread, the others in the pool."""
from __future__ import annotations

import contextlib
import threading
import time

from std_msgs.msg import String

from uservlm_ros.ros import qos
from uservlm_ros.ros.executors import InlineCallbackGroup, StreamExecutor


def _publish_until(publisher, done, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        publisher.publish(String(data="x"))
        time.sleep(0.02)  # the publisher's pace, not a wait for the result
    return done()


@contextlib.contextmanager
def spinning(context, name, spin=None):
    """A node on a StreamExecutor spun by a thread named ``the_spin_thread`` (``spin``: its body)."""
    import rclpy

    node = rclpy.create_node(name, context=context)
    executor = StreamExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=spin or executor.spin, args=(executor,) if spin else (),
                               name="the_spin_thread", daemon=True)
    try:
        yield node, spinner
    finally:
        executor.shutdown()
        if spinner.is_alive():
            spinner.join(timeout=5)
        node.destroy_node()


def test_inline_group_runs_in_the_spin_thread_others_in_the_pool(rclpy_context):
    seen = {"inline": set(), "pool": set()}
    with spinning(rclpy_context, "stream_executor_test") as (node, spinner):
        node.create_subscription(String, "inline_topic",
                                 lambda msg: seen["inline"].add(threading.current_thread().name),
                                 qos.EVENTS, callback_group=InlineCallbackGroup())
        node.create_subscription(String, "pool_topic", lambda msg: seen["pool"].add(threading.current_thread().name),
                                 qos.EVENTS)
        inline_pub = node.create_publisher(String, "inline_topic", qos.EVENTS)
        pool_pub = node.create_publisher(String, "pool_topic", qos.EVENTS)
        spinner.start()
        assert _publish_until(inline_pub, lambda: len(seen["inline"]) > 0)
        assert _publish_until(pool_pub, lambda: len(seen["pool"]) > 0)
    assert seen["inline"] == {"the_spin_thread"}
    assert "the_spin_thread" not in seen["pool"]


def test_an_error_in_an_inline_callback_escapes_spin(rclpy_context):
    errors = []

    def spin(executor):
        try:
            executor.spin()
        except ValueError as error:
            errors.append(error)

    def broken(msg):
        raise ValueError("inline callback bug")

    with spinning(rclpy_context, "stream_executor_error", spin) as (node, spinner):
        node.create_subscription(String, "broken_topic", broken, qos.EVENTS, callback_group=InlineCallbackGroup())
        publisher = node.create_publisher(String, "broken_topic", qos.EVENTS)
        spinner.start()
        assert _publish_until(publisher, lambda: bool(errors))
    assert "inline callback bug" in str(errors[0])


def test_spin_once_returns_after_an_inline_callback(rclpy_context):
    import rclpy

    node = rclpy.create_node("stream_executor_once", context=rclpy_context)
    executor = StreamExecutor(num_threads=2, context=rclpy_context)
    executor.add_node(node)
    got = []
    node.create_subscription(String, "once_topic", got.append, qos.EVENTS, callback_group=InlineCallbackGroup())
    publisher = node.create_publisher(String, "once_topic", qos.EVENTS)
    try:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            publisher.publish(String(data="x"))
            executor.spin_once(timeout_sec=0.05)
        assert got, "the inline callback ran under spin_once"
    finally:
        executor.shutdown()
        node.destroy_node()


def test_events_spinner_delivers_while_other_threads_run_and_stops_on_shutdown(rclpy_context):
    import rclpy

    from uservlm_ros.ros.executors import EventsSpinner

    node = rclpy.create_node("events_spinner_test", context=rclpy_context)
    seen = []
    node.create_subscription(String, "events_topic", lambda msg: seen.append(threading.current_thread().name),
                             qos.EVENTS)
    publisher = node.create_publisher(String, "events_topic", qos.EVENTS)
    executor = EventsSpinner(context=rclpy_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name="the_spin_thread", daemon=True)
    try:
        spinner.start()
        # this thread publishes while the spinner waits: the wait releases the GIL
        assert _publish_until(publisher, lambda: len(seen) >= 3)
        assert set(seen) == {"the_spin_thread"}
    finally:
        assert executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        node.destroy_node()
    assert not spinner.is_alive()


def test_an_error_in_an_events_callback_escapes_spin(rclpy_context):
    import rclpy

    from uservlm_ros.ros.executors import EventsSpinner

    def fail(msg):
        raise RuntimeError("callback failed")

    node = rclpy.create_node("events_spinner_error_test", context=rclpy_context)
    node.create_subscription(String, "events_error_topic", fail, qos.EVENTS)
    publisher = node.create_publisher(String, "events_error_topic", qos.EVENTS)
    executor = EventsSpinner(context=rclpy_context)
    executor.add_node(node)
    errors = []

    def spin():
        try:
            executor.spin()
        except RuntimeError as error:
            errors.append(error)

    spinner = threading.Thread(target=spin, daemon=True)
    try:
        spinner.start()
        assert _publish_until(publisher, lambda: bool(errors))
        assert str(errors[0]) == "callback failed"
    finally:
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        node.destroy_node()
