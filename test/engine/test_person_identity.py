"""The person gallery (matching, enrolment, expiry) and the template store (files, modes,
corruption, deletion), on embedding-shaped vectors: no model needed."""

from __future__ import annotations

import json
import logging
import os
import stat

import numpy as np
import pytest

from settable_clock import Clock
from uservlm_ros.engines.person.identity import (
    KNOWN,
    NEW,
    REMEMBERED,
    UNKNOWN,
    Gallery,
    new_person_id,
    valid_person_id,
)
from uservlm_ros.engines.person.store import SUFFIX, StoreError, TemplateStore

RNG = np.random.default_rng(7)


def person_vector():
    v = RNG.normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)  # two such vectors lie ~1.41 apart, far beyond 0.5


def near(v, d=0.2):
    noise = RNG.normal(size=128).astype(np.float32)
    return (v + noise / np.linalg.norm(noise) * d).astype(np.float32)


def test_person_ids_are_random_and_valid_ros_names():
    ids = {new_person_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_person_id(i) for i in ids)
    assert all(i[0].isalpha() and i.isalnum() for i in ids)
    for bad in ("", "p123", "../p0123456789abcdef", "P0123456789ABCDEF", None, 7):
        assert not valid_person_id(bad)


def test_identify_enrols_then_recognises_and_never_confuses():
    gallery = Gallery(0.5, 8, 1800.0, Clock())
    a, b = person_vector(), person_vector()
    first = gallery.identify(a, frontal=True)
    assert first.status == NEW and first.distance is None
    again = gallery.identify(near(a), frontal=True)
    assert again.person_id == first.person_id and again.status == KNOWN
    assert again.distance == pytest.approx(0.2, abs=1e-4)
    other = gallery.identify(b, frontal=True)
    assert other.status == NEW and other.person_id != first.person_id
    assert other.distance > 1.0


def test_a_turned_face_matches_but_never_founds_a_person():
    gallery = Gallery(0.5, 8, 1800.0, Clock())
    unknown = gallery.identify(person_vector(), frontal=False)
    assert (unknown.person_id, unknown.status, unknown.distance) == ("", UNKNOWN, None)
    a = person_vector()
    known = gallery.identify(a, frontal=True).person_id
    assert gallery.identify(near(a), frontal=False).person_id == known
    assert gallery.counts() == (1, 0)


def test_exemplars_grow_with_new_views_up_to_the_limit():
    gallery = Gallery(0.5, 3, 1800.0, Clock())
    a = person_vector()
    pid = gallery.identify(a, frontal=True).person_id
    for _ in range(10):
        gallery.identify(near(a, 0.3), frontal=True)
    assert len(gallery.remember(pid)) == 3


def test_session_persons_expire_after_the_ttl_since_last_seen():
    clock = Clock()
    gallery = Gallery(0.5, 8, 60.0, clock)
    a, b = person_vector(), person_vector()
    pa = gallery.identify(a, frontal=True).person_id
    pb = gallery.identify(b, frontal=True).person_id
    gallery.remember(pb)
    clock.now += 40
    gallery.touch([pa])
    clock.now += 40
    assert gallery.expire() == [] and pa in gallery
    clock.now += 21
    assert gallery.expire() == [pa]
    assert pa not in gallery and gallery.is_remembered(pb)
    assert gallery.identify(near(b), frontal=True).status == REMEMBERED
    assert gallery.identify(near(a), frontal=True).person_id not in (pa, pb)


def test_forget_removes_and_reports():
    gallery = Gallery(0.5, 8, 60.0, Clock())
    pid = gallery.identify(person_vector(), frontal=True).person_id
    assert gallery.forget(pid) and not gallery.forget(pid)
    assert gallery.remember(pid) is None


# --- the store ---------------------------------------------------------------------------------


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_store_writes_0600_files_in_a_0700_directory_and_loads_them(tmp_path):
    folder = tmp_path / "faces"
    store = TemplateStore(folder)
    assert store.open() == {}
    pid, vectors = new_person_id(), [person_vector(), person_vector()]
    store.save(pid, vectors)
    assert mode(folder) == 0o700 and mode(folder / f"{pid}{SUFFIX}") == 0o600
    assert [p.name for p in store.files()] == [f"{pid}{SUFFIX}"]  # no temporary left behind
    loaded = TemplateStore(folder).open()
    assert list(loaded) == [pid]
    assert np.allclose(np.stack(loaded[pid]), np.stack(vectors), atol=1e-6)


def test_store_tightens_loosened_modes(tmp_path):
    store = TemplateStore(tmp_path / "faces")
    store.open()
    pid = new_person_id()
    store.save(pid, [person_vector()])
    os.chmod(tmp_path / "faces", 0o755)
    os.chmod(tmp_path / "faces" / f"{pid}{SUFFIX}", 0o644)
    assert pid in TemplateStore(tmp_path / "faces").open()
    assert mode(tmp_path / "faces") == 0o700
    assert mode(tmp_path / "faces" / f"{pid}{SUFFIX}") == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": 1}',
        "nan-exemplar",
        "short-exemplar",
        "wrong-id",
        "other-model",
    ],
)
def test_a_corrupt_template_is_moved_aside_and_the_others_load(tmp_path, caplog, content):
    folder = tmp_path / "faces"
    store = TemplateStore(folder)
    store.open()
    good, bad = new_person_id(), new_person_id()
    store.save(good, [person_vector()])
    store.save(bad, [person_vector()])
    path = folder / f"{bad}{SUFFIX}"
    record = json.loads(path.read_text())
    if content == "nan-exemplar":
        record["exemplars"][0][5] = float("nan")
    elif content == "short-exemplar":
        record["exemplars"][0] = record["exemplars"][0][:100]
    elif content == "wrong-id":
        record["person_id"] = good
    elif content == "other-model":
        record["model_sha256"] = "0" * 64
    path.write_bytes(json.dumps(record).encode() if isinstance(content, str) else content)
    with caplog.at_level(logging.WARNING):
        loaded = TemplateStore(folder).open()
    assert list(loaded) == [good]
    assert not path.exists()
    aside = [p for p in folder.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].name.startswith(f"{bad}{SUFFIX}.corrupt-")
    assert "corrupt" in caplog.text and bad in caplog.text


def test_delete_removes_template_copies_and_temporaries_and_reports_unknown(tmp_path):
    folder = tmp_path / "faces"
    store = TemplateStore(folder)
    store.open()
    pid, other = new_person_id(), new_person_id()
    store.save(pid, [person_vector()])
    store.save(other, [person_vector()])
    (folder / f"{pid}{SUFFIX}.corrupt-20260101T000000Z").write_text("x")
    (folder / f".{pid}{SUFFIX}.1.2.tmp").write_text("x")
    assert store.delete(pid)
    assert [p.name for p in store.files()] == [f"{other}{SUFFIX}"]
    assert not store.delete(pid)
    assert not store.delete("../../etc/passwd") and not store.delete("")
    with pytest.raises(ValueError):
        store.save("../escape", [person_vector()])


def test_store_refuses_a_file_where_its_directory_should_be(tmp_path):
    (tmp_path / "faces").write_text("not a directory")
    with pytest.raises(StoreError):
        TemplateStore(tmp_path / "faces").open()
