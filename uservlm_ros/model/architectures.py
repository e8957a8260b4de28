"""Public configurations of User-VLM 360° and the baselines of the paper's Table 8, typed in.

Only the values that decide the forward FLOPs are kept (widths, depths, heads, image geometry);
everything else takes the transformers defaults. Each entry names the ``config.json`` it was typed
from. No weights are involved: :mod:`uservlm_ros.model.flops` builds these models on the meta
device.

How an image becomes tokens differs per family, and for the two tiling models it depends on the
picture's size. :func:`image_layout` works it out for a given (height, width); the default is
Pepper's front camera frame, 640x480 (:data:`CAMERA_IMAGE_SIZE`), the same image for every model:

* PaliGemma 2 at 448 px: resized to 448x448 -> 32x32 = 1,024 image tokens; no CLS.
* LLaMA 3.2 11B Vision (Mllama): 560 px tiles, up to 4. The transformers image processor always
  pads the tile axis to ``max_image_tiles`` = 4 and the vision encoder runs on all 4 (padding
  tiles are masked, not skipped), so 4 x (1,600 patches + CLS, padded to 1,608) tokens go through
  the encoder whatever the picture. The language model sees one ``<|image|>`` token; 8 gated
  cross-attention layers attend to the 4 x 1,601 projected vision tokens.
* Pixtral 12B: native resolution up to 1,024 px longest edge, 16 px patches: 640x480 -> 40x30
  = 1,200 patches; the language model gets them plus one [IMG_BREAK]/[IMG_END] per row (30).
* LLaVA 1.5 7B: 336x336 CLIP -> 577 tower tokens (CLS + 576), 576 go to the language model.
* LLaVA 1.6 7B ("anyres"): the picture is fitted to the best of five grid pinpoints; 640x480
  picks 672x672 = 2x2 tiles of 336 px, plus the downscaled whole picture: **5 crops** through the
  CLIP tower and the projector; after removing the padding of the 4:3 picture the language model
  gets 576 (base) + 36x48 (tiles) + 36 (row newlines) = 2,340 image tokens.
"""

from __future__ import annotations

import dataclasses
import math

# Pepper's front camera at resolution 2 (see ENVIRONMENT.md): (height, width).
CAMERA_IMAGE_SIZE = (480, 640)


@dataclasses.dataclass(frozen=True)
class Architecture:
    key: str
    name: str  # as in the paper's Table 8
    size_b: float  # the nominal size the paper uses, in billions of parameters
    family: str  # "paligemma", "mllama", "llava", "llava_next", "pixtral"
    source: str  # the config.json the values below were typed from
    config: dict

    def hf_config(self, attn_implementation: str = "eager"):
        """The transformers config object. "eager" attention makes every attention product an
        explicit matmul, which ``FlopCounterMode`` counts (the CPU SDPA kernel is not counted)."""
        import transformers

        cls = {
            "paligemma": transformers.PaliGemmaConfig,
            "mllama": transformers.MllamaConfig,
            "llava": transformers.LlavaConfig,
            "pixtral": transformers.LlavaConfig,
            "llava_next": transformers.LlavaNextConfig,
        }[self.family]
        config = cls(**_deep_copy(self.config))
        config._attn_implementation = attn_implementation
        for sub in ("text_config", "vision_config"):
            getattr(config, sub)._attn_implementation = attn_implementation
        return config

    @classmethod
    def from_config(
        cls, config, key: str = "custom", source: str = "(a loaded model)"
    ) -> Architecture:
        """An entry for any PaliGemma/Mllama/LLaVA/LLaVA-NeXT config object (e.g. the tiny
        model)."""
        family = (
            config.model_type
            if config.model_type in ("paligemma", "mllama", "llava_next")
            else None
        )
        if config.model_type == "llava":
            family = "pixtral" if config.vision_config.model_type == "pixtral" else "llava"
        if family is None:
            raise ValueError(f"no FLOPs model for model_type {config.model_type!r}")
        return cls(key, key, 0.0, family, source, config.to_dict())


@dataclasses.dataclass(frozen=True)
class ImageLayout:
    """How one image is processed: what the vision tower, projector and language model see."""

    vision_crops: int  # images or tiles the vision tower runs on
    vision_seq: int  # tokens per crop inside the tower (patches, + CLS, + padding)
    patches_per_crop: int  # patch-embedding outputs per crop (the conv's output positions)
    projector_tokens: int  # rows through the multi-modal projector
    llm_image_tokens: int  # positions the image occupies in the language model's sequence
    cross_attention_tokens: int = 0  # Mllama: vision tokens each cross-attention layer attends to
    note: str = ""


# --------------------------------------------------------------------------- the registry

# SigLIP So400m/14, as used by every PaliGemma 2 checkpoint.
# Source: google/paligemma2-3b-pt-448 and -10b-pt-448 config.json "vision_config" (the same values
# are in transformers' convert_paligemma2_weights_to_hf.py).
_SIGLIP_SO400M_448 = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 448,
    "patch_size": 14,
    "vision_use_head": False,
}

# Gemma 2 text settings shared by the 2B and 9B decoders (config.json of the same checkpoints).
_GEMMA2_COMMON = {
    "model_type": "gemma2",
    "vocab_size": 257216,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "hidden_activation": "gelu_pytorch_tanh",
}

# CLIP ViT-L/14 at 336 px, the tower of LLaVA 1.5 and 1.6. Source: llava-hf/llava-1.5-7b-hf and
# llava-hf/llava-v1.6-vicuna-7b-hf config.json "vision_config".
_CLIP_L_336 = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}

# Vicuna 7B v1.5 (a LLaMA 2 7B): llava-hf/llava-1.5-7b-hf config.json "text_config".
_VICUNA_7B = {
    "model_type": "llama",
    "vocab_size": 32064,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
}

ARCHITECTURES: dict[str, Architecture] = {
    a.key: a
    for a in [
        Architecture(
            key="paligemma2-3b-448",
            name="User-VLM 360° 3B",
            size_b=3,
            family="paligemma",
            # User-VLM 3B is LoRA on google/paligemma2-3b-ft-docci-448 (same config as -pt-448).
            source="google/paligemma2-3b-pt-448 config.json (Gemma 2 2B + SigLIP So400m/14)",
            config={
                "text_config": {
                    **_GEMMA2_COMMON,
                    "hidden_size": 2304,
                    "intermediate_size": 9216,
                    "num_hidden_layers": 26,
                    "num_attention_heads": 8,
                    "num_key_value_heads": 4,
                },
                "vision_config": {**_SIGLIP_SO400M_448, "projection_dim": 2304},
                "projection_dim": 2304,
                "image_token_index": 257152,
            },
        ),
        Architecture(
            key="paligemma2-10b-448",
            name="User-VLM 360° 10B",
            size_b=10,
            family="paligemma",
            source="google/paligemma2-10b-pt-448 config.json (Gemma 2 9B + SigLIP So400m/14)",
            config={
                "text_config": {
                    **_GEMMA2_COMMON,
                    "hidden_size": 3584,
                    "intermediate_size": 14336,
                    "num_hidden_layers": 42,
                    "num_attention_heads": 16,
                    "num_key_value_heads": 8,
                },
                "vision_config": {**_SIGLIP_SO400M_448, "projection_dim": 3584},
                "projection_dim": 3584,
                "image_token_index": 257152,
            },
        ),
        Architecture(
            key="llama-3.2-11b-vision",
            name="LLaMA 3.2 11B",
            size_b=11,
            family="mllama",
            source="meta-llama/Llama-3.2-11B-Vision-Instruct config.json",
            config={
                "text_config": {
                    "model_type": "mllama_text_model",
                    "vocab_size": 128256,
                    "hidden_size": 4096,
                    "intermediate_size": 14336,
                    "num_hidden_layers": 40,  # 32 self-attention + 8 cross-attention layers
                    "num_attention_heads": 32,
                    "num_key_value_heads": 8,
                    "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
                },
                "vision_config": {
                    "model_type": "mllama_vision_model",
                    "hidden_size": 1280,
                    "intermediate_size": 5120,
                    "num_hidden_layers": 32,
                    "num_global_layers": 8,
                    "attention_heads": 16,
                    "image_size": 560,
                    "patch_size": 14,
                    "max_num_tiles": 4,
                    "vision_output_dim": 7680,
                    "intermediate_layers_indices": [3, 7, 15, 23, 30],
                },
                "image_token_index": 128256,
            },
        ),
        Architecture(
            key="pixtral-12b",
            name="Pixtral 12B",
            size_b=12,
            family="pixtral",
            # Mistral NeMo 12B decoder + Pixtral-ViT, in transformers' LLaVA wrapper.
            source="mistral-community/pixtral-12b config.json",
            config={
                "text_config": {
                    "model_type": "mistral",
                    "vocab_size": 131072,
                    "hidden_size": 5120,
                    "intermediate_size": 14336,
                    "num_hidden_layers": 40,
                    "num_attention_heads": 32,
                    "num_key_value_heads": 8,
                    "head_dim": 128,
                    "sliding_window": None,
                },
                "vision_config": {
                    "model_type": "pixtral",
                    "hidden_size": 1024,
                    "intermediate_size": 4096,
                    "num_hidden_layers": 24,
                    "num_attention_heads": 16,
                    "head_dim": 64,
                    "image_size": 1024,
                    "patch_size": 16,
                },
                "vision_feature_layer": -1,
                "vision_feature_select_strategy": "full",
                "projector_hidden_act": "gelu",
                "image_token_index": 10,
            },
        ),
        Architecture(
            key="llava-1.6-7b",
            name="LLaVA v1.6 7B",
            size_b=7,
            family="llava_next",
            # The Vicuna variant: same language model as LLaVA 1.5, so the two columns differ
            # only by anyres (llava-v1.6-mistral-7b-hf would add GQA and a wider MLP).
            source="llava-hf/llava-v1.6-vicuna-7b-hf config.json",
            config={
                "text_config": _VICUNA_7B,
                "vision_config": _CLIP_L_336,
                "vision_feature_layer": -2,
                "vision_feature_select_strategy": "default",
                "image_grid_pinpoints": [
                    [336, 672],
                    [672, 336],
                    [672, 672],
                    [1008, 336],
                    [336, 1008],
                ],
                "image_token_index": 32000,
            },
        ),
        Architecture(
            key="llava-1.5-7b",
            name="LLaVA v1.5 7B",
            size_b=7,
            family="llava",
            source="llava-hf/llava-1.5-7b-hf config.json",
            config={
                "text_config": _VICUNA_7B,
                "vision_config": _CLIP_L_336,
                "vision_feature_layer": -2,
                "vision_feature_select_strategy": "default",
                "image_token_index": 32000,
            },
        ),
    ]
}

USER_VLM = ("paligemma2-3b-448", "paligemma2-10b-448")
BASELINES = ("llama-3.2-11b-vision", "pixtral-12b", "llava-1.6-7b", "llava-1.5-7b")


def get(key: str) -> Architecture:
    try:
        return ARCHITECTURES[key]
    except KeyError:
        raise KeyError(
            f"unknown architecture {key!r}; known: {', '.join(ARCHITECTURES)}"
        ) from None


# --------------------------------------------------------------------------- image geometry


def image_layout(
    arch: Architecture, image_size: tuple[int, int] = CAMERA_IMAGE_SIZE
) -> ImageLayout:
    """Token counts for one image of ``image_size`` = (height, width) pixels (see module doc)."""
    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {image_size}")
    vision = arch.config["vision_config"]
    patch = vision["patch_size"]

    if arch.family == "paligemma":
        side = vision["image_size"] // patch
        return ImageLayout(
            1,
            side * side,
            side * side,
            side * side,
            side * side,
            note=f"resized to {vision['image_size']} px",
        )

    if arch.family == "mllama":
        tiles = vision["max_num_tiles"]
        patches = (vision["image_size"] // patch) ** 2
        seq = _round_up(patches + 1, 8)  # + CLS, padded to a multiple of 8 as in transformers
        return ImageLayout(
            tiles,
            seq,
            patches,
            tiles * (patches + 1),
            1,
            cross_attention_tokens=tiles * (patches + 1),
            note=f"{tiles} tiles of {vision['image_size']} px (padded to max_image_tiles)",
        )

    if arch.family == "pixtral":
        longest = vision["image_size"]
        scale = max(height / longest, width / longest, 1.0)  # only ever downscaled
        rows = math.ceil(int(height / scale) / patch)
        cols = math.ceil(int(width / scale) / patch)
        return ImageLayout(
            1,
            rows * cols,
            rows * cols,
            rows * cols,
            rows * cols + rows,
            note=f"native {cols * patch}x{rows * patch} px, {rows} row breaks",
        )

    side = vision["image_size"] // patch
    base = side * side
    if arch.family == "llava":
        return ImageLayout(
            1, base + 1, base, base, base, note=f"resized to {vision['image_size']} px"
        )

    if arch.family == "llava_next":
        from transformers.image_processing_utils import select_best_resolution

        best_h, best_w = select_best_resolution(
            (height, width), arch.config["image_grid_pinpoints"]
        )
        size = vision["image_size"]
        grid_h, grid_w = best_h // size, best_w // size
        crops = 1 + grid_h * grid_w
        # The tiles' features minus the padding that kept the picture's aspect ratio.
        cur_h, cur_w = grid_h * side, grid_w * side
        if width / height > cur_w / cur_h:
            cur_h -= 2 * ((cur_h - int(round(height * cur_w / width, 7))) // 2)
        else:
            cur_w -= 2 * ((cur_w - int(round(width * cur_h / height, 7))) // 2)
        llm_tokens = base + cur_h * cur_w + cur_h  # base + unpadded tiles + one newline per row
        return ImageLayout(
            crops,
            base + 1,
            base,
            crops * base,
            llm_tokens,
            note=f"anyres {best_w}x{best_h}: {grid_h}x{grid_w} tiles + base = {crops} crops",
        )

    raise ValueError(f"unknown family {arch.family!r}")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
