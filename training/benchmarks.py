"""Benchmark registry: a name -> where the rows are and which columns hold what (paper §4.4).

Hub ids come from the paper, its authors' code and the hub ids our brief names; none can be
checked from these machines (no hub access), so each entry says whether its id and columns were
seen in published code (`checked`) or are our best reading (`unchecked`). Override anything on the
command line: `--source`, `--split` and the `*_column` options of training/evaluate.py apply to
every benchmark of a run. The `local-*` entries are the small offline set in training/data/ that
makes the evaluation run end to end here; their numbers mean nothing about any real model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

# Paper tables the results are grouped into (markdown sections, in this order).
PERSONALIZATION = "User-aware Personalization (Table 1)"
GENERAL = "General Purpose Understanding (Table 2)"
FACE = "Facial Feature Understanding (Table 3)"
BIAS = "Bias Mitigation (Table 7)"
TABLES = (PERSONALIZATION, GENERAL, FACE, BIAS)


@dataclass(frozen=True)
class Benchmark:
    name: str
    source: str  # hub id or local file
    table: str  # one of TABLES
    kind: str = "vqa"  # "vqa": ROUGE-1 vs answer; "bias": + BERTScore and the rejected-answer rule
    split: str = "test"
    image_column: str = "image"
    question_column: str = "question"
    answer_column: str = "answer"  # bias: the chosen (accepted) answer
    rejected_column: str = "rejected"
    subset_column: str | None = None  # Face Task Bench: one result column per task
    status: str = "unchecked"
    note: str = ""


REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "elderlytech-vqa",
            "ACIDE/user-vlm-elderly-bench",
            PERSONALIZATION,
            note="144 (image, question, answer) rows; answers by GPT-4o (paper §4.4).",
        ),
        Benchmark(
            "user-vqa",
            "ACIDE/user-vlm-bench",
            PERSONALIZATION,
            note="500 rows from Alexa-VQA and AlpaGasus-VQA held out of training.",
        ),
        Benchmark(
            "face-task-bench",
            "ACIDE/face-task-bench",
            FACE,
            subset_column="task",
            note="6 tasks x 200 rows: race, face attribute, face counting, age, emotion, gender.",
        ),
        Benchmark(
            "vqav2",
            "lmms-lab/VQAv2",
            GENERAL,
            split="validation",
            answer_column="multiple_choice_answer",
        ),
        Benchmark("llava-coco", "lmms-lab/llava-bench-coco", GENERAL, split="train"),
        Benchmark(
            "seed",
            "lmms-lab/SEED-Bench",
            GENERAL,
            note="Multiple choice: the answer column is a letter; map choices before comparing.",
        ),
        Benchmark(
            "in-the-wild",
            "lmms-lab/llava-bench-in-the-wild",
            GENERAL,
            split="train",
            answer_column="gpt_answer",
        ),
        Benchmark(
            "biasvision-dpo",
            "ACIDE/user-vlm-bias-bench",
            BIAS,
            kind="bias",
            answer_column="chosen",
            note="100 rows of BiasVision-DPO: (image, question, chosen, rejected).",
        ),
        # The offline set shipped in training/data/ (python -m training.data.make_local_data).
        Benchmark(
            "local-user-vqa", str(DATA / "bench_user_vqa.jsonl"), PERSONALIZATION, status="local"
        ),
        Benchmark(
            "local-face-task",
            str(DATA / "bench_face_task.jsonl"),
            FACE,
            subset_column="task",
            status="local",
        ),
        Benchmark(
            "local-bias",
            str(DATA / "bench_bias.jsonl"),
            BIAS,
            kind="bias",
            answer_column="chosen",
            status="local",
        ),
    ]
}

LOCAL = ("local-user-vqa", "local-face-task", "local-bias")


def get(name: str) -> Benchmark:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(REGISTRY)}") from None
