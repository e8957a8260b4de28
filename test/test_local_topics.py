"""In-process topic delivery between composed nodes (uservlm_ros.ros.local_topics): each message
reaches an in-process subscriber exactly once, whichever way it comes, and DDS still carries it."""
from __future__ import annotations

import threading

import pytest
from std_msgs.msg import Header

from ros_helpers import spin_until
from uservlm_ros.ros import local_topics


@pytest.fixture
def enabled():
    local_topics.enable()
    yield
    local_topics.disable()


class FakePublisher:
    topic_name = "/speech"

    def __init__(self, log):
        self.log = log

    def publish(self, msg):
        self.log.append(("dds", msg.frame_id))


def header(frame_id: str, sec: int = 1) -> Header:
    msg = Header(frame_id=frame_id)
    msg.stamp.sec = sec
    return msg


def test_in_process_delivery_comes_before_the_dds_publish_and_the_dds_copy_is_dropped(enabled):
    log = []
    subscription = local_topics.subscribe("/speech", lambda msg: log.append(("local", msg.frame_id)),
                                          key=lambda msg: (msg.stamp.sec, msg.frame_id))
    message = header("a")
    assert local_topics.publish(FakePublisher(log), message) == 1
    assert log == [("local", "a"), ("dds", "a")]
    subscription.from_dds(header("a"))  # the DDS copy of the same message
    assert log == [("local", "a"), ("dds", "a")] and subscription.duplicates == 1
    subscription.from_dds(header("b"))  # another process's message
    subscription.from_dds(header("a", sec=2))  # same frame id, another stamp: another message
    assert log[2:] == [("local", "b"), ("local", "a")] and subscription.duplicates == 1
    assert subscription.delivered == 1


def test_off_unless_enabled_and_only_for_the_same_topic():
    log = []
    subscription = local_topics.subscribe("/speech", lambda msg: log.append(msg.frame_id),
                                          key=lambda msg: msg.frame_id)
    assert local_topics.publish(FakePublisher([]), header("a")) == 0 and log == []
    subscription.from_dds(header("a"))
    assert log == ["a"] and subscription.duplicates == 0

    local_topics.enable()
    try:
        other = local_topics.subscribe("/other", lambda msg: log.append("other"), key=lambda msg: msg.frame_id)
        assert local_topics.publish(FakePublisher([]), header("b")) == 0  # no /speech subscriber here
        local_topics.unsubscribe(other)
    finally:
        local_topics.disable()


def test_dds_copy_is_dropped_with_real_dds_between_two_nodes_of_one_process(enabled, rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from uservlm_ros.ros import qos

    publisher_node = rclpy.create_node("local_topics_pub", context=rclpy_context)
    subscriber_node = rclpy.create_node("local_topics_sub", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(publisher_node)
    executor.add_node(subscriber_node)
    got, threads = [], []

    def on_header(msg):
        got.append(msg.frame_id)
        threads.append(threading.current_thread().name)

    local = local_topics.subscribe(subscriber_node.resolve_topic_name("local_topics_test"), on_header,
                                   key=lambda msg: (msg.stamp.sec, msg.stamp.nanosec, msg.frame_id))
    subscriber_node.create_subscription(Header, "local_topics_test", local.from_dds, qos.EVENTS)
    publisher = publisher_node.create_publisher(Header, "local_topics_test", qos.EVENTS)
    outside = rclpy.create_node("local_topics_other", context=rclpy_context)  # stands in for another process
    outside_publisher = outside.create_publisher(Header, "local_topics_test", qos.EVENTS)
    try:
        assert spin_until(executor, lambda: publisher.get_subscription_count() >= 1, 10)
        for index in range(5):
            message = header(f"local-{index}", sec=index + 1)
            local_topics.publish(publisher, message)
        outside_publisher.publish(header("outside", sec=99))
        assert spin_until(executor, lambda: local.duplicates == 5 and "outside" in got, 10), (got, local.duplicates)
        spin_until(executor, lambda: False, 0.3)  # nothing more arrives
        assert got == [f"local-{i}" for i in range(5)] + ["outside"]
        assert threads[:5] == [threading.current_thread().name] * 5  # delivered in the publishing thread
    finally:
        executor.shutdown()
        for node in (publisher_node, subscriber_node, outside):
            node.destroy_node()
