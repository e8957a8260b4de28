"""Consent memory: survives restarts and crashes, forgets on request, ids never escape, corruption
is contained."""

import json
import logging
import os
import re
import stat

import pytest

from uservlm_ros.engines import files as files_module
from uservlm_ros.engines.ethics.consent import Consent, ConsentStore, StoreError, user_key
from uservlm_ros.engines.ethics.engine import ALLOW, CLARIFY, GENERIC, EthicsConfig, EthicsEngine

FACE = {"age": "60-69", "gender": "female", "ethnicity": "latino", "emotion": "sad"}
RECORD = re.compile(r"^[0-9a-f]{64}\.json$")


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "consent"


@pytest.fixture
def start(embedder, store_dir):
    def start_engine():
        return EthicsEngine(EthicsConfig(store_dir=store_dir), embedder=embedder).load()

    return start_engine


def agree_to_food(engine, user="lea", reply="I'm vegan"):
    assert engine.review("What should I eat for lunch today?", user, FACE).decision == CLARIFY
    return engine.resolve_reply(user, reply)


def test_consent_survives_an_engine_restart(start, store_dir):
    agree_to_food(start())
    restarted = start()
    assert [(c.scope, c.status, c.statement) for c in restarted.consents("lea")] == [
        ("topic:food", "stated", "I'm vegan")
    ]
    review = restarted.review("Suggest a dessert I might like.", "lea", FACE)
    assert review.decision == ALLOW and review.user_context == "The user said: I'm vegan."
    assert [p.name for p in store_dir.iterdir()] == [f"{user_key('lea')}.json"]
    assert stat.S_IMODE(os.stat(store_dir / f"{user_key('lea')}.json").st_mode) == 0o600


def test_a_pending_question_survives_a_restart(start):
    start().review("What should I wear to a wedding?", "lea", FACE)
    resolution = start().resolve_reply("lea", "yes")
    assert (
        resolution.original_question == "What should I wear to a wedding?"
        and resolution.decision == ALLOW
    )


def test_forget_removes_the_person_entirely(start, store_dir):
    engine = start()
    agree_to_food(engine)
    agree_to_food(engine, "max")
    engine.review("What should I wear to a wedding?", "lea", FACE)  # a pending question too
    (store_dir / f"{user_key('lea')}.json.corrupt-20250101T000000Z").write_text(
        "an old corrupt copy"
    )
    assert engine.forget("lea") is True
    assert (
        engine.consents("lea") == ()
        and engine.pending("lea") is None
        and engine.history("lea") == ()
    )
    assert [p.name for p in store_dir.iterdir()] == [f"{user_key('max')}.json"]
    assert start().review("What should I eat for lunch today?", "lea", FACE).decision == CLARIFY
    assert engine.forget("lea") is True  # the new pending question
    assert engine.forget("lea") is False


@pytest.mark.parametrize(
    "user",
    [
        "../escape",
        "../../etc/passwd",
        "a/b",
        "/abs/path",
        "nul\x00byte",
        "..",
        ".",
        "~",
        "C:\\windows",
        "emoji \U0001f600",
        "lone \ud800 surrogate",
        "x" * 1024,
    ],
)
def test_user_ids_are_data_not_paths(start, store_dir, tmp_path, user):
    engine = start()
    agree_to_food(engine, user, "yes")
    assert [c.scope for c in engine.consents(user)] == ["topic:food"]
    assert all(RECORD.match(p.name) for p in store_dir.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "consent"
    ]  # nothing written beside the store
    record = json.loads((store_dir / f"{user_key(user)}.json").read_text())
    assert record["user_id"] == user
    assert start().consents(user) == engine.consents(user)
    # similar-looking ids are different people
    assert engine.consents("!" + user.replace("/", "_")[:1000]) == ()


def test_a_corrupt_record_at_start_is_moved_aside_and_nothing_else_is_lost(
    start, store_dir, caplog
):
    agree_to_food(start(), "max")
    bad = store_dir / f"{user_key('lea')}.json"
    bad.write_bytes(b"\x00\xff{not json")
    wrong = store_dir / f"{'0' * 64}.json"  # valid JSON, but not a consent record
    wrong.write_text(
        json.dumps({"format": 1, "user_id": "someone", "events": "nope", "pending": None})
    )
    with caplog.at_level(logging.WARNING, logger="uservlm_ros.engines.ethics.consent"):
        engine = start()
    moved = sorted(p.name for p in store_dir.glob("*.corrupt-*"))
    assert len(moved) == 2 and all(
        re.search(r"\.json\.corrupt-\d{8}T\d{6}Z$", name) for name in moved
    )
    assert len(engine.moved_aside) == 2
    assert "corrupt" in caplog.text and "moved aside" in caplog.text
    assert [c.scope for c in engine.consents("max")] == ["topic:food"]  # untouched
    assert engine.consents("lea") == ()
    assert agree_to_food(engine, "lea").decision == ALLOW  # and the engine works on


def test_a_record_corrupted_while_running_is_moved_aside(start, store_dir, caplog):
    engine = start()
    agree_to_food(engine)
    (store_dir / f"{user_key('lea')}.json").write_text('{"format": 1, "truncated')
    with caplog.at_level(logging.WARNING, logger="uservlm_ros.engines.ethics.consent"):
        assert engine.consents("lea") == ()
    assert "corrupt" in caplog.text and len(list(store_dir.glob("*.corrupt-*"))) == 1


def test_a_store_path_that_is_a_file_is_moved_aside(start, store_dir, caplog):
    store_dir.write_bytes(b"SQLite format 3\x00 garbage")
    with caplog.at_level(logging.WARNING):
        engine = start()
    assert store_dir.is_dir() and len(list(store_dir.parent.glob("consent.corrupt-*"))) == 1
    assert agree_to_food(engine).decision == ALLOW


def test_a_crash_mid_write_keeps_the_old_record(start, store_dir, monkeypatch):
    engine = start()
    agree_to_food(engine)
    before = (store_dir / f"{user_key('lea')}.json").read_bytes()

    def power_cut(*_):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files_module.os, "replace", power_cut)
    with pytest.raises(StoreError):
        engine._store.update("lea", pending=None)
    # the review itself answers: nothing can be recorded, so nothing is asked (generic)
    review = engine.review("What should I wear to a wedding?", "lea", FACE)
    assert review.decision == GENERIC and "consent store unavailable" in review.reason
    monkeypatch.undo()
    assert (store_dir / f"{user_key('lea')}.json").read_bytes() == before
    assert [p.name for p in store_dir.iterdir()] == [
        f"{user_key('lea')}.json"
    ]  # no temporary left
    # a process killed between write and rename leaves a temporary: ignored, then removed at start
    leftover = store_dir / f".{user_key('lea')}.json.1234.5678.tmp"
    leftover.write_text('{"format": 1, "user_id": "lea", "ev')
    restarted = start()
    assert not leftover.exists()
    assert [c.statement for c in restarted.consents("lea")] == ["I'm vegan"]


def test_history_is_capped_and_latest_wins(tmp_path):
    now = [1000.0]
    store = ConsentStore(tmp_path, max_events=3, clock=lambda: now[0]).open()
    for i, status in enumerate(["granted", "declined", "granted", "declined", "stated"]):
        now[0] += 1
        store.update("lea", [Consent("topic:food", status, f"#{i}", now[0], now[0] + 100)])
    assert [c.statement for c in store.history("lea")] == ["#2", "#3", "#4"]
    assert store.current("lea")["topic:food"].status == "stated"
    now[0] += 1000
    assert (
        store.current("lea") == {} and len(store.history("lea")) == 3
    )  # expired, still on record


def test_anonymous_ids_are_refused_by_the_store(tmp_path):
    store = ConsentStore(tmp_path).open()
    with pytest.raises(ValueError, match="anonymous"):
        store.update("", [Consent("topic:food", "granted", "", 1.0, 2.0)])
    assert list(tmp_path.iterdir()) == []


def test_memory_store_when_no_directory(embedder):
    engine = EthicsEngine(EthicsConfig(store_dir=None), embedder=embedder).load()
    assert agree_to_food(engine).decision == ALLOW
    assert engine.forget("lea") is True and engine.consents("lea") == ()
