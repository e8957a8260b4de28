"""The training loop of stages 1 and 2: plain PyTorch + Accelerate, readable on one screen.

Why not `transformers.Trainer` or TRL's `SFTTrainer`? Stage 1 and 2 are next-token prediction on a
ready-made batch (uservlm_ros.model.prompt builds input ids, token types and labels with EOS
exactly
once), so a trainer would add nothing but indirection, and MoLE's load-balancing loss is one line
here instead of a `compute_loss` override. Accelerate gives the same script on one CPU, under
`accelerate launch` on several processes (DDP, gloo on CPU) or on GPUs. Stage 3 uses TRL's
`DPOTrainer`, where the DPO loss and the reference model are the point.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from training.config import CHECKPOINT_DIR, TrainArgs

LossFn = Callable[[torch.nn.Module, dict], "tuple[torch.Tensor, dict[str, float]]"]


def default_loss(model: torch.nn.Module, batch: dict):
    return model(**batch).loss, {}


def make_accelerator(args: TrainArgs):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    # find_unused_parameters: a MoLE expert that no token of a batch was routed to gets no
    # gradient. cpu=True without CUDA: several launched processes form a gloo group (MULTI_CPU)
    # instead of each believing it is alone.
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def train(
    model,
    examples,
    collate,
    args: TrainArgs,
    accelerator,
    loss_fn: LossFn = default_loss,
    log=print,
) -> dict:
    """Train the parameters of `model` that require grad; return {steps, final_loss,
    seconds_per_step}."""
    from transformers import get_scheduler

    out = Path(args.output_dir)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    loader = DataLoader(
        examples, batch_size=args.per_device_train_batch_size, shuffle=True, collate_fn=collate
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    steps_per_epoch = max(1, len(loader) // args.gradient_accumulation_steps)
    total = (
        args.max_steps
        if args.max_steps > 0
        else math.ceil(args.num_train_epochs * steps_per_epoch)
    )
    # Stepped by hand once per optimizer step (not prepared: Accelerate would step it once per
    # process).
    scheduler = get_scheduler(
        "linear",
        optimizer,
        num_warmup_steps=int(args.warmup_ratio * total),
        num_training_steps=total,
    )
    accelerator.register_for_checkpointing(scheduler)

    step = 0
    if args.resume:
        accelerator.load_state(str(out / CHECKPOINT_DIR))
        step = json.loads((out / CHECKPOINT_DIR / "step.json").read_text())["step"]
        log(f"resumed from {out / CHECKPOINT_DIR} at step {step}/{total}")

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, disable=not accelerator.is_main_process, desc="train")
    model.train()
    start, last, first_step = time.perf_counter(), {}, step
    while step < total:
        epoch, done_in_epoch = divmod(step, steps_per_epoch)
        loader.set_epoch(epoch)  # the same shuffle on every process and after a resume
        batches = accelerator.skip_first_batches(
            loader, done_in_epoch * args.gradient_accumulation_steps
        )
        for batch in batches:
            with accelerator.accumulate(model):
                loss, parts = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            last = {
                "step": step,
                "epoch": epoch,
                "loss": accelerator.reduce(loss.detach(), "mean").item(),
                "lr": scheduler.get_last_lr()[0],
                **parts,
            }
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if accelerator.is_main_process and (step % args.logging_steps == 0 or step == total):
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(last) + "\n")
                log(
                    " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in last.items()
                    )
                )
            if args.save_steps and step % args.save_steps == 0 and step < total:
                save_checkpoint(accelerator, out, step)
            if step >= total or step % steps_per_epoch == 0:
                break
    bar.close()
    seconds = time.perf_counter() - start
    accelerator.wait_for_everyone()
    return {
        "steps": step,
        "final_loss": last.get("loss"),
        "seconds_per_step": seconds / max(1, step - first_step),
    }


def save_checkpoint(accelerator, out: Path, step: int) -> None:
    accelerator.save_state(str(out / CHECKPOINT_DIR))
    if accelerator.is_main_process:
        (out / CHECKPOINT_DIR / "step.json").write_text(json.dumps({"step": step}))
