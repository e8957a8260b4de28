"""PaliGemma 2 at the paper's sizes (3B and 10B, 448 px) with random weights, built on the device.

PaliGemma 2 is gated on the model hub and no reachable registry ships its weights. A model of the
same shapes with random weights costs the same per token, so it measures what the architecture
costs in this engine: **everything it generates is meaningless text** (``LoadInfo.placeholder``
is True and ``LoadInfo.warnings`` says so).

* The model is created on the meta device (no memory), allocated directly on the target device in
  the target dtype (``to_empty``), then filled by transformers' own initialisation, which also
  computes the rotary and position-id buffers. A 10B model in bfloat16 on a GPU therefore never
  exists as a float32 copy in host memory.
* The processor is the project's PaliGemma processor with the architecture's image geometry
  (448 px, patch 14 -> 1,024 image tokens, like the real checkpoints). Its tokenizer is the tiny
  stand-in's, trained locally (:mod:`.tiny`; Gemma's own is not obtainable here). The model keeps
  the real vocabulary (257,216 rows: the LM head's cost), so most generated ids have no text in
  that tokenizer and decode to nothing.
* ``ignore_eos`` (default on) removes EOS from the generation config: every answer runs to the
  requested number of new tokens, as a benchmark needs.

With the engine (its ``loader`` hook; the rest of the answering path is the engine's own)::

    engine = VLMEngine(VLMConfig(device="cuda", dtype="bfloat16", adapter=None),
                       loader=random_loader("paligemma2-3b-448"))
    engine.load()
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from uservlm_ros.model.architectures import ARCHITECTURES, Architecture, image_layout
from uservlm_ros.model.loading import LoadInfo, resolve_device, resolve_dtype
from uservlm_ros.model.tiny import TINY_MODEL_ID, ensure_tiny_model

# The two User-VLM 360° sizes, by the short names the benchmark takes.
PAPER_SIZES = {"3b": "paligemma2-3b-448", "10b": "paligemma2-10b-448"}
RANDOM_WEIGHTS_WARNING = (
    "random weights: timings and memory are the architecture's, the generated text is meaningless"
)

__all__ = [
    "PAPER_SIZES",
    "RANDOM_WEIGHTS_WARNING",
    "build_processor",
    "paper_config",
    "build_random_model",
    "random_loader",
]


def build_processor(image_size: int, patch_size: int, tiny_cache_dir: str | None = None):
    """A ``PaliGemmaProcessor`` at ``image_size`` px: (image_size // patch_size)² image tokens,
    the tiny stand-in's tokenizer (built once into the tiny model's cache directory)."""
    from transformers import AutoProcessor, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    if image_size < patch_size or patch_size < 1:
        raise ValueError(f"image_size {image_size} must be at least patch_size {patch_size} >= 1")
    tokenizer = AutoProcessor.from_pretrained(ensure_tiny_model(tiny_cache_dir)).tokenizer
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_seq_length=(image_size // patch_size) ** 2,
    )
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def paper_config(key: str, processor, attn_implementation: str | None = None):
    """The transformers config of architecture ``key`` (a PaliGemma entry of
    :data:`~.architectures.ARCHITECTURES`) with the special-token ids of ``processor``'s tokenizer
    (the sizes, vocabulary included, stay the architecture's). ``attn_implementation`` None lets
    transformers choose, as ``from_pretrained`` does."""
    arch = _paligemma(key)
    tokens = image_layout(arch).llm_image_tokens
    if processor.image_seq_length != tokens:
        raise ValueError(
            f"the processor makes {processor.image_seq_length} image tokens, "
            f"{key} expects {tokens}"
        )
    config = arch.hf_config(attn_implementation)
    tokenizer = processor.tokenizer
    config.image_token_id = processor.image_token_id
    for target in (config, config.text_config):
        target.pad_token_id = tokenizer.pad_token_id
        target.bos_token_id = tokenizer.bos_token_id
        target.eos_token_id = tokenizer.eos_token_id
    return config


def build_random_model(
    config, device: str = "cpu", dtype: str = "float32", seed: int = 0, ignore_eos: bool = False
):
    """``PaliGemmaForConditionalGeneration(config)`` with random weights, allocated on ``device``
    in ``dtype`` (names as :func:`~.loading.load_model` takes them) without a host copy; eval
    mode, embeddings and LM head tied as in the checkpoints. Deterministic for a given seed and
    device; the caller's random state is left as it was."""
    import torch
    from transformers import PaliGemmaForConditionalGeneration

    device = resolve_device(device)
    _, torch_dtype = resolve_dtype(dtype, device)
    config = copy.deepcopy(config)
    for part in (config, config.text_config, config.vision_config):
        part.dtype = torch_dtype  # a dtype the config carries would win over the default
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # parameters and float buffers created in that dtype
    try:
        with torch.device("meta"):
            model = PaliGemmaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.to_empty(device=device)
    model.tie_weights()  # to_empty gave the tied LM head its own storage; share it again
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model.initialize_weights()
    model.eval()
    if ignore_eos:
        model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model


def random_loader(
    key: str, seed: int = 0, ignore_eos: bool = True, tiny_cache_dir: str | None = None
) -> Callable:
    """A ``VLMEngine`` loader: ``loader(config) -> (model, processor, LoadInfo)`` building
    architecture ``key`` (or ``TINY_MODEL_ID``: the tiny stand-in's shapes) with random weights
    on ``config.device`` in ``config.dtype``. ``config.base_model`` and ``config.adapter`` are
    not used: there is nothing to load."""
    if key != TINY_MODEL_ID:
        _paligemma(key)  # ValueError for a bad key, before any loading

    def load(config) -> tuple:
        started = time.monotonic()
        device = resolve_device(config.device)
        dtype_name, _ = resolve_dtype(config.dtype, device)
        if key == TINY_MODEL_ID:
            from transformers import AutoProcessor, PaliGemmaConfig

            path = ensure_tiny_model(tiny_cache_dir)
            processor = AutoProcessor.from_pretrained(path)
            model_config = PaliGemmaConfig.from_pretrained(path)
        else:
            vision = ARCHITECTURES[key].config["vision_config"]
            processor = build_processor(vision["image_size"], vision["patch_size"], tiny_cache_dir)
            model_config = paper_config(key, processor)
        model = build_random_model(model_config, device, dtype_name, seed, ignore_eos)
        _synchronize(device)
        info = LoadInfo(
            model_name=f"{key} (random weights)",
            base=key,
            adapter=None,
            adapter_type=None,
            placeholder=True,
            device=device,
            dtype=dtype_name,
            load_seconds=time.monotonic() - started,
            warnings=[RANDOM_WEIGHTS_WARNING],
        )
        return model, processor, info

    return load


def _paligemma(key: str) -> Architecture:
    arch = ARCHITECTURES.get(key)
    if arch is None or arch.family != "paligemma":
        known = ", ".join(k for k, a in ARCHITECTURES.items() if a.family == "paligemma")
        raise ValueError(f"architecture {key!r} is not a PaliGemma; known: {known}")
    return arch


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
