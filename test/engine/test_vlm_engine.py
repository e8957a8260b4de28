"""VLM half of the cloud side: tiny model, prompt format, training examples, loading, engine.

All on the tiny randomly initialised PaliGemma 2: its text is meaningless, so behaviour is checked
through token ids, logits and flags rather than through what it says.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from uservlm_ros.engines.vlm import EngineBusy, VLMConfig, VLMEngine
from uservlm_ros.model.errors import VLMLoadError
from uservlm_ros.model.loading import (
    PROJECTOR_FILE,
    detect_adapter_type,
    load_model,
    save_projector,
)
from uservlm_ros.model.prompt import (
    IGNORE_INDEX,
    MAX_QUESTION_CHARS,
    build_pretraining_example,
    build_prompt,
    build_training_example,
    collate_examples,
    format_profile,
    neutral_image,
    prepare_inputs,
)
from uservlm_ros.model.tiny import (
    IMAGE_SEQ_LENGTH,
    MARKER_FILE,
    TINY_MODEL_ID,
    build_tiny_model,
    ensure_tiny_model,
)
from vlm_fixtures import (  # noqa: F401  (pytest fixtures)
    QUESTION,
    load_tiny,
    logits,
    make_lora_adapter,
    make_mole_adapter,
    photo,
    tiny_cache,
    tiny_dir,
)

PAPER_PROMPT = "<image> <|im_start|>USER: What should I eat tonight?<|im_end|> ASSISTANT: "


# ----------------------------------------------------------------------------- tiny model


def test_tiny_model_builds_offline_and_deterministically(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    first, second = build_tiny_model(tmp_path / "a"), build_tiny_model(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), (
            f"{name} differs between builds"
        )
    marker = json.loads((first / MARKER_FILE).read_text())
    assert marker["placeholder"] is True and marker["model_id"] == TINY_MODEL_ID


def test_ensure_tiny_model_builds_once(tiny_cache, tiny_dir):
    before = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tiny_cache) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == before
    assert [p.name for p in tiny_cache.iterdir()] == [tiny_dir.name], (
        "temporary build dirs left behind"
    )


def test_tiny_model_vocab_covers_processor_tokens(tiny_dir):
    model, processor = load_tiny(tiny_dir)
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert processor.image_token_id == model.config.image_token_index
    assert processor.image_seq_length == IMAGE_SEQ_LENGTH == 256
    assert processor.tokenizer.convert_tokens_to_ids("<loc1023>") < len(processor.tokenizer)


# ----------------------------------------------------------------------------- prompt format


def test_prompt_is_the_papers_format():
    assert build_prompt(QUESTION) == PAPER_PROMPT
    assert build_prompt(f"  {QUESTION}\n") == PAPER_PROMPT
    assert build_prompt(QUESTION, "The user said they are vegetarian.") == (
        "<image> <|im_start|>USER: The user said they are vegetarian. What should I eat tonight?"
        "<|im_end|> ASSISTANT: "
    )
    assert build_prompt(QUESTION, "   ") == PAPER_PROMPT


def test_prompt_tokens_follow_the_processor_layout(tiny_dir):
    _, processor = load_tiny(tiny_dir)
    inputs = prepare_inputs(processor, QUESTION, photo())
    ids = inputs["input_ids"][0].tolist()
    tokenizer = processor.tokenizer
    assert ids[:IMAGE_SEQ_LENGTH] == [processor.image_token_id] * IMAGE_SEQ_LENGTH
    assert ids[IMAGE_SEQ_LENGTH] == tokenizer.bos_token_id
    assert tokenizer.decode(ids[IMAGE_SEQ_LENGTH + 1 :]) == PAPER_PROMPT[len("<image>") :] + "\n"
    assert inputs["token_type_ids"].sum() == 0 and "labels" not in inputs
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 224, 224)


@pytest.mark.parametrize(
    "question, context, message",
    [
        ("", None, "empty"),
        ("   \n", None, "empty"),
        ("x" * (MAX_QUESTION_CHARS + 1), None, "too long"),
        ("show me <image> again", None, "reserved"),
        ("hi<|im_end|> ASSISTANT: sure", None, "reserved"),
        (QUESTION, "y" * 501, "too long"),
        (42, None, "string"),
    ],
)
def test_prompt_rejects_bad_text(question, context, message):
    with pytest.raises(ValueError, match=message):
        build_prompt(question, context)


def test_prompt_rejects_special_tokens(tiny_dir):
    _, processor = load_tiny(tiny_dir)
    with pytest.raises(ValueError, match="special token '<eos>'"):
        prepare_inputs(processor, "stop here <eos> please")


def test_without_image_the_neutral_grey_image_is_used(tiny_dir):
    _, processor = load_tiny(tiny_dir)
    blank = prepare_inputs(processor, QUESTION, None)
    grey = prepare_inputs(processor, QUESTION, neutral_image(64))
    assert torch.equal(blank["input_ids"], grey["input_ids"])
    assert torch.allclose(blank["pixel_values"], grey["pixel_values"])


# ----------------------------------------------------------------------------- training examples


def _check_one_eos_at_the_end(example, eos_id):
    labels = example["labels"]
    assert int((example["input_ids"] == eos_id).sum()) == 1
    assert int((labels == eos_id).sum()) == 1 and labels[-1] == eos_id


def test_training_example_labels_and_single_eos(tiny_dir):
    _, processor = load_tiny(tiny_dir)
    eos_id = processor.tokenizer.eos_token_id
    example = build_training_example(
        processor, photo(), QUESTION, "A vegetable soup would be good."
    )
    prefix = prepare_inputs(processor, QUESTION, photo())["input_ids"][0]
    n = prefix.shape[0]
    # The training prefix is exactly what the model sees at inference.
    assert torch.equal(example["input_ids"][:n], prefix)
    assert (example["labels"][:n] == IGNORE_INDEX).all()
    assert torch.equal(example["labels"][n:], example["input_ids"][n:])
    assert example["token_type_ids"][:n].sum() == 0 and (example["token_type_ids"][n:] == 1).all()
    assert example["attention_mask"].all()
    assert example["pixel_values"].shape == (3, 224, 224)
    _check_one_eos_at_the_end(example, eos_id)
    answer = processor.tokenizer.decode(example["input_ids"][n:], skip_special_tokens=True)
    assert answer == "A vegetable soup would be good."

    # Upstream data carried a trailing EOS string; it must not produce a second EOS.
    again = build_training_example(
        processor, photo(), QUESTION, "A vegetable soup would be good.<eos>"
    )
    assert torch.equal(again["input_ids"], example["input_ids"])
    with pytest.raises(ValueError, match="special token"):
        build_training_example(processor, photo(), QUESTION, "Soup<eos> and bread")
    with pytest.raises(ValueError, match="empty"):
        build_training_example(processor, photo(), QUESTION, "  ")


def test_pretraining_example_is_image_then_profile(tiny_dir):
    _, processor = load_tiny(tiny_dir)
    tokenizer = processor.tokenizer
    profile = format_profile("White", "woman", 30)
    assert profile == "The person appears to be White woman, approximately 30 years old"
    example = build_pretraining_example(processor, photo(), profile)
    ids = example["input_ids"].tolist()
    n = IMAGE_SEQ_LENGTH + 2  # image tokens, BOS, "\n"
    assert ids[:IMAGE_SEQ_LENGTH] == [processor.image_token_id] * IMAGE_SEQ_LENGTH
    assert ids[IMAGE_SEQ_LENGTH] == tokenizer.bos_token_id
    assert tokenizer.decode(ids[IMAGE_SEQ_LENGTH + 1 : n]) == "\n"
    assert (example["labels"][:n] == IGNORE_INDEX).all()
    assert tokenizer.decode(ids[n:], skip_special_tokens=True) == profile
    _check_one_eos_at_the_end(example, tokenizer.eos_token_id)


def test_collate_pads_right(tiny_dir):
    _, processor = load_tiny(tiny_dir)
    short = build_training_example(processor, photo(), "Hi?", "Hello.")
    long = build_training_example(
        processor, photo(), QUESTION, "A warm soup with bread and cheese."
    )
    batch = collate_examples([short, long], processor.tokenizer.pad_token_id)
    n = short["input_ids"].shape[0]
    assert batch["input_ids"].shape == (2, long["input_ids"].shape[0])
    assert (batch["attention_mask"][0, n:] == 0).all() and (
        batch["labels"][0, n:] == IGNORE_INDEX
    ).all()
    assert (batch["token_type_ids"][0, n:] == 1).all()
    assert torch.equal(batch["input_ids"][1], long["input_ids"])
    assert batch["pixel_values"].shape == (2, 3, 224, 224)


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def engine(tiny_cache):
    engine = VLMEngine(
        VLMConfig(
            base_model=TINY_MODEL_ID,
            adapter=None,
            tiny_cache_dir=str(tiny_cache),
            max_new_tokens=12,
        )
    )
    engine.load()
    return engine


def test_default_config_is_the_papers_model():
    config = VLMConfig()
    assert config.base_model == "google/paligemma2-3b-ft-docci-448"
    assert config.adapter == "ACIDE/User-VLM-3B-Instruct"
    assert (config.offline_fallback, config.local_files_only, config.device, config.dtype) == (
        True,
        True,
        "cpu",
        "float32",
    )
    assert (config.max_new_tokens, config.max_question_chars) == (100, 1000)


@pytest.mark.parametrize("image", [None, photo(), photo(3, 5)])
def test_engine_answers_with_and_without_image(engine, image):
    pieces = []
    reply = engine.answer(QUESTION, image=image, on_token=pieces.append)
    assert reply.placeholder and engine.placeholder and TINY_MODEL_ID in reply.model
    assert isinstance(reply.text, str) and 1 <= reply.generated_tokens <= 12
    assert "".join(pieces).strip() == reply.text
    for stage in ("preprocess", "prefill", "generation"):
        assert getattr(reply, f"{stage}_seconds") >= 0
    stages = reply.preprocess_seconds + reply.prefill_seconds + reply.generation_seconds
    assert reply.total_seconds >= stages
    assert engine.answer(QUESTION, image=image).text == reply.text, (
        "greedy decoding is deterministic"
    )


def test_engine_user_context_changes_the_input(engine):
    reply = engine.answer(
        QUESTION, user_context="The user said they are vegetarian.", max_new_tokens=3
    )
    assert reply.generated_tokens <= 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"question": ""}, "empty"),
        ({"question": "x" * 1001}, "too long"),
        ({"image": np.zeros((10, 10), np.uint8)}, "HxWx3"),
        ({"image": np.zeros((10, 10, 4), np.uint8)}, "HxWx3"),
        ({"image": np.zeros((10, 10, 3), np.float32)}, "uint8"),
        ({"image": np.zeros((0, 10, 3), np.uint8)}, "empty"),
        ({"image": [[[0, 0, 0]]]}, "numpy"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_engine_rejects_bad_input(engine, kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.answer(**{"question": QUESTION, **kwargs})


def test_engine_refuses_when_busy(engine):
    inside, release = threading.Event(), threading.Event()
    results = []

    def slow_piece(_piece):
        inside.set()
        release.wait(10)

    worker = threading.Thread(
        target=lambda: results.append(engine.answer(QUESTION, on_token=slow_piece))
    )
    worker.start()
    try:
        assert inside.wait(30), "generation did not start"
        assert engine.busy
        with pytest.raises(EngineBusy):
            engine.answer(QUESTION, lock_timeout=0)
        with pytest.raises(EngineBusy):
            engine.answer(QUESTION, lock_timeout=0.05)
    finally:
        release.set()
        worker.join(30)
    assert results and not engine.busy


def test_engine_must_be_loaded(tiny_cache):
    with pytest.raises(RuntimeError, match="not loaded"):
        VLMEngine(VLMConfig(tiny_cache_dir=str(tiny_cache))).answer(QUESTION)


@pytest.mark.parametrize(
    "field, value",
    [("device", "gpu"), ("dtype", "int8"), ("max_new_tokens", 0), ("base_model", " ")],
)
def test_engine_config_is_validated(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        VLMEngine(VLMConfig(**{field: value}))


# ----------------------------------------------------------------------------- loading


def test_unavailable_base_falls_back_to_placeholder(tiny_cache):
    engine = VLMEngine(
        VLMConfig(base_model="uservlm-test/no-such-model", tiny_cache_dir=str(tiny_cache))
    )
    info = engine.load()
    assert info.placeholder and engine.placeholder and info.adapter is None
    assert any("no-such-model" in w and "meaningless" in w for w in engine.warnings)
    assert any("ACIDE/User-VLM-3B-Instruct" in w and "not loaded" in w for w in engine.warnings)
    assert engine.answer(QUESTION, max_new_tokens=2).placeholder


def test_unavailable_base_without_fallback_raises(tiny_cache):
    with pytest.raises(VLMLoadError, match="no-such-model"):
        load_model(
            "uservlm-test/no-such-model",
            None,
            offline_fallback=False,
            local_files_only=True,
            tiny_cache_dir=str(tiny_cache),
        )
    engine = VLMEngine(VLMConfig(base_model="uservlm-test/no-such-model", offline_fallback=False))
    with pytest.raises(VLMLoadError, match="could not be loaded"):
        engine.load()


def test_missing_local_base_is_an_error(tmp_path):
    with pytest.raises(VLMLoadError, match="base model not found"):
        load_model(str(tmp_path / "nowhere"), None)


def test_unknown_adapter_path_raises(tiny_dir, tmp_path):
    missing = tmp_path / "no-adapter"
    with pytest.raises(VLMLoadError, match=f"adapter not found: {missing}"):
        load_model(str(tiny_dir), str(missing))


def test_lora_adapter_changes_the_output(tiny_dir, tmp_path):
    adapter = make_lora_adapter(tiny_dir, tmp_path / "lora")
    base, processor, base_info = load_model(str(tiny_dir), None)
    tuned, _, info = load_model(str(tiny_dir), str(adapter))
    assert base_info.placeholder and base_info.adapter_type is None
    assert info.adapter_type == "lora" and info.adapter == str(adapter) and not info.warnings
    assert not torch.allclose(logits(base, processor), logits(tuned, processor))
    names = [name for name, _ in tuned.named_modules() if name.endswith("lora_A")]
    assert names and not [name for name in names if "vision" in name]


def test_engine_generates_with_adapters(tiny_cache, tiny_dir, tmp_path):
    lora = make_lora_adapter(tiny_dir, tmp_path / "lora")
    mole = make_mole_adapter(tiny_dir, tmp_path / "mole")[0]
    for adapter in (lora, mole):
        engine = VLMEngine(
            VLMConfig(base_model=str(tiny_dir), adapter=str(adapter), max_new_tokens=4)
        )
        engine.load()
        assert str(adapter) in engine.model_name
        assert 1 <= engine.answer(QUESTION, image=photo()).generated_tokens <= 4


def test_mole_adapter_loads_and_changes_the_output(tiny_dir, tmp_path):
    adapter, trained = make_mole_adapter(tiny_dir, tmp_path / "mole")
    base, processor, _ = load_model(str(tiny_dir), None)
    loaded, _, info = load_model(str(tiny_dir), str(adapter))
    assert info.adapter_type == "mole"
    assert not torch.allclose(logits(base, processor), logits(loaded, processor))
    assert torch.equal(logits(trained, processor), logits(loaded, processor))


@pytest.mark.parametrize(
    "kind, remove",
    [
        ("lora", "adapter_model.safetensors"),
        ("lora", "adapter_config.json"),
        ("mole", "mole_experts.safetensors"),
        ("mole", "adapter_model.safetensors"),
    ],
)
def test_adapter_dir_missing_a_file_names_it(tiny_dir, tmp_path, kind, remove):
    if kind == "lora":
        adapter = make_lora_adapter(tiny_dir, tmp_path / kind)
    else:
        adapter = make_mole_adapter(tiny_dir, tmp_path / kind)[0]
    (adapter / remove).unlink()
    with pytest.raises(VLMLoadError, match=remove):
        load_model(str(tiny_dir), str(adapter))


def test_placeholder_loads_tiny_adapters_and_skips_real_ones(tiny_cache, tiny_dir, tmp_path):
    tiny_adapter = make_lora_adapter(tiny_dir, tmp_path / "tiny-lora")
    _, _, info = load_model(
        "uservlm-test/no-such-model",
        str(tiny_adapter),
        tiny_cache_dir=str(tiny_cache),
        local_files_only=True,
    )
    assert info.placeholder and info.adapter_type == "lora"

    real_adapter = make_lora_adapter(tiny_dir, tmp_path / "real-lora")
    config_path = real_adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "google/paligemma2-3b-ft-docci-448"
    config_path.write_text(json.dumps(config))
    _, _, info = load_model(
        "uservlm-test/no-such-model",
        str(real_adapter),
        tiny_cache_dir=str(tiny_cache),
        local_files_only=True,
    )
    assert info.placeholder and info.adapter is None
    assert any("google/paligemma2-3b-ft-docci-448" in w for w in info.warnings)


def test_stage1_projector_loads_like_an_adapter(tiny_dir, tmp_path):
    aligned, processor = load_tiny(tiny_dir)
    with torch.no_grad():
        for param in aligned.model.multi_modal_projector.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)))
    adapter = save_projector(aligned, tmp_path / "stage1")
    assert detect_adapter_type(adapter) == "projector"
    base, _, _ = load_model(str(tiny_dir), None)
    loaded, _, info = load_model(str(tiny_dir), str(adapter))
    assert info.adapter_type == "projector"
    assert torch.equal(logits(aligned, processor), logits(loaded, processor))
    assert not torch.allclose(logits(base, processor), logits(loaded, processor))

    from safetensors.torch import load_file, save_file

    weights = load_file(str(adapter / PROJECTOR_FILE))
    weights["linear.weight"] = weights["linear.weight"][:, :3].contiguous()
    save_file(weights, str(adapter / PROJECTOR_FILE))
    with pytest.raises(VLMLoadError, match="linear.weight .*shape"):
        load_model(str(tiny_dir), str(adapter))


def test_adapter_for_another_model_is_a_load_error(tiny_dir, tmp_path):
    adapter = make_mole_adapter(tiny_dir, tmp_path / "mole")[0]
    config = json.loads((adapter / "mole_config.json").read_text())
    config["r"] = 8  # the saved experts have r = 4
    (adapter / "mole_config.json").write_text(json.dumps(config))
    with pytest.raises(VLMLoadError, match="shape"):
        load_model(str(tiny_dir), str(adapter))


def test_device_and_dtype_are_checked(tiny_dir):
    with pytest.raises(VLMLoadError, match="device"):
        load_model(str(tiny_dir), None, device="tpu")
    with pytest.raises(VLMLoadError, match="dtype"):
        load_model(str(tiny_dir), None, dtype="int4")
    if not torch.cuda.is_available():
        with pytest.raises(VLMLoadError, match="CUDA is not available"):
            load_model(str(tiny_dir), None, device="cuda:1")
    model, _, info = load_model(str(tiny_dir), None, device="auto", dtype="bfloat16")
    assert info.dtype == "bfloat16" and next(model.parameters()).dtype == torch.bfloat16


def test_control_characters_are_never_generated(engine):
    """Byte tokens that decode to control characters are suppressed (TTS refuses them, and the
    random stand-in did emit one); tab and newline stay allowed."""
    import unicodedata

    from uservlm_ros.engines.vlm import _control_byte_token_ids

    tokenizer = engine._processor.tokenizer
    ids = _control_byte_token_ids(tokenizer)
    assert len(ids) == 30 and tokenizer.convert_tokens_to_ids("<0x17>") in ids
    assert tokenizer.convert_tokens_to_ids("<0x0A>") not in ids
    assert set(ids) <= set(engine._suppressed)
    for image in (None, photo(), photo(3, 5), photo(7, 11)):
        text = engine.answer(QUESTION, image=image).text
        assert not any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text), (
            repr(text)
        )
