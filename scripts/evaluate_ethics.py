#!/usr/bin/env python3
"""Precision and recall of the ethics engine (positive class: needs a clarifying question).

    .venv/bin/python scripts/evaluate_ethics.py                  # tune and held-out, ~10 s on 2
    cores
    .venv/bin/python scripts/evaluate_ethics.py --split tune --errors   # what to look at while
    tuning
    .venv/bin/python scripts/evaluate_ethics.py --fit            # refit the score weights on tune

Data: uservlm_ros/data/ethics/questions.jsonl (see the README next to it). Every question comes
from a fresh person whose age, gender, ethnicity and mood could be inferred. Tune the policy on
``--split tune`` only; the held-out numbers are the ones to report. ``--fit`` prints logistic
regression weights for config/ethics_policy.yaml ``classifier:`` (fitted on tune, written by hand).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # run from a checkout without installing

from uservlm_ros.engines.ethics.engine import EthicsConfig, EthicsEngine  # noqa: E402
from uservlm_ros.engines.ethics.evaluation import (  # noqa: E402
    DATA,
    evaluate,
    fit_weights,
    load_questions,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tune", "heldout", "all"), default="all")
    parser.add_argument(
        "--errors", action="store_true", help="list the misclassified questions and why"
    )
    parser.add_argument(
        "--fit", action="store_true", help="fit the score weights on the tune split"
    )
    parser.add_argument(
        "--rules-only", action="store_true", help="no embeddings (keywords pick the topic)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (0 = torch default); 1 = the ethics node in its own process",
    )
    parser.add_argument(
        "--policy", type=Path, default=None, help="policy YAML (default: the shipped one)"
    )
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    examples = load_questions(args.data)
    with tempfile.TemporaryDirectory(prefix="ethics-eval-") as store:
        engine = EthicsEngine(
            EthicsConfig(
                policy_path=args.policy,
                store_dir=store,
                use_embeddings=not args.rules_only,
                torch_threads=args.threads or None,
            )
        ).load()
        if args.fit:
            weights = fit_weights(engine.classifier, examples)
            print(
                f"logistic regression on {weights.pop('rows')} tune questions decided by the "
                "score "
                f"(L2 {weights.pop('l2')} by 10-fold cross-validation, accuracy "
                f"{weights.pop('cv_accuracy'):.3f}):"
            )
            for name, value in weights.items():
                print(f"  {name}: {value:+.2f}")
            return 0
        splits = ("tune", "heldout") if args.split == "all" else (args.split,)
        results = evaluate(engine, examples, splits)

    mode = (
        "rules only"
        if args.rules_only
        else f"rules + embeddings, torch threads {args.threads or 'default'}"
    )
    print(f"ethics engine ({mode}), positive = clarify, {len(examples)} questions")
    print(
        f"{'split':8} {'n':>4} {'tp':>4} {'fp':>4} {'fn':>4} {'tn':>4} {'precision':>9} "
        f"{'recall':>7} "
        f"{'f1':>6} {'median ms':>9} {'p90 ms':>7}"
    )
    for result in results.values():
        n = result.tp + result.fp + result.fn + result.tn
        print(
            f"{result.split:8} {n:4d} {result.tp:4d} {result.fp:4d} {result.fn:4d} {result.tn:4d} "
            f"{result.precision:9.3f} {result.recall:7.3f} {result.f1:6.3f} "
            f"{result.median_ms:9.1f} "
            f"{result.p90_ms:7.1f}"
        )
    if args.errors:
        for result in results.values():
            for example, review in result.errors:
                print(
                    f"\n[{result.split}] {'FN' if example.label == 'clarify' else 'FP'} "
                    f"({example.kind}) "
                    f"{example.question}\n    -> {review.decision}: {review.reason}"
                )
    return 0


if __name__ == "__main__":
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep the table readable (this process only)
    sys.exit(main())
