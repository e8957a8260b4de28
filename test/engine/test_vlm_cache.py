"""Per-person image cache and the "cacheable" prefix mode, on the tiny PaliGemma 2.

The tiny model's weights are random, so its greedy tokens are often one token repeated: equality of
tokens alone would prove little. The model-level tests therefore compare every step's logits too,
and check that what they compare is sensitive (the mode, the question and the picture all change
the logits). The "cacheable" tests use a tiny-model variant whose Gemma 2 sliding window (24) is
shorter than the image block (257 positions), so the sliding layers' cache really evicts, and whose
attention soft-capping (1.0) really clips: cached and uncached runs go through both.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from uservlm_ros.engines.vlm import VLMConfig, VLMEngine
from uservlm_ros.model import flops, image_cache, prefix
from uservlm_ros.model.architectures import Architecture, image_layout
from uservlm_ros.model.prompt import prepare_inputs
from vlm_fixtures import (  # noqa: F401  (pytest fixtures)
    QUESTION,
    load_tiny,
    make_lora_adapter,
    photo,
    tiny_cache,
    tiny_dir,
)

SLIDING_WINDOW = 24
FOLLOW_UP = "And which sport would suit me best?"
GENERATE = dict(
    max_new_tokens=12, do_sample=False, return_dict_in_generate=True, output_logits=True
)


@pytest.fixture(scope="session")
def sliding_dir(tiny_dir, tmp_path_factory):  # noqa: F811
    """The tiny model with a sliding window shorter than the image block and strong
    soft-capping."""
    out = tmp_path_factory.mktemp("tiny_sliding") / "model"
    shutil.copytree(tiny_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["text_config"].update(sliding_window=SLIDING_WINDOW, attn_logit_softcapping=1.0)
    (out / "config.json").write_text(json.dumps(config))
    return out


def _inputs(processor, question=QUESTION, image=None, mode="bidirectional", model=None):
    inputs = prepare_inputs(processor, question, photo() if image is None else image)
    inputs["token_type_ids"] = prefix.make_token_type_ids(
        inputs["input_ids"],
        inputs["token_type_ids"],
        mode,
        model.config.image_token_id,
        processor.tokenizer.bos_token_id,
    )
    return inputs


def _generate(model, processor, inputs, **extra):
    drop = extra.pop("drop", ())
    kwargs = {k: v for k, v in inputs.items() if k not in drop}
    with torch.inference_mode():
        return model.generate(
            **kwargs, **extra, **GENERATE, pad_token_id=processor.tokenizer.pad_token_id
        )


def _assert_same(a, b):
    assert torch.equal(a.sequences, b.sequences)
    assert len(a.logits) == len(b.logits)
    for step, (x, y) in enumerate(zip(a.logits, b.logits)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5, msg=f"logits differ at step {step}")


# ----------------------------------------------------------------------------- token types


def test_make_token_type_ids_cacheable_keeps_only_image_and_bos():
    image, bos, text = 9, 2, 5
    ids = torch.tensor([[image, image, image, bos, text, text, text, 0, 0]])
    types = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1, 1]])  # prefix, answer, padding
    out = prefix.make_token_type_ids(ids, types, "cacheable", image, bos)
    assert out.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 1]]
    assert types.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1, 1]], "input modified"
    assert torch.equal(prefix.make_token_type_ids(ids, types, "bidirectional", image, bos), types)
    # A BOS that does not follow the image block is ordinary text; without bos_token_id only images
    # stay.
    stray = torch.tensor([[image, text, bos, text]])
    stray_types = prefix.make_token_type_ids(
        stray, torch.zeros_like(stray), "cacheable", image, bos
    )
    assert stray_types.tolist() == [[0, 1, 1, 1]]
    assert prefix.make_token_type_ids(ids, types, "cacheable", image, None).tolist()[0][:4] == [
        0,
        0,
        0,
        1,
    ]
    # Batches and 1-D inputs.
    assert (
        prefix.make_token_type_ids(ids[0], types[0], "cacheable", image, bos).tolist()
        == out[0].tolist()
    )
    batch = prefix.make_token_type_ids(
        ids.repeat(3, 1), types.repeat(3, 1), "cacheable", image, bos
    )
    assert batch.tolist() == out.repeat(3, 1).tolist()
    assert prefix.cacheable_prefix_length(ids, out) == 4


def test_make_token_type_ids_rejects_bad_arguments():
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="prefix_mode"):
        prefix.make_token_type_ids(ids, ids, "causal", 1, 2)
    with pytest.raises(ValueError, match="differ in shape"):
        prefix.make_token_type_ids(ids, ids[:, :3], "cacheable", 1, 2)
    with pytest.raises(ValueError, match="whole prompt"):
        prefix.cacheable_prefix_length(ids, torch.zeros_like(ids))
    with pytest.raises(ValueError, match="no leading"):
        prefix.cacheable_prefix_length(ids, torch.tensor([[1, 0, 0, 1]]))


def test_training_examples_convert_with_the_same_function(tiny_dir):  # noqa: F811
    from uservlm_ros.model.prompt import build_training_example, collate_examples

    model, processor = load_tiny(tiny_dir)
    examples = [
        build_training_example(processor, photo(seed=s), QUESTION * (s + 1), "Pasta.")
        for s in range(2)
    ]
    batch = collate_examples(examples, processor.tokenizer.pad_token_id)
    types = prefix.make_token_type_ids(
        batch["input_ids"],
        batch["token_type_ids"],
        "cacheable",
        model.config.image_token_id,
        processor.tokenizer.bos_token_id,
    )
    image_block = int((batch["input_ids"][0] == model.config.image_token_id).sum()) + 1
    for row in range(2):
        assert types[row, :image_block].eq(0).all() and types[row, image_block:].eq(1).all()
    assert (types == 0).sum() < (batch["token_type_ids"] == 0).sum()
    assert (types[batch["labels"] != -100] == 1).all(), "labels must stay causal"


# ----------------------------------------------------------------------------- cache object


def test_person_image_cache_lru_and_exactness():
    cache = image_cache.PersonImageCache(2)
    first, changed = photo(seed=1), photo(seed=1).copy()
    changed[0, 0, 0] ^= 1
    digest = image_cache.image_digest(first)
    assert digest == image_cache.image_digest(first.copy())
    assert digest != image_cache.image_digest(changed)
    assert digest != image_cache.image_digest(first.reshape(first.shape[1], first.shape[0], 3))

    cache.store("alice", image_cache.CacheEntry(digest, features="a"))
    assert cache.lookup("alice", digest).features == "a"
    assert cache.lookup("alice", image_cache.image_digest(changed)) is None, (
        "a different picture must miss"
    )
    cache.store("bob", image_cache.CacheEntry("d2"))
    cache.lookup("alice", digest)  # alice is now the most recently used
    cache.store("carol", image_cache.CacheEntry("d3"))
    assert "bob" not in cache and "alice" in cache and len(cache) == 2
    cache.store("alice", image_cache.CacheEntry("d4"))  # a new picture replaces, never adds
    assert len(cache) == 2 and cache.lookup("alice", digest) is None
    assert cache.forget("alice") and not cache.forget("alice")

    off = image_cache.PersonImageCache(0)
    off.store("alice", image_cache.CacheEntry(digest))
    assert not off.enabled and len(off) == 0
    with pytest.raises(ValueError):
        image_cache.PersonImageCache(-1)


# ----------------------------------------------------------------------------- model level


def test_cached_image_features_give_identical_generation(tiny_dir):  # noqa: F811
    model, processor = load_tiny(tiny_dir)
    inputs = _inputs(processor, model=model)
    reference = _generate(model, processor, inputs)
    features = image_cache.image_features(model, inputs["pixel_values"])
    cached = _generate(
        model,
        processor,
        inputs,
        drop=("pixel_values",),
        mm_encoder_outputs=image_cache.encoder_outputs(features),
    )
    _assert_same(reference, cached)
    # ... and the features matter: another picture's features change the logits.
    other_pixels = _inputs(processor, image=photo(seed=7), model=model)["pixel_values"]
    other = image_cache.image_features(model, other_pixels)
    swapped = _generate(
        model,
        processor,
        inputs,
        drop=("pixel_values",),
        mm_encoder_outputs=image_cache.encoder_outputs(other),
    )
    assert not torch.allclose(reference.logits[0], swapped.logits[0])


def test_cacheable_mode_is_causal_on_the_question(sliding_dir):
    model, processor = load_tiny(sliding_dir)
    for mode, image_block_changes in (("bidirectional", True), ("cacheable", False)):
        inputs = _inputs(processor, mode=mode, model=model)
        edited = inputs["input_ids"].clone()
        edited[0, -3] += 1  # a late question token
        with torch.inference_mode():
            before = model(**inputs).logits[0]
            after = model(**{**inputs, "input_ids": edited}).logits[0]
        changed = not torch.allclose(before[:-3], after[:-3])
        assert changed == image_block_changes, f"{mode}: earlier positions changed={changed}"


def test_cached_image_prefix_gives_identical_generation(sliding_dir):
    model, processor = load_tiny(sliding_dir)
    assert model.config.text_config.sliding_window == SLIDING_WINDOW
    first = _inputs(processor, QUESTION, mode="cacheable", model=model)
    length = prefix.cacheable_prefix_length(first["input_ids"], first["token_type_ids"])
    assert (
        length
        == int((first["input_ids"] == model.config.image_token_id).sum()) + 1
        > SLIDING_WINDOW
    )
    cache = prefix.build_prefix_cache(model, first["input_ids"], first["pixel_values"], length)
    assert cache.get_seq_length() == length
    kept = [layer.keys.shape[-2] for layer in cache.layers]
    assert min(kept) == SLIDING_WINDOW - 1 < max(kept) == length, (
        f"sliding layer did not evict: {kept}"
    )

    results = {}
    for question in (QUESTION, FOLLOW_UP, QUESTION):  # the same cache serves several questions
        inputs = _inputs(processor, question, mode="cacheable", model=model)
        uncached = _generate(model, processor, inputs)
        cached = _generate(
            model,
            processor,
            inputs,
            drop=("pixel_values",),
            past_key_values=prefix.fork_cache(cache),
        )
        _assert_same(uncached, cached)
        results.setdefault(question, []).append(cached)
    assert cache.get_seq_length() == length, "generation modified the stored prefix"
    _assert_same(*results[QUESTION])
    assert not torch.allclose(results[QUESTION][0].logits[0], results[FOLLOW_UP][0].logits[0])
    # The mode is a different model: bidirectional logits differ.
    bidirectional = _generate(model, processor, _inputs(processor, QUESTION, model=model))
    assert not torch.allclose(bidirectional.logits[0], results[QUESTION][0].logits[0])


# ----------------------------------------------------------------------------- engine


def _engine(base, **config):
    engine = VLMEngine(VLMConfig(base_model=str(base), adapter=None, max_new_tokens=8, **config))
    engine.load()
    return engine


@pytest.mark.parametrize("mode", ["bidirectional", "cacheable"])
def test_engine_cached_answers_equal_uncached(sliding_dir, mode):
    cached = _engine(sliding_dir, vision_cache_size=2, prefix_mode=mode)
    plain = _engine(sliding_dir, prefix_mode=mode)
    assert any("prefix_mode" in w for w in cached.warnings) == (mode == "cacheable")
    picture, other = photo(seed=3), photo(seed=4)
    turns = [
        (QUESTION, picture, "miss"),
        (FOLLOW_UP, picture, "hit"),
        (QUESTION, picture.copy(), "hit"),
        (FOLLOW_UP, other, "miss"),
        (QUESTION, None, "miss"),
        (FOLLOW_UP, None, "hit"),
    ]
    for question, image, expected in turns:
        reply = cached.answer(question, image, person_key="alice", user_context="I like tennis.")
        reference = plain.answer(question, image, user_context="I like tennis.")
        assert reply.image_cache == expected and reference.image_cache == "off"
        assert (
            reply.text == reference.text and reply.generated_tokens == reference.generated_tokens
        )
    assert cached.cached_persons == 1
    assert cached.answer(QUESTION, picture, person_key="bob").image_cache == "miss"
    assert cached.forget_person("alice") and not cached.forget_person("alice")
    assert cached.answer(FOLLOW_UP, None, person_key="alice").image_cache == "miss"
    cached.load()
    assert cached.cached_persons == 0


def test_engine_person_key_without_cache_and_bad_config(tiny_dir):  # noqa: F811
    engine = _engine(tiny_dir)
    assert engine.answer(QUESTION, photo(), person_key="alice").image_cache == "off"
    with pytest.raises(ValueError, match="person_key"):
        engine.answer(QUESTION, photo(), person_key=" ")
    with pytest.raises(ValueError, match="vision_cache_size"):
        VLMConfig(vision_cache_size=-1).validate()
    with pytest.raises(ValueError, match="prefix_mode"):
        VLMConfig(prefix_mode="causal").validate()


def test_engine_vision_cache_with_lora_adapter(tiny_dir, tmp_path):  # noqa: F811
    adapter = make_lora_adapter(tiny_dir, tmp_path / "lora")
    cached = VLMEngine(
        VLMConfig(
            base_model=str(tiny_dir), adapter=str(adapter), vision_cache_size=1, max_new_tokens=8
        )
    )
    plain = VLMEngine(VLMConfig(base_model=str(tiny_dir), adapter=str(adapter), max_new_tokens=8))
    cached.load(), plain.load()
    for question in (QUESTION, FOLLOW_UP):
        assert (
            cached.answer(question, photo(), person_key="p").text
            == plain.answer(question, photo()).text
        )


def test_engine_follow_up_turn_flops(sliding_dir):
    """What a follow-up turn costs in each mode, counted on the engine's real generate() (eager
    attention everywhere, so SigLIP's attention is visible to the counter)."""
    measured = {}
    for name, config in (
        ("none", {}),
        ("vision_cache", {"vision_cache_size": 1}),
        ("cacheable_prefix", {"vision_cache_size": 1, "prefix_mode": "cacheable"}),
    ):
        engine = _engine(sliding_dir, **config)
        engine._model.set_attn_implementation("eager")
        engine.answer(QUESTION, photo(), person_key="alice", max_new_tokens=1)
        measured[name], reply = flops.measure_model_flops(
            engine.answer, FOLLOW_UP, photo(), person_key="alice", max_new_tokens=1
        )
        assert reply.image_cache == ("off" if name == "none" else "hit")
    arch = Architecture.from_config(engine._model.config, "tiny")
    image_block = image_layout(arch).llm_image_tokens + flops.BOS_TOKENS
    text = (
        prepare_inputs(engine._processor, FOLLOW_UP, photo())["input_ids"].shape[1] - image_block
    )
    assert measured["none"] == flops.prefill_flops(arch, text).total
    assert measured["vision_cache"] == flops.prefill_flops(arch, text, vision_cached=True).total
    cached = flops.prefill_flops(arch, text, cached_prefix_tokens=image_block)
    assert measured["cacheable_prefix"] == cached.total
    assert measured["cacheable_prefix"] < measured["vision_cache"] < measured["none"]
