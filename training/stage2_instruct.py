"""Stage 2, instruction tuning (paper §3.2): personalised answers from (image, question, answer).

The vision tower and the projector are frozen; a new adapter on the language model trains:
  method=lora  LoRA on the language model's q,k,v,o,gate,up,down projections (configurable)
  method=mole  LoRA on attention + `mole_num_experts` LoRA experts per FFN with a top-1 router
               that learns (uservlm_ros.model.mole); loss = LM loss + mole_aux_loss_coef * balance
               loss
The prompt is the paper's instruct format (uservlm_ros.model.prompt), the target the answer + EOS
(exactly once). With `adapter: <stage-1 output>` the aligned projector is loaded first and saved,
frozen, inside the new adapter. Output: a PEFT adapter folder (+ mole_config.json and
mole_experts.safetensors for MoLE) that `VLMEngine(adapter=<output_dir>)` loads.

Reproduce (tiny random model, CPU, a few seconds each):
    python -m training.stage2_instruct --config training/configs/stage2_lora_tiny.yaml
    python -m training.stage2_instruct --config training/configs/stage2_mole_tiny.yaml
Two processes: on a machine without CUDA they are CPU processes in a gloo group (`--cpu` would
start only one); with GPUs, one per GPU:
    accelerate launch --multi_gpu --num_processes 2 -m training.stage2_instruct --config
    training/configs/stage2_lora_tiny.yaml
Paper scale (PaliGemma 2 3B + the stage-1 projector, ACIDE/user-vlm-instruct, 3 epochs, batch 64):
    accelerate launch -m training.stage2_instruct --config
    training/configs/stage2_lora_paligemma2_3b.yaml
    accelerate launch -m training.stage2_instruct --config
    training/configs/stage2_mole_paligemma2_3b.yaml
"""

from __future__ import annotations

from pathlib import Path

from training import trainable
from training.batches import make_sft_collate
from training.config import AdapterArgs, ModelArgs, TrainArgs, parse
from training.loop import default_loss, make_accelerator, train
from training.rows import DataArgs, load_examples
from training.run import finish, log_parameters, special_tokens, start
from uservlm_ros.model import loading, mole

STAGE = "stage2_instruct"


def mole_loss(coef: float):
    """LM loss + coef * Switch load-balancing loss of the forward pass that produced it."""

    def loss_fn(model, batch):
        lm_loss, _ = default_loss(model, batch)
        balance = mole.mole_aux_loss(model)
        return lm_loss + coef * balance, {
            "lm_loss": lm_loss.item(),
            "balance_loss": balance.item(),
        }

    return loss_fn


def main(argv=None):
    return run(*parse([ModelArgs, DataArgs, TrainArgs, AdapterArgs], argv))


def run(
    model_args: ModelArgs, data_args: DataArgs, train_args: TrainArgs, adapter_args: AdapterArgs
):
    """Train and save; returns the trained model (tests inspect it)."""
    for args in (model_args, data_args, train_args, adapter_args):
        args.validate()  # before any model is loaded
    if model_args.adapter and loading.detect_adapter_type(model_args.adapter) != "projector":
        raise ValueError(
            f"stage 2 starts from the base model or a stage-1 output; {model_args.adapter} is "
            "a LoRA/MoLE adapter (continue it with --resume on its own output_dir)"
        )

    accelerator = make_accelerator(train_args)
    log = start(train_args)
    model, processor, info = trainable.load_base(model_args.model, model_args.dtype)
    if model_args.adapter:
        trainable.load_projector(model, model_args.adapter)
    examples, report = load_examples(data_args, "instruct", special_tokens(processor), log=log)
    model = trainable.setup_stage2(
        model, adapter_args, carry_projector=bool(model_args.adapter), seed=train_args.seed
    )
    counts = log_parameters(model, log, f"{STAGE} ({adapter_args.method})")

    collate = make_sft_collate(
        processor, "instruct", train_args.max_length, train_args.prefix_mode
    )
    loss_fn = (
        mole_loss(adapter_args.mole_aux_loss_coef)
        if adapter_args.method == "mole"
        else default_loss
    )
    summary = train(model, examples, collate, train_args, accelerator, loss_fn=loss_fn, log=log)

    out = Path(train_args.output_dir)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        trainable.save_adapter(unwrapped, out, adapter_args.method)
        if adapter_args.method == "mole":
            summary["expert_usage"] = mole.expert_usage(unwrapped)
        finish(
            out,
            STAGE,
            (model_args, data_args, train_args, adapter_args),
            report,
            {**summary, **counts, "base_model": info.base},
            log,
        )
    accelerator.wait_for_everyone()
    return accelerator.unwrap_model(model)


if __name__ == "__main__":
    main()
