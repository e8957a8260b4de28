"""Consent per person seen by the camera: a session person's answers stay in memory and apply to
them only; agreeing to be remembered moves them to disk (0600); leaving drops them; "remember
me", "forget me" and the offer to remember are read from what the person says."""

from __future__ import annotations

import json
import stat

import pytest

from settable_clock import Clock
from uservlm_ros.engines.ethics.consent import ConsentStore, StoreError
from uservlm_ros.engines.ethics.engine import (
    ALLOW,
    CLARIFY,
    DECLINE,
    FORGET,
    REMEMBER,
    EthicsConfig,
    EthicsEngine,
)

FACE = {"age": "30-39", "gender": "female", "emotion": "neutral"}
ANNA, BEN = "p0123456789abcdef", "pfedcba9876543210"  # person ids as person_node makes them
QUESTION = "What should I eat tonight?"


@pytest.fixture
def clock():
    return Clock(1_750_000_000.0)


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "consent"


@pytest.fixture
def engine(embedder, store_dir, clock):
    return EthicsEngine(
        EthicsConfig(store_dir=store_dir, clock=clock, session_ttl_s=600.0), embedder=embedder
    ).load()


def files(store_dir) -> list:
    return sorted(p for p in store_dir.rglob("*") if p.is_file())


def agree(engine, person):
    assert engine.review(QUESTION, person, FACE).decision == CLARIFY
    return engine.resolve_reply(person, "Yes, I'm vegetarian")


def test_a_session_persons_consent_stays_in_memory_and_applies_to_them_only(engine, store_dir):
    assert engine.is_session(ANNA) and not engine.is_session("alice")
    resolution = agree(engine, ANNA)
    assert resolution.decision == ALLOW and engine.consents(ANNA)
    assert files(store_dir) == [], "a session person's consent must never reach the disk"
    assert engine.review(QUESTION, ANNA, FACE).decision == ALLOW
    # the next visitor is asked for themselves: Anna's yes is not theirs
    other = engine.review(QUESTION, BEN, FACE)
    assert other.decision == CLARIFY and engine.consents(BEN) == ()
    # a caller's own id is kept on disk as before
    agree(engine, "alice")
    (record,) = files(store_dir)
    assert json.loads(record.read_text())["user_id"] == "alice"


def test_agreeing_to_be_remembered_moves_the_consents_to_disk(engine, embedder, store_dir, clock):
    resolution = agree(engine, ANNA)
    assert resolution.follow_up == engine.policy.persons.offer
    assert engine.speaker_request(ANNA, "Yes please") == REMEMBER
    assert engine.persist(ANNA) and not engine.is_session(ANNA)
    (record,) = files(store_dir)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["user_id"] == ANNA
    # from now on on disk: a restarted engine still knows what Anna said
    again = EthicsEngine(EthicsConfig(store_dir=store_dir, clock=clock), embedder=embedder).load()
    assert not again.is_session(ANNA)
    assert again.review(QUESTION, ANNA, FACE).decision == ALLOW
    # remembered persons are no longer offered, nor dropped when they leave
    assert not again.drop_session(ANNA) and again.consents(ANNA)


def test_leaving_drops_a_session_persons_answers(engine, clock):
    agree(engine, ANNA)
    agree(engine, BEN)
    assert engine.drop_session(ANNA) and engine.consents(ANNA) == ()
    assert engine.review(QUESTION, ANNA, FACE).decision == CLARIFY
    assert engine.consents(BEN), "only the person who left is dropped"
    # unused for session_ttl_s: dropped even if nobody reports the departure
    clock.now += 601
    engine.review("What time is it?", "alice", FACE)
    assert engine.consents(BEN) == ()


def test_what_a_person_says_about_themselves(engine):
    assert engine.speaker_request(ANNA, "Please remember me next time") == REMEMBER
    assert engine.speaker_request(ANNA, "Don't forget me!") == REMEMBER
    assert engine.speaker_request(ANNA, "Forget about me, please") == FORGET
    assert engine.speaker_request("alice", "forget me") == FORGET
    assert engine.speaker_request("alice", "remember me") is None  # already kept on disk
    assert engine.speaker_request("", "remember me") is None  # anonymous: nothing to keep
    assert engine.speaker_request(ANNA, "What should I eat?") is None
    # without the offer, a bare yes is not consent to be remembered
    assert engine.speaker_request(ANNA, "Yes") is None


def test_the_offer_is_answered_or_dropped_by_the_next_utterance(engine):
    agree(engine, ANNA)
    assert engine.speaker_request(ANNA, "No, thank you") == DECLINE
    assert engine.is_session(ANNA)
    # having said no, Anna is not offered again in this session
    engine.review("Which sport would suit me?", ANNA, FACE)
    assert engine.resolve_reply(ANNA, "Yes, go ahead").follow_up == ""
    # a question instead of an answer drops the offer: a later yes is not a yes to it
    agree(engine, BEN)
    assert engine.speaker_request(BEN, "Which jacket should I buy?") is None
    assert engine.speaker_request(BEN, "Yes") is None


def test_no_offer_without_a_consent_store(embedder, clock):
    memory = EthicsEngine(EthicsConfig(store_dir=None, clock=clock), embedder=embedder).load()
    assert agree(memory, ANNA).follow_up == ""
    assert not memory.persist(ANNA)


def test_forget_removes_a_session_person_too(engine):
    agree(engine, ANNA)
    assert engine.forget(ANNA) and engine.consents(ANNA) == ()
    assert engine.speaker_request(ANNA, "Yes") is None  # the offer went with them


def test_a_vanished_store_directory_is_a_store_error(tmp_path):
    directory = tmp_path / "consent"
    store = ConsentStore(directory).open()
    directory.rmdir()
    directory.write_text("not a directory any more")
    with pytest.raises(StoreError):
        store.update("alice", pending=None)
    with pytest.raises(StoreError):
        store.history("alice")


def test_persist_failure_keeps_the_record_in_memory(tmp_path):
    directory = tmp_path / "consent"
    store = ConsentStore(directory, volatile=lambda uid: uid.startswith("p")).open()
    store.update(ANNA, pending=None)
    assert store.in_memory(ANNA) and not list(directory.iterdir())
    directory.rmdir()
    directory.write_text("in the way")
    with pytest.raises(StoreError):
        store.persist(ANNA)
    assert store.in_memory(ANNA) and store.history(ANNA) == ()
