"""Record and replay the robot's sensor streams as rosbag2 bags, without rosbag2.

``ros2 bag`` (rosbag2) is not available from PyPI, so this module does the
two halves of it that the project needs, with rclpy's serialized-message API and the pure-Python
``rosbags`` library:

- :func:`record` subscribes *raw* (the CDR bytes, never deserialized) to the camera and audio
  topics (and any others asked for) and writes a rosbag2 directory in **mcap** storage: a
  ``metadata.yaml`` (format version 8, as ROS 2 Jazzy's rosbag2 writes it), every topic's type,
  its type hash (RIHS01, identical to rclpy's), the QoS profiles its publishers offered, and the
  full
  message definition of every type, custom ones included (``uservlm_ros/msg/AudioChunk``), so
  ``ros2 bag info`` / ``ros2 bag play`` on a ROS 2 install read it (``play`` needs ``uservlm_ros``
  built there, for AudioChunk's type support). Each message is stored with its *receive* time
  (the DDS reception timestamp, system clock, as mcap ``log_time``) and its bytes exactly as
  received: its header, and so its capture stamp, is untouched.
- :func:`read_bag` loads a bag (rosbags, mcap or sqlite3) into memory: topics, types, counts,
  offered QoS, definitions, and the messages in receive-time order.
- :class:`Replayer` / :func:`replay` publish the stored bytes again with the original timing,
  each topic with the QoS of :mod:`uservlm_ros.ros.qos`. The wait between messages is
  *spin-by-deadline*: the executor spins until the next message is due (other callbacks of the
  same executor keep running), no ``sleep``. ``restamp=True`` shifts every ``std_msgs/Header``
  stamp by the same amount as the message's receive time, so a replayed recording looks live to
  nodes that compare stamps with the clock (ASR's speech boundaries, the frame picked for a
  turn). The report gives each message's timing error.

The bundled ``uservlm_ros/data/demo_bag/`` (made by ``scripts/make_demo_bag.py`` from the demo
recording) is the replay benchmark's default input (:mod:`uservlm_ros.tools.bench`).

CLI (wired in ``uservlm``): ``uservlm record OUT [--topics ...] [--duration S] [--namespace NS]``
and ``uservlm play BAG [--rate R] [--loop N]``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Topic -> type of the streams this package records by default (the robot's sensors).
CAMERA_RAW = "camera/image_raw"
CAMERA_JPEG = "camera/image_raw/compressed"
AUDIO = "audio"
KNOWN_TYPES = {
    CAMERA_RAW: "sensor_msgs/msg/Image",
    CAMERA_JPEG: "sensor_msgs/msg/CompressedImage",
    AUDIO: "uservlm_ros/msg/AudioChunk",
    "speech": "uservlm_ros/msg/Utterance",
    "speech_audio": "uservlm_ros/msg/AudioChunk",
    "speech_started": "std_msgs/msg/Header",
    "robot_speaking": "std_msgs/msg/Bool",
    "interactions": "uservlm_ros/msg/Interaction",
}
DEFAULT_TOPICS = (CAMERA_RAW, CAMERA_JPEG, AUDIO)
BAG_VERSION = 8  # rosbag2 metadata format of ROS 2 Jazzy
NAMESPACE_KEY = "uservlm_ros.namespace"  # custom_data: the namespace the topics were recorded in
HEADER_TYPE = "std_msgs/msg/Header"


def default_bag() -> Path:
    """The bundled bag: the demo recording as the robot publishes it."""
    from importlib import resources

    return Path(str(resources.files("uservlm_ros") / "data" / "demo_bag"))


class BagError(RuntimeError):
    """A bag could not be written, read or replayed; the message says why."""


# -- types and QoS -----------------------------------------------------------------------------
def _find_msg_file(msgtype: str) -> Path | None:
    """``pkg/msg/Name`` -> its .msg file: this package's msg/ (source tree or install), else
    ``share/<pkg>/msg/`` under AMENT_PREFIX_PATH or sys.prefix."""
    from uservlm_ros.bringup.graph import PACKAGE, share_dir

    package, kind, name = msgtype.split("/")
    candidates = [share_dir() / kind / f"{name}.msg"] if package == PACKAGE else []
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [
        sys.prefix
    ]
    candidates += [Path(prefix) / "share" / package / kind / f"{name}.msg" for prefix in prefixes]
    return next((path for path in candidates if path.is_file()), None)


def make_typestore(extra: Iterable[str] = ()):
    """A rosbags typestore with ROS 2 Jazzy's standard types plus this package's messages (and
    ``extra`` type names, found as .msg files on the ament prefix path)."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for name in ("AudioChunk", "Utterance", "Interaction", *extra):
        ensure_type(store, name if "/" in name else f"uservlm_ros/msg/{name}")
    return store


def ensure_type(store, msgtype: str) -> None:
    """Register ``msgtype`` (and, recursively, the types it uses) from its .msg file."""
    from rosbags.typesys import get_types_from_msg

    if msgtype in store.fielddefs:
        return
    path = _find_msg_file(msgtype)
    if path is None:
        raise BagError(
            f"no message definition found for {msgtype} (looked for {msgtype.split('/')[-1]}.msg "
            "in this package and under share/ of AMENT_PREFIX_PATH)"
        )
    types = get_types_from_msg(path.read_text(), msgtype)
    for _, fields in types.values():
        for _, (kind, detail) in fields:
            for name in _referenced_types(kind, detail):
                ensure_type(store, name)
    store.register(types)


def _referenced_types(kind, detail) -> list[str]:
    from rosbags.typesys.base import Nodetype

    if kind == Nodetype.NAME:
        return [detail]
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        inner_kind, inner = detail[0]
        return _referenced_types(inner_kind, inner)
    return []


def to_bag_qos(profile):
    """rclpy QoSProfile -> rosbags Qos (what metadata.yaml stores as offered_qos_profiles)."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    def duration(value) -> QosTime:
        nanoseconds = value.nanoseconds if hasattr(value, "nanoseconds") else 0
        if nanoseconds <= 0 or nanoseconds >= 2**63 - 1:
            return QosTime(0, 0)  # rmw's "default/infinite"
        return QosTime(nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000)

    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=duration(profile.deadline),
        lifespan=duration(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=duration(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def topic_qos(topic: str, chunk_seconds: float = 0.04):
    """The profile of :mod:`uservlm_ros.ros.qos` for a topic of this package (relative name), or
    None for a topic this package does not own."""
    from uservlm_ros.ros import qos

    name = topic.strip("/")
    if name.endswith(CAMERA_RAW) or name.endswith(CAMERA_JPEG):
        return qos.CAMERA
    base = name.rsplit("/", 1)[-1]
    if base == AUDIO:
        return qos.audio_qos(chunk_seconds)
    if base == "robot_speaking":
        return qos.LATCHED
    if base == "speech_audio":
        return qos.SPEECH_AUDIO
    if base in ("speech", "speech_started", "interactions"):
        return qos.EVENTS
    if base == "diagnostics":
        return qos.DIAGNOSTICS
    return None


def use_package_dds_profile() -> None:
    """Load config/fastdds.xml in this process (unless a profile was chosen already), as the node
    processes do (:func:`uservlm_ros.bringup.graph.dds_environment`): with Fast DDS's built-in 512
    KB
    shared-memory segments, 921,600-byte raw frames between processes are mostly lost. Call before
    the first rclpy context of the process is initialised."""
    from uservlm_ros.bringup.graph import dds_environment

    profile = dds_environment()
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        os.environ.setdefault(name, profile[name])


def message_class(msgtype: str):
    """The generated Python class of ``pkg/msg/Name``."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as error:
        raise BagError(f"message type {msgtype} is not installed for rclpy ({error})") from error


# -- writing -----------------------------------------------------------------------------------
class BagWriter:
    """A rosbag2 directory in mcap storage, fed serialized messages topic by topic.

    ``add_topic`` registers a topic with its type (the definition comes from the typestore,
    custom types from their .msg files) and offered QoS; ``write`` stores one message with its
    receive time in nanoseconds. ``close`` writes metadata.yaml. Use as a context manager.
    """

    def __init__(
        self, path: str | Path, custom_data: dict[str, str] | None = None, typestore=None
    ):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(
                f"{self.path} exists; rosbag2 writes a new directory (choose another name)"
            )
        self.store = typestore or make_typestore()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def open(self) -> BagWriter:
        self._writer.open()
        self._open = True
        return self

    def add_topic(
        self, topic: str, msgtype: str, offered_qos: Sequence = (), rihs01: str | None = None
    ) -> None:
        if topic in self._connections:
            return
        ensure_type(self.store, msgtype)
        msgdef, _ = self.store.generate_msgdef(msgtype, ros_version=2)
        digest = self.store.hash_rihs01(msgtype)
        if rihs01 and rihs01 != digest:
            raise BagError(
                f"{topic}: the publisher's type hash {rihs01} differs from the definition found "
                f"for {msgtype} ({digest}); the installed .msg does not match the running nodes"
            )
        from rosbags.interfaces import Qos

        qos_list = [q if isinstance(q, Qos) else to_bag_qos(q) for q in offered_qos]
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=qos_list
        )
        self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[topic], int(log_time_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.abort()
            self._open = False


# -- reading -----------------------------------------------------------------------------------
@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int
    offered_qos: list = field(default_factory=list)  # rosbags Qos
    msgdef: str = ""
    digest: str = ""


@dataclass
class BagMessage:
    topic: str
    log_time: int  # receive time, nanoseconds since the epoch
    data: bytes  # the serialized (CDR) message, exactly as received


@dataclass
class Bag:
    path: Path
    topics: dict[str, TopicInfo]
    messages: list[BagMessage]  # in log_time order
    custom_data: dict[str, str]
    storage: str
    version: int
    store: object = None  # rosbags typestore with the bag's own definitions

    @property
    def start(self) -> int:
        return self.messages[0].log_time if self.messages else 0

    @property
    def end(self) -> int:
        return self.messages[-1].log_time if self.messages else 0

    @property
    def duration(self) -> float:
        return (self.end - self.start) / 1e9

    @property
    def namespace(self) -> str:
        return self.custom_data.get(NAMESPACE_KEY, "")

    def count(self, topic: str) -> int:
        return sum(1 for m in self.messages if m.topic == self._name(topic))

    def of(self, topic: str) -> list[BagMessage]:
        name = self._name(topic)
        return [m for m in self.messages if m.topic == name]

    def _name(self, topic: str) -> str:
        """A relative name (``audio``) finds the bag's topic in its recorded namespace."""
        if topic in self.topics:
            return topic
        for name in self.topics:
            if relative_topic(name, self.namespace) == topic.strip("/"):
                return name
        return topic

    def deserialize(self, message: BagMessage):
        """The message as a rosbags object (numpy arrays for numeric sequences)."""
        return self.store.deserialize_cdr(message.data, self.topics[message.topic].msgtype)

    def has_header(self, topic: str) -> bool:
        fields = self.store.fielddefs[self.topics[topic].msgtype][1]
        return bool(fields) and fields[0][1][1] == HEADER_TYPE


def relative_topic(name: str, namespace: str) -> str:
    """``/pepper1/audio`` recorded in namespace ``pepper1`` -> ``audio``."""
    stripped = name.strip("/")
    prefix = namespace.strip("/")
    if prefix and stripped.startswith(prefix + "/"):
        return stripped[len(prefix) + 1 :]
    return stripped


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Bag:
    """Load a rosbag2 directory (mcap or sqlite3) written by rosbag2, rosbags or :func:`record`."""
    import yaml
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    store = get_typestore(Stores.EMPTY)
    wanted = None if topics is None else set(topics)
    with Reader(path) as reader:
        connections = [
            c
            for c in reader.connections
            if wanted is None or c.topic in wanted or c.topic.strip("/") in wanted
        ]
        found: dict[str, TopicInfo] = {}
        for connection in connections:
            msgdef = connection.msgdef.data if connection.msgdef else ""
            if connection.msgtype not in store.fielddefs:
                if not msgdef:
                    raise BagError(
                        f"{path}: topic {connection.topic} ({connection.msgtype}) has no stored "
                        "message definition"
                    )
                store.register(
                    {
                        k: v
                        for k, v in get_types_from_msg(msgdef, connection.msgtype).items()
                        if k not in store.fielddefs
                    }
                )
            topic = found.setdefault(
                connection.topic,
                TopicInfo(
                    connection.topic,
                    connection.msgtype,
                    0,
                    list(connection.ext.offered_qos_profiles),
                    msgdef,
                    connection.digest or "",
                ),
            )
            topic.count += connection.msgcount
        messages = [
            BagMessage(c.topic, int(t), bytes(d))
            for c, t, d in reader.messages(connections=connections)
        ]
    messages.sort(key=lambda m: m.log_time)
    return Bag(
        path=path,
        topics=found,
        messages=messages,
        custom_data=dict(info.get("custom_data") or {}),
        storage=str(info.get("storage_identifier", "")),
        version=int(info.get("version", 0)),
        store=store,
    )


# -- header stamps -----------------------------------------------------------------------------
def header_stamp(data: bytes) -> int:
    """The std_msgs/Header stamp (ns) at the start of a serialized message."""
    endian = "<" if data[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(endian + "iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def with_header_stamp(data: bytes, stamp_ns: int) -> bytes:
    """A copy of ``data`` (a message starting with std_msgs/Header) with its stamp replaced.
    CDR: a 4-byte encapsulation header (byte 1 odd = little endian), then int32 sec, uint32
    nanosec."""
    endian = "<" if data[1] & 1 else ">"
    buffer = bytearray(data)
    struct.pack_into(endian + "iI", buffer, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return bytes(buffer)


# -- recording ---------------------------------------------------------------------------------
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


# -- replay ------------------------------------------------------------------------------------
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


# -- camera uplink -----------------------------------------------------------------------------
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


# -- CLI ---------------------------------------------------------------------------------------
def describe(bag: Bag) -> str:
    lines = [
        f"bag {bag.path}: {bag.storage}, version {bag.version}, {len(bag.messages)} messages, "
        f"{bag.duration:.2f} s"
    ]
    for topic in bag.topics.values():
        lines.append(f"  {topic.name}  {topic.msgtype}  {topic.count} msgs")
    return "\n".join(lines)


def cmd_record(args) -> int:
    if args.duration is not None and args.duration <= 0:
        print("error: --duration must be positive", file=sys.stderr)
        return 64
    try:
        summary = record(
            args.out,
            topics=args.topics,
            duration=args.duration,
            namespace=args.namespace,
            discovery_timeout=args.discovery_timeout,
            log=lambda text: print(text, flush=True),
            on_ready=lambda: print(
                "recording (Ctrl-C stops)"
                if args.duration is None
                else f"recording for {args.duration:g} s",
                flush=True,
            ),
        )
    except BagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {summary.path}: "
        + ", ".join(f"{t} {n}" for t, n in summary.counts.items())
        + f" in {summary.seconds:.1f} s"
    )
    for topic in summary.missing:
        print(f"warning: never saw a publisher on {topic}", file=sys.stderr)
    return 0


def cmd_play(args) -> int:
    try:
        bag = read_bag(args.bag)
        print(describe(bag), flush=True)
        reports = replay(
            bag,
            rate=args.rate,
            topics=args.topics or None,
            namespace=args.namespace,
            loops=args.loop,
            restamp=not args.keep_stamps,
            wait_for_subscribers=args.wait,
            log=lambda text: print(text, flush=True),
        )
    except BagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if reports else 1


def add_record_parser(subparsers) -> argparse.ArgumentParser:
    """``uservlm record``: add it to the CLI with ``bags.add_record_parser(sub)``."""
    parser = subparsers.add_parser(
        "record", help="record the robot's camera/audio topics into a rosbag2 (mcap) bag"
    )
    parser.add_argument("out", help="new bag directory to write")
    parser.add_argument(
        "--topics",
        nargs="+",
        default=list(DEFAULT_TOPICS),
        help=f"topics, relative to --namespace (default: {' '.join(DEFAULT_TOPICS)})",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to record (default: until Ctrl-C)"
    )
    parser.add_argument("--namespace", default="", help="robot namespace of the topics")
    parser.add_argument(
        "--discovery-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for publishers of topics whose type is not known in advance",
    )
    parser.set_defaults(func=cmd_record)
    return parser


def add_play_parser(subparsers) -> argparse.ArgumentParser:
    """``uservlm play``: add it to the CLI with ``bags.add_play_parser(sub)``."""
    parser = subparsers.add_parser(
        "play", help="replay a bag with its original timing (pip-only `ros2 bag play`)"
    )
    parser.add_argument("bag", help="rosbag2 directory")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", type=int, default=1, help="times to play it")
    parser.add_argument("--topics", nargs="+", help="only these topics")
    parser.add_argument("--namespace", default="", help="robot namespace to publish into")
    parser.add_argument(
        "--keep-stamps",
        action="store_true",
        help="publish header stamps as recorded (default: shifted to now, like a live sensor)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for a subscriber on every topic first (0 = do not wait)",
    )
    parser.set_defaults(func=cmd_play)
    return parser
