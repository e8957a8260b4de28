"""Ethics engine decisions on representative questions, and every bad question input."""

import numpy as np
import pytest

from uservlm_ros.engines.ethics.engine import ALLOW, CLARIFY, GENERIC, EthicsConfig, EthicsEngine

FACE = {"age": "30-39", "gender": "female", "ethnicity": "east asian", "emotion": "happy"}


@pytest.fixture
def engine(embedder, tmp_path):
    return EthicsEngine(EthicsConfig(store_dir=tmp_path / "consent"), embedder=embedder).load()


@pytest.mark.parametrize(
    "question, topic, leans_on",
    [
        ("Give me a food recommendation for lunch", "food", "ethnicity"),
        ("Recommend me a country not far from here to travel", "travel", "ethnicity"),
        ("What should I wear to a business meeting?", "clothing", "gender"),
        ("Which sport do you suggest me to do?", "sport", "age"),
        ("Recommend me a movie, and tell me why?", "films", "age"),
        ("How should I plan for my retirement?", "money", "age"),
    ],
)
def test_personal_requests_are_clarified_first(engine, question, topic, leans_on):
    review = engine.review(question, "ana", FACE)
    assert review.decision == CLARIFY, review.reason
    assert review.topic == topic
    assert leans_on in review.attributes and leans_on in review.sensitive
    assert review.clarifying_question and review.pending and review.inferred_allowed == ()
    assert engine.pending("ana").question == question
    # the reason names the evidence: the closest example with its similarity, and the fired rules
    assert (
        "closest example" in review.reason
        and "similarity" in review.reason
        and "score" in review.reason
    )


@pytest.mark.parametrize(
    "question",
    [
        "What is the history of sushi?",
        "Who invented pizza?",
        "When is Ramadan this year?",
        "What time is it?",
        "Tell me a joke.",
        "How many players are on a basketball team?",
    ],
)
def test_facts_and_chat_are_answered_as_usual(engine, question):
    review = engine.review(question, "ana", FACE)
    assert review.decision == ALLOW, review.reason
    assert not review.pending and engine.pending("ana") is None


def test_questions_about_someone_else_do_not_lean_on_the_asker(engine):
    review = engine.review("Recommend a movie for my kids.", "ana", FACE)
    assert review.decision == GENERIC
    assert "someone else" in review.reason and "'for my kids'" in review.reason
    assert review.inferred_allowed == ()


def test_a_stated_preference_is_used_instead_of_the_face(engine):
    review = engine.review("I'm vegetarian, what should I eat for dinner?", "ana", FACE)
    assert review.decision == ALLOW
    assert "self_disclosure 'i'm vegetarian'" in review.reason
    assert not set(review.inferred_allowed) & {"ethnicity", "age", "gender"}
    assert engine.pending("ana") is None


def test_an_explicit_invitation_to_judge_from_appearance_is_allowed(engine):
    assert engine.review("How old do you think I am?", "ana", FACE).decision == ALLOW
    review = engine.review("Based on my appearance, which sport would suit me?", "ana", FACE)
    assert (
        review.decision == ALLOW and "invites_inference 'based on my appearance'" in review.reason
    )
    assert {"age", "gender"} <= set(review.inferred_allowed)


def test_anonymous_users_get_generic_answers_and_nothing_is_stored(engine, tmp_path):
    for anonymous in ("", None, "   "):
        review = engine.review("What should I eat for lunch today?", anonymous, FACE)
        assert review.decision == GENERIC and "anonymous" in review.reason
        assert not review.pending and engine.pending(anonymous) is None
        assert engine.resolve_reply(anonymous, "yes") is None
        assert engine.consents(anonymous) == () and engine.forget(anonymous) is False
    assert list((tmp_path / "consent").iterdir()) == []


def test_only_inferred_attributes_count(engine):
    # no face in view: nothing to lean on
    assert engine.review("What should I eat for lunch?", "ana", {}).decision == ALLOW
    # only the clothes are seen, which the policy does not protect
    review = engine.review("What should I wear to a wedding?", "ana", {"attire": "suit"})
    assert review.decision == ALLOW and review.inferred_allowed == ("attire",)
    # an unknown perception (None) assumes everything could be inferred
    review = engine.review("What should I wear to a wedding?", "bo", None)
    assert review.decision == CLARIFY and {"gender", "age", "ethnicity"} <= set(review.attributes)


def test_inferred_values_are_never_spoken_or_stored(engine, tmp_path):
    secret = "ZZ-SECRET-ETHNICITY-VALUE"
    face = {
        "ethnicity": secret,
        "age": b"\x89PNG\r\n\x1a\n fake image bytes",
        "face_crop": np.full((4, 4, 3), 7, dtype=np.uint8),
        42: "non-string key",
    }
    review = engine.review("Which cuisine should I try next?", "ana", face)
    assert review.decision == CLARIFY
    assert secret not in review.clarifying_question + review.reason
    resolution = engine.resolve_reply("ana", "yes please")
    assert secret not in resolution.reason + resolution.user_context
    stored = b"".join(p.read_bytes() for p in (tmp_path / "consent").iterdir())
    assert (
        stored
        and secret.encode() not in stored
        and b"PNG" not in stored
        and b"face_crop" not in stored
    )


@pytest.mark.parametrize("question", ["", "   ", "\x00\x00", "\n\t"])
def test_empty_questions(engine, question):
    review = engine.review(question, "ana", FACE)
    assert review.decision == GENERIC and "empty" in review.reason


def test_very_long_questions_are_cut(engine):
    review = engine.review("What should I eat for lunch? " + "blah " * 5000, "ana", FACE)
    assert review.decision == CLARIFY and "cut to 500 characters" in review.reason
    assert len(engine.pending("ana").question) <= 500


def test_wrong_types_are_refused_with_a_message(engine):
    with pytest.raises(TypeError, match="question"):
        engine.review(42, "ana")
    with pytest.raises(TypeError, match="user_id"):
        engine.review("hello", 7)
    with pytest.raises(TypeError, match="inferred"):
        engine.review("hello", "ana", ["age"])
    with pytest.raises(ValueError, match="longer than"):
        engine.review("hello", "x" * 5000)


def test_review_before_load_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="load"):
        EthicsEngine(EthicsConfig(store_dir=tmp_path)).review("hi", "ana")


def test_rules_only_mode_needs_no_model(tmp_path):
    engine = EthicsEngine(EthicsConfig(store_dir=tmp_path, use_embeddings=False)).load()
    review = engine.review("What should I eat for lunch today?", "ana", FACE)
    assert review.decision == CLARIFY and "rules-only" in review.reason
    assert engine.review("Who invented pizza?", "ana", FACE).decision == ALLOW
