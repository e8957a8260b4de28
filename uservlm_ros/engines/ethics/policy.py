"""Load and validate the ethics policy (config/ethics_policy.yaml) into frozen dataclasses.

Every key is checked when the file is read, so a typo fails at start-up with the key's path in the
message (``topics.food.attributes: unknown attribute 'etnicity'``) instead of silently changing
what the robot asks.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_VERSION = 1
RULE_SETS = ("request", "factual", "third_party", "self_disclosure", "invites_inference")
ALL_ATTRIBUTES = "*"  # in replies.attribute_words: words that refuse every attribute ("my face")


class PolicyError(ValueError):
    """The policy file is missing, unreadable or has a wrong key or value."""


@dataclass(frozen=True)
class Rule:
    """One named pattern; ``source`` is what a reason quotes."""

    name: str
    source: str
    pattern: re.Pattern

    def search(self, text: str) -> re.Match | None:
        return self.pattern.search(text)


@dataclass(frozen=True)
class Attribute:
    name: str
    sensitive: bool
    needs_consent: bool
    label: str


@dataclass(frozen=True)
class Topic:
    name: str
    attributes: tuple[str, ...]
    keywords: tuple[Rule, ...]
    examples: tuple[str, ...]
    disclosures: tuple[Rule, ...]
    clarifying_question: str


@dataclass(frozen=True)
class Expiry:
    granted_seconds: float
    declined_seconds: float
    pending_seconds: float


@dataclass(frozen=True)
class Limits:
    max_question_chars: int
    max_reply_chars: int
    max_statement_chars: int
    max_events_per_user: int


@dataclass(frozen=True)
class ClassifierSettings:
    bias: float
    request: float
    first_person: float
    factual: float
    margin: float
    min_topic_score: float
    keyword_bonus: float
    model_path: str


@dataclass(frozen=True)
class ReplyRules:
    yes: tuple[Rule, ...]
    no: tuple[Rule, ...]
    decline: tuple[Rule, ...]
    statement: tuple[Rule, ...]
    attribute_words: dict[str, tuple[Rule, ...]]
    attribute_decline: tuple[Rule, ...]


@dataclass(frozen=True)
class Policy:
    source: str
    digest: str
    attributes: dict[str, Attribute]
    expiry: Expiry
    limits: Limits
    classifier: ClassifierSettings
    rules: dict[str, tuple[Rule, ...]]
    replies: ReplyRules
    default_clarifying_question: str
    neutral_examples: tuple[str, ...]
    topics: dict[str, Topic]

    def consent_attributes(self, names) -> tuple[str, ...]:
        """The attributes among ``names`` that need consent, in the given order."""
        return tuple(n for n in names if self.attributes[n].needs_consent)

    def labels(self, names) -> str:
        """'age, gender and mood' for ('age', 'gender', 'emotion')."""
        words = [self.attributes[n].label for n in names]
        if len(words) <= 1:
            return "".join(words)
        return ", ".join(words[:-1]) + " and " + words[-1]


def default_policy_path() -> Path:
    """The policy shipped with the package: the source tree first, then the installed share dir."""
    candidates = [
        Path(__file__).resolve().parents[3] / "config" / "ethics_policy.yaml",
        Path(sys.prefix) / "share" / "uservlm_ros" / "config" / "ethics_policy.yaml",
    ]
    try:  # a colcon install: the share directory is found through the ament index
        from ament_index_python.packages import get_package_share_directory

        candidates.append(
            Path(get_package_share_directory("uservlm_ros")) / "config" / "ethics_policy.yaml"
        )
    except Exception:  # noqa: BLE001 - not installed with colcon, or ament_index missing
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise PolicyError("ethics_policy.yaml not found; looked in " + ", ".join(map(str, candidates)))


def load_policy(path: str | Path | None = None) -> Policy:
    path = Path(path) if path else default_policy_path()
    try:
        raw_bytes = path.read_bytes()
        raw = yaml.safe_load(raw_bytes)
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    try:
        return _build(raw, str(path), hashlib.sha256(raw_bytes).hexdigest()[:12])
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


# --- validation helpers -------------------------------------------------------------------------


def _mapping(
    value: Any, key: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict:
    if not isinstance(value, dict):
        raise PolicyError(f"{key}: expected a mapping, got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise PolicyError(f"{key}: missing {', '.join(missing)}")
    if required or optional:
        unknown = [str(k) for k in value if k not in required + optional]
        if unknown:
            raise PolicyError(f"{key}: unknown key(s) {', '.join(unknown)}")
    return value


def _number(value: Any, key: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{key}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise PolicyError(f"{key}: must be >= {minimum}, got {value}")
    return float(value)


def _text(value: Any, key: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise PolicyError(f"{key}: expected a non-empty string, got {value!r}")
    return " ".join(value.split()) if value else value


def _texts(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{key}: expected a non-empty list")
    return tuple(_text(v, f"{key}[{i}]") for i, v in enumerate(value))


def _compile(
    source: str, key: str, name: str, word_lists: dict[str, str], whole_word: bool = False
) -> Rule:
    expanded = source
    for list_name, alternation in word_lists.items():
        expanded = expanded.replace("{" + list_name + "}", alternation)
    if whole_word:
        expanded = r"\b(?:" + expanded + r")\b"
    try:
        return Rule(name, source, re.compile(expanded))
    except re.error as exc:
        raise PolicyError(f"{key}: bad pattern {source!r}: {exc}") from None


def _rules(
    value: Any, key: str, name: str, word_lists: dict[str, str], whole_word: bool = False
) -> tuple[Rule, ...]:
    return tuple(
        _compile(s, f"{key}[{i}]", name, word_lists, whole_word)
        for i, s in enumerate(_texts(value, key))
    )


def _template(value: Any, key: str) -> str:
    text = _text(value, key)
    try:
        text.format(attributes="age")
    except (KeyError, IndexError, ValueError) as exc:
        raise PolicyError(
            f"{key}: only {{attributes}} may be used in a template ({exc})"
        ) from None
    return text


def _build(raw: Any, source: str, digest: str) -> Policy:
    top = _mapping(
        raw,
        "policy",
        required=(
            "version",
            "attributes",
            "expiry",
            "limits",
            "classifier",
            "word_lists",
            "rules",
            "replies",
            "default_clarifying_question",
            "neutral_examples",
            "topics",
        ),
    )
    if top["version"] != SUPPORTED_VERSION:
        raise PolicyError(
            f"version: this engine reads version {SUPPORTED_VERSION}, file is {top['version']!r}"
        )

    attributes = {}
    for name, spec in _mapping(top["attributes"], "attributes").items():
        key = f"attributes.{name}"
        spec = _mapping(spec, key, required=("sensitive", "needs_consent", "label"))
        for flag in ("sensitive", "needs_consent"):
            if not isinstance(spec[flag], bool):
                raise PolicyError(f"{key}.{flag}: expected true or false")
        attributes[str(name)] = Attribute(
            str(name),
            spec["sensitive"],
            spec["needs_consent"],
            _text(spec["label"], f"{key}.label"),
        )
    if not attributes:
        raise PolicyError("attributes: empty")

    exp = _mapping(
        top["expiry"], "expiry", required=("granted_days", "declined_days", "pending_seconds")
    )
    expiry = Expiry(
        _number(exp["granted_days"], "expiry.granted_days", 0) * 86400,
        _number(exp["declined_days"], "expiry.declined_days", 0) * 86400,
        _number(exp["pending_seconds"], "expiry.pending_seconds", 1),
    )

    lim = _mapping(
        top["limits"],
        "limits",
        required=(
            "max_question_chars",
            "max_reply_chars",
            "max_statement_chars",
            "max_events_per_user",
        ),
    )
    limits = Limits(
        *(
            int(_number(lim[k], f"limits.{k}", 1))
            for k in (
                "max_question_chars",
                "max_reply_chars",
                "max_statement_chars",
                "max_events_per_user",
            )
        )
    )

    cls_keys = (
        "bias",
        "request",
        "first_person",
        "factual",
        "margin",
        "min_topic_score",
        "keyword_bonus",
    )
    cls = _mapping(top["classifier"], "classifier", required=cls_keys + ("model_path",))
    classifier = ClassifierSettings(
        *(_number(cls[k], f"classifier.{k}") for k in cls_keys),
        model_path=_text(cls["model_path"] or "", "classifier.model_path", True),
    )

    word_lists = {
        name: "(?:" + "|".join(_texts(words, f"word_lists.{name}")) + ")"
        for name, words in _mapping(top["word_lists"], "word_lists").items()
    }

    rules_raw = _mapping(top["rules"], "rules", required=RULE_SETS)
    rules = {
        name: _rules(rules_raw[name], f"rules.{name}", name, word_lists) for name in RULE_SETS
    }

    rep = _mapping(
        top["replies"],
        "replies",
        required=("yes", "no", "decline", "statement", "attribute_words", "attribute_decline"),
    )
    attr_words = {}
    for name, patterns in _mapping(rep["attribute_words"], "replies.attribute_words").items():
        if name != ALL_ATTRIBUTES and name not in attributes:
            raise PolicyError(f"replies.attribute_words: unknown attribute {name!r}")
        attr_words[str(name)] = _rules(
            patterns, f"replies.attribute_words.{name}", f"attribute:{name}", word_lists
        )
    replies = ReplyRules(
        *(
            _rules(rep[k], f"replies.{k}", k, word_lists)
            for k in ("yes", "no", "decline", "statement")
        ),
        attribute_words=attr_words,
        attribute_decline=_rules(
            rep["attribute_decline"], "replies.attribute_decline", "attribute_decline", word_lists
        ),
    )

    topics = {}
    for name, spec in _mapping(top["topics"], "topics").items():
        key = f"topics.{name}"
        spec = _mapping(
            spec,
            key,
            required=("attributes", "keywords", "examples"),
            optional=("disclosures", "clarifying_question"),
        )
        leans_on = _texts(spec["attributes"], f"{key}.attributes")
        for attr in leans_on:
            if attr not in attributes:
                raise PolicyError(f"{key}.attributes: unknown attribute {attr!r}")
        topics[str(name)] = Topic(
            name=str(name),
            attributes=leans_on,
            keywords=_rules(
                spec["keywords"], f"{key}.keywords", f"keyword:{name}", word_lists, whole_word=True
            ),
            examples=_texts(spec["examples"], f"{key}.examples"),
            disclosures=(
                _rules(spec["disclosures"], f"{key}.disclosures", f"disclosure:{name}", word_lists)
                if spec.get("disclosures")
                else ()
            ),
            clarifying_question=(
                _template(spec["clarifying_question"], f"{key}.clarifying_question")
                if spec.get("clarifying_question")
                else ""
            ),
        )
    if not topics:
        raise PolicyError("topics: empty")

    return Policy(
        source=source,
        digest=digest,
        attributes=attributes,
        expiry=expiry,
        limits=limits,
        classifier=classifier,
        rules=rules,
        replies=replies,
        default_clarifying_question=_template(
            top["default_clarifying_question"], "default_clarifying_question"
        ),
        neutral_examples=_texts(top["neutral_examples"], "neutral_examples"),
        topics=topics,
    )
