"""Person perception parts that need no model: config, boxes, input frames, crops, addressee."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from uservlm_ros.engines.person import addressee, crop
from uservlm_ros.engines.person.config import PersonConfig
from uservlm_ros.engines.person.detection import Face, yaw_of
from uservlm_ros.engines.person.geometry import Box
from uservlm_ros.engines.person.image import as_rgb


@pytest.mark.parametrize(
    "field, value",
    [
        ("detector", "cnn"),
        ("hog_upsample", 3),
        ("detect_scale", 0.1),
        ("min_face_px", 4),
        ("min_score", 1.5),
        ("max_faces", 0),
        ("max_yaw", 0.0),
        ("match_threshold", 0.05),
        ("max_exemplars", 0),
        ("session_ttl_s", 0),
        ("store_dir", ""),
        ("addressee", "loudest"),
        ("user_crop", "torso"),
        ("face_margin", -1),
        ("upper_body_scale", 0.5),
        ("track_rate_hz", 0),
        ("track_iou_min", 0),
        ("track_max_missed", -1),
        ("track_signature_min", 2),
        ("track_reverify_s", 0),
        ("track_max_embeddings", -1),
        ("session_ttl_s", float("nan")),
        ("min_score", True),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PersonConfig(**{field: value})


def test_config_defaults_are_the_documented_ones():
    config = PersonConfig()
    assert (config.detector, config.min_face_px, config.session_ttl_s) == ("yunet", 40, 1800.0)
    assert (config.addressee, config.user_crop, config.store_dir) == (
        "largest",
        "upper_body",
        None,
    )
    assert dataclasses.is_dataclass(config) and config.track_rate_hz == 5.0


def test_box_overlap_and_normalised_roi():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    assert Box(-10, 40, 100, 600).normalized(640, 480) == pytest.approx(
        (0, 40 / 480, 100 / 640, 1.0)
    )
    with pytest.raises(ValueError):
        Box(10, 0, 5, 10)
    with pytest.raises(ValueError):
        Box(0, 0, float("inf"), 1)


def test_frames_of_every_layout_become_rgb():
    grey = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    for frame in (
        grey,
        grey[:, :, None],
        np.dstack([grey] * 3),
        np.dstack([grey] * 4),
        grey.astype(np.uint16) << 8,
    ):
        rgb = as_rgb(frame)
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
        assert np.array_equal(rgb[:, :, 1], grey)


@pytest.mark.parametrize(
    "frame, message",
    [
        ([[1, 2], [3, 4]], "numpy array"),
        (np.zeros((48, 64, 2), np.uint8), "channels"),
        (np.zeros((48, 64), np.float32), "uint8"),
        (np.zeros((8, 64), np.uint8), "each side"),
        (np.zeros((2, 48, 64, 3), np.uint8), "H x W"),
    ],
)
def test_unusable_frames_are_refused_with_the_reason(frame, message):
    with pytest.raises(ValueError, match=message):
        as_rgb(frame)


def face(x0, y0, side, frontal=True):
    return Face(
        Box(x0, y0, x0 + side, y0 + side),
        0.9,
        np.zeros((5, 2), np.float32),
        0.0 if frontal else 0.5,
        frontal,
        np.zeros(4, np.float32),
        None,
    )


def test_addressee_largest_frontal_then_largest_of_any():
    faces = [face(0, 0, 150, frontal=False), face(400, 0, 80), face(250, 200, 60)]
    assert addressee.choose(faces, "largest", 640, 480) == 1
    assert addressee.choose(faces[:1], "largest", 640, 480) == 0
    assert addressee.choose([], "largest", 640, 480) is None


def test_addressee_center_is_the_frontal_face_nearest_the_middle():
    faces = [face(0, 0, 150), face(290, 210, 60), face(300, 220, 40, frontal=False)]
    assert addressee.choose(faces, "center", 640, 480) == 1


def test_yaw_is_the_nose_offset_along_the_eye_line():
    straight = np.array([[60, 50], [50, 50], [20, 50], [30, 50], [40, 70]], np.float32)
    assert yaw_of(straight) == pytest.approx(0.0)
    turned = straight.copy()
    turned[4, 0] = 52  # nose 12 px towards one eye, eye centres 30 px apart
    assert abs(yaw_of(turned)) == pytest.approx(0.4)
    assert yaw_of(np.zeros((5, 2), np.float32)) == float("inf")


@pytest.mark.parametrize("kind", ["face", "upper_body", "full"])
def test_crops_contain_the_face_and_stay_in_the_frame(kind):
    for box in (Box(300, 200, 360, 260), Box(0, 0, 50, 50), Box(600, 420, 640, 480)):
        region = crop.region(box, kind, 640, 480, face_margin=0.3, upper_body_scale=3.0)
        assert 0 <= region.x0 <= box.x0 and 0 <= region.y0 <= box.y0
        assert box.x1 <= region.x1 <= 640 and box.y1 <= region.y1 <= 480
    upper = crop.region(Box(300, 100, 360, 160), "upper_body", 640, 480, 0.3, 3.0)
    assert upper.width == pytest.approx(180) and upper.y0 == pytest.approx(70)
    assert crop.region(Box(300, 100, 360, 160), "face", 640, 480, 0.3, 3.0).width == pytest.approx(
        96
    )
    frame = np.arange(480 * 640 * 3, dtype=np.uint8).reshape(480, 640, 3)
    part = crop.cut(frame, Box(10.4, 19.5, 30, 40.2))
    assert part.shape == (20, 20, 3) and np.array_equal(part, frame[20:40, 10:30])
