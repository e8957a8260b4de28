"""numpy <-> ROS messages, without cv_bridge (its PyPI port is broken; see README).

Every reader validates what it gets and raises ValueError with a sentence a caller can put in an
error response: a malformed message must never crash a node or turn into a silent wrong answer.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image

# encoding -> (channels, conversion to RGB or None)
_IMAGE_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_IMAGE_ENCODINGS = tuple(_IMAGE_ENCODINGS)
MAX_IMAGE_SIDE = 8192


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def image_is_empty(msg: Image) -> bool:
    """An Ask request with no image: nothing at all was filled in."""
    return msg.width == 0 and msg.height == 0 and len(msg.data) == 0 and not msg.encoding


def check_image(msg: Image) -> Image:
    """Validate a sensor_msgs/Image without touching its pixels (ValueError naming the problem)."""
    encoding = msg.encoding.lower()
    if encoding not in _IMAGE_ENCODINGS:
        raise ValueError(
            f"unsupported image encoding {msg.encoding!r}; supported: "
            f"{', '.join(SUPPORTED_IMAGE_ENCODINGS)}"
        )
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"image has zero size ({msg.width}x{msg.height})")
    if msg.width > MAX_IMAGE_SIDE or msg.height > MAX_IMAGE_SIDE:
        raise ValueError(f"image {msg.width}x{msg.height} exceeds {MAX_IMAGE_SIDE} px per side")
    row_bytes = msg.width * _IMAGE_ENCODINGS[encoding][0]
    if msg.step < row_bytes:
        raise ValueError(f"image step {msg.step} is smaller than width x channels = {row_bytes}")
    if len(msg.data) != msg.height * msg.step:
        raise ValueError(
            f"image data has {len(msg.data)} bytes, expected height x step = {msg.height} x "
            f"{msg.step}"
            f" = {msg.height * msg.step}"
        )
    return msg


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB (a copy only when a colour conversion is needed)."""
    check_image(msg)
    channels, conversion = _IMAGE_ENCODINGS[msg.encoding.lower()]
    row_bytes = msg.width * channels
    buffer = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = buffer[:, :row_bytes].reshape(msg.height, msg.width, channels)
    if conversion is None:
        return pixels
    if channels == 1:
        pixels = pixels[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def rgb_to_image(rgb: np.ndarray, stamp: Time | None = None, frame_id: str = "camera") -> Image:
    """HxWx3 uint8 RGB -> sensor_msgs/Image (rgb8)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = rgb.tobytes()
    return msg


_IMAGE_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def encoded_image_format(data) -> str:
    """ "jpeg" or "png" from the file signature at the start of ``data``; "" for anything else."""
    head = bytes(data[:8])
    return next(
        (name for name, signature in _IMAGE_SIGNATURES.items() if head.startswith(signature)), ""
    )


def compressed_is_empty(msg: CompressedImage) -> bool:
    return len(msg.data) == 0 and not msg.format


def check_compressed(msg: CompressedImage) -> CompressedImage:
    """Cheap validity check without decoding: data present and a JPEG or PNG signature."""
    if len(msg.data) == 0:
        raise ValueError("compressed image has no data")
    if not encoded_image_format(msg.data):
        raise ValueError(f"compressed image (format {msg.format!r}) is neither JPEG nor PNG")
    return msg


def encoded_image_message(data: bytes) -> CompressedImage:
    """The bytes of a JPEG or PNG file -> sensor_msgs/CompressedImage (ValueError otherwise)."""
    return check_compressed(CompressedImage(format=encoded_image_format(data), data=data))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> HxWx3 uint8 RGB."""
    if len(msg.data) == 0:
        raise ValueError("compressed image has no data")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"compressed image (format {msg.format!r}) could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(
    rgb: np.ndarray, quality: int = 80, stamp: Time | None = None, frame_id: str = "camera"
) -> CompressedImage:
    """HxWx3 uint8 RGB -> JPEG sensor_msgs/CompressedImage."""
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    msg = CompressedImage()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.format = "rgb8; jpeg compressed bgr8"
    msg.data = jpeg.tobytes()
    return msg


def serialized_image_to_rgb(data: bytes) -> np.ndarray:
    """A serialized sensor_msgs/Image -> RGB (for subscriptions with raw=True)."""
    from rclpy.serialization import deserialize_message

    return image_to_rgb(deserialize_message(data, Image))


def serialized_compressed_to_rgb(data: bytes) -> np.ndarray:
    """A serialized sensor_msgs/CompressedImage -> RGB (for subscriptions with raw=True)."""
    from rclpy.serialization import deserialize_message

    return compressed_to_rgb(deserialize_message(data, CompressedImage))


def read_image_file(path: str) -> np.ndarray:
    """An image file on disk -> HxWx3 uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image file {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def audio_to_array(msg) -> np.ndarray:
    """uservlm_ros/AudioChunk -> int16 array of shape (frames, channels)."""
    if msg.channels < 1:
        raise ValueError(f"audio has {msg.channels} channels")
    if msg.sample_rate == 0:
        raise ValueError("audio sample_rate is 0")
    samples = (
        np.frombuffer(msg.data, dtype=np.int16)
        if isinstance(msg.data, (bytes, array.array))
        else np.asarray(msg.data, dtype=np.int16)
    )
    if samples.size % msg.channels:
        raise ValueError(
            f"audio has {samples.size} samples, not a multiple of its {msg.channels} channels"
        )
    return samples.reshape(-1, msg.channels)


def array_to_audio(
    samples: np.ndarray, sample_rate: int, stamp: Time | None = None, frame_id: str = "microphone"
):
    """int16 array (frames,) or (frames, channels) -> uservlm_ros/AudioChunk."""
    from uservlm_ros.msg import AudioChunk  # generated; imported late so plain tests need no build

    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise ValueError(f"AudioChunk carries int16 samples, got {samples.dtype}")
    channels = 1 if samples.ndim == 1 else int(samples.shape[1])
    msg = AudioChunk()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.sample_rate = int(sample_rate)
    msg.channels = channels
    msg.data = array.array("h", np.ascontiguousarray(samples).tobytes())
    return msg
