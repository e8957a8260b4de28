"""clarify -> reply -> answer, at engine level: statements, yes, no, unclear, contradictions,
expiry."""

import pytest

from settable_clock import Clock
from uservlm_ros.engines.ethics.engine import ALLOW, CLARIFY, GENERIC, EthicsConfig, EthicsEngine

FACE = {"age": "30-39", "gender": "male", "ethnicity": "middle eastern", "emotion": "neutral"}
DAY = 86400.0


@pytest.fixture
def clock():
    return Clock(1_750_000_000.0)


@pytest.fixture
def engine(embedder, tmp_path, clock):
    return EthicsEngine(
        EthicsConfig(store_dir=tmp_path / "consent", clock=clock), embedder=embedder
    ).load()


def test_statement_reply_personalises_with_the_persons_words(engine):
    review = engine.review("What should I eat tonight?", "sam", FACE)
    assert review.decision == CLARIFY and "dietary" in review.clarifying_question
    resolution = engine.resolve_reply("sam", "I'm vegetarian")
    assert resolution.original_question == "What should I eat tonight?"
    assert resolution.decision == ALLOW and resolution.reply_kind == "statement"
    assert resolution.user_context == "The user said: I'm vegetarian."
    assert resolution.inferred_allowed == ()  # their words, not their face
    assert engine.pending("sam") is None
    (consent,) = engine.consents("sam")
    assert (consent.scope, consent.status, consent.statement) == (
        "topic:food",
        "stated",
        "I'm vegetarian",
    )
    # the next food question is answered straight away, with what they said
    again = engine.review("Any lunch ideas for me?", "sam", FACE)
    assert again.decision == ALLOW and again.user_context == "The user said: I'm vegetarian."
    assert "told me their preference" in again.reason


def test_yes_allows_the_inferred_attributes(engine):
    engine.review("What should I wear to a business meeting?", "sam", FACE)
    resolution = engine.resolve_reply("sam", "Yes, go ahead")
    assert resolution.decision == ALLOW and resolution.reply_kind == "yes"
    assert {"gender", "age"} <= set(resolution.inferred_allowed)
    assert engine.review("Which jacket should I buy?", "sam", FACE).decision == ALLOW


def test_no_means_generic_now_and_later(engine):
    engine.review("Where should I go on vacation this summer?", "sam", FACE)
    resolution = engine.resolve_reply("sam", "No, don't use that")
    assert resolution.decision == GENERIC and resolution.reply_kind == "no"
    assert resolution.inferred_allowed == ()
    later = engine.review("Which city would you suggest for a weekend trip?", "sam", FACE)
    assert later.decision == GENERIC and "said no" in later.reason and not later.pending


def test_yes_but_not_my_age(engine):
    engine.review("What should I wear to a wedding?", "sam", FACE)
    resolution = engine.resolve_reply("sam", "Yes, but don't use my age")
    assert resolution.decision == ALLOW and "age" not in resolution.inferred_allowed
    assert "gender" in resolution.inferred_allowed and "refused age" in resolution.reason
    scopes = {c.scope: c.status for c in engine.consents("sam")}
    assert scopes == {"topic:clothing": "granted", "attribute:age": "declined"}
    # an attribute refusal holds across topics
    engine.review("What film should I watch tonight?", "sam", FACE)
    assert "age" not in engine.resolve_reply("sam", "sure").inferred_allowed


@pytest.mark.parametrize(
    "reply",
    [
        "はい、お願いします",
        "hmm",
        "",
        "I don't know",
        "maybe later?",
        "\x00\x01\x02",
        "blah " * 3000,
    ],
)
def test_unclear_replies_are_not_consent(engine, reply):
    engine.review("Recommend me a song", "sam", FACE)
    resolution = engine.resolve_reply(
        "sam", reply, language="ja" if reply.startswith("は") else None
    )
    assert resolution.decision == GENERIC and resolution.reply_kind == "unclear"
    assert "not treated as consent" in resolution.reason
    assert engine.consents("sam") == ()  # nothing recorded: the robot will ask again next time
    assert engine.pending("sam") is None
    if len(reply) > 300:
        assert "reply cut to 300 characters" in resolution.reason


def test_yes_in_another_supported_language(engine):
    engine.review("Recommend me a song", "sam", FACE)
    assert engine.resolve_reply("sam", "Oui, bien sûr", language="fr").decision == ALLOW


def test_within_a_reply_the_last_word_wins(engine):
    engine.review("Recommend me a song", "sam", FACE)
    resolution = engine.resolve_reply("sam", "Yes... actually no")
    assert resolution.decision == GENERIC and "last yes/no cue 'no' of 2" in resolution.reason


def test_across_replies_the_latest_wins_and_history_keeps_both(engine, clock):
    engine.review("Which sport do you suggest me to do?", "sam", FACE)
    assert engine.resolve_reply("sam", "yes").decision == ALLOW
    clock.now += 91 * DAY  # the yes expired: ask again
    assert engine.review("What sport should I take up?", "sam", FACE).decision == CLARIFY
    assert engine.resolve_reply("sam", "no thanks").decision == GENERIC
    assert [(c.scope, c.status) for c in engine.consents("sam")] == [("topic:sport", "declined")]
    history = engine.history("sam")
    assert [(c.status, c.expires_at > clock.now) for c in history] == [
        ("granted", False),
        ("declined", True),
    ]
    # a later refusal of everything visible overrides an earlier topic-level yes
    engine.review("What should I eat for lunch?", "sam", FACE)
    engine.resolve_reply("sam", "yes")
    engine.review("What should I wear to a party?", "sam", FACE)
    engine.resolve_reply("sam", "please don't use my looks")
    assert engine.review("Suggest a dessert I might like.", "sam", FACE).decision == GENERIC


def test_pending_clarifications_expire(engine, clock):
    engine.review("What should I eat for lunch?", "sam", FACE)
    clock.now += 121
    assert engine.pending("sam") is None
    assert engine.resolve_reply("sam", "yes") is None  # not a reply any more: a new question
    assert engine.consents("sam") == ()


def test_a_new_question_drops_the_unanswered_clarification(engine):
    engine.review("What should I eat for lunch?", "sam", FACE)
    assert engine.review("What time is it?", "sam", FACE).decision == ALLOW
    assert engine.pending("sam") is None


def test_replies_without_a_pending_question(engine):
    assert engine.resolve_reply("never-seen", "yes") is None
    assert engine.consents("never-seen") == () and engine.history("never-seen") == ()
    assert engine.forget("never-seen") is False


def test_a_new_statement_in_the_question_beats_an_old_one(engine):
    engine.review("What should I eat tonight?", "sam", FACE)
    engine.resolve_reply("sam", "I'm vegetarian")
    review = engine.review(
        "I'm not vegetarian any more, I love steak, what should I eat?", "sam", FACE
    )
    assert (
        review.decision == ALLOW and review.user_context == ""
    )  # the question carries their words
    assert "self_disclosure" in review.reason
