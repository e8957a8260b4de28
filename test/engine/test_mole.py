"""Mixture of LoRA Experts: placement, router gradient, balancing loss, routing stats,
save/load."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from uservlm_ros.model.errors import VLMLoadError
from uservlm_ros.model.mole import (
    MOLE_WEIGHTS_FILE,
    MoLEConfig,
    attach_mole,
    expert_usage,
    find_decoder_layers,
    get_mole_model,
    language_model_target_regex,
    load_mole,
    mole_aux_loss,
    mole_layers,
    reset_expert_usage,
)
from uservlm_ros.model.prompt import build_training_example, collate_examples
from vlm_fixtures import (  # noqa: F401  (pytest fixtures)
    QUESTION,
    load_tiny,
    logits,
    make_mole_adapter,
    photo,
    tiny_cache,
    tiny_dir,
)


def _mole(tiny_dir, **overrides):
    model, processor = load_tiny(tiny_dir)
    settings = {"r": 4, "alpha": 8, "dropout": 0.0, "init": "random", **overrides}
    return get_mole_model(model, MoLEConfig(**settings), seed=0), processor


def _batch(processor):
    examples = [
        build_training_example(processor, photo(seed=1), "Hi?", "Hello there."),
        build_training_example(processor, photo(seed=2), QUESTION, "A vegetable soup with bread."),
    ]
    return collate_examples(examples, processor.tokenizer.pad_token_id)


def test_decoder_layers_are_the_language_models(tiny_dir):
    model, _ = load_tiny(tiny_dir)
    layers = find_decoder_layers(model)
    assert len(layers) == model.config.text_config.num_hidden_layers == 2
    assert all("vision" not in name and "language_model" in name for name, _ in layers)

    pattern = language_model_target_regex(model)
    targeted = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    assert len(targeted) == 2 * 4 and all(
        name.rsplit(".", 1)[1] in ("q_proj", "k_proj", "v_proj", "o_proj") for name in targeted
    )
    vision_attention = [
        name for name, _ in model.named_modules() if "vision" in name and name.endswith("q_proj")
    ]
    assert vision_attention and not any(re.fullmatch(pattern, name) for name in vision_attention)


def test_only_lora_and_mole_weights_train_and_none_in_the_vision_tower(tiny_dir):
    model, _ = _mole(tiny_dir)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    adapter_names = ("lora_", ".router.", ".experts.")
    assert trainable and all(any(part in name for part in adapter_names) for name in trainable)
    assert not [name for name in trainable if "vision" in name]
    assert sum(".router." in name for name in trainable) == 2
    assert sum("lora_A" in name for name in trainable) == 2 * 4
    assert len(mole_layers(model)) == 2
    with pytest.raises(ValueError, match="already"):
        attach_mole(model)


def test_router_receives_gradient(tiny_dir):
    model, processor = _mole(tiny_dir)
    model.train()
    loss = model(**_batch(processor)).loss + 0.01 * mole_aux_loss(model)
    loss.backward()
    for layer in mole_layers(model):
        assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0
        for experts in layer.experts.values():
            assert experts.A.grad.abs().sum() > 0 and experts.B.grad.abs().sum() > 0


def test_aux_loss_is_finite_and_differentiable(tiny_dir):
    # Standard LoRA init (B = 0): the LM loss gives the router no gradient yet, the aux loss does.
    model, processor = _mole(tiny_dir, init="lora")
    model(**_batch(processor))
    aux = mole_aux_loss(model)
    assert aux.dim() == 0 and torch.isfinite(aux) and aux.requires_grad
    assert 0.0 < aux.item() <= 3.0 + 1e-6  # K * sum f_i P_i lies in (0, K]
    aux.backward()
    assert all(layer.router.weight.grad.abs().sum() > 0 for layer in mole_layers(model))


def test_expert_usage_counts_real_tokens_only(tiny_dir):
    model, processor = _mole(tiny_dir)
    batch = _batch(processor)
    assert batch["attention_mask"].min() == 0, "the batch should contain padding"
    reset_expert_usage(model)
    with torch.no_grad():
        model(**batch)
    usage = expert_usage(model)
    assert len(usage) == 2 and all(len(counts) == 3 for counts in usage)
    assert all(sum(counts) == int(batch["attention_mask"].sum()) for counts in usage)

    reset_expert_usage(model)
    assert expert_usage(model) == [[0, 0, 0], [0, 0, 0]]
    inputs = {k: v[:1] for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False, min_new_tokens=3)
    # Generation: the prompt once, then one position per new token except the last.
    expected = (
        inputs["attention_mask"].sum().item() + out.shape[1] - inputs["input_ids"].shape[1] - 1
    )
    assert all(sum(counts) == expected for counts in expert_usage(model))


def test_save_then_load_reproduces_logits_exactly(tiny_dir, tmp_path):
    adapter, trained = make_mole_adapter(tiny_dir, tmp_path / "mole")
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    experts = load_file(str(adapter / MOLE_WEIGHTS_FILE))
    assert saved and all("lora_" in key for key in saved), (
        "PEFT file holds the attention LoRA only"
    )
    assert {f"layers.{i}.router.weight" for i in range(2)} <= set(experts)
    assert len(experts) == 2 * (1 + 3 * 2)

    base, processor = load_tiny(tiny_dir)
    loaded = load_mole(base, adapter)
    assert not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(logits(trained, processor), logits(loaded, processor))


def test_load_is_strict_about_keys_and_shapes(tiny_dir, tmp_path):
    adapter, _ = make_mole_adapter(tiny_dir, tmp_path / "mole")
    weights = load_file(str(adapter / MOLE_WEIGHTS_FILE))
    missing = weights.pop("layers.1.router.weight")
    save_file(weights, str(adapter / MOLE_WEIGHTS_FILE))
    with pytest.raises(VLMLoadError, match=r"missing keys \['layers\.1\.router\.weight'\]"):
        load_mole(load_tiny(tiny_dir)[0], adapter)

    weights["layers.1.router.weight"] = torch.cat([missing, missing])
    save_file(weights, str(adapter / MOLE_WEIGHTS_FILE))
    with pytest.raises(VLMLoadError, match=r"layers\.1\.router\.weight .*shape"):
        load_mole(load_tiny(tiny_dir)[0], adapter)

    weights["layers.1.router.weight"] = missing
    weights["layers.7.router.weight"] = missing.clone()
    save_file(weights, str(adapter / MOLE_WEIGHTS_FILE))
    with pytest.raises(VLMLoadError, match=r"unexpected keys \['layers\.7\.router\.weight'\]"):
        load_mole(load_tiny(tiny_dir)[0], adapter)


def test_a_few_training_steps_move_only_the_adapter(tiny_dir):
    model, processor = _mole(tiny_dir, init="lora")
    batch = _batch(processor)
    frozen = {
        name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad
    }
    trainable = {
        name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(**batch).loss + 0.01 * mole_aux_loss(model)
        loss.backward()
        optimizer.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[name], value) for name, value in frozen.items())
    moved = [name for name, value in trainable.items() if not torch.equal(params[name], value)]
    assert len(moved) == len(trainable), f"unchanged: {sorted(set(trainable) - set(moved))[:5]}"
