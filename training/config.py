"""Configs shared by the three stages: dataclasses, YAML recipe + command-line parsing, output
folders.

A recipe is a flat YAML mapping of these dataclasses' fields; any field can be overridden on the
command line (`--learning_rate 1e-4`). Parsing is TRL's `TrlParser` (an `HfArgumentParser` that
reads `--config recipe.yaml`). The fields of `TrainArgs` keep `transformers.TrainingArguments`'
names so that the three recipes read alike, although stages 1-2 run our own loop
(training/loop.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CHECKPOINT_DIR = "checkpoint"
RESOLVED_CONFIG = "training_config.yaml"


@dataclass
class ModelArgs:
    model: str = field(
        default="tiny",
        metadata={
            "help": "'tiny' (random PaliGemma 2, offline), a hub id such as "
            "google/paligemma2-3b-ft-docci-448, or a local folder."
        },
    )
    adapter: str | None = field(
        default=None,
        metadata={
            "help": "Adapter folder to start from (stage 2: the "
            "stage-1 output; stage 3: the stage-2 output)."
        },
    )
    dtype: str = field(default="float32", metadata={"help": "float32 | bfloat16 | float16"})

    def __post_init__(self):
        if isinstance(self.adapter, str) and self.adapter.strip().lower() in ("", "none", "null"):
            self.adapter = None  # `--adapter null` on the command line

    def validate(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.adapter is not None and not Path(self.adapter).is_dir():
            raise ValueError(f"adapter folder not found: {self.adapter}")


@dataclass
class TrainArgs:
    output_dir: str = field(
        default="", metadata={"help": "Where the adapter and its resolved config go."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Delete an existing output_dir first."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from output_dir/checkpoint."})
    seed: int = 0
    num_train_epochs: float = 1.0
    max_steps: int = field(
        default=-1, metadata={"help": "Optimizer steps; > 0 overrides num_train_epochs."}
    )
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 1
    save_steps: int = field(
        default=0, metadata={"help": "Checkpoint every N steps for --resume (0: only at the end)."}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Truncate token sequences (None: no limit)."}
    )
    prefix_mode: str = field(
        default="bidirectional",
        metadata={
            "help": "bidirectional (PaliGemma's prefix-LM) | cacheable (image block "
            "bidirectional, question causal: "
            "deploy with vlm_node prefix_mode: cacheable to cache the image KV per person)."
        },
    )

    def validate(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir is required")
        if self.overwrite and self.resume:
            raise ValueError("--overwrite and --resume exclude each other")
        positive = {
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "learning_rate": self.learning_rate,
            "logging_steps": self.logging_steps,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("set num_train_epochs > 0 or max_steps > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.prefix_mode not in ("bidirectional", "cacheable"):
            raise ValueError(
                f"prefix_mode must be 'bidirectional' or 'cacheable', got {self.prefix_mode!r}"
            )
        if self.max_length is not None and self.max_length < 8:
            raise ValueError(
                "max_length must be >= 8 (the prompt alone is longer; None = no limit)"
            )
        check_output_dir(Path(self.output_dir), overwrite=self.overwrite, resume=self.resume)


@dataclass
class AdapterArgs:
    """The stage-2/3 adapter on the language model: plain LoRA or MoLE."""

    method: str = field(default="lora", metadata={"help": "lora | mole"})
    lora_r: int = field(
        default=16, metadata={"help": "LoRA rank (see training/README.md for 16 vs 32)."}
    )
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        metadata={"help": "Comma-separated module names, matched inside the language model only."},
    )
    mole_num_experts: int = field(default=3, metadata={"help": "LoRA experts per FFN (MoLE)."})
    mole_aux_loss_coef: float = field(
        default=0.01, metadata={"help": "Weight of the load-balancing loss (MoLE)."}
    )

    def validate(self) -> None:
        if self.method not in ("lora", "mole"):
            raise ValueError(f"method must be 'lora' or 'mole', got {self.method!r}")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise ValueError("lora_r must be >= 1 and lora_alpha > 0")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError("lora_dropout must be in [0, 1)")
        if not self.target_modules():
            raise ValueError("lora_target_modules is empty")
        if self.method == "mole" and (self.mole_num_experts < 1 or self.mole_aux_loss_coef < 0):
            raise ValueError("mole_num_experts must be >= 1 and mole_aux_loss_coef >= 0")

    def target_modules(self) -> list[str]:
        return [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]


def check_output_dir(path: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber a previous run: an existing non-empty output_dir needs --overwrite or
    --resume."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"output_dir {path} exists and is not a folder")
    if resume and not (path / CHECKPOINT_DIR).is_dir():
        raise ValueError(
            f"--resume: no checkpoint in {path / CHECKPOINT_DIR} (set save_steps to write one)"
        )
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise ValueError(
            f"output_dir {path} exists and is not empty: pass --overwrite to replace it "
            "or --resume to continue it"
        )


def make_output_dir(path: Path, overwrite: bool, is_main_process: bool = True) -> None:
    if is_main_process:
        if overwrite and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)


def parse(dataclass_types, argv=None):
    """`--config recipe.yaml` + command-line overrides -> one instance per dataclass type."""
    from trl import TrlParser

    return TrlParser(dataclass_types).parse_args_and_config(args=argv)


def resolved_config(stage: str, *configs) -> dict:
    """A flat mapping of every field, the same shape as a recipe: `--config` on it reproduces the
    run."""
    flat: dict = {"stage": stage}
    for config in configs:
        flat.update(dataclasses.asdict(config))
    return flat


def save_resolved_config(folder: Path, stage: str, *configs, extra: dict | None = None) -> Path:
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    data = resolved_config(stage, *configs)
    path = Path(folder) / RESOLVED_CONFIG
    header = (
        f"# Resolved training config, written by training/{stage}.\n# Reproduce: python -m "
        f"training.{stage} "
        f"--config {path.name} --output_dir NEW_DIR\n"
    )
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__,
        "accelerate": accelerate.__version__,
    }
    body = {key: value for key, value in data.items() if key != "stage"}
    with open(path, "w") as f:
        f.write(header)
        yaml.safe_dump(body, f, sort_keys=False)
        f.write("# run info (comments, so that this file stays a valid recipe):\n")
        for key, value in {"stage": stage, **versions, **(extra or {})}.items():
            f.write(f"#   {key}: {json.dumps(value)}\n")
    return path
