"""Evaluation end to end on the shipped offline set, merging, and the batch/processor details."""

import csv

import pytest
import torch
from test_training_support import DATA, logits_of, run_stage, sample_inputs, stage_args, tiny_base

from training import benchmarks, evaluate
from uservlm_ros.model import prompt


def test_reference_answers_score_perfectly(tmp_path):
    """An answer_fn that echoes the reference: ROUGE-1 = 1 everywhere, bias BERTScore ~1, Overall
    ~1."""
    args = evaluate.EvalArgs(out_dir=str(tmp_path))
    references = iter(
        [
            row["answer"]
            for name in benchmarks.LOCAL  # the order evaluate() asks in
            for row in evaluate.load_rows(benchmarks.get(name), args)[0]
        ]
    )
    results, predictions = evaluate.evaluate(
        lambda question, image: next(references), list(benchmarks.LOCAL), args, log=lambda m: None
    )
    assert all(r["f1"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0 for r in results)
    (bias,) = [r for r in results if r["benchmark"] == "local-bias"]
    assert bias["bertscore"] == pytest.approx(1.0, abs=1e-3) and bias["overall"] == pytest.approx(
        1.0, abs=1e-3
    )
    # Face Task Bench style: one result per task plus "all"
    assert {r["subset"] for r in results if r["benchmark"] == "local-face-task"} == {
        "Age Detection",
        "Gender Detection",
        "Face Counting",
        "all",
    }
    assert len(predictions) == sum(r["n"] for r in results if r["subset"] == "all")


def test_evaluate_cli_on_the_tiny_model_writes_table_csv_and_chart(tmp_path):
    out = tmp_path / "eval"
    argv = [
        "--config",
        "training/configs/eval_local.yaml",
        "--out_dir",
        str(out),
        "--max_rows",
        "2",
        "--max_new_tokens",
        "4",
    ]
    evaluate.main(argv)
    with pytest.raises(ValueError, match="--append"):
        evaluate.main(argv)  # refuses to mix runs silently
    evaluate.main(argv + ["--append", "--label", "second run"])
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["label"] for r in rows} == {"tiny (random)", "second run"}
    table = (out / "results.md").read_text()
    assert "## User-aware Personalization (Table 1)" in table and "| second run |" in table
    assert "local-bias BERTScore" in table and "Overall" in table
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_benchmark_rows_are_skipped_and_counted(tmp_path):
    (tmp_path / "b.jsonl").write_text(
        '{"image": "%s", "question": "Q?", "answer": "A."}\n{"image": "nope.jpg", "question": '
        '"Q?", "answer": "A."}\n' % (DATA / "images" / "hopper_face.jpg")
    )
    args = evaluate.EvalArgs(
        benchmarks="local-user-vqa", source=str(tmp_path / "b.jsonl"), out_dir=str(tmp_path / "o")
    )
    rows, skipped = evaluate.load_rows(benchmarks.get("local-user-vqa"), args, log=lambda m: None)
    assert (len(rows), skipped) == (1, 1)


def test_registry_names_hub_ids_and_local_files():
    assert benchmarks.get("biasvision-dpo").kind == "bias"
    assert benchmarks.get("elderlytech-vqa").source == "ACIDE/user-vlm-elderly-bench"
    for name in benchmarks.LOCAL:
        assert benchmarks.get(name).source.startswith(str(DATA)) and benchmarks.get(
            name
        ).source.endswith(".jsonl")
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmarks.get("nope")


def test_ros_hook_is_lazy():
    """make_ros_answer_fn exists and rclpy is imported inside it only, not by the evaluator
    module."""
    import inspect

    assert callable(evaluate.make_ros_answer_fn)

    assert "import rclpy" in inspect.getsource(evaluate.make_ros_answer_fn)
    assert "import rclpy" not in inspect.getsource(evaluate).split("def make_ros_answer_fn")[0]


def test_merge_lora_matches_the_adapter_and_mole_is_refused(tmp_path):
    from training import merge

    lora = tmp_path / "lora"
    run_stage("stage2", *stage_args("stage2", lora, train={"max_steps": 2}))
    from uservlm_ros.model.loading import load_model

    with_adapter, processor, _ = load_model(
        "tiny-random-paligemma2", str(lora), offline_fallback=False
    )
    out = merge.main(
        ["--model", "tiny", "--adapter", str(lora), "--output_dir", str(tmp_path / "merged")]
    )
    merged, _, info = load_model(str(out), None, offline_fallback=False)
    inputs = sample_inputs(processor)
    assert torch.allclose(logits_of(merged, inputs), logits_of(with_adapter, inputs), atol=1e-4)
    assert info.placeholder  # still the random tiny model, and it says so
    mole_dir = tmp_path / "mole"
    run_stage("stage2", *stage_args("stage2", mole_dir, train={"max_steps": 1}, method="mole"))
    with pytest.raises(ValueError, match="MoLE"):
        merge.main(
            ["--model", "tiny", "--adapter", str(mole_dir), "--output_dir", str(tmp_path / "m2")]
        )


def test_sft_batches_have_eos_once_and_prefix_modes():
    from training.batches import make_sft_collate
    from training.rows import DataArgs, load_examples

    _, processor = tiny_base()
    eos = processor.tokenizer.eos_token_id
    examples, _ = load_examples(
        DataArgs(dataset=str(DATA / "instruct.jsonl")), "instruct", log=lambda m: None
    )
    items = [examples[0], examples[1]]
    batch = make_sft_collate(processor, "instruct")(items)
    for labels in batch["labels"]:
        target = labels[labels != prompt.IGNORE_INDEX]
        assert int((target == eos).sum()) == 1 and int(target[-1]) == eos
    # prefix tokens (label -100 and attended) are bidirectional (type 0), the answer causal (type
    # 1)
    prefix = (batch["labels"] == prompt.IGNORE_INDEX) & (batch["attention_mask"] == 1)
    assert bool((batch["token_type_ids"][prefix] == 0).all())
    cacheable = make_sft_collate(processor, "instruct", prefix_mode="cacheable")(items)
    # cacheable: only the image block and the BOS after it keep type 0 (uservlm_ros.model.prefix)
    image = cacheable["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert bool((cacheable["token_type_ids"][image] == 0).all())
    assert torch.equal((cacheable["token_type_ids"] == 0).sum(dim=1), image.sum(dim=1) + 1)
    assert torch.equal(cacheable["labels"], batch["labels"])


def test_dpo_processor_tokenizes_completions_with_one_eos_and_causal_types():
    from training.trl_compat import PaliGemmaPreferenceProcessor

    _, processor = tiny_base()
    dpo = PaliGemmaPreferenceProcessor.from_processor(processor)
    eos = processor.tokenizer.eos_token_id
    out = dpo(
        text=["No, never.", "Yes." + processor.tokenizer.eos_token],
        padding=True,
        padding_side="right",
        return_tensors="pt",
        add_special_tokens=False,
    )
    for ids, mask in zip(out["input_ids"], out["attention_mask"]):
        real = ids[mask == 1]
        assert int((real == eos).sum()) == 1 and int(real[-1]) == eos
    assert bool((out["token_type_ids"] == 1).all()) and "labels" not in out
    from PIL import Image

    image = Image.open(DATA / "images" / "hopper_face.jpg").convert("RGB")
    prompted = dpo(
        images=[[image]],
        text=[prompt.build_prompt("Is it too late to learn?")],
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=False,
    )
    assert "labels" not in prompted and bool((prompted["token_type_ids"] == 0).all())
