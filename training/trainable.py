"""What trains in each stage, and how a stage's result is saved and loaded (paper §3.2).

  stage 1  vision alignment     only `multi_modal_projector`; saved as
  `multi_modal_projector.safetensors`
  stage 2  instruction tuning   LoRA (or MoLE) on the language model; vision tower + projector
  frozen
  stage 3  DPO                  the stage-2 adapter keeps training; vision tower + projector frozen

Stage 1 trains no adapter (PEFT has no "train this whole module and nothing else" method), so its
output is the projector's weights; `uservlm_ros.model.loading` loads that folder like an adapter.
When stage 2 starts from it, the projector rides along in the stage-2 adapter as a frozen PEFT
`modules_to_save` copy, so that the stage-2 and stage-3 adapters are complete on the base model.

Models come from the project's one loader (`uservlm_ros.model.loading.load_model`); MoLE layers
from
`uservlm_ros.model.mole`. LoRA is restricted to the language model by `mole.attention_lora_config`
(the same q/k/v/o names exist in the SigLIP tower).
"""

from __future__ import annotations

from pathlib import Path

import torch

from uservlm_ros.model import loading, mole
from uservlm_ros.model.tiny import TINY_MODEL_ID

PROJECTOR = loading.PROJECTOR_MODULE
# Stage-1 output format (multi_modal_projector.safetensors), owned by the loader.
save_projector, load_projector = loading.save_projector, loading.load_projector


def load_base(model: str, dtype: str = "float32"):
    """(model, processor, info) on CPU, never the tiny fallback: training must not silently change
    model."""
    model_id = TINY_MODEL_ID if model == "tiny" else model
    return loading.load_model(model_id, None, device="cpu", dtype=dtype, offline_fallback=False)


def freeze(model: torch.nn.Module) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def projector(model: torch.nn.Module) -> torch.nn.Module:
    """The (base model's) multi-modal projector, wherever PEFT has wrapped the model."""
    return next(module for name, module in model.named_modules() if name.endswith(PROJECTOR))


def setup_stage1(model: torch.nn.Module) -> torch.nn.Module:
    """Vision alignment: the projector trains, the vision tower and the language model do not."""
    freeze(model)
    projector(model).requires_grad_(True)
    return model


def setup_stage2(model: torch.nn.Module, args, carry_projector: bool, seed: int = 0):
    """Instruction tuning: a fresh LoRA or MoLE adapter on the language model, nothing else trains.

    `args` is a training.config.AdapterArgs. `carry_projector`: the base model's projector came
    from stage 1 and must be saved inside the adapter (frozen).
    """
    from peft import get_peft_model

    freeze(model)
    if args.method == "lora":
        config = mole.attention_lora_config(
            model,
            args.lora_r,
            args.lora_alpha,
            args.lora_dropout,
            modules=tuple(args.target_modules()),
        )
    else:  # MoLE: LoRA on attention (PEFT) + experts with a router on each FFN (mole.attach_mole)
        config = mole.attention_lora_config(model, args.lora_r, args.lora_alpha, args.lora_dropout)
    if carry_projector:
        config.modules_to_save = [PROJECTOR]
    peft_model = get_peft_model(model, config)
    if args.method == "mole":
        cfg = mole.MoLEConfig(
            num_experts=args.mole_num_experts,
            r=args.lora_r,
            alpha=args.lora_alpha,
            dropout=args.lora_dropout,
        )
        mole.attach_mole(
            peft_model, cfg, seed=seed
        )  # after get_peft_model, which freezes what exists
    freeze_projector_and_vision(peft_model)
    return peft_model


def load_adapter_for_training(model: torch.nn.Module, adapter_dir: str):
    """Stage 3 (or a resumed stage 2): the saved LoRA/MoLE adapter, trainable again."""
    from peft import PeftModel

    kind = loading.detect_adapter_type(adapter_dir)  # VLMLoadError naming a missing file
    if kind == "projector":
        raise ValueError(f"{adapter_dir} is a stage-1 projector, not a stage-2 adapter")
    if kind == "mole":
        model = mole.load_mole(model, adapter_dir, is_trainable=True)
    else:
        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    freeze_projector_and_vision(model)
    return model, kind


def freeze_projector_and_vision(model: torch.nn.Module) -> None:
    for name, param in model.named_parameters():
        if PROJECTOR in name or "vision_tower" in name:
            param.requires_grad_(False)


def save_adapter(model, out_dir: Path, method: str) -> None:
    """PEFT files (+ MoLE router/expert files). The folder loads with `VLMEngine(adapter=...)`."""
    if method == "mole":
        mole.save_mole(model, out_dir)
    else:
        model.save_pretrained(out_dir)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), each shared tensor counted once."""
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total
