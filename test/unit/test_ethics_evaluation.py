"""The held-out evaluation meets the issue's target (precision and recall >= 0.9), and the script
runs."""

import importlib.util
from pathlib import Path

from uservlm_ros.engines.ethics.engine import EthicsConfig, EthicsEngine
from uservlm_ros.engines.ethics.evaluation import evaluate, load_questions

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate_ethics.py"


def test_heldout_meets_the_target(embedder, tmp_path):
    engine = EthicsEngine(EthicsConfig(store_dir=tmp_path), embedder=embedder).load()
    result = evaluate(engine, load_questions(), splits=("heldout",))["heldout"]
    misses = "\n".join(f"{e.label}: {e.question} -> {r.reason}" for e, r in result.errors)
    assert result.precision >= 0.9, misses
    assert result.recall >= 0.9, misses
    assert result.median_ms < 1000  # ~10 ms on one core; generous for a loaded CI box
    assert list(tmp_path.iterdir()) == []  # every evaluation user was forgotten


def test_the_script_prints_precision_and_recall(embedder, capsys):
    spec = importlib.util.spec_from_file_location("evaluate_ethics", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--split", "heldout", "--threads", "0"]) == 0
    out = capsys.readouterr().out
    assert (
        "precision" in out and "recall" in out and "median ms" in out and out.count("heldout") == 1
    )
