"""Evaluate the engine on ethics_data/questions.jsonl, and fit the score weights on the tune split.

Shared by scripts/evaluate_ethics.py and the tests, so both measure the same thing. Each question
is
asked by a fresh person (nothing remembered) whose face is assumed visible, i.e. every attribute
could be inferred; a prediction is positive when the decision is ``clarify``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "data" / "ethics" / "questions.jsonl"
SPLITS = ("tune", "heldout")
LABELS = ("clarify", "no_clarify")
# What perception reported for the evaluation's (imaginary) face. Only the names matter.
EVAL_INFERRED = {
    "age": "estimated",
    "gender": "estimated",
    "ethnicity": "estimated",
    "emotion": "estimated",
}
FEATURES = ("request", "first_person", "factual", "margin")


@dataclass(frozen=True)
class Example:
    question: str
    label: str
    topic: str
    split: str
    kind: str


@dataclass(frozen=True)
class SplitResult:
    split: str
    tp: int
    fp: int
    fn: int
    tn: int
    median_ms: float
    p90_ms: float
    errors: tuple  # (Example, Review) pairs the engine got wrong

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_questions(path: str | Path = DATA) -> list[Example]:
    examples = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        example = Example(**{k: row[k] for k in ("question", "label", "topic", "split", "kind")})
        if (
            example.label not in LABELS
            or example.split not in SPLITS
            or not example.question.strip()
        ):
            raise ValueError(f"{path}:{number}: bad row {row}")
        examples.append(example)
    return examples


def evaluate(engine, examples: list[Example], splits=SPLITS) -> dict[str, SplitResult]:
    results = {}
    for split in splits:
        counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
        times, errors = [], []
        for index, example in enumerate(e for e in examples if e.split == split):
            user = f"evaluation-{split}-{index}"
            start = time.perf_counter()
            review = engine.review(example.question, user, EVAL_INFERRED)
            times.append((time.perf_counter() - start) * 1000.0)
            engine.forget(user)
            predicted, actual = review.decision == "clarify", example.label == "clarify"
            counts[("t" if predicted == actual else "f") + ("p" if predicted else "n")] += 1
            if predicted != actual:
                errors.append((example, review))
        results[split] = SplitResult(
            split,
            **counts,
            median_ms=statistics.median(times),
            p90_ms=float(np.percentile(times, 90)),
            errors=tuple(errors),
        )
    return results


def score_features(classifier, question: str) -> tuple[np.ndarray, object]:
    """The weighed features of the score for one question (FEATURES order) and the assessment."""
    assessment = classifier.assess(question)
    weights = classifier.policy.classifier
    values = dict.fromkeys(FEATURES, 0.0)
    for term in assessment.terms:
        if term.name == "rule request":
            values["request"] = 1.0
        elif term.name == "first person":
            values["first_person"] = 1.0
        elif term.name == "rule factual":
            values["factual"] = 1.0
        elif term.name == "embedding margin":
            values["margin"] = term.value / weights.margin
    return np.array([values[f] for f in FEATURES]), assessment


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, steps: int) -> np.ndarray:
    w = np.zeros(x.shape[1])
    for _ in range(steps):  # plain gradient descent: 5 parameters, about a hundred rows
        p = 1.0 / (1.0 + np.exp(-x @ w))
        w -= x.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]]
    return w


def fit_weights(
    classifier,
    examples: list[Example],
    l2_grid=(0.1, 0.03, 0.01, 0.003, 0.001),
    folds: int = 10,
    steps: int = 5000,
) -> dict[str, float]:
    """Logistic regression of the label on FEATURES over the tune split, for the questions the
    score
    decides (a topic was found and no categorical rule fired). The L2 strength is picked by
    ``folds``-fold cross-validation on tune (ties go to the stronger one); then refitted on all of
    tune."""
    rows, labels = [], []
    for example in examples:
        if example.split != "tune":
            continue
        x, assessment = score_features(classifier, example.question)
        if (
            assessment.topic is None
            or assessment.third_party
            or assessment.self_disclosure
            or assessment.invites_inference
        ):
            continue
        rows.append(x)
        labels.append(1.0 if example.label == "clarify" else 0.0)
    x = np.hstack([np.ones((len(rows), 1)), np.array(rows)])
    y = np.array(labels)
    order = np.random.default_rng(0).permutation(len(y))
    best = None
    for l2 in l2_grid:
        hits = 0
        for held in np.array_split(order, folds):
            train = np.setdiff1d(order, held)
            w = _logistic(x[train], y[train], l2, steps)
            hits += int(np.sum(((x[held] @ w) >= 0) == (y[held] == 1)))
        if best is None or hits > best[1]:
            best = (l2, hits)
    w = _logistic(x, y, best[0], steps * 4)
    return {
        "bias": float(w[0]),
        **{f: float(v) for f, v in zip(FEATURES, w[1:])},
        "rows": len(y),
        "l2": best[0],
        "cv_accuracy": best[1] / len(y),
    }
