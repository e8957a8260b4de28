"""Write a merged model: base + a trained adapter folded into plain weights (an explicit, separate
step).

    python -m training.merge --model tiny --adapter runs/stage2_lora_tiny --output_dir
    runs/merged_tiny
    python -m training.merge --model google/paligemma2-3b-ft-docci-448 --adapter runs/stage3_dpo_3b
    \
        --output_dir runs/user-vlm-3b-merged --dtype bfloat16

LoRA adapters are merged with PEFT's `merge_and_unload`; a stage-1 folder writes the base model
with the aligned projector. The result (weights + processor) loads as a base model:
`VLMEngine(VLMConfig(base_model=<output_dir>, adapter=None))`. MoLE cannot be merged: its router
picks an expert per token, so there is no single weight matrix to fold in; serve it as an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.config import check_output_dir, make_output_dir, parse


@dataclass
class MergeArgs:
    model: str = "tiny"
    adapter: str = field(
        default="", metadata={"help": "Stage-1, stage-2 or stage-3 output folder."}
    )
    output_dir: str = ""
    dtype: str = "float32"
    overwrite: bool = False

    def validate(self) -> None:
        if not self.adapter or not self.output_dir:
            raise ValueError("--adapter and --output_dir are required")
        check_output_dir(Path(self.output_dir), overwrite=self.overwrite, resume=False)


def merge(model_name: str, adapter: str, dtype: str = "float32"):
    """(merged transformers model, processor)."""
    from training import trainable
    from uservlm_ros.model import loading

    kind = loading.detect_adapter_type(adapter)
    if kind == "mole":
        raise ValueError(
            f"{adapter} is a MoLE adapter: per-token routing cannot be merged into fixed weights"
        )
    base = "tiny-random-paligemma2" if model_name == "tiny" else model_name
    model, processor, _ = loading.load_model(base, adapter, dtype=dtype, offline_fallback=False)
    if kind == "lora":
        model = model.merge_and_unload()
    trainable.freeze(model)
    return model, processor


def main(argv=None) -> Path:
    (args,) = parse([MergeArgs], argv)
    args.validate()
    model, processor = merge(args.model, args.adapter, args.dtype)
    out = Path(args.output_dir)
    make_output_dir(out, args.overwrite)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if args.model in ("tiny", "tiny-random-paligemma2"):
        # Still random weights: keep the marker that makes the engine flag its answers as
        # placeholders.
        from uservlm_ros.model.tiny import MARKER_FILE, ensure_tiny_model

        (out / MARKER_FILE).write_text((ensure_tiny_model() / MARKER_FILE).read_text())
    print(f"merged {args.adapter} into {args.model}: {out}")
    return out


if __name__ == "__main__":
    main()
