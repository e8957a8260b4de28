"""The beginning and the end every stage script shares: seed, output folder, logging, saving."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from training.config import make_output_dir, save_resolved_config

logger = logging.getLogger("training")


def start(train_args):
    """Seed everything, create (or keep, on --resume) the output folder; return a main-process
    logger.

    The process state is Accelerate's `PartialState`, shared with the `Accelerator` of our loop
    (stages 1-2) and of the Trainer (stage 3).
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import set_seed

    set_seed(train_args.seed)
    # cpu=True without CUDA: several processes (torchrun / accelerate launch) then form a gloo
    # group (MULTI_CPU); with cpu=False Accelerate would treat each CPU process as alone.
    state = PartialState(cpu=not torch.cuda.is_available())
    make_output_dir(
        Path(train_args.output_dir),
        train_args.overwrite and not train_args.resume,
        state.is_main_process,
    )
    state.wait_for_everyone()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    def log(message: str) -> None:
        if state.is_main_process:
            logger.info(message)

    log(f"{state.num_processes} process(es), {state.distributed_type}, device {state.device}")
    return log


def special_tokens(processor) -> tuple[str, ...]:
    return tuple(token for token in processor.tokenizer.all_special_tokens if token)


def log_parameters(model, log, stage: str) -> dict:
    from training.trainable import count_parameters

    trainable, total = count_parameters(model)
    log(
        f"{stage}: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.3f} "
        "%)"
    )
    return {"trainable_parameters": trainable, "total_parameters": total}


def finish(out: Path, stage: str, configs, report, summary: dict, log) -> None:
    """Resolved config and a run summary next to the saved weights (main process only)."""
    extra = {"data_rows": report.rows, "data_skipped": len(report.skipped), **summary}
    save_resolved_config(out, stage, *configs, extra=extra)
    (out / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (out / "train_summary.json").write_text(json.dumps(extra, indent=2) + "\n")
    log(
        f"saved {out} ({report.summary()}; {summary.get('steps')} steps, "
        f"{summary.get('seconds_per_step', float('nan')):.3f} s/step)"
    )
