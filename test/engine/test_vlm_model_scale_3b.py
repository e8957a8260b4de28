"""PaliGemma 2 3B-448 with random weights through the engine, on CPU in bfloat16 (about 6.5 GB,
minutes on 2 cores: slow, kept out of CI). What the tiny stand-in cannot show: the loader's
device and dtype at the real size, the processor at 448 px (1,024 image tokens) and both image
caches on a real-sized model. The generated text is meaningless (random weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from uservlm_ros.engines.vlm import VLMConfig, VLMEngine
from uservlm_ros.model import image_cache
from uservlm_ros.model.prompt import prepare_inputs
from uservlm_ros.model.random_weights import random_loader

pytestmark = pytest.mark.slow

QUESTION = "What should I eat tonight?"
PARAMETERS_3B = 3_033_127_152  # Gemma 2 2B + SigLIP So400m/14 at 448 px + projector


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1e6
    return 0.0


@pytest.fixture(scope="module")
def built():
    if available_gb() < 10:
        pytest.skip(f"needs about 10 GB of free memory, {available_gb():.1f} GB available")
    config = VLMConfig(adapter=None, device="auto", dtype="bfloat16", max_new_tokens=2)
    return random_loader("paligemma2-3b-448")(config)


@pytest.fixture(scope="module")
def picture():
    return np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8)


def test_loader_builds_3b_on_the_chosen_device_and_dtype(built):
    model, _, info = built
    assert info.device == "cpu" and info.dtype == "bfloat16" and info.placeholder  # auto: no GPU
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS_3B
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("cpu", torch.bfloat16)}
    assert model.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (2304, 26, 257216)


def test_processor_at_448_px(built, picture):
    model, processor, _ = built
    inputs = prepare_inputs(processor, QUESTION, picture)
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 448, 448)
    ids = inputs["input_ids"][0]
    assert int((ids == model.config.image_token_id).sum()) == 1024
    assert bool((ids[:1024] == model.config.image_token_id).all())
    assert int(ids[1024]) == processor.tokenizer.bos_token_id


def test_cached_image_features_give_the_same_logits(built, picture):
    model, processor, _ = built
    inputs = prepare_inputs(processor, QUESTION, picture)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    with torch.inference_mode():
        full = model(**inputs, logits_to_keep=1).logits
        features = image_cache.image_features(model, inputs.pop("pixel_values"))
        cached = model(
            **inputs, mm_encoder_outputs=image_cache.encoder_outputs(features), logits_to_keep=1
        ).logits
    assert torch.equal(full, cached)


@pytest.mark.parametrize("prefix_mode", ["bidirectional", "cacheable"])
def test_both_image_caches_hit_on_the_follow_up_turn(built, picture, prefix_mode):
    config = VLMConfig(
        adapter=None,
        device="cpu",
        dtype="bfloat16",
        max_new_tokens=2,
        vision_cache_size=2,
        prefix_mode=prefix_mode,
    )
    engine = VLMEngine(config, loader=lambda _: built)
    engine.load()
    first = engine.answer(QUESTION, picture, person_key="alice")
    again = engine.answer("Which sport would suit me best?", picture, person_key="alice")
    assert (first.image_cache, again.image_cache) == ("miss", "hit")
    assert first.generated_tokens == again.generated_tokens == 2, "EOS ignored"
    assert engine.cached_persons == 1
