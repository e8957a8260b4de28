"""The newest camera frames, raw or JPEG, kept undecoded until a turn needs one (plain Python).

Only a short history is kept (the frame nearest the end of an utterance is the user image); an
overwritten frame that was never used is counted as dropped, for /diagnostics.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    stamp: float  # seconds, the message header stamp (receive time when the header is empty)
    received: float  # seconds, monotonic receive time
    message: Any  # the serialized message
    source: str  # topic name it came from
    decode: Callable[[Any], Any]  # serialized message -> RGB array (ValueError if unusable)
    msg_type: Any = None  # sensor_msgs Image or CompressedImage

    @property
    def compressed(self) -> bool:
        return self.source.endswith("/compressed")

    def rgb(self):
        """The frame as an HxWx3 RGB array (ValueError for an unusable frame)."""
        return self.decode(self.message)

    def to_message(self):
        """The frame as its ROS message, undecoded (e.g. to forward a JPEG as it is)."""
        from rclpy.serialization import deserialize_message

        return deserialize_message(self.message, self.msg_type)


def cdr_header_stamp(data: bytes) -> float:
    """The header stamp of a serialized message whose first field is std_msgs/Header (Image,
    CompressedImage), read without deserializing the ~1 MB payload. 0.0 if unreadable."""
    if len(data) < 12:
        return 0.0
    little = data[1] & 1  # CDR encapsulation: 0x0001 little endian, 0x0000 big endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec + nanosec * 1e-9


def serialized_frame(
    data: bytes, source: str, decode: Callable[[bytes], Any], msg_type=None
) -> Frame:
    """A Frame from a raw (serialized) camera message: decoded only if a turn uses it."""
    return Frame(
        stamp=cdr_header_stamp(data) or time.time(),
        received=time.monotonic(),
        message=data,
        source=source,
        decode=decode,
        msg_type=msg_type,
    )


class FrameBuffer:
    def __init__(self, history: int = 30):
        self._lock = threading.Lock()
        self._frames: deque[Frame] = deque(maxlen=max(1, history))
        self.received = 0
        self.dropped = 0

    def add(self, frame: Frame) -> None:
        with self._lock:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self.received += 1

    def newest(self, max_age: float | None = None, now: float | None = None) -> Frame | None:
        with self._lock:
            if not self._frames:
                return None
            frame = max(self._frames, key=lambda f: f.received)
        if max_age and now is not None and now - frame.received > max_age:
            return None
        return frame

    def nearest(self, stamp: float) -> Frame | None:
        """The frame whose stamp is closest to ``stamp`` (e.g. the end of an utterance)."""
        with self._lock:
            if not self._frames:
                return None
            return min(self._frames, key=lambda f: abs(f.stamp - stamp))

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def subscribe_camera(node, frames: FrameBuffer, callback_group=None) -> list:
    """Keep the frames of ``camera/image_raw`` and ``camera/image_raw/compressed`` in ``frames``.

    The subscriptions take the serialized bytes (raw=True): a 640x480 frame at 30 Hz is only
    deserialized and decoded when a turn uses it (converting every frame to Python costs a
    third of a core)."""
    from sensor_msgs.msg import CompressedImage, Image

    from uservlm_ros.ros import qos
    from uservlm_ros.ros.conversions import serialized_compressed_to_rgb, serialized_image_to_rgb

    topics = (
        ("camera/image_raw", Image, serialized_image_to_rgb),
        ("camera/image_raw/compressed", CompressedImage, serialized_compressed_to_rgb),
    )
    return [
        node.create_subscription(
            msg_type,
            topic,
            lambda data, t=topic, d=decode, m=msg_type: frames.add(
                serialized_frame(data, t, d, m)
            ),
            qos.CAMERA,
            callback_group=callback_group,
            raw=True,
        )
        for topic, msg_type, decode in topics
    ]
