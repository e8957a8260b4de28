"""``uservlm play`` and the benchmark's replay: publish a bag's stored bytes again with the
original timing, each topic with the QoS of :mod:`uservlm_ros.ros.qos`.

The wait between messages is *spin-by-deadline*: the executor spins until the next message is due
(other callbacks of the same executor keep running), no ``sleep``. ``restamp=True`` shifts every
``std_msgs/Header`` stamp by the same amount as the message's receive time, so a replayed
recording looks live to nodes that compare stamps with the clock. The report gives each message's
timing error. :func:`camera_uplink` turns the bag's JPEG frames into raw ones for the raw uplink.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from uservlm_ros.tools.bags.storage import (
    CAMERA_JPEG,
    CAMERA_RAW,
    KNOWN_TYPES,
    Bag,
    BagError,
    BagMessage,
    header_stamp,
    message_class,
    read_bag,
    relative_topic,
    topic_qos,
    use_package_dds_profile,
    with_header_stamp,
)


@dataclass
class ReplayReport:
    started_wall: float  # time.time() when the first message was due
    counts: dict[str, int]  # messages published per topic (bag name)
    scheduled: list[float]  # seconds after start each message was due
    published: list[float]  # seconds after start each message was handed to publish()
    topics: list[str]  # bag topic of each message

    @property
    def errors_ms(self) -> list[float]:
        return [(p - s) * 1000.0 for p, s in zip(self.published, self.scheduled)]

    @property
    def median_error_ms(self) -> float:
        return statistics.median(abs(e) for e in self.errors_ms) if self.errors_ms else 0.0

    @property
    def max_error_ms(self) -> float:
        return max((abs(e) for e in self.errors_ms), default=0.0)

    @property
    def ended_wall(self) -> float:
        return self.started_wall + (self.published[-1] if self.published else 0.0)


def _chunk_seconds(bag: Bag, topic: str) -> float:
    times = [m.log_time for m in bag.of(topic)]
    gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(gaps) if gaps else 0.04


class Replayer:
    """Publishers for a bag's topics, created once and reused for any number of replays.

    ``messages`` (default: all of the bag's) may be a transformed copy (see :func:`camera_uplink`).
    Topic names are re-rooted from the bag's recorded namespace into ``node``'s namespace.
    QoS: :func:`topic_qos` (the package's profiles; audio depth sized from the bag's chunk
    period), else the first offered profile stored in the bag, else reliable depth 20.
    """

    def __init__(
        self,
        node,
        bag: Bag,
        messages: list[BagMessage] | None = None,
        topics: Iterable[str] | None = None,
    ):
        from rclpy.qos import QoSProfile

        self.node = node
        self.bag = bag
        chosen = None if topics is None else {bag._name(t) for t in topics}
        self.messages = [
            m
            for m in (bag.messages if messages is None else messages)
            if chosen is None or m.topic in chosen
        ]
        self.publishers = {}
        self.names = {}
        self.types = {}
        for topic in dict.fromkeys(m.topic for m in self.messages):
            info = bag.topics.get(topic)
            msgtype = info.msgtype if info else KNOWN_TYPES[relative_topic(topic, bag.namespace)]
            relative = relative_topic(topic, bag.namespace)
            profile = topic_qos(relative, _chunk_seconds(bag, topic))
            if profile is None and info and info.offered_qos:
                stored = info.offered_qos[0]
                profile = QoSProfile(
                    history=stored.history.value,
                    depth=max(stored.depth, 1),
                    reliability=stored.reliability.value,
                    durability=stored.durability.value,
                )
            if profile is None:
                from uservlm_ros.ros import qos

                profile = qos.EVENTS
            self.types[topic] = msgtype
            self.names[topic] = relative
            self.publishers[topic] = node.create_publisher(
                message_class(msgtype), relative, profile
            )
        self._header = {
            t: (t in bag.topics and bag.has_header(t))
            or self.types[t]
            in (
                "sensor_msgs/msg/Image",
                "sensor_msgs/msg/CompressedImage",
                "uservlm_ros/msg/AudioChunk",
            )
            for t in self.publishers
        }

    def subscriber_counts(self) -> dict[str, int]:
        return {self.names[t]: p.get_subscription_count() for t, p in self.publishers.items()}

    def wait_for_subscribers(
        self, executor, timeout: float, minimum: dict[str, int] | None = None, settle: float = 0.25
    ) -> dict[str, int]:
        """Spin until every topic (or those in ``minimum``: relative name -> count) has enough
        matched subscriptions, then ``settle`` seconds more. Returns the counts; raises BagError
        naming the topics that did not. The settle: Fast DDS reports the match a little before a
        new reader accepts best-effort samples from this writer, which would lose the first
        frame."""
        need = minimum or {name: 1 for name in self.names.values()}
        deadline = time.monotonic() + timeout
        while True:
            counts = self.subscriber_counts()
            short = {t: n for t, n in need.items() if counts.get(t, 0) < n}
            if not short:
                settled = time.monotonic() + settle
                while time.monotonic() < settled:
                    executor.spin_once(timeout_sec=max(0.0, settled - time.monotonic()))
                return counts
            if time.monotonic() >= deadline:
                raise BagError(
                    "no (or too few) subscribers after {:.0f} s: {}".format(
                        timeout,
                        ", ".join(
                            f"{t} has {counts.get(t, 0)}, needs {n}" for t, n in short.items()
                        ),
                    )
                )
            executor.spin_once(timeout_sec=0.05)

    def play(
        self,
        executor,
        rate: float = 1.0,
        restamp: bool = True,
        start_delay: float = 0.0,
        on_published: Callable[[BagMessage, float], None] | None = None,
    ) -> ReplayReport:
        """Publish every message at its original time offset (divided by ``rate``), spinning
        ``executor`` while waiting. Returns when the last message is out."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if not self.messages:
            return ReplayReport(time.time(), {}, [], [], [])
        first = self.messages[0].log_time
        perf0 = time.perf_counter() + start_delay
        wall0 = time.time() + start_delay
        counts = {t: 0 for t in self.publishers}
        scheduled, published, topics = [], [], []
        for message in self.messages:
            offset = (message.log_time - first) / 1e9 / rate
            due = perf0 + offset
            while True:
                remaining = due - time.perf_counter()
                if remaining <= 0:
                    break
                if remaining > 0.002:
                    executor.spin_once(timeout_sec=remaining - 0.0015)
                # the last ~1.5 ms: poll the clock (an rcl wait cannot wake that precisely)
            data = message.data
            if restamp and self._header[message.topic]:
                shift = int((wall0 + offset) * 1e9) - message.log_time
                data = with_header_stamp(data, header_stamp(data) + shift)
            sent = (
                time.perf_counter() - perf0
            )  # handed to DDS now (a slow publish() is not lateness)
            self.publishers[message.topic].publish(data)
            counts[message.topic] += 1
            scheduled.append(offset)
            published.append(sent)
            topics.append(message.topic)
            if on_published is not None:
                on_published(message, wall0 + sent)
        return ReplayReport(wall0, counts, scheduled, published, topics)

    def destroy(self) -> None:
        for publisher in self.publishers.values():
            self.node.destroy_publisher(publisher)
        self.publishers = {}


def replay(
    bag: Bag | str | Path,
    rate: float = 1.0,
    topics: Iterable[str] | None = None,
    namespace: str = "",
    loops: int = 1,
    restamp: bool = True,
    wait_for_subscribers: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> list[ReplayReport]:
    """Play a bag ``loops`` times in a node of its own (the pip-only twin of ``ros2 bag play``).
    ``wait_for_subscribers`` > 0: first wait that long for every topic to have a subscriber."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    bag = bag if isinstance(bag, Bag) else read_bag(bag)
    use_package_dds_profile()
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(
        f"uservlm_player_{os.getpid()}", namespace="/" + namespace.strip("/"), context=context
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    reports = []
    try:
        player = Replayer(node, bag, topics=topics)
        if wait_for_subscribers > 0:
            player.wait_for_subscribers(executor, wait_for_subscribers)
        for loop in range(loops):
            report = player.play(executor, rate=rate, restamp=restamp)
            reports.append(report)
            if log:
                log(
                    f"loop {loop + 1}/{loops}: {sum(report.counts.values())} messages in "
                    f"{report.published[-1] if report.published else 0:.2f} s, timing error "
                    "median "
                    f"{report.median_error_ms:.2f} ms, max {report.max_error_ms:.2f} ms"
                )
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return reports


def camera_uplink(bag: Bag, uplink: str, jpeg_quality: int = 80) -> list[BagMessage]:
    """The bag's messages with the camera stream as the uplink ``uplink`` carries it.

    - ``jpeg``: only ``camera/image_raw/compressed`` (the bag's JPEG frames; raw frames are
      encoded at ``jpeg_quality`` when the bag has no compressed stream);
    - ``raw``: only ``camera/image_raw`` (the bag's raw frames; JPEG frames are decoded to rgb8
      when it has none — before the replay starts, so the replay's timing is not affected);
    - ``bag``: both, as recorded.
    Same receive times and headers (stamp, frame_id) as the source frames. Other topics pass.
    """
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from uservlm_ros.ros.conversions import (
        compressed_to_rgb,
        image_to_rgb,
        rgb_to_compressed,
        rgb_to_image,
    )

    if uplink not in ("jpeg", "raw", "bag"):
        raise ValueError(f"uplink must be jpeg, raw or bag, got {uplink!r}")
    raw_topic, jpeg_topic = bag._name(CAMERA_RAW), bag._name(CAMERA_JPEG)
    has_raw, has_jpeg = raw_topic in bag.topics, jpeg_topic in bag.topics
    if uplink == "bag" or not (has_raw or has_jpeg):
        return list(bag.messages)
    out = []
    for message in bag.messages:
        if message.topic not in (raw_topic, jpeg_topic):
            out.append(message)
        elif uplink == "jpeg" and message.topic == jpeg_topic:
            out.append(message)
        elif uplink == "raw" and message.topic == raw_topic:
            out.append(message)
        elif uplink == "raw" and message.topic == jpeg_topic and not has_raw:
            source = deserialize_message(message.data, CompressedImage)
            frame = rgb_to_image(
                compressed_to_rgb(source), source.header.stamp, source.header.frame_id
            )
            out.append(
                BagMessage(
                    _sibling(jpeg_topic, CAMERA_RAW), message.log_time, serialize_message(frame)
                )
            )
        elif uplink == "jpeg" and message.topic == raw_topic and not has_jpeg:
            source = deserialize_message(message.data, Image)
            frame = rgb_to_compressed(
                image_to_rgb(source), jpeg_quality, source.header.stamp, source.header.frame_id
            )
            out.append(
                BagMessage(
                    _sibling(raw_topic, CAMERA_JPEG), message.log_time, serialize_message(frame)
                )
            )
    return out


def _sibling(topic: str, relative: str) -> str:
    """The other camera topic next to ``topic`` (same namespace)."""
    base = CAMERA_JPEG if topic.endswith(CAMERA_JPEG) else CAMERA_RAW
    return topic[: len(topic) - len(base)] + relative
