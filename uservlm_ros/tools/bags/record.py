"""``uservlm record``: subscribe *raw* (the CDR bytes, never deserialized) to the camera and audio
topics (and any others asked for) and write them into a new bag, each message with its DDS receive
time and its bytes exactly as received (its header, and so its capture stamp, untouched)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from uservlm_ros.tools.bags.storage import (
    DEFAULT_TOPICS,
    KNOWN_TYPES,
    NAMESPACE_KEY,
    BagWriter,
    message_class,
    to_bag_qos,
    topic_qos,
    use_package_dds_profile,
)


@dataclass
class RecordSummary:
    path: Path
    counts: dict[str, int]
    seconds: float
    missing: list[str]  # topics asked for that never had a publisher


def _resolve(node, topic: str) -> str:
    return (
        node.resolve_topic_name(topic)
        if hasattr(node, "resolve_topic_name")
        else "/" + "/".join(p for p in (node.get_namespace().strip("/"), topic.strip("/")) if p)
    )


def record(
    out_dir: str | Path,
    topics: Sequence[str] = DEFAULT_TOPICS,
    duration: float | None = None,
    namespace: str = "",
    stop: threading.Event | None = None,
    discovery_timeout: float = 5.0,
    on_ready: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> RecordSummary:
    """Record ``topics`` (names relative to ``namespace``) into a new rosbag2 directory
    ``out_dir``.

    Runs until ``duration`` seconds have passed, ``stop`` is set, or Ctrl-C. Types of the
    package's own topics are known; any other topic's type is taken from the graph (its
    publishers must appear within ``discovery_timeout`` seconds, else it is listed as missing and
    subscribed to as soon as it appears). Subscriptions are raw; each message is written with its
    DDS receive time. The subscription's reliability/durability follow the publishers' offered QoS
    (reliable only if every publisher is), as rosbag2 does; depth 100.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    say = log or (lambda text: None)
    writer = BagWriter(out_dir, custom_data={NAMESPACE_KEY: namespace.strip("/")}).open()
    use_package_dds_profile()
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(
        f"uservlm_recorder_{os.getpid()}", namespace="/" + namespace.strip("/"), context=context
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    subscriptions = {}
    lock = threading.Lock()
    started = time.monotonic()

    def subscribe(topic: str) -> bool:
        name = _resolve(node, topic)
        publishers = node.get_publishers_info_by_topic(name)
        msgtype = KNOWN_TYPES.get(topic.strip("/"))
        if not publishers and msgtype is None:
            return False
        if publishers:
            msgtype = publishers[0].topic_type
        reliable = bool(publishers) and all(
            p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers
        )
        latched = bool(publishers) and all(
            p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers
        )
        own = topic_qos(topic)
        if not publishers and own is not None:
            reliable, latched = (
                own.reliability == ReliabilityPolicy.RELIABLE,
                own.durability == DurabilityPolicy.TRANSIENT_LOCAL,
            )
        profile = QoSProfile(
            depth=100,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        offered = [p.qos_profile for p in publishers] or ([own] if own is not None else [])
        writer.add_topic(name, msgtype, [to_bag_qos(p) for p in offered])

        def on_message(data: bytes, info) -> None:
            received = (
                int(info.get("received_timestamp", 0) if isinstance(info, dict) else 0)
                or time.time_ns()
            )
            with lock:
                writer.write(name, received, data)

        subscriptions[topic] = node.create_subscription(
            message_class(msgtype), name, on_message, profile, raw=True
        )
        say(
            f"recording {name} ({msgtype}, {len(publishers)} publisher(s), "
            f"{'reliable' if reliable else 'best effort'})"
        )
        return True

    pending = list(dict.fromkeys(topics))
    try:
        deadline = time.monotonic() + discovery_timeout
        while pending and time.monotonic() < deadline:
            pending = [t for t in pending if not subscribe(t)]
            if pending:
                executor.spin_once(timeout_sec=0.05)
        missing = list(pending)
        for topic in missing:
            say(
                f"no publisher on {_resolve(node, topic)} yet (type unknown); subscribing when "
                "one appears"
            )
        # Ready = matched with every publisher already in the graph (a best-effort sample sent to a
        # reader that has not yet matched its writer is lost).
        deadline = time.monotonic() + discovery_timeout
        while time.monotonic() < deadline and not all(
            s.get_publisher_count() >= node.count_publishers(s.topic_name)
            for s in subscriptions.values()
        ):
            executor.spin_once(timeout_sec=0.05)
        if on_ready:
            on_ready()
        started = time.monotonic()
        next_check = started + 1.0
        while rclpy.ok(context=context):
            now = time.monotonic()
            if (duration is not None and now - started >= duration) or (
                stop is not None and stop.is_set()
            ):
                break
            if pending and now >= next_check:
                pending = [t for t in pending if not subscribe(t)]
                next_check = now + 1.0
            timeout = 0.1 if duration is None else max(0.0, min(0.1, duration - (now - started)))
            executor.spin_once(timeout_sec=timeout)
        _drain(executor, writer, lock)
    except KeyboardInterrupt:
        pass
    finally:
        for subscription in subscriptions.values():
            node.destroy_subscription(subscription)
        with lock:
            writer.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return RecordSummary(
        Path(out_dir), dict(writer.counts), time.monotonic() - started, [t for t in pending]
    )


def _drain(
    executor, writer: BagWriter, lock: threading.Lock, quiet: float = 0.2, longest: float = 5.0
) -> None:
    """After the stop, take what DDS already delivered to the subscriptions: spin until nothing
    new has been written for ``quiet`` seconds (at most ``longest``), so a busy recorder does not
    lose the messages queued when it was told to stop."""
    deadline = time.monotonic() + longest
    last_change, last_total = time.monotonic(), -1
    while time.monotonic() < deadline and time.monotonic() - last_change < quiet:
        executor.spin_once(timeout_sec=0.02)
        with lock:
            total = sum(writer.counts.values())
        if total != last_total:
            last_change, last_total = time.monotonic(), total
