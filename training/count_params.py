"""Trainable parameters of each stage at the PaliGemma 2 3B size, without weights (meta device).

    python -m training.count_params            # a markdown table, about 10 s

The architecture is PaliGemma 2 3B's public config (Gemma 2 2B text: hidden 2304, 26 layers, 8
heads, 4 KV heads, head dim 256, MLP 9216, vocab 257,216; SigLIP So400m/14 at 448 px: hidden 1152,
27 layers, MLP 4304; linear projector 1152 -> 2304). The stages' own set-up functions decide what
trains (training/trainable.py), so the table counts what the scripts would train.
"""

from __future__ import annotations

import argparse

import torch

from training import trainable
from training.config import AdapterArgs


def paligemma2_3b_config(image_size: int = 448):
    from transformers import PaliGemmaConfig

    text = dict(
        model_type="gemma2",
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        vocab_size=257216,
        query_pre_attn_scalar=256,
        sliding_window=4096,
        final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0,
    )
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        patch_size=14,
        image_size=image_size,
        vision_use_head=False,
    )
    return PaliGemmaConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=2304,
        hidden_size=2304,
        vocab_size=257216,
        image_token_index=257152,
    )


def meta_model():
    from transformers import PaliGemmaForConditionalGeneration

    with torch.device("meta"):
        return PaliGemmaForConditionalGeneration(paligemma2_3b_config())


def counts(r: int, alpha: int) -> list[tuple[str, int, int]]:
    rows = []
    model = trainable.setup_stage1(meta_model())
    rows.append(("stage 1: projector", *trainable.count_parameters(model)))
    for method in ("lora", "mole"):
        args = AdapterArgs(method=method, lora_r=r, lora_alpha=alpha)
        # carry_projector=True: the adapter also stores the (frozen) stage-1 projector
        model = trainable.setup_stage2(meta_model(), args, carry_projector=True)
        label = {
            "lora": f"stage 2/3: LoRA r={r} (q,k,v,o,gate,up,down)",
            "mole": f"stage 2/3: MoLE r={r}, 3 experts (LoRA q,k,v,o + experts gate,up,down + "
            "router)",
        }[method]
        trainable_count, total = trainable.count_parameters(model)
        rows.append((label, trainable_count, total))
    return rows


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--r", type=int, nargs="*", default=[32, 16])
    args = parser.parse_args(argv)
    base_total = trainable.count_parameters(meta_model())[1]
    print(f"PaliGemma 2 3B (448 px), {base_total:,} parameters\n")
    print("| stage | trainable | % of base |\n|---|---:|---:|")
    rows = []
    for r in args.r:
        for label, trainable_count, _ in counts(r, 32):
            if label.startswith("stage 1") and r != args.r[0]:
                continue
            rows.append((label, trainable_count))
            print(f"| {label} | {trainable_count:,} | {100 * trainable_count / base_total:.3f} |")
    return rows


if __name__ == "__main__":
    main()
