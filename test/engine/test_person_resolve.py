"""PersonEngine.resolve on 640x480 scenes of two offline people (real models)."""

from __future__ import annotations

import numpy as np
import pytest

import person_scenes as ps
from person_engines import engine as make_engine
from uservlm_ros.engines.person.identity import valid_person_id


@pytest.fixture
def engine():
    return make_engine()


def test_the_same_person_is_recognised_across_variants_and_the_two_never_confused(engine):
    ids: dict[str, set[str]] = {}
    for name in ps.PEOPLE:
        first = engine.resolve(ps.alone(name))
        assert first.status == "new" and valid_person_id(first.person_id)
        for variant in ps.VARIANTS[1:]:
            turn = engine.resolve(ps.alone(name, variant))
            assert turn.faces == 1 and turn.frontal, (name, variant)
            assert turn.status == "known" and turn.distance <= 0.5, (name, variant, turn.distance)
            ids.setdefault(name, set()).add(turn.person_id)
        for stem in ps.TRAINING_CROPS[name][1:]:  # the *_body crop's face is under 40 px
            turn = engine.resolve(ps.scene((ps.training_crop(stem), (200, 100))))
            ids[name].add(turn.person_id)
        ids[name].add(first.person_id)
    assert len(ids["astronaut"]) == 1 and len(ids["hopper"]) == 1
    assert ids["astronaut"] != ids["hopper"]
    assert engine.counts() == {"session_persons": 2, "remembered_persons": 0, "tracks": 0}


def test_two_people_the_largest_is_addressed_and_cropped(engine):
    small, _ = ps.at("astronaut", (150, 200), 80)
    big, big_box = ps.at("hopper", (470, 220), 130)
    frame = ps.scene(small, big)
    turn = engine.resolve(frame, stamp=12.5)
    assert turn.faces == 2 and turn.stamp == 12.5
    cx, cy = turn.box.center
    assert big_box[0] < cx < big_box[2] and big_box[1] < cy < big_box[3]
    xmin, ymin, xmax, ymax = turn.roi
    assert 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1 and xmin > 0.5
    assert turn.crop_kind == "upper_body" and turn.crop.shape[2] == 3
    region = turn.crop_box
    assert region.x0 <= turn.box.x0 and turn.box.x1 <= region.x1 and region.y0 <= turn.box.y0
    assert turn.crop.shape[:2] == (round(region.height), round(region.width))
    assert set(turn.timings) == {"detect", "embed", "identify", "crop", "total"}
    hopper = engine.resolve(ps.alone("hopper"))
    assert hopper.person_id == turn.person_id


def test_center_policy_and_crop_kinds():
    small, small_box = ps.at("astronaut", (320, 240), 70)
    big, _ = ps.at("hopper", (90, 160), 130)
    frame = ps.scene(big, small)
    centred = make_engine(addressee="center", user_crop="face").resolve(frame)
    assert centred.box.x0 < 320 < centred.box.x1 and centred.crop_kind == "face"
    assert centred.crop.shape[0] == pytest.approx(centred.box.height * 1.6, abs=2)
    full = make_engine(user_crop="full").resolve(frame)
    assert full.crop_kind == "full" and full.crop.shape == (480, 640, 3)


def test_eight_faces_are_all_found():
    frame = ps.crowd(4, 2)
    turn = make_engine().resolve(frame)
    assert turn.faces == 8 and turn.person_id and turn.too_small == 0
    crowd = make_engine().resolve(ps.crowd(5, 2, face_px=56))
    assert crowd.faces == 10 and crowd.dropped == 0
    capped = make_engine(max_faces=3).resolve(frame)
    assert (capped.faces, capped.dropped) == (3, 5)


def test_faces_under_40_px_are_ignored(engine):
    a, _ = ps.at("astronaut", (200, 200), 30)
    b, _ = ps.at("hopper", (440, 200), 28)
    turn = engine.resolve(ps.scene(a, b))
    assert (turn.person_id, turn.status, turn.faces) == ("", "no_face", 0)
    assert turn.too_small >= 1
    body = engine.resolve(ps.scene((ps.training_crop("astronaut_body"), (200, 100))))
    assert body.status == "no_face"
    assert engine.counts()["session_persons"] == 0


def test_no_face_gives_the_full_frame_and_no_person(engine):
    frame = ps.scene()
    turn = engine.resolve(frame)
    assert (turn.person_id, turn.status, turn.faces, turn.face_id) == ("", "no_face", 0, "")
    assert turn.box is None and turn.roi is None and turn.crop_kind == "full"
    assert np.array_equal(turn.crop, frame) and "embed" not in turn.timings


def test_grey_mono_and_rgba_frames_resolve_to_the_same_person(engine):
    rgb = ps.alone("astronaut")
    person = engine.resolve(rgb).person_id
    grey = rgb.mean(axis=2).astype(np.uint8)
    for frame in (
        grey,
        grey[:, :, None],
        grey.astype(np.uint16) * 257,
        np.dstack([rgb, np.full(grey.shape, 255, np.uint8)]),
    ):
        turn = engine.resolve(frame)
        assert turn.person_id == person and turn.crop.shape[2] == 3


def test_timestamps_are_optional_and_checked(engine):
    frame = ps.alone("hopper")
    assert engine.resolve(frame).stamp is None
    assert engine.resolve(frame, stamp=0).stamp is None  # a ROS header left empty
    assert engine.resolve(frame, stamp=1733333333.25).stamp == 1733333333.25
    for bad in (-1.0, float("nan"), "now", True):
        with pytest.raises(ValueError, match="stamp"):
            engine.resolve(frame, stamp=bad)


def test_bad_frames_are_refused_and_the_engine_carries_on(engine):
    for bad in (None, np.zeros((480, 640, 3), np.float32), np.zeros((4, 4, 3), np.uint8)):
        with pytest.raises(ValueError):
            engine.resolve(bad)
    assert engine.resolve(ps.alone("astronaut")).status == "new"


def test_a_turned_face_counts_but_founds_no_person(engine):
    frame = ps.scene((np.asarray(ps.photo("cameraman")), (60, 0)))
    turn = engine.resolve(frame)
    assert turn.faces == 1 and not turn.frontal
    assert (turn.person_id, turn.status) == ("", "unidentified")
    assert turn.crop_kind == "upper_body" and turn.box is not None
    assert engine.counts()["session_persons"] == 0


def test_a_half_hidden_face_is_never_taken_for_the_other_person(engine):
    astronaut = engine.resolve(ps.alone("astronaut")).person_id
    hopper = engine.resolve(ps.alone("hopper")).person_id
    for name, own in (("astronaut", astronaut), ("hopper", hopper)):
        turn = engine.resolve(ps.alone(name, "occluded"))
        assert turn.faces == 1
        assert turn.person_id in (own, ""), (name, turn.status, turn.distance)
    assert engine.counts()["session_persons"] == 2


def test_hog_and_downscaled_detection_find_both_people():
    for config in ({"detector": "hog"}, {"detect_scale": 0.5}):
        turn = make_engine(**config).resolve(ps.pair())
        assert turn.faces == 2 and turn.status == "new", config


def test_resolve_before_load_is_an_error():
    from uservlm_ros.engines.person import PersonEngine

    with pytest.raises(RuntimeError, match="load"):
        PersonEngine().resolve(ps.alone("hopper"))
