"""Helpers for the test_training_* files (no tests here): recipe-like argument sets for the tiny
model."""

from __future__ import annotations

from pathlib import Path

import torch

from training.config import AdapterArgs, ModelArgs, TrainArgs
from training.rows import DataArgs

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "training" / "data"
DATASETS = {
    "stage1": DATA / "profiles_fairface.csv",
    "stage2": DATA / "instruct.jsonl",
    "stage3": DATA / "dpo.jsonl",
}


def stage_args(stage: str, out: Path, adapter=None, dataset=None, data=None, train=None, **extra):
    """(ModelArgs, DataArgs, TrainArgs[, AdapterArgs|DPOArgs]) for a short CPU run of `stage`."""
    model_args = ModelArgs(model="tiny", adapter=str(adapter) if adapter else None)
    data_args = DataArgs(dataset=str(dataset or DATASETS[stage]), **(data or {}))
    train_defaults = dict(
        output_dir=str(out),
        seed=0,
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=3e-3,
        logging_steps=1,
    )
    train_args = TrainArgs(**{**train_defaults, **(train or {})})
    if stage == "stage2":
        return model_args, data_args, train_args, AdapterArgs(**{"lora_dropout": 0.0, **extra})
    if stage == "stage3":
        from training.stage3_dpo import DPOArgs

        return model_args, data_args, train_args, DPOArgs(**extra)
    return model_args, data_args, train_args


def run_stage(stage: str, *args):
    from training import stage1_align, stage2_instruct, stage3_dpo

    module = {"stage1": stage1_align, "stage2": stage2_instruct, "stage3": stage3_dpo}[stage]
    return module.run(*args)


def tiny_base():
    from training.trainable import load_base

    model, processor, _ = load_base("tiny")
    return model, processor


def base_state() -> dict[str, torch.Tensor]:
    """Parameters of the untouched tiny model, by their transformers names."""
    model, _ = tiny_base()
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def base_name(peft_name: str) -> str | None:
    """The transformers name of a base parameter inside a PEFT/MoLE model; None for adapter
    weights."""
    if (
        "lora_" in peft_name
        or ".router." in peft_name
        or ".experts." in peft_name
        or "modules_to_save" in peft_name
    ):
        return None
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".").replace(".original_module.", ".")


def changed_base_parameters(model, reference: dict[str, torch.Tensor]) -> list[str]:
    changed = []
    for name, param in model.named_parameters():
        key = base_name(name)
        if key is not None and not torch.equal(param.detach(), reference[key]):
            changed.append(key)
    return changed


def sample_inputs(processor, question="How do I make the text on my phone bigger?"):
    import numpy as np
    from PIL import Image

    from uservlm_ros.model.prompt import prepare_inputs

    image = np.asarray(Image.open(DATA / "images" / "hopper_face.jpg").convert("RGB"))
    return prepare_inputs(processor, question, image)


def logits_of(model, inputs) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits
