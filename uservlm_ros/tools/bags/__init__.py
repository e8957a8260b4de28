"""Record and replay the robot's sensor streams as rosbag2 bags, without rosbag2 (``ros2 bag`` is
not available from PyPI): :mod:`.storage` (bags on disk, through the pure-Python ``rosbags``),
:mod:`.record` (``uservlm record``), :mod:`.replay` (``uservlm play`` and the benchmark's replay),
:mod:`.cli`. The bundled ``uservlm_ros/data/demo_bag/`` (``scripts/make_demo_bag.py`` makes it from
the demo recording) is the benchmark's default input.
"""

from uservlm_ros.tools.bags.record import RecordSummary, record
from uservlm_ros.tools.bags.replay import Replayer, ReplayReport, camera_uplink, replay
from uservlm_ros.tools.bags.storage import (
    AUDIO,
    CAMERA_JPEG,
    CAMERA_RAW,
    DEFAULT_TOPICS,
    KNOWN_TYPES,
    Bag,
    BagError,
    BagMessage,
    BagWriter,
    default_bag,
    header_stamp,
    read_bag,
    relative_topic,
    topic_qos,
    use_package_dds_profile,
    with_header_stamp,
)

__all__ = [
    "AUDIO",
    "CAMERA_JPEG",
    "CAMERA_RAW",
    "DEFAULT_TOPICS",
    "KNOWN_TYPES",
    "Bag",
    "BagError",
    "BagMessage",
    "BagWriter",
    "RecordSummary",
    "ReplayReport",
    "Replayer",
    "camera_uplink",
    "default_bag",
    "header_stamp",
    "read_bag",
    "record",
    "relative_topic",
    "replay",
    "topic_qos",
    "use_package_dds_profile",
    "with_header_stamp",
]
