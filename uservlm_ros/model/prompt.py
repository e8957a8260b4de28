"""The User-VLM prompt format: the one place that defines it, for inference and for training.

The paper's instruct format (User-VLM 360°, upstream code) is::

    "<image> <|im_start|>USER: {question}<|im_end|> ASSISTANT: "

``PaliGemmaProcessor`` then expands ``<image>`` into ``image_seq_length`` image tokens (256 at
224 px, 1,024 at 448 px), inserts BOS right after the last image token and ends the prefix with a
newline. The model answers after that newline and stops with EOS.

Decisions documented here because both the engine and ``training/`` rely on them:

* **User context.** ``build_prompt(question, user_context)`` puts a short text the person confirmed
  (e.g. "The user said they are vegetarian.") inside the USER turn, before the question, separated
  by one space: ``USER: {user_context} {question}<|im_end|>``. The paper's models were trained
  without it, so it is kept short and in the user's own voice rather than as an instruction block.
* **No image.** The processor cannot run without an image, and PaliGemma/User-VLM never saw a
  prompt
  without image tokens. Without a camera frame we therefore send a uniform mid-grey image
  (:func:`neutral_image`): the prompt format stays exactly the trained one; the price is one pass
  of
  the vision tower over a blank picture.
* **Limits.** Questions are stripped of surrounding whitespace and must be
  1..``MAX_QUESTION_CHARS``
  characters; user context up to ``MAX_USER_CONTEXT_CHARS``. Text may not contain the prompt's own
  markers or the tokenizer's special tokens (they would change the prompt structure or end the
  answer early).
* **Training targets.** The answer is followed by EOS exactly once (upstream appended it twice);
  prefix positions are labelled -100; ``token_type_ids`` are 0 on the prefix (bidirectional
  attention in PaliGemma's prefix-LM) and 1 on the answer (causal), so the model never sees the
  labels it has to predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

IMAGE_TOKEN = "<image>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
PROMPT_TEMPLATE = IMAGE_TOKEN + " " + TURN_START + "USER: {question}" + TURN_END + " ASSISTANT: "
# Stage 1 (visual profile alignment): the text input is the image token alone.
PRETRAINING_PROMPT = IMAGE_TOKEN
# The paper's profile wording for stage-1 targets.
PROFILE_TEMPLATE = "The person appears to be {race} {gender}, approximately {age} years old"

MAX_QUESTION_CHARS = 1000
MAX_USER_CONTEXT_CHARS = 500
# Grey level of the stand-in image used when no camera frame is available.
NEUTRAL_IMAGE_VALUE = 128
IGNORE_INDEX = -100

_RESERVED_MARKERS = (IMAGE_TOKEN, TURN_START, TURN_END)


def validate_text(
    text: Any, what: str, max_chars: int | None, reserved: Sequence[str] = _RESERVED_MARKERS
) -> str:
    """Return ``text`` stripped, or raise ``ValueError`` saying what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{what} is empty")
    if max_chars is not None and len(stripped) > max_chars:
        raise ValueError(f"{what} is too long: {len(stripped)} characters (limit {max_chars})")
    for marker in reserved:
        if marker and marker in stripped:
            raise ValueError(f"{what} may not contain the reserved token {marker!r}")
    return stripped


def validate_image(image: Any) -> np.ndarray:
    """Return ``image`` if it is an RGB HxWx3 uint8 array (any size), else raise ``ValueError``."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def build_prompt(
    question: str,
    user_context: str | None = None,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
) -> str:
    """The paper's instruct prompt, optionally with confirmed user context before the question.

    >>> build_prompt("What should I eat?")
    '<image> <|im_start|>USER: What should I eat?<|im_end|> ASSISTANT: '
    >>> build_prompt("What should I eat?", "The user said they are vegetarian.")
    '<image> <|im_start|>USER: The user said they are vegetarian. What should I eat?<|im_end|>
    ASSISTANT: '

    Raises ``ValueError`` for an empty or over-long question or context, or one containing a
    prompt marker. ``max_question_chars=None`` lifts the length limit (training data).
    """
    question = validate_text(question, "question", max_question_chars)
    if user_context is not None and user_context.strip():
        context = validate_text(user_context, "user context", MAX_USER_CONTEXT_CHARS)
        question = f"{context} {question}"
    return PROMPT_TEMPLATE.format(question=question)


def format_profile(race: str, gender: str, age: int | str) -> str:
    """Stage-1 target text, in the paper's wording."""
    return PROFILE_TEMPLATE.format(race=race, gender=gender, age=age)


def neutral_image(size: int = 224) -> np.ndarray:
    """The uniform mid-grey RGB image sent when there is no camera frame (see module docstring)."""
    return np.full((size, size, 3), NEUTRAL_IMAGE_VALUE, dtype=np.uint8)


def prepare_inputs(
    processor,
    question: str,
    image: np.ndarray | None = None,
    user_context: str | None = None,
    max_question_chars: int | None = MAX_QUESTION_CHARS,
    return_tensors: str = "pt",
):
    """Processor inputs for generation: input_ids, attention_mask, token_type_ids, pixel_values.

    ``image`` is an RGB HxWx3 uint8 array of any size (the processor resizes it); ``None`` means
    the neutral grey image. The processor's backward-compatible ``labels`` are dropped.
    """
    prompt = build_prompt(question, user_context, max_question_chars)
    _check_special_tokens(
        processor.tokenizer, prompt[len(IMAGE_TOKEN) :], "question or user context"
    )
    image = validate_image(image) if image is not None else neutral_image()
    inputs = _process(processor, image, prompt, return_tensors)
    inputs.pop("labels", None)
    return inputs


def build_training_example(
    processor,
    image: np.ndarray,
    question: str,
    answer: str,
    user_context: str | None = None,
) -> dict:
    """One stage-2/3 example: the instruct prompt as prefix, ``answer`` + EOS as target.

    ``image``: RGB HxWx3 uint8 array or a PIL image. Returns 1-D tensors ``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``labels`` (all of the same length) and
    ``pixel_values`` (3xHxW). Labels are -100 on the prefix; EOS appears once,
    as the last token. Questions are not length-limited here (training data may be long).
    """
    prompt = build_prompt(question, user_context, max_question_chars=None)
    return _example(processor, image, prompt, answer, "answer")


def build_pretraining_example(processor, image: np.ndarray, profile: str) -> dict:
    """One stage-1 example: text input ``<image>`` alone, target = profile text + EOS."""
    return _example(processor, image, PRETRAINING_PROMPT, profile, "profile")


def collate_examples(examples: Sequence[dict], pad_token_id: int) -> dict:
    """Right-pad a list of training examples into a batch.

    Padding gets attention 0, label -100 and token type 1 (causal), so padded positions never join
    the bidirectional prefix block.
    """
    import torch

    if not examples:
        raise ValueError("no examples to collate")
    length = max(int(example["input_ids"].shape[0]) for example in examples)
    fill = {
        "input_ids": pad_token_id,
        "attention_mask": 0,
        "token_type_ids": 1,
        "labels": IGNORE_INDEX,
    }
    batch = {
        key: torch.full((len(examples), length), value, dtype=torch.long)
        for key, value in fill.items()
    }
    for row, example in enumerate(examples):
        size = int(example["input_ids"].shape[0])
        for key in fill:
            batch[key][row, :size] = example[key]
    batch["pixel_values"] = torch.stack([example["pixel_values"] for example in examples])
    return batch


def _example(processor, image, prompt: str, target: str, what: str) -> dict:
    import torch

    tokenizer = processor.tokenizer
    if hasattr(image, "convert"):  # PIL images, as datasets yield them
        image = np.asarray(image.convert("RGB"))
    image = validate_image(image)
    eos = tokenizer.eos_token
    target = validate_text(target, what, max_chars=None)
    # A trailing EOS string in the data is the upstream habit that produced two EOS tokens.
    if eos and target.endswith(eos):
        target = validate_text(target[: -len(eos)], what, max_chars=None)
    _check_special_tokens(tokenizer, target, what)
    _check_special_tokens(tokenizer, prompt[len(IMAGE_TOKEN) :], "question or user context")

    prefix = _process(processor, image, prompt, "pt")
    prefix_ids = prefix["input_ids"][0]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    target_ids = torch.tensor(target_ids, dtype=torch.long)
    if int((target_ids == tokenizer.eos_token_id).sum()) != 1:
        raise ValueError(f"{what} must end with exactly one EOS token")

    n_prefix, n_target = prefix_ids.shape[0], target_ids.shape[0]
    return {
        "input_ids": torch.cat([prefix_ids, target_ids]),
        "attention_mask": torch.ones(n_prefix + n_target, dtype=torch.long),
        "token_type_ids": torch.cat(
            [torch.zeros(n_prefix, dtype=torch.long), torch.ones(n_target, dtype=torch.long)]
        ),
        "labels": torch.cat([torch.full((n_prefix,), IGNORE_INDEX, dtype=torch.long), target_ids]),
        "pixel_values": prefix["pixel_values"][0],
    }


def _process(processor, image: np.ndarray, prompt: str, return_tensors: str):
    # channels_last explicitly: a small HxWx3 image (e.g. 3 pixels high) is otherwise ambiguous.
    return processor(
        images=image, text=prompt, return_tensors=return_tensors, input_data_format="channels_last"
    )


def _check_special_tokens(tokenizer, text: str, what: str) -> None:
    """Special-token strings in user text would be parsed as the tokens themselves."""
    for token in tokenizer.all_special_tokens:
        if token and token in text:
            raise ValueError(f"{what} may not contain the special token {token!r}")
