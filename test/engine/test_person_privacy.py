"""Identity with privacy by design: remember, forget, restarts, corrupt templates, expiry, and
what is on disk after one person agreed and one did not (real models, real files)."""

from __future__ import annotations

import json
import logging
import shutil
import stat

import numpy as np
import pytest

import person_scenes as ps
from person_engines import engine as make_engine
from settable_clock import Clock
from uservlm_ros.engines.person import StoreError
from uservlm_ros.engines.person.identity import new_person_id
from uservlm_ros.engines.person.store import SUFFIX

IMAGE_MAGIC = (
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"P5",
    b"P6",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"\x93NUMPY",
    b"RIFF",
    b"GIF8",
)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def vectors_in(value):
    """Every list of 128 numbers anywhere in a parsed JSON value."""
    if (
        isinstance(value, list)
        and len(value) == 128
        and all(isinstance(v, (int, float)) for v in value)
    ):
        yield np.asarray(value, np.float32)
    elif isinstance(value, list):
        for item in value:
            yield from vectors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from vectors_in(item)


def test_a_remembered_person_survives_a_restart_and_a_session_person_does_not(tmp_path):
    store = tmp_path / "faces"
    first = make_engine(store_dir=store)
    astronaut = first.resolve(ps.alone("astronaut")).person_id
    hopper = first.resolve(ps.alone("hopper")).person_id
    assert first.remember(astronaut) and first.is_remembered(astronaut)
    template = store / f"{astronaut}{SUFFIX}"
    assert [p.name for p in store.iterdir()] == [template.name]
    assert mode(store) == 0o700 and mode(template) == 0o600

    again = make_engine(store_dir=store)
    assert again.counts() == {"session_persons": 0, "remembered_persons": 1, "tracks": 0}
    turn = again.resolve(ps.alone("astronaut", "mirror"))
    assert (turn.person_id, turn.status, turn.remembered) == (astronaut, "remembered", True)
    other = again.resolve(ps.alone("hopper"))
    assert other.status == "new" and other.person_id not in (hopper, astronaut)
    assert not other.remembered


def test_no_embedding_of_the_person_who_did_not_agree_reaches_the_disk(tmp_path):
    store = tmp_path / "faces"
    engine = make_engine(store_dir=store)
    for _ in range(3):
        engine.track(ps.pair())
    agreed = engine.resolve(ps.alone("astronaut")).person_id
    declined_turn = engine.resolve(ps.alone("hopper"))
    assert engine.remember(agreed)
    for variant in ("mirror", "dark"):
        engine.resolve(ps.alone("hopper", variant))
        engine.resolve(ps.alone("astronaut", variant))
    assert engine.remember(agreed)  # a refresh rewrites the template
    # the declining person's embeddings, as the engine computes them on these frames
    frames = [ps.alone("hopper", v) for v in ("plain", "mirror", "dark")] + [ps.pair()]
    declined = []
    for frame in frames:
        for face in engine._detector.detect(frame).faces:
            vector = engine._embedder.embed(frame, face)
            if engine.gallery.distance_to(declined_turn.person_id, vector) <= 0.5:
                declined.append(vector)
    assert len(declined) >= 4
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{agreed}{SUFFIX}"]
    for path in files:
        data = path.read_bytes()
        assert not data.startswith(IMAGE_MAGIC), path
        assert not any(m in data for m in IMAGE_MAGIC[:2]), path
        stored = list(vectors_in(json.loads(data)))
        assert stored, "the agreeing person's template holds embeddings"
        for vector in stored:
            assert min(np.linalg.norm(vector - d) for d in declined) > 0.5, path
            for d in declined:  # nor in binary form
                assert (
                    d.tobytes()[:16] not in data
                    and d.astype(np.float64).tobytes()[:16] not in data
                )
        assert declined_turn.person_id.encode() not in data


def test_a_corrupt_template_is_moved_aside_and_logged_and_the_rest_works(tmp_path, caplog):
    store = tmp_path / "faces"
    first = make_engine(store_dir=store)
    astronaut = first.resolve(ps.alone("astronaut")).person_id
    hopper = first.resolve(ps.alone("hopper")).person_id
    assert first.remember(astronaut) and first.remember(hopper)
    broken = store / f"{hopper}{SUFFIX}"
    broken.write_bytes(broken.read_bytes()[:300])  # a truncated write
    with caplog.at_level(logging.WARNING):
        again = make_engine(store_dir=store)
    assert "corrupt" in caplog.text and hopper in caplog.text
    assert again.counts()["remembered_persons"] == 1 and again.is_remembered(astronaut)
    assert not broken.exists() and len(list(store.glob(f"{broken.name}.corrupt-*"))) == 1
    assert again.resolve(ps.alone("astronaut")).person_id == astronaut
    assert again.resolve(ps.alone("hopper")).status == "new"
    # the moved-aside copy is that person's data too: forget removes it
    assert again.forget(hopper)
    assert [p.name for p in store.iterdir()] == [f"{astronaut}{SUFFIX}"]


def test_forget_removes_template_and_memory_and_answers_unknown_ids(tmp_path):
    store = tmp_path / "faces"
    engine = make_engine(store_dir=store)
    astronaut = engine.resolve(ps.alone("astronaut")).person_id
    hopper = engine.resolve(ps.alone("hopper")).person_id
    result = engine.track(ps.pair())
    assert engine.remember(astronaut)
    assert engine.forget(astronaut)
    assert list(store.iterdir()) == [] and not engine.knows(astronaut)
    assert all(track.person_id != astronaut for track in engine.tracker.snapshot())
    assert engine.forget(hopper) and not engine.knows(hopper)
    for unknown in (astronaut, new_person_id(), "", "../../etc/passwd", "p" + "0" * 16, None):
        assert engine.forget(unknown) is False
        assert engine.remember(unknown) is False
    fresh = engine.resolve(ps.alone("astronaut"))
    assert fresh.status == "new" and fresh.person_id not in (astronaut, hopper)
    assert len(result.faces) == 2


def test_session_persons_are_forgotten_after_the_ttl_and_reported(tmp_path):
    clock, gone = Clock(), []
    engine = make_engine(
        clock=clock, on_forgotten=gone.append, session_ttl_s=60.0, store_dir=tmp_path / "faces"
    )
    astronaut = engine.resolve(ps.alone("astronaut")).person_id
    hopper = engine.resolve(ps.alone("hopper")).person_id
    assert engine.remember(hopper)
    clock.now += 45
    assert engine.resolve(ps.alone("astronaut")).person_id == astronaut  # seen: clock restarts
    clock.now += 45
    assert engine.expire() == [] and gone == []
    clock.now += 16
    turn = engine.resolve(ps.alone("hopper"))
    assert gone == [astronaut] and turn.person_id == hopper and turn.remembered
    again = engine.resolve(ps.alone("astronaut"))
    assert again.status == "new" and again.person_id != astronaut


def test_a_failed_template_write_leaves_a_session_person(tmp_path):
    store = tmp_path / "faces"
    engine = make_engine(store_dir=store)
    person = engine.resolve(ps.alone("astronaut")).person_id
    shutil.rmtree(store)
    store.write_text("in the way")
    with pytest.raises(StoreError):
        engine.remember(person)
    assert engine.knows(person) and not engine.is_remembered(person)
    assert store.read_text() == "in the way"


def test_without_a_store_remembering_only_stops_expiry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    engine = make_engine(clock=clock, session_ttl_s=10.0)
    person = engine.resolve(ps.alone("hopper")).person_id
    assert engine.remember(person)
    clock.now += 100
    assert engine.expire() == [] and engine.is_remembered(person)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_forget_callback_is_logged_and_perception_goes_on(caplog):
    clock = Clock()

    def broken(person_id):
        raise RuntimeError("consent store down")

    engine = make_engine(clock=clock, on_forgotten=broken, session_ttl_s=10.0)
    first = engine.resolve(ps.alone("hopper")).person_id
    clock.now += 11
    with caplog.at_level(logging.ERROR):
        turn = engine.resolve(ps.alone("hopper"))
    assert turn.status == "new" and turn.person_id != first
    assert "on_forgotten" in caplog.text and first in caplog.text
