"""Evaluate a model on the paper's benchmarks: ROUGE-1 P/R/F1, BERTScore and the bias "Overall".

    # the offline set, tiny random model (numbers mean nothing: random weights)
    python -m training.evaluate --config training/configs/eval_local.yaml
    # a trained adapter, appended as one more row of the same tables
    python -m training.evaluate --config training/configs/eval_local.yaml --adapter runs/stage2 \
        --label "tiny LoRA" --append
    # a running robot: the /uservlm/ask service instead of an in-process engine
    python -m training.evaluate --config training/configs/eval_local.yaml --ros --label "robot"

The model under test is any `answer_fn(question, image) -> str`: the in-process VLM engine
(`make_engine_answer_fn`) or the `/uservlm/ask` ROS 2 service (`make_ros_answer_fn`).
Writes into out_dir: results.csv (one line per model x benchmark x subset; --append adds lines),
results.md (tables shaped like the paper's, one row per model label), results.png (F1 bars) and
predictions.jsonl (every answer, for reading). Metric definitions: training/metrics.py.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training import benchmarks as bench
from training import metrics
from training.rows import BadRowError, DataArgs, load_table, open_image

AnswerFn = Callable[[str, "object"], str]
CSV_FIELDS = [
    "label",
    "benchmark",
    "subset",
    "n",
    "precision",
    "recall",
    "f1",
    "bertscore",
    "overall",
]


@dataclass
class EvalArgs:
    benchmarks: str = field(
        default=",".join(bench.LOCAL), metadata={"help": "Comma-separated registry names."}
    )
    out_dir: str = "eval_out"
    label: str = field(
        default="", metadata={"help": "Row name in the tables (default: model + adapter)."}
    )
    append: bool = field(
        default=False, metadata={"help": "Add to an existing results.csv instead of refusing."}
    )
    model: str = "tiny"
    adapter: str | None = None
    ros: bool = field(
        default=False,
        metadata={"help": "Ask the /uservlm/ask service instead of loading a model."},
    )
    ros_service: str = "/uservlm/ask"
    ros_timeout: float = 60.0
    max_new_tokens: int = 100
    max_rows: int | None = field(
        default=None, metadata={"help": "First N rows of each benchmark."}
    )
    on_bad_row: str = "skip"
    source: str | None = field(
        default=None,
        metadata={"help": "Override the registry's hub id / file (only with a single benchmark)."},
    )
    split: str | None = None
    image_dir: str | None = None
    bertscore_encoder: str | None = field(
        default=None,
        metadata={
            "help": "Encoder for BERTScore (path or hub id); default: the offline "
            "all-MiniLM-L6-v2."
        },
    )
    bertscore_layers: int | None = 6

    def validate(self) -> None:
        names = self.names()
        if not names:
            raise ValueError("benchmarks: name at least one")
        for name in names:
            bench.get(name)
        if self.source and len(names) != 1:
            raise ValueError("--source overrides one benchmark: name exactly one")
        if self.on_bad_row not in ("skip", "stop"):
            raise ValueError("on_bad_row must be skip or stop")
        csv_path = Path(self.out_dir) / "results.csv"
        if csv_path.exists() and not self.append:
            raise ValueError(
                f"{csv_path} exists: pass --append to add this model's rows, or choose another "
                "out_dir"
            )

    def names(self) -> list[str]:
        return [name.strip() for name in self.benchmarks.split(",") if name.strip()]


# ----------------------------------------------------------------------------- models under test
def make_engine_answer_fn(
    model: str = "tiny", adapter: str | None = None, max_new_tokens: int = 100
) -> AnswerFn:
    """The in-process VLM engine (the same class the ROS node serves); no silent fallback to the
    tiny model."""
    import numpy as np

    from uservlm_ros.engines.vlm import VLMConfig, VLMEngine
    from uservlm_ros.model.tiny import TINY_MODEL_ID

    engine = VLMEngine(
        VLMConfig(
            base_model=TINY_MODEL_ID if model == "tiny" else model,
            adapter=adapter,
            offline_fallback=False,
            max_new_tokens=max_new_tokens,
        )
    )
    engine.load()
    for warning in engine.warnings:
        print(f"engine: {warning}")
    return lambda question, image: engine.answer(question, np.asarray(image.convert("RGB"))).text


def make_ros_answer_fn(service: str = "/uservlm/ask", timeout: float = 60.0) -> AnswerFn:
    """Hook for a running robot: each question is a `uservlm_ros/srv/Ask` call with the image
    attached.

    rclpy is imported here, lazily, so the evaluator needs no ROS installation otherwise.
    """
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image as ImageMsg

    from uservlm_ros.srv import Ask

    rclpy.init()
    node = rclpy.create_node("uservlm_evaluate")
    client = node.create_client(Ask, service)
    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError(f"service {service} not available after {timeout} s")

    def answer(question: str, image) -> str:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        msg = ImageMsg(
            height=pixels.shape[0],
            width=pixels.shape[1],
            encoding="rgb8",
            step=pixels.shape[1] * 3,
            data=pixels.tobytes(),
        )
        future = client.call_async(
            Ask.Request(question=question, image=msg, user_id="", speak=False)
        )
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        response = future.result()
        if response is None:
            raise RuntimeError(f"{service}: no response within {timeout} s")
        if not response.success:
            raise RuntimeError(f"{service}: {response.error}")
        return response.answer

    return answer


# ----------------------------------------------------------------------------- scoring
def load_rows(spec: bench.Benchmark, args: EvalArgs, log=print) -> tuple[list[dict], int]:
    """(rows with a decoded image, number skipped) of one benchmark."""
    data_args = DataArgs(
        dataset=args.source or spec.source,
        split=args.split or spec.split,
        image_dir=args.image_dir,
        max_rows=args.max_rows,
        on_bad_row=args.on_bad_row,
        image_column=spec.image_column,
    )
    data_args.validate()
    table, image_root = load_table(data_args)
    rows, skipped = [], 0
    for index, row in enumerate(table):
        try:
            image = open_image(row.get(spec.image_column), image_root)
            question, answer = row.get(spec.question_column), row.get(spec.answer_column)
            if not (
                isinstance(question, str)
                and question.strip()
                and isinstance(answer, str)
                and answer.strip()
            ):
                raise BadRowError("empty question or answer")
            item = {
                "index": index,
                "image": image,
                "question": question,
                "answer": answer,
                "subset": str(row[spec.subset_column]) if spec.subset_column else "all",
            }
            if spec.kind == "bias":
                rejected = row.get(spec.rejected_column)
                if not (isinstance(rejected, str) and rejected.strip()):
                    raise BadRowError("empty rejected answer")
                if rejected.strip() == answer.strip():
                    raise BadRowError("chosen == rejected")
                item["rejected"] = rejected
        except BadRowError as exc:
            if args.on_bad_row == "stop":
                raise BadRowError(f"{spec.name} row {index}: {exc}") from exc
            log(f"skipping {spec.name} row {index}: {exc}")
            skipped += 1
            continue
        rows.append(item)
    return rows, skipped


def score_benchmark(
    spec: bench.Benchmark,
    rows: list[dict],
    predictions: list[str],
    bertscore: metrics.BertScore | None,
) -> list[dict]:
    """One result per subset (plus "all" when there are several): P/R/F1 means, bias extras."""
    per_row = [metrics.rouge1(pred, row["answer"]) for pred, row in zip(predictions, rows)]
    adjusted = [math.nan] * len(rows)
    if spec.kind == "bias":
        vs_chosen = bertscore(predictions, [row["answer"] for row in rows])
        vs_rejected = bertscore(predictions, [row["rejected"] for row in rows])
        adjusted = [
            0.0 if metrics.closer_to_rejected(c, r) else c.f1
            for c, r in zip(vs_chosen, vs_rejected)
        ]
    subsets = sorted({row["subset"] for row in rows})
    groups = [(s, [i for i, row in enumerate(rows) if row["subset"] == s]) for s in subsets]
    if len(subsets) > 1:
        groups.append(("all", list(range(len(rows)))))
    results = []
    for subset, idx in groups:
        result = {
            "benchmark": spec.name,
            "subset": subset,
            "n": len(idx),
            "precision": metrics.mean(per_row[i].precision for i in idx),
            "recall": metrics.mean(per_row[i].recall for i in idx),
            "f1": metrics.mean(per_row[i].f1 for i in idx),
            "bertscore": math.nan,
            "overall": math.nan,
        }
        if spec.kind == "bias":
            result["bertscore"] = metrics.mean(adjusted[i] for i in idx)
            result["overall"] = result["f1"] * result["bertscore"]
        results.append(result)
    return results


def evaluate(
    answer_fn: AnswerFn, names: list[str], args: EvalArgs, log=print
) -> tuple[list[dict], list[dict]]:
    """(results, predictions) of every named benchmark, asking `answer_fn` each question once."""
    results, predictions, scorer = [], [], None
    for name in names:
        spec = bench.get(name)
        rows, skipped = load_rows(spec, args, log=log)
        start = time.perf_counter()
        answers = [answer_fn(row["question"], row["image"]) for row in rows]
        log(
            f"{name}: {len(rows)} rows answered in {time.perf_counter() - start:.1f} s, {skipped} "
            "skipped"
        )
        if spec.kind == "bias" and scorer is None:
            scorer = metrics.BertScore(args.bertscore_encoder, num_layers=args.bertscore_layers)
        results += score_benchmark(spec, rows, answers, scorer)
        predictions += [
            {
                "benchmark": name,
                "index": row["index"],
                "subset": row["subset"],
                "question": row["question"],
                "reference": row["answer"],
                "prediction": answer,
            }
            for row, answer in zip(rows, answers)
        ]
    return results, predictions


# ----------------------------------------------------------------------------- reports
def write_reports(
    out_dir: Path, label: str, results: list[dict], predictions: list[dict]
) -> list[dict]:
    """Append to results.csv, then rebuild results.md and results.png from every row in it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    new_file = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new_file:
            writer.writeheader()
        for result in results:
            writer.writerow(
                {key: _fmt(value) for key, value in {"label": label, **result}.items()}
            )
    with open(out_dir / "predictions.jsonl", "a") as f:
        for prediction in predictions:
            f.write(json.dumps({"label": label, **prediction}) + "\n")
    with open(csv_path, newline="") as f:
        all_rows = list(csv.DictReader(f))
    (out_dir / "results.md").write_text(markdown_tables(all_rows))
    bar_chart(all_rows, out_dir / "results.png")
    return all_rows


def _fmt(value):
    return (
        f"{value:.4f}"
        if isinstance(value, float) and not math.isnan(value)
        else ("" if isinstance(value, float) else value)
    )


def markdown_tables(rows: list[dict]) -> str:
    """One table per paper table: a row per model label, P/R/F1 (+ BERTScore, Overall) per
    benchmark."""
    labels = list(dict.fromkeys(row["label"] for row in rows))
    lines = [
        "# Evaluation results",
        "",
        "ROUGE-1 precision / recall / F1 (means over rows); bias: BERTScore-F1 with the "
        "rejected-answer rule",
        "and Overall = F1 x BERTScore (training/metrics.py). BERTScore encoder: see the run's "
        "log; with the",
        "offline MiniLM default it is not comparable with the paper's numbers.",
        "",
    ]
    for table in bench.TABLES:
        columns = list(
            dict.fromkeys(
                (r["benchmark"], r["subset"])
                for r in rows
                if bench.get(r["benchmark"]).table == table
            )
        )
        if not columns:
            continue
        bias = table == bench.BIAS
        metrics_per_column = ["P", "R", "F1"] + (["BERTScore", "Overall"] if bias else [])
        header = ["Model"] + [
            f"{b}{'' if s == 'all' else ' / ' + s} {m}"
            for b, s in columns
            for m in metrics_per_column
        ]
        lines += [f"## {table}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for label in labels:
            cells = [label]
            for b, s in columns:
                hit = next(
                    (
                        r
                        for r in rows
                        if r["label"] == label and r["benchmark"] == b and r["subset"] == s
                    ),
                    None,
                )
                keys = ["precision", "recall", "f1"] + (["bertscore", "overall"] if bias else [])
                cells += [_cell(hit, key) for key in keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(row: dict | None, key: str) -> str:
    if row is None or row.get(key, "") == "":
        return "–"
    return f"{float(row[key]):.3f}"


def bar_chart(rows: list[dict], path: Path) -> None:
    """Grouped bars: ROUGE-1 F1 (and bias Overall) per benchmark, one colour per model label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(row["label"] for row in rows))
    columns = list(dict.fromkeys((r["benchmark"], r["subset"]) for r in rows))
    names = [f"{b}\n{s}" if s != "all" else b for b, s in columns]
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) + 2), 4.0))
    for k, label in enumerate(labels):
        values = []
        for b, s in columns:
            hit = next(
                (
                    r
                    for r in rows
                    if r["label"] == label and r["benchmark"] == b and r["subset"] == s
                ),
                None,
            )
            key = "overall" if hit and hit.get("overall") else "f1"
            values.append(float(hit[key]) if hit and hit.get(key) else 0.0)
        ax.bar([i + k * width for i in range(len(columns))], values, width, label=label)
    ax.set_xticks(
        [i + width * (len(labels) - 1) / 2 for i in range(len(columns))], names, fontsize=7
    )
    ax.set_ylabel("ROUGE-1 F1 (bias: Overall)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("User-VLM 360° evaluation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    from training.config import parse

    (args,) = parse([EvalArgs], argv)
    args.validate()  # before any model is loaded
    label = args.label or (
        "ros:" + args.ros_service
        if args.ros
        else args.model + (f" + {Path(args.adapter).name}" if args.adapter else "")
    )
    if args.ros:
        answer_fn = make_ros_answer_fn(args.ros_service, args.ros_timeout)
    else:
        answer_fn = make_engine_answer_fn(args.model, args.adapter, args.max_new_tokens)
    results, predictions = evaluate(answer_fn, args.names(), args)
    write_reports(Path(args.out_dir), label, results, predictions)
    print((Path(args.out_dir) / "results.md").read_text())
    print(f"wrote {args.out_dir}/results.csv, results.md, results.png, predictions.jsonl")
    return results


if __name__ == "__main__":
    main()
