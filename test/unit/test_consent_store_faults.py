"""The ethics engine when its consent store fails: a store that cannot be created, a record that
cannot be read, a disk that fills up under it, a file system gone read-only. Reviews keep being
answered, generically wherever consent would have to be recorded (fail closed: what cannot be
remembered is not asked), ``store_error`` says what failed, no record is corrupted, and the
engine recovers by itself once the store works. (Rules only: no embedding model to load.)"""

from __future__ import annotations

import pytest

from small_disk import fill, remount, small_disk, snapshot
from uservlm_ros.engines.ethics.engine import ALLOW, CLARIFY, GENERIC, EthicsConfig, EthicsEngine

FACE = {"age": "60-69", "gender": "female", "ethnicity": "latino", "emotion": "sad"}
NEEDS_CONSENT = "What should I eat for lunch today?"
NO_CONSENT = "What time is it?"


def engine_at(store_dir) -> EthicsEngine:
    return EthicsEngine(EthicsConfig(store_dir=store_dir, use_embeddings=False)).load()


def agree(engine: EthicsEngine, user: str = "lea", question: str = NEEDS_CONSENT):
    assert engine.review(question, user, FACE).decision == CLARIFY
    return engine.resolve_reply(user, "yes please")


def test_a_store_that_cannot_be_created_gives_generic_answers_until_it_can(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the store's parent folder should be")
    engine = engine_at(blocker / "consent")
    assert "cannot" in engine.store_error

    review = engine.review(NEEDS_CONSENT, "lea", FACE)
    assert review.decision == GENERIC and not review.pending
    assert review.reason.startswith("consent store unavailable")
    assert engine.review(NO_CONSENT, "lea", FACE).decision == ALLOW
    assert engine.resolve_reply("lea", "yes") is None
    assert blocker.read_text().startswith("a file")  # untouched

    blocker.unlink()  # the path is free again: no restart needed
    assert agree(engine).decision == ALLOW
    assert engine.store_error == "" and engine.store_failures >= 2


def test_an_unreadable_record_is_reported_and_left_as_it_is(tmp_path):
    store = tmp_path / "consent"
    engine = engine_at(store)
    agree(engine)
    record = next(store.glob("*.json"))
    content = record.read_bytes()
    record.unlink()
    record.mkdir()  # a record that cannot be read (EISDIR), e.g. a broken restore

    review = engine.review("Suggest a dessert I might like.", "lea", FACE)
    assert review.decision == GENERIC and "consent store unavailable" in review.reason
    assert "Is a directory" in engine.store_error
    assert record.is_dir(), "an unreadable record is not replaced or moved"

    record.rmdir()
    record.write_bytes(content)
    assert engine.review("Suggest a dessert I might like.", "lea", FACE).decision == ALLOW
    assert engine.store_error == ""


def test_a_full_disk_keeps_every_record_intact(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        engine = engine_at(disk / "consent")
        agree(engine, "lea")
        assert engine.review("What should I wear to a wedding?", "max", FACE).decision == CLARIFY
        before = snapshot(disk / "consent")

        filler = fill(disk)
        # a new person: the clarifying question cannot be remembered, so it is not asked
        review = engine.review(NEEDS_CONSENT, "noa", FACE)
        assert review.decision == GENERIC and "No space left on device" in review.reason
        # a reply that cannot be recorded is no consent: a generic answer to the first question
        resolution = engine.resolve_reply("max", "yes please")
        assert resolution.decision == GENERIC and "cannot be recorded" in resolution.reason
        assert resolution.original_question == "What should I wear to a wedding?"
        assert engine.review("Recommend me a movie", "lea", FACE).decision == GENERIC
        assert "No space left on device" in engine.store_error
        assert snapshot(disk / "consent") == before, "a write on a full disk changed a record"

        filler.unlink()
        assert agree(engine, "noa").decision == ALLOW
        assert engine.store_error == ""
        assert [c.scope for c in engine.consents("lea")] == ["topic:food"]


def test_a_read_only_file_system_is_reported_and_recovered(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        engine = engine_at(disk / "consent")
        agree(engine, "lea")
        before = snapshot(disk / "consent")
        remount(disk, "ro")
        try:
            review = engine.review("What should I wear to a wedding?", "lea", FACE)
            assert review.decision == GENERIC and "Read-only file system" in engine.store_error
            with pytest.raises(RuntimeError, match="Read-only"):
                engine.forget("lea")  # never claims to have forgotten
        finally:
            remount(disk, "rw")
        assert snapshot(disk / "consent") == before
        assert engine.review("What should I wear to a wedding?", "lea", FACE).decision == CLARIFY
        assert engine.store_error == ""
