"""Batches for stages 1 and 2, built by the project's one prompt module (uservlm_ros.vlm.prompt).

`prompt.build_pretraining_example` (stage 1: text input `<image>` alone, target = profile + EOS) and
`prompt.build_training_example` (stage 2: the instruct prompt, target = answer + EOS) give input
ids, token types and labels with EOS exactly once; `prompt.collate_examples` pads them.
"""
from __future__ import annotations

import numpy as np

from uservlm_ros.vlm import prompt

PREFIX_MODES = ("bidirectional", "cacheable")


def make_sft_collate(processor, kind: str, max_length: int | None = None, prefix_mode: str = "bidirectional"):
    """collate(list of rows.Examples items) -> model inputs with labels."""
    if prefix_mode not in PREFIX_MODES:
        raise ValueError(f"prefix_mode must be one of {PREFIX_MODES}, got {prefix_mode!r}")
    pad_id = processor.tokenizer.pad_token_id

    def build(example: dict) -> dict:
        image = np.asarray(example["image"])
        if kind == "profile":
            built = prompt.build_pretraining_example(processor, image, example["answer"])
        else:
            built = prompt.build_training_example(processor, image, example["question"], example["answer"])
        return truncate(built, max_length)

    def collate(examples: list[dict]) -> dict:
        batch = prompt.collate_examples([build(example) for example in examples], pad_id)
        if prefix_mode == "cacheable":
            # Placeholder for the "cacheable prefix" issue: causal attention over the prefix too, so
            # its KV cache could be reused. PaliGemma's own mode is "bidirectional" (token type 0).
            batch["token_type_ids"].fill_(1)
        return batch

    return collate


def truncate(example: dict, max_length: int | None) -> dict:
    """Cut the target (never the prefix) to `max_length` tokens; the cut target loses its EOS."""
    length = example["input_ids"].shape[0]
    if max_length is None or length <= max_length:
        return example
    prefix = int((example["labels"] == prompt.IGNORE_INDEX).sum())
    if prefix >= max_length:
        raise ValueError(f"max_length={max_length} is shorter than the prompt ({prefix} tokens incl. image)")
    return {key: value[:max_length] if key != "pixel_values" else value for key, value in example.items()}
