"""Forward FLOPs of User-VLM 360° and the Table 8 baselines, counted from their real
configurations.

Two independent counts of the same thing:

* :func:`prefill_flops` — analytic, per layer, from the config values in
  :mod:`uservlm_ros.model.architectures` and the image geometry of
  :func:`~.architectures.image_layout`.
* :func:`measure_prefill_flops` — ``torch.utils.flop_counter.FlopCounterMode`` around the real
  transformers modules built from the same config on the meta device (no weights, no memory, well
  under a second per model). Also :func:`measure_model_flops` for a real model with real inputs
  (the tiny PaliGemma in the tests).

What is counted (both ways): the FLOPs of matrix products only, 2·m·n·k for an (m×k)·(k×n)
product — linear layers, the patch-embedding convolution, attention scores (Q·Kᵀ) and attention
values (P·V) — for the **prefill**: vision tower, projector and the language model over the
whole prompt, up to the logits of the first answer token (``generate`` keeps only the last
position's logits, so the LM head is counted once). Not counted: normalisations, activations,
softmax, soft-capping, rotary embeddings (elementwise, well under 1 % here). Attention is counted
dense (n_q × n_kv), as eager and math-SDPA kernels compute it (a causal flash kernel skips about
half of the language model's score/value products); Gemma 2's sliding window (4,096) only
limits the keys a cached prefill or decoding step sees, and never bites at these lengths.
Decoding is counted separately (:func:`decode_flops`, analytic only; checked on the tiny model).

The paper's Table 8 scenario: the same image for every model, a 50-token question for User-VLM
(no instructions needed) and 100 instruction tokens + the 50-token question (150) for the
general-purpose baselines; ratio = baseline FLOPs / User-VLM FLOPs. :func:`table8` computes it.
"""

from __future__ import annotations

import dataclasses

from uservlm_ros.model.architectures import (
    ARCHITECTURES,
    BASELINES,
    CAMERA_IMAGE_SIZE,
    USER_VLM,
    Architecture,
    ImageLayout,
    image_layout,
)
from uservlm_ros.model.architectures import get as get_architecture

# Table 8 of the paper: FLOPs reduction of User-VLM 360° (rows) over each baseline (columns),
# "assuming a question prompt of 50 tokens and detailed instructions of 100 tokens".
PAPER_TABLE8 = {
    "paligemma2-3b-448": {
        "llama-3.2-11b-vision": 22.5,
        "pixtral-12b": 30.0,
        "llava-1.6-7b": 17.5,
        "llava-1.5-7b": 17.5,
    },
    "paligemma2-10b-448": {
        "llama-3.2-11b-vision": 16.5,
        "pixtral-12b": 9.0,
        "llava-1.6-7b": 5.25,
        "llava-1.5-7b": 5.25,
    },
}
QUESTION_TOKENS = 50
INSTRUCTION_TOKENS = 100
# Fixed text positions besides the question: BOS (every model) — PaliGemma's BOS sits between the
# image and the text, Mllama's <|image|> token is counted as an image token.
BOS_TOKENS = 1


@dataclasses.dataclass(frozen=True)
class PrefillFlops:
    vision: int  # vision tower, incl. the patch-embedding convolution
    projector: int  # multi-modal projector
    language_model: int  # decoder layers over the prompt (Mllama: incl. cross-attention)
    lm_head: int  # logits of the last position

    @property
    def total(self) -> int:
        return self.vision + self.projector + self.language_model + self.lm_head


# --------------------------------------------------------------------------- analytic counts


def attention_flops(
    n_q: int,
    n_kv: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    n_kv_new: int | None = None,
) -> int:
    """Q/K/V/O projections + scores + values of one attention block.

    ``n_kv_new``: positions whose K and V are computed now (default ``n_kv``); fewer when a KV
    cache already holds the rest.
    """
    n_kv_new = n_kv if n_kv_new is None else n_kv_new
    projections = 2 * n_q * hidden * heads * head_dim * 2  # Q and O
    projections += 2 * n_kv_new * hidden * kv_heads * head_dim * 2  # K and V
    products = 2 * heads * n_q * n_kv * head_dim * 2  # Q·Kᵀ and P·V
    return projections + products


def mlp_flops(n: int, hidden: int, intermediate: int, gated: bool) -> int:
    """A feed-forward block: gate/up/down (gated) or fc1/fc2."""
    return (3 if gated else 2) * 2 * n * hidden * intermediate


def vit_flops(
    crops: int,
    seq: int,
    patches: int,
    config,
    gated_mlp: bool = False,
    layers: int | None = None,
    heads: int | None = None,
) -> int:
    """A ViT: patch-embedding convolution + ``layers`` pre-norm blocks over ``crops`` × ``seq``
    tokens (each crop attends within itself)."""
    hidden = config.hidden_size
    heads = heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    layers = config.num_hidden_layers if layers is None else layers
    conv = 2 * crops * patches * (config.num_channels * config.patch_size**2) * hidden
    block = attention_flops(seq, seq, hidden, heads, heads, head_dim)
    block += mlp_flops(seq, hidden, config.intermediate_size, gated_mlp)
    return conv + crops * layers * block


def decoder_flops(n_q: int, n_kv: int, text_config, layers: int | None = None) -> int:
    """``layers`` decoder layers (default: all) with a gated MLP, for ``n_q`` new positions
    attending to ``n_kv`` positions (``n_kv - n_q`` of them from a KV cache).

    Sliding-window layers (Gemma 2's ``layer_types``): with a cache, transformers' sliding cache
    layer keeps only the last ``sliding_window - 1`` positions, so the new positions attend to at
    most ``sliding_window - 1 + n_q`` keys. Without a cache the whole n × n product is computed
    (the window is applied by the mask).
    """
    hidden = text_config.hidden_size
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or hidden // heads
    types = (
        getattr(text_config, "layer_types", None)
        or ["full_attention"] * text_config.num_hidden_layers
    )
    if layers is not None:  # Mllama's self-attention layers (no sliding window)
        types = ["full_attention"] * layers
    window = getattr(text_config, "sliding_window", None)
    total = 0
    for layer_type in types:
        visible = n_kv
        if layer_type == "sliding_attention" and window and n_kv > n_q:
            visible = min(n_kv, window - 1 + n_q)
        total += attention_flops(n_q, visible, hidden, heads, kv_heads, head_dim, n_kv_new=n_q)
        total += mlp_flops(n_q, hidden, text_config.intermediate_size, gated=True)
    return total


def cross_attention_layer_flops(n_q: int, n_vision: int, text_config) -> int:
    """One Mllama cross-attention decoder layer: Q and O on the text positions, K and V on the
    vision tokens, scores and values text × vision, and the gated MLP on the text positions.
    While decoding, the vision K/V come from the cache (see :func:`decode_flops`)."""
    return _cross_attention_step(n_q, n_vision, text_config, new_vision=n_vision)


def _cross_attention_step(n_q: int, n_vision: int, text_config, new_vision: int) -> int:
    hidden, heads = text_config.hidden_size, text_config.num_attention_heads
    attention = attention_flops(
        n_q,
        n_vision,
        hidden,
        heads,
        text_config.num_key_value_heads,
        hidden // heads,
        n_kv_new=new_vision,
    )
    return attention + mlp_flops(n_q, hidden, text_config.intermediate_size, gated=True)


def prefill_flops(
    arch: Architecture | str,
    text_tokens: int,
    image_size: tuple[int, int] = CAMERA_IMAGE_SIZE,
    vision_cached: bool = False,
    cached_prefix_tokens: int = 0,
) -> PrefillFlops:
    """Analytic prefill FLOPs for one image and ``text_tokens`` text tokens (+ BOS).

    ``vision_cached``: the image features come from a cache (vision tower and projector = 0).
    ``cached_prefix_tokens``: that many leading positions (image block + BOS) are in a KV cache:
    only the rest is prefilled, attending to all (PaliGemma only; implies ``vision_cached``).
    """
    arch = get_architecture(arch) if isinstance(arch, str) else arch
    config = arch.hf_config()
    layout = image_layout(arch, image_size)
    return _prefill(arch.family, config, layout, text_tokens, vision_cached, cached_prefix_tokens)


def _prefill(
    family: str,
    config,
    layout: ImageLayout,
    text_tokens: int,
    vision_cached: bool,
    cached_prefix_tokens: int,
) -> PrefillFlops:
    if text_tokens < 1:
        raise ValueError(f"text_tokens must be positive, got {text_tokens}")
    text, vision = config.text_config, config.vision_config
    seq = layout.llm_image_tokens + BOS_TOKENS + text_tokens
    lm_head = 2 * text.hidden_size * text.vocab_size

    if cached_prefix_tokens:
        if family != "paligemma":
            raise ValueError("a cached image prefix is only implemented for PaliGemma")
        if not 0 < cached_prefix_tokens < seq:
            raise ValueError(
                f"cached_prefix_tokens must be in 1..{seq - 1}, got {cached_prefix_tokens}"
            )
        new = seq - cached_prefix_tokens
        return PrefillFlops(0, 0, decoder_flops(new, seq, text), lm_head)

    if family == "mllama":
        # Both the local (32) and the global (8) encoder run on one sequence of all tiles
        # (4 × 1,608 tokens, tiles masked from each other): one "crop" of that length.
        vision_part = vit_flops(
            1,
            layout.vision_crops * layout.vision_seq,
            layout.vision_crops * layout.patches_per_crop,
            vision,
            layers=vision.num_hidden_layers + vision.num_global_layers,
            heads=vision.attention_heads,
        )
        projector = 2 * layout.projector_tokens * vision.vision_output_dim * text.hidden_size
        cross_layers = len(text.cross_attention_layers)
        language = decoder_flops(seq, seq, text, layers=text.num_hidden_layers - cross_layers)
        language += cross_layers * cross_attention_layer_flops(
            seq, layout.cross_attention_tokens, text
        )
    else:
        gated_vit = family == "pixtral"
        vision_part = vit_flops(
            layout.vision_crops,
            layout.vision_seq,
            layout.patches_per_crop,
            vision,
            gated_mlp=gated_vit,
        )
        if family == "paligemma":
            projector = 2 * layout.projector_tokens * vision.hidden_size * vision.projection_dim
        else:  # LLaVA's two-layer MLP projector
            width = (vision.hidden_size + text.hidden_size) * text.hidden_size
            projector = 2 * layout.projector_tokens * width
        language = decoder_flops(seq, seq, text)

    if vision_cached:
        vision_part = projector = 0
    return PrefillFlops(vision_part, projector, language, lm_head)


def decode_flops(arch: Architecture | str, context: int, new_tokens: int) -> int:
    """Analytic FLOPs of ``new_tokens`` greedy decoding steps after a prompt of ``context``
    positions (each step: one position through the decoder, attending to everything so far, plus
    the LM head). Mllama's cross-attention layers re-use the vision K/V from the prefill."""
    arch = get_architecture(arch) if isinstance(arch, str) else arch
    text = arch.hf_config().text_config
    total = 0
    for step in range(new_tokens):
        n_kv = context + step + 1
        if arch.family == "mllama":
            cross_layers = len(text.cross_attention_layers)
            vision_tokens = image_layout(arch).cross_attention_tokens
            total += decoder_flops(1, n_kv, text, layers=text.num_hidden_layers - cross_layers)
            total += cross_layers * _cross_attention_step(1, vision_tokens, text, new_vision=0)
        else:
            total += decoder_flops(1, n_kv, text)
        total += 2 * text.hidden_size * text.vocab_size
    return total


def prompt_length(arch: Architecture | str, text_tokens: int, image_size=CAMERA_IMAGE_SIZE) -> int:
    """Positions in the language model's prompt: image tokens + BOS + text."""
    arch = get_architecture(arch) if isinstance(arch, str) else arch
    return image_layout(arch, image_size).llm_image_tokens + BOS_TOKENS + text_tokens


# --------------------------------------------------------------------------- measured counts


def measure_model_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """Run ``fn(*args, **kwargs)`` under ``FlopCounterMode``; returns (FLOPs, result)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return counter.get_total_flops(), result


def measure_prefill_flops(
    arch: Architecture | str, text_tokens: int, image_size: tuple[int, int] = CAMERA_IMAGE_SIZE
) -> PrefillFlops:
    """The same prefill as :func:`prefill_flops`, counted by ``FlopCounterMode`` on the real
    transformers modules built on the meta device (eager attention). Components are run one by
    one (vision tower, projector, language model, LM head) because the top-level forwards check
    token counts with data-dependent operations that meta tensors cannot run."""
    import torch

    arch = get_architecture(arch) if isinstance(arch, str) else arch
    config = arch.hf_config("eager")
    layout = image_layout(arch, image_size)
    text = config.text_config
    seq = layout.llm_image_tokens + BOS_TOKENS + text_tokens
    meta = torch.device("meta")
    with meta, torch.no_grad():
        model = _model_class(arch.family)(config)
        inner = model.model
        embeds = torch.empty(1, seq, text.hidden_size)
        positions = torch.arange(seq)[None]

        if arch.family == "paligemma":
            side = config.vision_config.image_size
            pixels = torch.empty(1, 3, side, side)
            vision, features = measure_model_flops(inner.vision_tower, pixels)
            projector, _ = measure_model_flops(
                inner.multi_modal_projector, features.last_hidden_state
            )
            language, out = measure_model_flops(
                inner.language_model, inputs_embeds=embeds, position_ids=positions
            )
        elif arch.family == "mllama":
            size = config.vision_config.image_size
            pixels = torch.empty(1, 1, layout.vision_crops, 3, size, size)
            ratio_ids = torch.ones(1, 1, dtype=torch.long)
            ratio_mask = torch.ones(1, 1, layout.vision_crops, dtype=torch.long)
            vision, features = measure_model_flops(
                inner.vision_model,
                pixel_values=pixels,
                aspect_ratio_ids=ratio_ids,
                aspect_ratio_mask=ratio_mask,
            )
            projector, cross_states = measure_model_flops(
                inner.multi_modal_projector, features.last_hidden_state
            )
            cross_states = cross_states.reshape(1, -1, text.hidden_size)
            row_mask = torch.ones(1, 1, seq, 1)
            cross_mask = torch.zeros(1, 1, seq, cross_states.shape[1])
            language, out = measure_model_flops(
                inner.language_model,
                inputs_embeds=embeds,
                position_ids=positions,
                cross_attention_states=cross_states,
                cross_attention_mask=cross_mask,
                full_text_row_masked_out_mask=row_mask,
            )
        else:
            vision_config = config.vision_config
            if arch.family == "pixtral":
                height, width = _pixtral_size(arch, image_size)
                pixels = torch.empty(1, 3, height, width)
                vision, features = measure_model_flops(
                    inner.vision_tower,
                    pixels,
                    image_sizes=[(height, width)],
                    output_hidden_states=True,
                )
            else:
                side = vision_config.image_size
                pixels = torch.empty(layout.vision_crops, 3, side, side)
                vision, features = measure_model_flops(
                    inner.vision_tower, pixels, output_hidden_states=True
                )
            selected = features.hidden_states[config.vision_feature_layer]
            if config.vision_feature_select_strategy == "default":
                selected = selected[:, 1:]
            projector, _ = measure_model_flops(inner.multi_modal_projector, selected)
            language, out = measure_model_flops(
                inner.language_model, inputs_embeds=embeds, position_ids=positions
            )
        lm_head, _ = measure_model_flops(model.lm_head, out.last_hidden_state[:, -1:])
    return PrefillFlops(vision, projector, language, lm_head)


def _pixtral_size(arch: Architecture, image_size) -> tuple[int, int]:
    layout = image_layout(arch, image_size)
    patch = arch.config["vision_config"]["patch_size"]
    rows = layout.llm_image_tokens - layout.patches_per_crop  # one break/end token per row
    cols = layout.patches_per_crop // rows
    return rows * patch, cols * patch


def _model_class(family: str):
    import transformers

    return {
        "paligemma": transformers.PaliGemmaForConditionalGeneration,
        "mllama": transformers.MllamaForConditionalGeneration,
        "llava": transformers.LlavaForConditionalGeneration,
        "pixtral": transformers.LlavaForConditionalGeneration,
        "llava_next": transformers.LlavaNextForConditionalGeneration,
    }[family]


# --------------------------------------------------------------------------- Table 8


@dataclasses.dataclass(frozen=True)
class Table8Cell:
    ours: str  # architecture key of the User-VLM row
    baseline: str  # architecture key of the column
    ours_flops: int
    baseline_flops: int
    paper_ratio: float

    @property
    def ratio(self) -> float:
        return self.baseline_flops / self.ours_flops


def table8(
    question_tokens: int = QUESTION_TOKENS,
    instruction_tokens: int = INSTRUCTION_TOKENS,
    image_size: tuple[int, int] = CAMERA_IMAGE_SIZE,
    measured: bool = False,
) -> list[Table8Cell]:
    """Prefill FLOPs ratios in the paper's scenario (analytic, or measured on the meta device)."""
    count = measure_prefill_flops if measured else prefill_flops
    ours = {key: count(key, question_tokens, image_size).total for key in USER_VLM}
    theirs = {
        key: count(key, question_tokens + instruction_tokens, image_size).total
        for key in BASELINES
    }
    return [
        Table8Cell(o, b, ours[o], theirs[b], PAPER_TABLE8[o][b])
        for o in USER_VLM
        for b in BASELINES
    ]


def followup_turn_flops(
    arch: str = "paligemma2-3b-448",
    text_tokens: int = QUESTION_TOKENS,
    image_size: tuple[int, int] = CAMERA_IMAGE_SIZE,
) -> dict[str, PrefillFlops]:
    """Prefill FLOPs of a follow-up turn of the same person, with each of the engine's modes:
    ``none`` (everything again), ``vision_cache`` (image features reused) and
    ``cacheable_prefix`` (the image block + BOS KV reused: only the question is prefilled)."""
    prefix = image_layout(get_architecture(arch), image_size).llm_image_tokens + BOS_TOKENS
    return {
        "none": prefill_flops(arch, text_tokens, image_size),
        "vision_cache": prefill_flops(arch, text_tokens, image_size, vision_cached=True),
        "cacheable_prefix": prefill_flops(
            arch, text_tokens, image_size, cached_prefix_tokens=prefix
        ),
    }


__all__ = [
    "ARCHITECTURES",
    "PAPER_TABLE8",
    "PrefillFlops",
    "Table8Cell",
    "attention_flops",
    "decode_flops",
    "decoder_flops",
    "followup_turn_flops",
    "measure_model_flops",
    "measure_prefill_flops",
    "mlp_flops",
    "prefill_flops",
    "prompt_length",
    "table8",
    "vit_flops",
]
