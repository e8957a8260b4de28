"""Stage 3, bias mitigation with DPO (paper §3.2): prefer the chosen over the rejected answer.

Rows are (image, question, chosen, rejected). Training continues the stage-2 adapter (LoRA or
MoLE) with TRL's `DPOTrainer`; the vision tower and the projector stay frozen. The reference
policy is the stage-2 model itself, loaded a second time and frozen. MoLE's load-balancing loss
is added to the DPO loss as in stage 2. The processor is `trl_compat.PaliGemmaPreferenceProcessor`
(why: see that module).
Output: the updated adapter (same format as stage 2), loadable with
`VLMEngine(adapter=<output_dir>)`.

Reproduce (tiny random model, CPU; needs the stage-2 output of its recipe first):
    python -m training.stage3_dpo --config training/configs/stage3_dpo_tiny.yaml
Two processes: on a machine without CUDA they are CPU processes in a gloo group (`--cpu` would
start only one); with GPUs, one per GPU:
    accelerate launch --multi_gpu --num_processes 2 -m training.stage3_dpo --config
    training/configs/stage3_dpo_tiny.yaml
Paper scale (on the stage-2 LoRA adapter, ACIDE/user-vlm-dpo, 1 epoch, batch 32):
    accelerate launch -m training.stage3_dpo --config
    training/configs/stage3_dpo_paligemma2_3b.yaml
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training import trainable
from training.config import CHECKPOINT_DIR, ModelArgs, TrainArgs, parse
from training.rows import DataArgs, load_examples
from training.run import finish, log_parameters, special_tokens, start
from training.trl_compat import PaliGemmaPreferenceProcessor
from uservlm_ros.model import loading, mole
from uservlm_ros.model.prompt import build_prompt

STAGE = "stage3_dpo"


@dataclass
class DPOArgs:
    beta: float = field(default=0.1, metadata={"help": "DPO temperature (TRL's default)."})
    loss_type: str = field(
        default="sigmoid", metadata={"help": "TRL DPO loss (sigmoid = the DPO paper's)."}
    )
    mole_aux_loss_coef: float = field(
        default=0.01, metadata={"help": "MoLE balance-loss weight (MoLE adapters)."}
    )

    def validate(self) -> None:
        if self.beta <= 0:
            raise ValueError("beta must be > 0")


def preference_dataset(examples):
    """The cleaned rows as TRL's vision preference format: image, prompt, chosen, rejected.

    Images stay references (paths or the hub's bytes), decoded by `datasets` batch by batch.
    """
    import datasets

    args, root = examples.args, examples.image_root

    def convert(row):
        image = row.get(args.image_column, row.get("file"))
        if isinstance(image, (list, tuple)):
            image = image[0]
        if isinstance(image, str) and not Path(image).is_absolute() and root is not None:
            image = str(root / image)
        return {
            "image": image,
            "prompt": build_prompt(row[args.question_column].strip(), max_question_chars=None),
            "chosen": row[args.chosen_column].strip(),
            "rejected": row[args.rejected_column].strip(),
        }

    table = examples.table
    table = table.map(convert, remove_columns=table.column_names)
    return table.cast_column("image", datasets.Image(mode="RGB"))


def dpo_config(train_args: TrainArgs, dpo_args: DPOArgs, dtype: str):
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(Path(train_args.output_dir) / CHECKPOINT_DIR),
        seed=train_args.seed,
        num_train_epochs=train_args.num_train_epochs,
        max_steps=train_args.max_steps,
        per_device_train_batch_size=train_args.per_device_train_batch_size,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        learning_rate=train_args.learning_rate,
        weight_decay=train_args.weight_decay,
        warmup_steps=train_args.warmup_ratio,
        max_grad_norm=train_args.max_grad_norm,
        logging_steps=train_args.logging_steps,
        save_strategy="steps" if train_args.save_steps else "no",
        save_steps=train_args.save_steps or 500,
        max_length=train_args.max_length,
        beta=dpo_args.beta,
        loss_type=[dpo_args.loss_type],
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False,
        remove_unused_columns=False,
        report_to="none",
        ddp_find_unused_parameters=True,
    )


def make_trainer_class(mole_coef: float | None):
    from trl import DPOTrainer

    if mole_coef is None:
        return DPOTrainer

    class MoLEDPOTrainer(DPOTrainer):
        """DPO loss + the balance loss of the policy's last forward pass (the reference is another
        model)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            balance = mole_coef * mole.mole_aux_loss(model)
            return (
                (result[0] + balance, *result[1:])
                if isinstance(result, tuple)
                else result + balance
            )

    return MoLEDPOTrainer


def main(argv=None):
    return run(*parse([ModelArgs, DataArgs, TrainArgs, DPOArgs], argv))


def run(model_args: ModelArgs, data_args: DataArgs, train_args: TrainArgs, dpo_args: DPOArgs):
    """Train and save; returns the trained model (tests inspect it)."""
    for args in (model_args, data_args, train_args, dpo_args):
        args.validate()  # before any model is loaded
    if not model_args.adapter:
        raise ValueError(
            "stage 3 continues a stage-2 adapter: set `adapter` to a stage-2 output_dir"
        )
    kind = loading.detect_adapter_type(model_args.adapter)  # names a missing file
    if kind == "projector":
        raise ValueError(
            f"{model_args.adapter} is a stage-1 projector; stage 3 needs a stage-2 adapter"
        )
    if kind == "mole" and train_args.resume:
        # The Trainer's checkpoints hold PEFT's weights only, not the MoLE routers and experts.
        raise ValueError(
            "--resume is not supported for a MoLE adapter in stage 3 (the Trainer's checkpoints "
            "would lose the experts); rerun with --overwrite"
        )

    log = start(train_args)  # the Trainer creates its own Accelerator
    model, processor, info = trainable.load_base(model_args.model, model_args.dtype)
    examples, report = load_examples(data_args, "preference", special_tokens(processor), log=log)
    model, kind = trainable.load_adapter_for_training(model, model_args.adapter)
    counts = log_parameters(model, log, f"{STAGE} ({kind})")
    # The reference policy is the stage-2 model, loaded a second time and frozen. (TRL could keep a
    # "ref" copy of a LoRA adapter inside the policy instead, but switching adapters re-enables the
    # carried projector's gradient, and MoLE experts live outside PEFT's adapter switching.) TRL
    # patches the reference's LM head, which needs a plain transformers model: fold the frozen
    # attention LoRA in; MoLE FFNs are ordinary modules and stay as they are.
    ref_model, _, _ = loading.load_model(
        info.base, model_args.adapter, dtype=model_args.dtype, offline_fallback=False
    )
    ref_model = ref_model.merge_and_unload()
    ref_model.requires_grad_(False)

    trainer_class = make_trainer_class(dpo_args.mole_aux_loss_coef if kind == "mole" else None)
    trainer = trainer_class(
        model=model,
        ref_model=ref_model,
        args=dpo_config(train_args, dpo_args, model_args.dtype),
        train_dataset=preference_dataset(examples),
        processing_class=PaliGemmaPreferenceProcessor.from_processor(
            processor, train_args.prefix_mode
        ),
    )
    result = trainer.train(resume_from_checkpoint=True if train_args.resume else None)

    out = Path(train_args.output_dir)
    if trainer.accelerator.is_main_process:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        trainable.save_adapter(unwrapped, out, kind)
        steps = result.global_step
        summary = {
            "steps": steps,
            "final_loss": result.training_loss,
            "seconds_per_step": result.metrics["train_runtime"] / max(1, steps),
        }
        if not train_args.save_steps:
            shutil.rmtree(
                out / CHECKPOINT_DIR, ignore_errors=True
            )  # the Trainer's empty working folder
        finish(
            out,
            STAGE,
            (model_args, data_args, train_args, dpo_args),
            report,
            {
                **summary,
                **counts,
                "base_model": info.base,
                "start_adapter": model_args.adapter,
                "dpo_log": trainer.state.log_history,
            },
            log,
        )
    trainer.accelerator.wait_for_everyone()
    return trainer.accelerator.unwrap_model(trainer.model)


if __name__ == "__main__":
    main()
