"""Bad input: rows, configs, output folders and adapter folders fail with a message naming the
problem."""

import json
import shutil

import pytest
from PIL import Image
from test_training_support import DATA, run_stage, stage_args

from training.config import AdapterArgs, ModelArgs, TrainArgs, check_output_dir
from training.rows import BadRowError, DataArgs, clean, load_examples, load_table, profile_text
from uservlm_ros.model.loading import VLMLoadError


def write_rows(folder, rows, name="rows.jsonl"):
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def bad_preference_set(tmp_path):
    shutil.copytree(DATA / "images", tmp_path / "images")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg at all")
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "tiny.png")
    good = {
        "image": "images/hopper_face.jpg",
        "question": "Is it too late to learn?",
        "chosen": "No, never.",
        "rejected": "Yes, give up.",
    }
    rows = [
        good,
        {**good, "image": "images/missing.jpg"},  # 1 missing image file
        {**good, "image": None},  # 2 no image at all
        {**good, "image": "images/broken.jpg"},  # 3 unreadable
        {**good, "image": "images/tiny.png"},  # 4 wrong size
        {**good, "chosen": "   "},  # 5 empty answer
        {**good, "rejected": good["chosen"]},  # 6 chosen == rejected
        {**good, "question": "What is <image> here?"},  # 7 prompt marker in the text
        good,
    ]
    return write_rows(tmp_path, rows)


EXPECTED = {
    1: "missing image",
    2: "missing image",
    3: "unreadable image",
    4: "wrong image size",
    5: "empty answer",
    6: "chosen == rejected",
    7: "bad text",
}


def test_skip_reports_every_bad_row_by_index_and_reason(bad_preference_set):
    examples, report = load_examples(
        DataArgs(dataset=str(bad_preference_set), on_bad_row="skip"),
        "preference",
        log=lambda message: None,
    )
    assert (report.rows, report.kept, len(report.skipped)) == (9, 2, 7)
    assert {index: reason.split(":")[0] for index, reason in report.skipped} == EXPECTED
    assert len(examples) == 2 and examples[0]["image"].mode == "RGB"
    assert "7 skipped" in report.summary()


def test_stop_raises_at_the_first_bad_row_naming_it(bad_preference_set):
    with pytest.raises(BadRowError, match=r"row 1: missing image.*on_bad_row=stop"):
        load_examples(DataArgs(dataset=str(bad_preference_set), on_bad_row="stop"), "preference")


def test_special_tokens_of_the_tokenizer_are_bad_rows(tmp_path):
    path = write_rows(
        tmp_path,
        [
            {
                "image": str(DATA / "images" / "hopper_face.jpg"),
                "question": "Hi",
                "answer": "Sure.<eos> And more",
            }
        ],
    )
    table, root = load_table(DataArgs(dataset=str(path)))
    with pytest.raises(BadRowError, match="no usable rows"):
        clean(
            table,
            "instruct",
            DataArgs(dataset=str(path)),
            root,
            reserved=("<eos>",),
            log=lambda m: None,
        )


def test_training_skips_bad_rows_and_reports_the_count(bad_preference_set, tmp_path):
    """A real stage-3 run on the bad set: it trains on the good rows and records what it
    skipped."""
    stage2 = tmp_path / "s2"
    run_stage("stage2", *stage_args("stage2", stage2, train={"max_steps": 1}))
    out = tmp_path / "s3"
    run_stage(
        "stage3",
        *stage_args(
            "stage3", out, adapter=stage2, dataset=bad_preference_set, train={"max_steps": 1}
        ),
    )
    report = json.loads((out / "data_report.json").read_text())
    assert report["skipped"] == 7 and report["kept"] == 2
    assert "data_skipped" in (out / "training_config.yaml").read_text()


def test_training_stops_on_a_bad_row_when_asked(bad_preference_set, tmp_path):
    stage2 = tmp_path / "s2"
    run_stage("stage2", *stage_args("stage2", stage2, train={"max_steps": 1}))
    with pytest.raises(BadRowError, match="row 1"):
        run_stage(
            "stage3",
            *stage_args(
                "stage3",
                tmp_path / "s3",
                adapter=stage2,
                dataset=bad_preference_set,
                data={"on_bad_row": "stop"},
            ),
        )


def test_fairface_labels_become_the_paper_template():
    row = {"file": "x.jpg", "race": "Latino_Hispanic", "gender": "Male", "age": "20-29"}
    assert (
        profile_text(row, DataArgs(dataset="x.csv"))
        == "The person appears to be Latino Hispanic male, approximately 20-29 years old"
    )
    assert (
        profile_text({"text": " A calm person. ", **row}, DataArgs(dataset="x.csv"))
        == "A calm person."
    )
    examples, _ = load_examples(
        DataArgs(dataset=str(DATA / "profiles_fairface.csv")), "profile", log=lambda m: None
    )
    assert examples[0]["answer"].startswith("The person appears to be White female, approximately")


def test_existing_output_dir_needs_overwrite_or_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "adapter_model.safetensors").write_text("x")
    with pytest.raises(ValueError, match="--overwrite.*--resume"):
        check_output_dir(tmp_path / "run", overwrite=False, resume=False)
    check_output_dir(tmp_path / "run", overwrite=True, resume=False)
    with pytest.raises(ValueError, match="no checkpoint"):
        check_output_dir(tmp_path / "run", overwrite=False, resume=True)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("learning_rate", 0.0, "learning_rate"),
        ("prefix_mode", "sideways", "prefix_mode"),
        ("warmup_ratio", 1.5, "warmup_ratio"),
        ("output_dir", "", "output_dir"),
    ],
)
def test_bad_train_config_is_refused_before_any_model_loads(tmp_path, field, value, message):
    args = TrainArgs(output_dir=str(tmp_path / "o"))
    setattr(args, field, value)
    with pytest.raises(ValueError, match=message):
        args.validate()


def test_bad_adapter_and_data_configs(tmp_path):
    with pytest.raises(ValueError, match="method"):
        AdapterArgs(method="moe").validate()
    with pytest.raises(ValueError, match="on_bad_row"):
        DataArgs(dataset="x.jsonl", on_bad_row="ignore").validate()
    with pytest.raises(ValueError, match="dataset file not found"):
        DataArgs(dataset=str(tmp_path / "nope.jsonl")).validate()
    with pytest.raises(ValueError, match="adapter folder not found"):
        ModelArgs(adapter=str(tmp_path / "nope")).validate()
    assert ModelArgs(adapter="null").adapter is None


@pytest.mark.parametrize("missing", ["adapter_model.safetensors", "mole_experts.safetensors"])
def test_adapter_folder_missing_a_file_is_named(tmp_path, missing):
    """Stage 3 (and the engine) refuse an incomplete stage-2 folder, naming the missing file."""
    stage2 = tmp_path / "s2"
    run_stage("stage2", *stage_args("stage2", stage2, train={"max_steps": 1}, method="mole"))
    (stage2 / missing).unlink()
    with pytest.raises(VLMLoadError, match=missing):
        run_stage("stage3", *stage_args("stage3", tmp_path / "s3", adapter=stage2))


def test_stage2_refuses_a_lora_adapter_as_its_start(tmp_path):
    stage2 = tmp_path / "s2"
    run_stage("stage2", *stage_args("stage2", stage2, train={"max_steps": 1}))
    with pytest.raises(ValueError, match="stage-1 output"):
        run_stage("stage2", *stage_args("stage2", tmp_path / "again", adapter=stage2))


def test_cacheable_prefix_mode_makes_only_the_question_causal():
    """Stage 2's switch uses the engine's own token types: image block (+BOS) bidirectional."""
    import numpy as np

    from training.batches import make_sft_collate
    from uservlm_ros.model.loading import load_model
    from uservlm_ros.model.tiny import TINY_MODEL_ID

    _, processor, _ = load_model(TINY_MODEL_ID, None)
    row = {
        "image": np.full((64, 64, 3), 128, np.uint8),
        "question": "What should I cook?",
        "answer": "A warm soup.",
    }
    plain = make_sft_collate(processor, "instruct")([row])
    cacheable = make_sft_collate(processor, "instruct", prefix_mode="cacheable")([row])
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    ids, types = cacheable["input_ids"][0], cacheable["token_type_ids"][0]
    image_positions = ids == image_id
    assert (types[image_positions] == 0).all()
    prompt_text = (plain["token_type_ids"][0] == 0) & ~image_positions
    prompt_text[int(image_positions.nonzero().max()) + 1] = (
        False  # the BOS after the image stays 0
    )
    assert (types[prompt_text] == 1).all(), "the question must be causal in cacheable mode"
    assert (plain["token_type_ids"][0][prompt_text] == 0).all()
    assert (cacheable["labels"] == plain["labels"]).all()
