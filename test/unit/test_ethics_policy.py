"""The policy file (complete, commented, validated), the reply reader, and the labelled question
set."""

import re
from pathlib import Path

import pytest
import yaml

from uservlm_ros.engines.ethics.evaluation import load_questions
from uservlm_ros.engines.ethics.policy import PolicyError, default_policy_path, load_policy
from uservlm_ros.engines.ethics.replies import read_reply
from uservlm_ros.engines.ethics.text import normalize


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_shipped_policy(policy):
    assert {"age", "gender", "ethnicity", "emotion"} <= {
        a for a, s in policy.attributes.items() if s.sensitive
    }
    assert {
        "food",
        "travel",
        "clothing",
        "sport",
        "films",
        "music",
        "careers",
        "health",
        "relationships",
        "religion",
        "money",
    } <= set(policy.topics)
    for topic in policy.topics.values():
        assert topic.examples and topic.keywords and topic.attributes
        assert (topic.clarifying_question or policy.default_clarifying_question).format(
            attributes="age"
        )
    assert policy.expiry.pending_seconds > 0 and policy.expiry.granted_seconds > 0


def test_every_key_has_a_comment_above_it():
    lines = default_policy_path().read_text().splitlines()
    for number, line in enumerate(lines):
        # keys at the first two levels: "key:" at column 0 or 2
        if re.match(r"^( {2})?[\"A-Za-z_*][^:#]*:( |$)", line) and not line.lstrip().startswith(
            "-"
        ):
            above = lines[number - 1].strip()
            assert above.startswith("#"), (
                f"line {number + 1} ({line.strip()}) has no comment above it"
            )


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(default_policy_path().read_text())
    mutate(raw)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda p: p["topics"]["food"].__setitem__("attributes", ["etnicity"]),
            "topics.food.attributes: unknown attribute",
        ),
        (
            lambda p: p["rules"]["request"].append("(unclosed"),
            r"rules.request\[\d+\]: bad pattern",
        ),
        (lambda p: p.__setitem__("version", 2), "version"),
        (lambda p: p["expiry"].__setitem__("granted_dayz", 3), "expiry: unknown key"),
        (
            lambda p: p["expiry"].__setitem__("pending_seconds", "soon"),
            "expiry.pending_seconds: expected a number",
        ),
        (
            lambda p: p["attributes"]["age"].__setitem__("needs_consent", "yes"),
            "attributes.age.needs_consent",
        ),
        (
            lambda p: p["topics"]["food"].__setitem__("clarifying_question", "Hi {name}"),
            "only {attributes}",
        ),
        (lambda p: p.pop("topics"), "missing topics"),
    ],
)
def test_bad_policies_name_the_key(tmp_path, mutate, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(_write(tmp_path, mutate))


def test_missing_or_unreadable_policy(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("topics: [unclosed")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "broken.yaml")


@pytest.mark.parametrize(
    "reply, kind, declined",
    [
        ("yes", "yes", ()),
        ("Sure, why not", "yes", ()),
        ("I'd like that", "yes", ()),
        ("oui", "yes", ()),
        ("no", "no", ()),
        ("Nope.", "no", ()),
        ("no thanks", "no", ()),
        ("keep it general please", "no", ()),
        ("No, don't use that", "no", ()),
        ("yes... actually no", "no", ()),
        ("no, wait, yes", "yes", ()),
        ("I'm vegetarian", "statement", ()),
        ("no, I don't eat pork", "statement", ()),
        ("Italian food please", "statement", ()),
        ("No meat", "statement", ()),
        ("Yes, I love spicy food", "yes", ()),
        ("yes but don't use my age", "yes", ("age",)),
        ("don't use my gender or my age", "attributes_only", ("age", "gender")),
        ("I don't mind you using my age", "yes", ()),
        ("hmm", "unclear", ()),
        ("I don't know", "unclear", ()),
        ("", "unclear", ()),
        ("はい", "unclear", ()),
    ],
)
def test_reading_replies(policy, reply, kind, declined):
    reading = read_reply(policy, reply)
    assert reading.kind == kind, reading.evidence
    assert set(reading.declined_attributes) == set(declined)


def test_refusing_my_looks_refuses_every_protected_attribute(policy):
    reading = read_reply(policy, "please don't judge by my appearance")
    assert set(reading.declined_attributes) == {
        a for a, s in policy.attributes.items() if s.needs_consent
    }


def test_the_labelled_questions(policy):
    examples = load_questions()
    assert len(examples) >= 200
    tune = [e for e in examples if e.split == "tune"]
    assert 0.55 <= len(tune) / len(examples) <= 0.65
    for split in ("tune", "heldout"):
        labels = {e.label for e in examples if e.split == split}
        assert labels == {"clarify", "no_clarify"}
    assert len({e.question for e in examples}) == len(examples)
    kinds = {e.kind for e in examples if e.label == "no_clarify"}
    assert {"factual", "personal_not_inferred", "self_disclosed", "third_party"} <= kinds
    assert {e.topic for e in examples} - {"none"} <= set(policy.topics)


def test_no_evaluation_question_is_a_prototype(policy):
    prototypes = {normalize(s) for t in policy.topics.values() for s in t.examples} | {
        normalize(s) for s in policy.neutral_examples
    }
    leaked = [e.question for e in load_questions() if normalize(e.question) in prototypes]
    assert leaked == []
