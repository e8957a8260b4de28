"""Which part of PaliGemma's prompt attends bidirectionally: the one switch shared by inference and
training.

PaliGemma is a prefix-LM: transformers builds the attention mask from ``token_type_ids`` —
positions
with type 0 form one block in which every position sees every other (on top of the causal mask),
type 1 is causal. The processor marks the whole prompt 0: ``[image tokens][BOS][question]["\\n"]``.
So an image token's keys and values depend on the question that follows it, and nothing of the
prompt can be reused across questions.

Two modes (``PREFIX_MODES``):

* ``"bidirectional"`` — the model as pre-trained and as the paper's adapters were trained; the
  default everywhere.
* ``"cacheable"`` — only the image block **and the BOS after it** stay bidirectional; the question
  (and the ``"\\n"`` that ends the prompt) become causal. BOS is kept in the block because its
  embedding is a constant: the block's keys and values are still a pure function of the image,
  and the image tokens keep attending to BOS as they did in pre-training. The KV cache of that
  block can then be computed once per person (:func:`build_prefix_cache`) and each follow-up
  question prefills only its own tokens. **This changes the attention the model was trained
  with**: adapters must be trained in the same mode (stage 2 passes its batches through
  :func:`make_token_type_ids`), otherwise answers degrade.

Training use (right-padded batches from ``prompt.collate_examples``)::

    batch["token_type_ids"] = make_token_type_ids(
        batch["input_ids"], batch["token_type_ids"], mode,
        image_token_id=model.config.image_token_id, bos_token_id=tokenizer.bos_token_id)
"""

from __future__ import annotations

import copy

import torch

PREFIX_MODES = ("bidirectional", "cacheable")
DEFAULT_PREFIX_MODE = "bidirectional"


def validate_prefix_mode(mode: str) -> str:
    if mode not in PREFIX_MODES:
        raise ValueError(f"prefix_mode {mode!r}: use one of {', '.join(PREFIX_MODES)}")
    return mode


def make_token_type_ids(
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor,
    mode: str,
    image_token_id: int,
    bos_token_id: int | None,
) -> torch.Tensor:
    """``token_type_ids`` for ``mode`` (a new tensor; the input is not modified).

    ``"bidirectional"``: returned unchanged (a copy). ``"cacheable"``: 0 stays 0 only on image
    tokens and on a BOS that directly follows an image token; every other 0 becomes 1. Positions
    that are already 1 (answer, labels, padding) stay 1. Works on 1-D ids or batches (..., seq).
    """
    validate_prefix_mode(mode)
    if input_ids.shape != token_type_ids.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and token_type_ids {tuple(token_type_ids.shape)} "
            "differ in shape"
        )
    if mode == "bidirectional":
        return token_type_ids.clone()
    is_image = input_ids == image_token_id
    keep = is_image.clone()
    if bos_token_id is not None:
        after_image = torch.zeros_like(is_image)
        after_image[..., 1:] = is_image[..., :-1]
        keep |= after_image & (input_ids == bos_token_id)
    keep &= token_type_ids == 0
    return torch.where(keep, torch.zeros_like(token_type_ids), torch.ones_like(token_type_ids))


def cacheable_prefix_length(input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> int:
    """Length of the leading type-0 block of a single prompt (image tokens + BOS in "cacheable"
    mode). Raises ``ValueError`` when the type-0 positions are not one leading block, i.e. the
    prompt is not in cacheable form (left padding, or ``make_token_type_ids`` not applied)."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"expected one prompt of shape (1, seq), got {tuple(input_ids.shape)}")
    zeros = token_type_ids[0] == 0
    length = int(zeros.sum())
    if length == 0 or not bool(zeros[:length].all()):
        raise ValueError("the prompt has no leading bidirectional block to cache")
    if length == input_ids.shape[1]:
        raise ValueError(
            "the whole prompt is bidirectional: apply make_token_type_ids(..., 'cacheable') first"
        )
    return length


def build_prefix_cache(
    model, input_ids: torch.Tensor, pixel_values: torch.Tensor, prefix_length: int
):
    """Run the image block (+ BOS) alone and return its KV cache (a transformers ``Cache``).

    The block is bidirectional within itself and attends to nothing else, so its keys and values
    are exactly those the full prompt would produce in "cacheable" mode. Only the last position's
    logits are computed (they are not used).
    """
    prefix_ids = input_ids[:, :prefix_length]
    with torch.inference_mode():
        output = model(
            input_ids=prefix_ids,
            pixel_values=pixel_values,
            attention_mask=torch.ones_like(prefix_ids),
            token_type_ids=torch.zeros_like(prefix_ids),
            use_cache=True,
            logits_to_keep=1,
        )
    return output.past_key_values


def fork_cache(cache):
    """A private copy of a cached prefix for one generation (generation appends to its cache)."""
    return copy.deepcopy(cache)
