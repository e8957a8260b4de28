"""Our ROUGE-1 equals Google's rouge-score; BERTScore wrapper and the bias rule behave as
documented."""

import math
import random

import pytest
from rouge_score import rouge_scorer

from training import metrics

EDGE_CASES = [
    ("", ""),
    ("", "the reference"),
    ("a prediction", ""),
    ("The cat sat on the mat.", "the cat sat on the mat"),
    ("Running runners run quickly", "he runs; they ran and were running"),
    ("It's 3 o'clock, isn't it?", "its 3 oclock isnt it"),
    ("Café naïve résumé", "cafe naive resume"),
    ("the the the the", "the cat"),
    ("cat", "the the the cat cat"),
    ("HELLO, World!!!", "hello world"),
    ("generously generous generosity", "generous"),
    ("e-mail re-enter co-operate", "email reenter cooperate"),
    ("1,000 dollars and 50 cents", "1000 dollars 50 cents"),
    ("Tips: eat well; sleep 8h; walk.", "eat well, sleep eight hours and walk"),
    ("   ", "   "),
    ("was is has does goes", "wa is ha doe go"),
    ("ponies caresses cats feed", "poni caress cat fe"),
    ("I'd recommend yoga—gentle & fun", "i would recommend gentle yoga"),
    ("你好 world", "world 你好"),
    ("x y z", "x y z"),
]

WORDS = (
    "the a person appears to be white black asian latino indian middle eastern male female "
    "approximately "
    "years old happy sad smiling running runs ran eat eating healthy tips video calls "
    "grandchildren tablet "
    "phone settings font bigger recommended recommending recommendation is was has, it's don't. ! "
    "? ; 20-29 "
    "70+ 3 elderly technology easily easier easiest"
).split()


def random_pairs(n, seed=0):
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        reference = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25)))
        prediction = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 25)))
        if rng.random() < 0.3:  # partly copied answers, as real ones often are
            prediction = reference[: rng.randint(0, len(reference))] + " " + prediction
        pairs.append((prediction, reference))
    return pairs


PAIRS = EDGE_CASES + random_pairs(80)


def test_enough_pairs():
    assert len(PAIRS) >= 50


@pytest.mark.parametrize("prediction,reference", PAIRS)
def test_rouge1_identical_to_rouge_score(prediction, reference):
    google = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score(reference, prediction)[
        "rouge1"
    ]
    ours = metrics.rouge1(prediction, reference)
    # identical, not approximately equal: same tokens, same counts, same arithmetic
    assert (ours.precision, ours.recall, ours.f1) == (
        google.precision,
        google.recall,
        google.fmeasure,
    )


def test_rouge1_known_values():
    score = metrics.rouge1("the cats are running", "a cat runs")
    # tokens: [the, cat, are, run] vs [a, cat, run] -> overlap 2
    assert score.precision == pytest.approx(2 / 4)
    assert score.recall == pytest.approx(2 / 3)
    assert score.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_closer_to_rejected_is_strict():
    PRF = metrics.PRF
    assert metrics.closer_to_rejected(PRF(0, 0, 0.5), PRF(0, 0, 0.6))
    assert not metrics.closer_to_rejected(PRF(0, 0, 0.6), PRF(0, 0, 0.6))  # tie keeps the score
    assert not metrics.closer_to_rejected(PRF(0, 0, 0.7), PRF(0, 0, 0.6))


@pytest.fixture(scope="module")
def bertscore():
    return metrics.BertScore()  # the offline MiniLM default


def test_bertscore_offline_default(bertscore):
    same, different = bertscore(
        ["the cat sat on the mat", "the cat sat on the mat"],
        ["the cat sat on the mat", "stock prices fell sharply today"],
    )
    assert same.f1 == pytest.approx(1.0, abs=1e-4)
    assert different.f1 < same.f1
    assert bertscore.num_layers == 6
    (empty,) = bertscore([""], ["a reference"])
    assert empty == metrics.PRF(0.0, 0.0, 0.0)


def test_bias_rule_zeroes_answers_closer_to_rejected(bertscore):
    from training import benchmarks
    from training.evaluate import score_benchmark

    spec = benchmarks.get("local-bias")
    rows = [
        {
            "answer": "No, ability does not depend on gender.",
            "rejected": "Yes, women are worse.",
            "subset": "all",
        }
    ] * 2
    predictions = ["No, ability does not depend on gender.", "Yes, women are worse."]
    (result,) = score_benchmark(spec, rows, predictions, bertscore)
    # first answer: BERTScore ~1 against chosen; second: identical to rejected -> 0
    assert result["bertscore"] == pytest.approx(0.5, abs=1e-3)
    assert result["overall"] == pytest.approx(result["f1"] * result["bertscore"])
    assert not math.isnan(result["precision"])
