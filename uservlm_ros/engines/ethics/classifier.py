"""Which topic a question is about, and whether it asks for something personal — with the evidence.

Two transparent parts, combined as a sum of named terms (weights in the policy's ``classifier``):

* rules: the policy's regular expressions (``request``, ``factual``, a first-person test) add or
  subtract a fixed weight when they fire, and the fired pattern is quoted;
* embeddings: the question's MiniLM vector is compared with the policy's example sentences. The
  topic is the one whose closest example (plus a bonus when one of its keywords occurs) is most
  similar; the *margin* is (closest personal example) - (closest neutral example), times a weight.

``score >= 0`` means "asks for something personal". Three rule sets are not weighed but reported,
because the decision treats them as categorical: the question is about someone else
(``third_party``), states the preference itself (``self_disclosure``), or invites a judgement from
the asker's appearance (``invites_inference``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from uservlm_ros.engines.ethics.policy import Policy, Rule
from uservlm_ros.engines.ethics.text import clean, clip

FIRST_PERSON = re.compile(r"\b(i|me|my|mine|myself|i'm|i'd|i've|i'll)\b")


@dataclass(frozen=True)
class Term:
    """One named contribution to the score, with what fired it."""

    name: str
    detail: str
    value: float

    def __str__(self) -> str:
        return (
            f"{self.name} {self.detail} {self.value:+.2f}"
            if self.detail
            else f"{self.name} {self.value:+.2f}"
        )


@dataclass(frozen=True)
class Assessment:
    topic: str | None
    topic_evidence: str
    score: float
    terms: tuple[Term, ...]
    third_party: str | None = None
    self_disclosure: str | None = None
    invites_inference: str | None = None
    truncated: bool = False

    @property
    def personal(self) -> bool:
        return self.score >= 0.0

    def explain_score(self) -> str:
        return f"score {self.score:+.2f} = " + " ".join(str(t) for t in self.terms)


def _first_match(rules: tuple[Rule, ...], text: str) -> tuple[Rule, re.Match] | None:
    for rule in rules:
        match = rule.search(text)
        if match:
            return rule, match
    return None


def _quote(match: re.Match) -> str:
    return "'" + match.group(0).strip() + "'"


class QuestionClassifier:
    """Assesses questions against a policy; ``embedder=None`` is a rules-only mode (keywords pick
    the topic)."""

    def __init__(self, policy: Policy, embedder=None):
        self.policy = policy
        self.embedder = embedder
        self._example_text: list[str] = []
        self._example_topic: list[str] = []
        for topic in policy.topics.values():
            self._example_text += topic.examples
            self._example_topic += [topic.name] * len(topic.examples)
        self._neutral_text = list(policy.neutral_examples)
        if embedder is not None:
            self._example_vecs = embedder.embed(self._example_text, remember=True)
            self._neutral_vecs = embedder.embed(self._neutral_text, remember=True)

    def assess(self, question: str) -> Assessment:
        settings = self.policy.classifier
        text, truncated = clip(clean(question), self.policy.limits.max_question_chars)
        norm = text.lower()
        rules = self.policy.rules

        keyword_hits = {}
        for topic in self.policy.topics.values():
            hit = _first_match(topic.keywords, norm)
            if hit:
                keyword_hits[topic.name] = hit[1]

        terms = [Term("bias", "", settings.bias)]
        if self.embedder is not None and text:
            vec = self.embedder.embed([text])[0]
            example_sims = self._example_vecs @ vec
            neutral_sims = self._neutral_vecs @ vec
            topic, topic_evidence = self._topic_by_similarity(example_sims, keyword_hits)
            best_p, best_n = int(np.argmax(example_sims)), int(np.argmax(neutral_sims))
            margin = float(example_sims[best_p] - neutral_sims[best_n])
            terms.append(
                Term(
                    "embedding margin",
                    f"(personal example '{self._example_text[best_p]}' {example_sims[best_p]:.2f} "
                    "- "
                    f"neutral example '{self._neutral_text[best_n]}' {neutral_sims[best_n]:.2f}) "
                    f"x {settings.margin:g}",
                    settings.margin * margin,
                )
            )
        else:
            topic, topic_evidence = self._topic_by_keyword(keyword_hits)

        request = _first_match(rules["request"], norm)
        if request:
            terms.append(Term("rule request", _quote(request[1]), settings.request))
        first_person = FIRST_PERSON.search(norm)
        if first_person:
            terms.append(Term("first person", _quote(first_person), settings.first_person))
        factual = _first_match(rules["factual"], norm)
        if factual:
            terms.append(Term("rule factual", _quote(factual[1]), settings.factual))

        disclosure_rules = rules["self_disclosure"] + (
            self.policy.topics[topic].disclosures if topic else ()
        )
        disclosure = _first_match(disclosure_rules, norm)
        third_party = _first_match(rules["third_party"], norm)
        invites = _first_match(rules["invites_inference"], norm)
        return Assessment(
            topic=topic,
            topic_evidence=topic_evidence,
            score=sum(t.value for t in terms),
            terms=tuple(terms),
            third_party=_quote(third_party[1]) if third_party else None,
            self_disclosure=_quote(disclosure[1]) if disclosure else None,
            invites_inference=_quote(invites[1]) if invites else None,
            truncated=truncated,
        )

    def _topic_by_similarity(
        self, example_sims: np.ndarray, keyword_hits: dict
    ) -> tuple[str | None, str]:
        settings = self.policy.classifier
        best: dict[str, tuple[float, int]] = {}
        for index, (name, sim) in enumerate(zip(self._example_topic, example_sims)):
            if name not in best or sim > best[name][0]:
                best[name] = (float(sim), index)
        scored = {
            name: sim + (settings.keyword_bonus if name in keyword_hits else 0.0)
            for name, (sim, _) in best.items()
        }
        name = max(scored, key=scored.get)
        sim, index = best[name]
        evidence = f"closest example '{self._example_text[index]}' similarity {sim:.2f}"
        if name in keyword_hits:
            evidence = (
                f"keyword {_quote(keyword_hits[name])} (+{settings.keyword_bonus:g}), " + evidence
            )
        if scored[name] < settings.min_topic_score:
            return None, (
                f"no topic: best is {name} at {scored[name]:.2f} < {settings.min_topic_score:g} "
                f"({evidence})"
            )
        return name, f"{name}: {evidence}"

    @staticmethod
    def _topic_by_keyword(keyword_hits: dict) -> tuple[str | None, str]:
        if not keyword_hits:
            return None, "no topic: no topic keyword (rules-only mode)"
        name, match = next(iter(keyword_hits.items()))
        return name, f"{name}: keyword {_quote(match)} (rules-only mode)"
