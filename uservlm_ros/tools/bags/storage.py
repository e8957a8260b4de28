"""rosbag2 directories on disk: the topics' types and QoS, writing (mcap) and reading (mcap or
sqlite3, through the pure-Python ``rosbags``), and the header stamp inside a serialized message.

A bag written here is what Jazzy's rosbag2 writes: ``metadata.yaml`` (format version 8), every
topic's type, its type hash (RIHS01, identical to rclpy's), the QoS its publishers offered and the
full definition of every type, custom ones included, so ``ros2 bag info`` / ``ros2 bag play`` on a
ROS 2 install read it. Each message is stored with its receive time and its bytes as received.
"""

from __future__ import annotations

import importlib
import os
import struct
import sys
from collections.abc import Iterable, Sequence
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
    "robot_speaking": "uservlm_ros/msg/SpeakingState",
    "speech_played": "uservlm_ros/msg/AudioChunk",
    "barge_in": "uservlm_ros/msg/BargeIn",
    "stop_speaking": "std_msgs/msg/Header",
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
    if base == "speech_played":
        return qos.PLAYED
    if base in ("speech", "speech_started", "interactions", "barge_in", "stop_speaking"):
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
