"""uservlm_ros.ros.executors: inline callbacks run in the spin thread, the others in the pool;
the events spinner delivers without holding the GIL and stops on shutdown; callback errors
escape."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from std_msgs.msg import String

from uservlm_ros.ros import qos
from uservlm_ros.ros.executors import EventsSpinner, InlineCallbackGroup, StreamExecutor


def _publish_until(publisher, done, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        publisher.publish(String(data="x"))
        time.sleep(0.02)  # the publisher's pace, not a wait for the result
    return done()


@contextlib.contextmanager
def spinning(context, name, spin=None, executor=None):
    """A node on ``executor`` (default: a StreamExecutor) spun by a thread named
    ``the_spin_thread`` (``spin``: its body)."""
    import rclpy

    node = rclpy.create_node(name, context=context)
    executor = executor or StreamExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spinner = threading.Thread(
        target=spin or executor.spin,
        args=(executor,) if spin else (),
        name="the_spin_thread",
        daemon=True,
    )
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
        node.create_subscription(
            String,
            "inline_topic",
            lambda msg: seen["inline"].add(threading.current_thread().name),
            qos.EVENTS,
            callback_group=InlineCallbackGroup(),
        )
        node.create_subscription(
            String,
            "pool_topic",
            lambda msg: seen["pool"].add(threading.current_thread().name),
            qos.EVENTS,
        )
        inline_pub = node.create_publisher(String, "inline_topic", qos.EVENTS)
        pool_pub = node.create_publisher(String, "pool_topic", qos.EVENTS)
        spinner.start()
        assert _publish_until(inline_pub, lambda: len(seen["inline"]) > 0)
        assert _publish_until(pool_pub, lambda: len(seen["pool"]) > 0)
    assert seen["inline"] == {"the_spin_thread"}
    assert "the_spin_thread" not in seen["pool"]


@pytest.mark.parametrize("kind", ["stream_inline", "events"])
def test_a_callback_error_escapes_spin(rclpy_context, kind):
    """An inline callback on a StreamExecutor, any callback on an EventsSpinner."""
    errors = []

    def spin(executor):
        try:
            executor.spin()
        except ValueError as error:
            errors.append(error)

    def broken(msg):
        raise ValueError(f"{kind} callback bug")

    executor = EventsSpinner(context=rclpy_context) if kind == "events" else None
    group = InlineCallbackGroup() if kind == "stream_inline" else None
    with spinning(rclpy_context, f"{kind}_executor_error", spin, executor) as (node, spinner):
        node.create_subscription(String, "broken_topic", broken, qos.EVENTS, callback_group=group)
        publisher = node.create_publisher(String, "broken_topic", qos.EVENTS)
        spinner.start()
        assert _publish_until(publisher, lambda: bool(errors))
    assert str(errors[0]) == f"{kind} callback bug"


def test_spin_once_returns_after_an_inline_callback(rclpy_context):
    import rclpy

    node = rclpy.create_node("stream_executor_once", context=rclpy_context)
    executor = StreamExecutor(num_threads=2, context=rclpy_context)
    executor.add_node(node)
    got = []
    node.create_subscription(
        String, "once_topic", got.append, qos.EVENTS, callback_group=InlineCallbackGroup()
    )
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
    seen = []
    executor = EventsSpinner(context=rclpy_context)
    with spinning(rclpy_context, "events_spinner_test", executor=executor) as (node, spinner):
        node.create_subscription(
            String,
            "events_topic",
            lambda msg: seen.append(threading.current_thread().name),
            qos.EVENTS,
        )
        publisher = node.create_publisher(String, "events_topic", qos.EVENTS)
        spinner.start()
        # this thread publishes while the spinner waits: the wait releases the GIL
        assert _publish_until(publisher, lambda: len(seen) >= 3)
        assert set(seen) == {"the_spin_thread"}
        assert executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        assert not spinner.is_alive()
