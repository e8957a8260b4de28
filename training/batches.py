"""Batches for stages 1 and 2, built by the project's one prompt module (uservlm_ros.model.prompt).

`prompt.build_pretraining_example` (stage 1: text input `<image>` alone, target = profile + EOS)
and
`prompt.build_training_example` (stage 2: the instruct prompt, target = answer + EOS) give input
ids, token types and labels with EOS exactly once; `prompt.collate_examples` pads them.
"""

from __future__ import annotations

import numpy as np

from uservlm_ros.model import prefix, prompt

PREFIX_MODES = prefix.PREFIX_MODES


def prefix_token_types(processor, input_ids, token_type_ids, mode: str):
    """The token types of ``mode`` (uservlm_ros.model.prefix: the one switch inference uses
    too)."""
    tokenizer = processor.tokenizer
    image_token_id = getattr(processor, "image_token_id", None)
    if image_token_id is None:
        image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    return prefix.make_token_type_ids(
        input_ids,
        token_type_ids,
        mode,
        image_token_id=image_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def make_sft_collate(
    processor, kind: str, max_length: int | None = None, prefix_mode: str = "bidirectional"
):
    """collate(list of rows.Examples items) -> model inputs with labels."""
    if prefix_mode not in PREFIX_MODES:
        raise ValueError(f"prefix_mode must be one of {PREFIX_MODES}, got {prefix_mode!r}")
    pad_id = processor.tokenizer.pad_token_id

    def build(example: dict) -> dict:
        image = np.asarray(example["image"])
        if kind == "profile":
            built = prompt.build_pretraining_example(processor, image, example["answer"])
        else:
            built = prompt.build_training_example(
                processor, image, example["question"], example["answer"]
            )
        return truncate(built, max_length)

    def collate(examples: list[dict]) -> dict:
        batch = prompt.collate_examples([build(example) for example in examples], pad_id)
        if prefix_mode != "bidirectional":
            # "cacheable": only the image block (+ BOS) stays bidirectional, the question is
            # causal, so the image KV can be cached per person at inference
            # (VLMConfig.prefix_mode).
            batch["token_type_ids"] = prefix_token_types(
                processor, batch["input_ids"], batch["token_type_ids"], prefix_mode
            )
        return batch

    return collate


def truncate(example: dict, max_length: int | None) -> dict:
    """Cut the target (never the prefix) to `max_length` tokens; the cut target loses its EOS."""
    length = example["input_ids"].shape[0]
    if max_length is None or length <= max_length:
        return example
    prefix = int((example["labels"] == prompt.IGNORE_INDEX).sum())
    if prefix >= max_length:
        raise ValueError(
            f"max_length={max_length} is shorter than the prompt ({prefix} tokens incl. image)"
        )
    return {
        key: value[:max_length] if key != "pixel_values" else value
        for key, value in example.items()
    }
