"""Read the answer to a clarifying question: yes, no, a stated preference, or unclear.

Order of precedence (each step quotes its cue in ``evidence``):

1. Attribute refusals, clause by clause: an attribute word ("age", "my looks") with a refusal word
   in the same clause ("don't use my age") refuses that attribute, whatever else the reply says.
2. An explicit refusal of personalisation ("keep it general", "no thanks") in a clause without an
   attribute word: the reply is a no.
3. Otherwise the *last* yes/no cue wins ("yes… actually no" is a no). A bare no followed by a
   stated preference is that preference ("no, I'm vegan").
4. A stated preference without yes/no cues is a statement ("I'm vegetarian").
5. Anything else — empty, "hmm", a language the cues do not cover — is unclear, and unclear is
   never consent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from uservlm_ros.engines.ethics.policy import ALL_ATTRIBUTES, Policy, Rule
from uservlm_ros.engines.ethics.text import clean, clip

YES, NO, STATEMENT, UNCLEAR, ATTRIBUTES_ONLY = (
    "yes",
    "no",
    "statement",
    "unclear",
    "attributes_only",
)
_CLAUSE = re.compile(r"[,;.!?]+|\bbut\b|\bexcept\b|\bhowever\b")
_SHORT_PREFERENCE = re.compile(r"^[a-z][a-z' -]{2,40} please\b")


@dataclass(frozen=True)
class ReplyReading:
    kind: str  # yes | no | statement | unclear | attributes_only
    statement: str  # the person's words when they stated something, else ""
    declined_attributes: tuple[str, ...]
    evidence: str
    truncated: bool = False


def _spans(rules: tuple[Rule, ...], text: str) -> list[tuple[int, int, str]]:
    spans = []
    for rule in rules:
        spans += [(m.start(), m.end(), m.group(0)) for m in rule.pattern.finditer(text)]
    return sorted(spans)


def _blank(text: str, spans) -> str:
    for start, end, _ in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _declined_attributes(
    policy: Policy, norm: str
) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """Attributes refused clause by clause, the cues quoted, and the character ranges of those
    clauses."""
    declined, cues, ranges = [], [], []
    rules = policy.replies
    start = 0
    for boundary in list(_CLAUSE.finditer(norm)) + [None]:
        end = boundary.start() if boundary else len(norm)
        clause = norm[start:end]
        # "I don't mind you using my age" is agreement: remove yes cues before looking for refusals
        plain = _blank(clause, _spans(rules.yes, clause))
        refusal = next((m for r in rules.attribute_decline for m in [r.search(plain)] if m), None)
        if refusal:
            for name, words in rules.attribute_words.items():
                hit = next((m for w in words for m in [w.search(plain)] if m), None)
                if hit:
                    targets = (
                        [a for a, spec in policy.attributes.items() if spec.needs_consent]
                        if name == ALL_ATTRIBUTES
                        else [name]
                    )
                    declined += [a for a in targets if a not in declined]
                    cues.append(f"'{refusal.group(0)} … {hit.group(0).strip()}'")
                    ranges.append((start, end))
        start = boundary.end() if boundary else end
    return declined, cues, ranges


def read_reply(policy: Policy, reply: str, language: str | None = None) -> ReplyReading:
    text, truncated = clip(clean(reply), policy.limits.max_reply_chars)
    if not text:
        return ReplyReading(UNCLEAR, "", (), "the reply was empty", truncated)
    norm = text.lower()
    rules = policy.replies

    declined, attribute_cues, attribute_ranges = _declined_attributes(policy, norm)
    rest = norm
    for start, end in attribute_ranges:  # what remains once the attribute refusals are set aside
        rest = rest[:start] + " " * (end - start) + rest[end:]

    def reading(kind: str, evidence: str, statement: str = "") -> ReplyReading:
        if attribute_cues:
            evidence += (
                ("; " if evidence else "")
                + "refused "
                + ", ".join(declined)
                + " ("
                + ", ".join(attribute_cues)
                + ")"
            )
        return ReplyReading(kind, statement, tuple(declined), evidence, truncated)

    decline = _spans(rules.decline, rest)
    if decline:
        return reading(NO, f"refusal '{decline[0][2]}'")

    yes_spans = _spans(rules.yes, rest)
    yes_no = sorted(
        [(s, e, w, YES) for s, e, w in yes_spans]
        + [(s, e, w, NO) for s, e, w in _spans(rules.no, rest)]
    )
    # a preference is looked for with the yes words removed ("I'd like that" is a yes, not a
    # preference), the short "<x> please" form with the no words removed too ("no please" is a no)
    stated = _spans(rules.statement, _blank(rest, yes_spans))
    if not stated:
        bare = _blank(rest, [(s, e, w) for s, e, w, _ in yes_no]).strip()
        stated = [(m.start(), m.end(), m.group(0)) for m in [_SHORT_PREFERENCE.search(bare)] if m]
    statement = text if stated else ""

    if yes_no:
        _, _, word, kind = yes_no[-1]
        cue = f"last yes/no cue '{word}'" + (f" of {len(yes_no)}" if len(yes_no) > 1 else "")
        if kind == YES:
            return reading(
                YES,
                cue + (f", with a preference ('{stated[0][2].strip()}')" if stated else ""),
                statement,
            )
        if stated:
            return reading(
                STATEMENT,
                f"'{word}' followed by a preference ('{stated[0][2].strip()}')",
                statement,
            )
        return reading(NO, cue)
    if stated:
        return reading(STATEMENT, f"a stated preference ('{stated[0][2].strip()}')", statement)
    if declined:
        return reading(ATTRIBUTES_ONLY, "")
    where = f" (language '{language}')" if language and language != "en" else ""
    return ReplyReading(
        UNCLEAR, "", (), f"no yes, no or stated preference recognised{where}", truncated
    )
