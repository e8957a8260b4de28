"""Stage 1, vision alignment (paper §3.2): teach the projector to map a face to its user profile.

Only `multi_modal_projector` trains; the SigLIP vision tower and the Gemma 2 language model stay
frozen. The text input is the image token alone, the target the profile text + EOS: free text, or
"The person appears to be {race} {gender}, approximately {age} years old" from FairFace-style
labels (columns file, age, gender, race). Output: `multi_modal_projector.safetensors` + the
resolved config; `VLMEngine(adapter=<output_dir>)` loads it, stage 2 starts from it.

Reproduce (tiny random model, CPU, a few seconds):
    python -m training.stage1_align --config training/configs/stage1_tiny.yaml
Two processes: on a machine without CUDA they are CPU processes in a gloo group (`--cpu` would
start only one); with GPUs, one per GPU:
    accelerate launch --multi_gpu --num_processes 2 -m training.stage1_align --config
    training/configs/stage1_tiny.yaml
Paper scale (PaliGemma 2 3B, ACIDE/user-vlm-pt, 1 epoch, batch 128):
    accelerate launch -m training.stage1_align --config training/configs/stage1_paligemma2_3b.yaml
Any field can be overridden: `--learning_rate 3e-4 --output_dir runs/s1b --overwrite`.
"""

from __future__ import annotations

from pathlib import Path

from training import trainable
from training.batches import make_sft_collate
from training.config import ModelArgs, TrainArgs, parse
from training.loop import make_accelerator, train
from training.rows import DataArgs, load_examples
from training.run import finish, log_parameters, special_tokens, start

STAGE = "stage1_align"


def main(argv=None):
    return run(*parse([ModelArgs, DataArgs, TrainArgs], argv))


def run(model_args: ModelArgs, data_args: DataArgs, train_args: TrainArgs):
    """Train and save; returns the trained model (tests inspect it)."""
    for args in (model_args, data_args, train_args):
        args.validate()  # before any model is loaded
    if model_args.adapter:
        raise ValueError("stage 1 trains the base model's projector: leave `adapter` empty")

    accelerator = make_accelerator(train_args)
    log = start(train_args)
    model, processor, info = trainable.load_base(model_args.model, model_args.dtype)
    examples, report = load_examples(data_args, "profile", special_tokens(processor), log=log)
    trainable.setup_stage1(model)
    counts = log_parameters(model, log, STAGE)

    collate = make_sft_collate(processor, "profile", train_args.max_length, train_args.prefix_mode)
    summary = train(model, examples, collate, train_args, accelerator, log=log)

    out = Path(train_args.output_dir)
    if accelerator.is_main_process:
        trainable.save_projector(accelerator.unwrap_model(model), out)
        finish(
            out,
            STAGE,
            (model_args, data_args, train_args),
            report,
            {**summary, **counts, "base_model": info.base},
            log,
        )
    accelerator.wait_for_everyone()
    return accelerator.unwrap_model(model)


if __name__ == "__main__":
    main()
