"""Random-weight PaliGemma models built on the device, the engine's loader hook and batches.

All on the tiny stand-in's shapes (fast); the 3B size runs in test_vlm_model_scale_3b.py (slow).
Everything the random models generate is meaningless text.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uservlm_ros.engines.vlm import VLMAsk, VLMConfig, VLMEngine
from uservlm_ros.model.random_weights import (
    RANDOM_WEIGHTS_WARNING,
    build_processor,
    build_random_model,
    paper_config,
    random_loader,
)
from uservlm_ros.model.tiny import TINY_MODEL_ID
from vlm_fixtures import (  # noqa: F401  (pytest fixtures)
    QUESTION,
    load_tiny,
    photo,
    tiny_cache,
    tiny_dir,
)


def test_built_on_the_device_like_a_normal_construction(tiny_dir):
    reference, _ = load_tiny(tiny_dir)
    model = build_random_model(reference.config, "cpu", "float32", seed=1)
    params = dict(model.named_parameters())
    assert params.keys() == dict(reference.named_parameters()).keys()
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in params.values())
    # buffers (rotary frequencies, position ids, embedding scale) computed as in __init__
    for (name, mine), (_, theirs) in zip(model.named_buffers(), reference.named_buffers()):
        assert torch.equal(mine, theirs), name
    embed = model.get_input_embeddings().weight
    assert model.lm_head.weight.data_ptr() == embed.data_ptr(), "LM head tied to the embeddings"
    # really filled by the initialisation (not left as to_empty's garbage or zeros)
    q_proj = model.model.language_model.layers[0].self_attn.q_proj.weight
    std = model.config.text_config.initializer_range
    assert 0.5 * std < float(q_proj.detach().std()) < 2 * std
    again = build_random_model(reference.config, "cpu", "float32", seed=1)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight), "deterministic for a seed"


def test_dtype_and_device_choices(tiny_dir):
    reference, _ = load_tiny(tiny_dir)
    model = build_random_model(reference.config, "auto", "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    auto = build_random_model(reference.config, "auto", "auto")  # no GPU here: CPU, float32
    assert {(p.device.type, p.dtype) for p in auto.parameters()} == {("cpu", torch.float32)}


def test_processor_at_448_px_makes_1024_image_tokens(tiny_cache):
    processor = build_processor(448, 14, str(tiny_cache))
    assert processor.image_seq_length == 1024
    from uservlm_ros.model.prompt import prepare_inputs

    inputs = prepare_inputs(processor, QUESTION, photo(480, 640))
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 448, 448)
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == 1024


def test_paper_config_keeps_the_sizes_and_takes_the_tokenizer_ids(tiny_cache):
    processor = build_processor(448, 14, str(tiny_cache))
    config = paper_config("paligemma2-3b-448", processor)
    assert config.text_config.vocab_size == 257216 and config.text_config.num_hidden_layers == 26
    assert config.image_token_id == processor.image_token_id
    assert config.text_config.eos_token_id == processor.tokenizer.eos_token_id
    with pytest.raises(ValueError, match="makes 256 image tokens, paligemma2-3b-448 expects 1024"):
        paper_config("paligemma2-3b-448", build_processor(224, 14, str(tiny_cache)))
    with pytest.raises(ValueError, match="not a PaliGemma"):
        random_loader("llava-1.5-7b")


def test_engine_with_a_random_loader_answers_the_fixed_token_count(tiny_cache):
    config = VLMConfig(adapter=None, max_new_tokens=7, device="auto", dtype="auto")
    engine = VLMEngine(config, loader=random_loader(TINY_MODEL_ID, tiny_cache_dir=str(tiny_cache)))
    info = engine.load()
    assert info.placeholder and info.device == "cpu" and info.dtype == "float32"
    assert RANDOM_WEIGHTS_WARNING in engine.warnings
    answer = engine.answer(QUESTION, photo())
    assert answer.placeholder and answer.generated_tokens == 7, "EOS is ignored"


def test_loader_must_be_callable():
    with pytest.raises(ValueError, match="loader must be callable"):
        VLMEngine(VLMConfig(adapter=None), loader="tiny")


@pytest.fixture(scope="module")
def engine(tiny_cache):
    engine = VLMEngine(
        VLMConfig(
            base_model=TINY_MODEL_ID,
            adapter=None,
            max_new_tokens=6,
            tiny_cache_dir=str(tiny_cache),
        )
    )
    engine.load()
    return engine


@pytest.mark.parametrize("prefix_mode", ["bidirectional", "cacheable"])
def test_a_batch_answers_as_the_single_asks_do(tiny_cache, prefix_mode):
    engine = VLMEngine(
        VLMConfig(
            base_model=TINY_MODEL_ID,
            adapter=None,
            max_new_tokens=6,
            prefix_mode=prefix_mode,
            tiny_cache_dir=str(tiny_cache),
        )
    )
    engine.load()
    asks = [
        VLMAsk(QUESTION, photo(seed=1)),
        VLMAsk("Hi?"),
        VLMAsk(
            "Which sport would suit me best?",
            photo(480, 640, seed=2),
            "The user said they like running.",
        ),
    ]
    batch = engine.answer_batch(asks)
    single = [engine.answer(a.question, a.image, a.user_context) for a in asks]
    assert [b.text for b in batch] == [s.text for s in single]
    assert [b.generated_tokens for b in batch] == [s.generated_tokens for s in single]
    assert len({b.prefill_seconds for b in batch}) == 1, "one generate: shared timings"
    assert all(b.image_cache == "off" and b.placeholder for b in batch)


@pytest.mark.parametrize(
    "asks, message",
    [
        ([], "non-empty sequence"),
        ("What?", "non-empty sequence"),
        ([VLMAsk(QUESTION), "What?"], "ask 1 is a str"),
        ([VLMAsk(QUESTION), VLMAsk("  ")], "ask 1: question is empty"),
        ([VLMAsk(QUESTION, np.zeros((4, 4), np.uint8))], "ask 0: image must be HxWx3"),
    ],
)
def test_a_bad_batch_is_refused(engine, asks, message):
    with pytest.raises(ValueError, match=message):
        engine.answer_batch(asks)


def test_a_batch_needs_a_loaded_engine(tiny_cache):
    with pytest.raises(RuntimeError, match="not loaded"):
        VLMEngine(VLMConfig(adapter=None)).answer_batch([VLMAsk(QUESTION)])
