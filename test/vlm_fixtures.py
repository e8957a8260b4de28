"""Shared fixtures and helpers for the VLM tests (imported by test_vlm_engine.py and test_mole.py).

Everything runs on the tiny randomly initialised PaliGemma 2 (its generated text is meaningless),
built once per test session into a temporary cache: no network, no real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uservlm_ros.model.prompt import prepare_inputs
from uservlm_ros.model.tiny import ensure_tiny_model

QUESTION = "What should I eat tonight?"


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """Cache directory holding the tiny model (pass it as ``tiny_cache_dir``)."""
    cache = tmp_path_factory.mktemp("tiny_cache")
    ensure_tiny_model(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_dir(tiny_cache):
    return ensure_tiny_model(tiny_cache)


def photo(height=120, width=160, seed=0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)


def load_tiny(tiny_dir):
    from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

    model = PaliGemmaForConditionalGeneration.from_pretrained(tiny_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_dir)


def logits(model, processor, question=QUESTION, image=None) -> torch.Tensor:
    inputs = prepare_inputs(processor, question, image if image is not None else photo())
    with torch.no_grad():
        return model(**inputs).logits


def make_lora_adapter(tiny_dir, out_dir, seed=0):
    """A LoRA adapter for the tiny model with non-zero weights (init_lora_weights=False)."""
    from peft import get_peft_model

    from uservlm_ros.model.mole import attention_lora_config

    model, _ = load_tiny(tiny_dir)
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model, attention_lora_config(model, r=4, alpha=8, init_lora_weights=False)
    )
    peft_model.save_pretrained(out_dir)
    return out_dir


def make_mole_adapter(tiny_dir, out_dir, seed=0):
    """A MoLE adapter for the tiny model with non-zero weights; returns (dir, model)."""
    from uservlm_ros.model.mole import MoLEConfig, get_mole_model, save_mole

    model, _ = load_tiny(tiny_dir)
    torch.manual_seed(seed)
    mole = get_mole_model(model, MoLEConfig(r=4, alpha=8, dropout=0.0, init="random"), seed=seed)
    mole.eval()
    save_mole(mole, out_dir)
    return out_dir, mole
