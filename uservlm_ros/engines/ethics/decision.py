"""From what a question needs and what a person has told us to allow / clarify / generic.

* ``allow``: answer as usual; the answer may lean on ``inferred_allowed`` and on ``user_context``
  (the person's own words).
* ``clarify``: ask the clarifying question first; nothing may be assumed yet.
* ``generic``: answer without leaning on any attribute that needs consent; ``inferred_allowed``
  lists what may still be used (attributes the policy does not protect, e.g. the clothes worn).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from uservlm_ros.engines.ethics.consent import DECLINED, GRANTED, STATED, Consent
from uservlm_ros.engines.ethics.policy import Policy
from uservlm_ros.engines.ethics.text import clean, clip

ALLOW, CLARIFY, GENERIC = "allow", "clarify", "generic"


@dataclass(frozen=True)
class Outcome:
    decision: str
    reason: str
    user_context: str = ""
    inferred_allowed: tuple[str, ...] = ()


def in_play(policy: Policy, topic: str, inferred: dict | None) -> tuple[str, ...]:
    """The topic's attributes the answer could lean on: all of them when nothing is known about
    what
    was inferred (the VLM sees the face anyway), else only those the perception reported."""
    attributes = policy.topics[topic].attributes
    if inferred is None:
        return attributes
    return tuple(a for a in attributes if a in inferred)


def user_context(policy: Policy, statement: str) -> str:
    words, _ = clip(clean(statement), policy.limits.max_statement_chars)
    if not words:
        return ""
    if words[-1] not in ".!?":
        words += "."
    return f"The user said: {words}"


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def from_consents(
    policy: Policy, topic: str, attributes: tuple[str, ...], current: dict[str, Consent]
) -> Outcome | None:
    """The outcome given what this person has told us, or None when we still have to ask."""
    protected = policy.consent_attributes(attributes)
    free = tuple(a for a in attributes if a not in protected)
    if not protected:
        return Outcome(
            ALLOW,
            f"'{topic}' answers lean only on {', '.join(free) or 'nothing'} here, "
            "which need no consent",
            inferred_allowed=free,
        )

    def said(scope: str, status: str) -> Consent | None:
        record = current.get(scope)
        return record if record and record.status == status else None

    refused = tuple(a for a in protected if said(f"attribute:{a}", DECLINED))
    agreed = tuple(a for a in protected if said(f"attribute:{a}", GRANTED))
    open_ = tuple(a for a in protected if a not in refused)
    refused_note = f"; they asked me not to use their {policy.labels(refused)}" if refused else ""
    topic_record = current.get(f"topic:{topic}")

    if topic_record and topic_record.status == DECLINED:
        return Outcome(
            GENERIC,
            f"on {_day(topic_record.recorded_at)} this person said no to personalised "
            f"'{topic}' answers (kept until {_day(topic_record.expires_at)}){refused_note}",
            inferred_allowed=free,
        )
    if not open_:
        return Outcome(
            GENERIC,
            f"this person asked me not to use their {policy.labels(refused)}, "
            f"which is all a personal '{topic}' answer would lean on",
            inferred_allowed=free,
        )
    if topic_record and topic_record.status == GRANTED:
        return Outcome(
            ALLOW,
            f"on {_day(topic_record.recorded_at)} this person agreed to personalised "
            f"'{topic}' answers (until {_day(topic_record.expires_at)}){refused_note}",
            user_context(policy, topic_record.statement),
            open_ + free,
        )
    if topic_record and topic_record.status == STATED:
        usable = tuple(a for a in open_ if a in agreed) + free
        return Outcome(
            ALLOW,
            f"on {_day(topic_record.recorded_at)} this person told me their preference "
            f"for '{topic}'; personalising with their words, not with what I see"
            f"{refused_note}",
            user_context(policy, topic_record.statement),
            usable,
        )
    if all(a in agreed for a in open_):
        return Outcome(
            ALLOW,
            f"this person agreed to the use of their {policy.labels(open_)}{refused_note}",
            inferred_allowed=open_ + free,
        )
    return None
