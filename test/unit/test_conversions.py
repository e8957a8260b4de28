"""numpy <-> message conversions and their validation (no DDS involved)."""

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from uservlm_ros.ros.conversions import (
    array_to_audio,
    audio_to_array,
    compressed_to_rgb,
    image_is_empty,
    image_to_rgb,
    rgb_to_compressed,
    rgb_to_image,
)


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)


def test_rgb_round_trip(frame):
    msg = rgb_to_image(frame)
    assert (msg.width, msg.height, msg.step, msg.encoding) == (640, 480, 1920, "rgb8")
    assert np.array_equal(image_to_rgb(msg), frame)


def test_bgr_mono_and_padded_rows(frame):
    bgr = Image(
        height=480, width=640, encoding="bgr8", step=1920, data=frame[:, :, ::-1].tobytes()
    )
    assert np.array_equal(image_to_rgb(bgr), frame)
    gray = frame[:, :, 0]
    padded = np.zeros((480, 648), np.uint8)
    padded[:, :640] = gray
    mono = Image(height=480, width=640, encoding="mono8", step=648, data=padded.tobytes())
    assert np.array_equal(image_to_rgb(mono)[:, :, 1], gray)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(encoding="yuv422"), "unsupported image encoding"),
        (dict(encoding="32FC1"), "unsupported image encoding"),
        (dict(width=0), "zero size"),
        (dict(height=0), "zero size"),
        (dict(step=100), "step 100 is smaller"),
        (dict(height=479), "expected height x step"),
    ],
)
def test_bad_images_are_named(frame, change, message):
    msg = rgb_to_image(frame)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=message):
        image_to_rgb(msg)


def test_empty_image_means_none(frame):
    assert image_is_empty(Image())
    assert not image_is_empty(rgb_to_image(frame))
    assert not image_is_empty(Image(encoding="rgb8"))  # half-filled is malformed, not "no image"


def test_jpeg_round_trip(frame):
    smooth = np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    decoded = compressed_to_rgb(rgb_to_compressed(smooth, quality=95))
    assert decoded.shape == (480, 640, 3)
    assert np.abs(decoded.astype(int) - smooth).mean() < 3
    with pytest.raises(ValueError, match="could not be decoded"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(ValueError, match="no data"):
        compressed_to_rgb(CompressedImage(format="jpeg"))


def test_audio_round_trip_and_validation():
    stereo = np.arange(-800, 800, dtype=np.int16).reshape(-1, 2)
    msg = array_to_audio(stereo, 48000)
    assert (msg.sample_rate, msg.channels) == (48000, 2)
    assert np.array_equal(audio_to_array(msg), stereo)
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match="not a multiple of its 2 channels"):
        audio_to_array(msg)
    with pytest.raises(ValueError, match="int16"):
        array_to_audio(np.zeros(10, np.float32), 16000)


def test_serialized_frames_keep_their_stamp_and_pixels(frame):
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message

    from uservlm_ros.ros.conversions import serialized_compressed_to_rgb, serialized_image_to_rgb
    from uservlm_ros.ros.frame_buffer import cdr_header_stamp

    raw = serialize_message(rgb_to_image(frame, stamp=Time(sec=1795320000, nanosec=250_000_000)))
    assert cdr_header_stamp(raw) == pytest.approx(1795320000.25)
    assert np.array_equal(serialized_image_to_rgb(raw), frame)
    jpeg = serialize_message(rgb_to_compressed(frame, stamp=Time(sec=12, nanosec=5)))
    assert cdr_header_stamp(jpeg) == pytest.approx(12.000000005)
    assert serialized_compressed_to_rgb(jpeg).shape == frame.shape
    assert cdr_header_stamp(b"\x00\x01") == 0.0


def test_image_checks_without_decoding(frame):
    from uservlm_ros.ros.conversions import (
        check_image,
        encoded_image_format,
        encoded_image_message,
    )

    image = rgb_to_image(frame)
    assert check_image(image) is image
    image.step -= 1
    with pytest.raises(ValueError, match="smaller than width"):
        check_image(image)
    jpeg = bytes(rgb_to_compressed(frame).data)
    assert (
        encoded_image_format(jpeg) == "jpeg"
        and encoded_image_format(b"\x89PNG\r\n\x1a\n...") == "png"
    )
    assert encoded_image_format(b"GIF89a") == "" and encoded_image_format(b"") == ""
    assert encoded_image_message(jpeg).format == "jpeg"
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        encoded_image_message(b"GIF89a" + bytes(10))
