"""A tiny, randomly initialised PaliGemma 2 that is built offline in about a second.

PaliGemma 2 is gated on the model hub and no reachable registry ships its weights, so tests, CI and
offline demos run this stand-in instead. It has the real architecture (SigLIP vision tower, linear
projector, Gemma 2 decoder with sliding and full attention layers), the real processor
(``PaliGemmaProcessor``: SigLIP image processor + a Gemma-style BPE tokenizer with the 1,152
``<loc>``/``<seg>`` tokens) and loads with ``from_pretrained`` like any checkpoint. Its weights are
random: **everything it generates is meaningless text**. Anything that reports an answer from it
must say so (``placeholder=True``).

The build is deterministic (fixed seed, deterministic BPE training on ``data/tiny_corpus.txt``):
two builds produce identical tokenizer files and identical weights.

    from uservlm_ros.model.tiny import ensure_tiny_model
    path = ensure_tiny_model()     # ~/.cache/uservlm_ros/tiny-paligemma2-v1, built once
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

TINY_MODEL_ID = "tiny-random-paligemma2"
# Bump when the recipe below changes: the cache directory is keyed on it, so old builds are not
# reused with a new recipe.
TINY_MODEL_VERSION = "v1"
TINY_MODEL_SEED = 0
# Written last into a build; its presence marks a complete tiny-model directory.
MARKER_FILE = "uservlm_tiny_model.json"

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<image>"]
# Byte-fallback tokens, as in Gemma: characters never seen in the corpus still encode (no <unk>).
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
# Size asked of the BPE trainer (specials + alphabet + merges); the byte tokens come on top, and
# the PaliGemma processor then adds 1,152 <loc>/<seg> tokens.
BPE_TRAIN_VOCAB = 1200
IMAGE_SIZE = 224
PATCH_SIZE = 14
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 256 image tokens
HIDDEN = 64

CORPUS_PATH = Path(__file__).resolve().parent / "data" / "tiny_corpus.txt"


def default_cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/uservlm_ros``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "uservlm_ros"


def tiny_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the tiny model lives (built or not)."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / f"tiny-paligemma2-{TINY_MODEL_VERSION}"


def is_tiny_model_dir(path: str | os.PathLike) -> bool:
    """True for a complete directory made by :func:`build_tiny_model`."""
    return (Path(path) / MARKER_FILE).is_file()


def ensure_tiny_model(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the tiny model directory, building it first if it does not exist yet.

    The build goes to a temporary sibling directory that is renamed into place, so a crash never
    leaves a half-written model behind and two processes building at once both end up with one
    complete directory (the loser of the rename discards its copy).
    """
    final = tiny_model_dir(cache_dir)
    if is_tiny_model_dir(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        # Not ours or damaged (no marker): move it aside rather than trusting it.
        shutil.rmtree(final, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        build_tiny_model(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_tiny_model_dir(final):
                raise
            # Another process won the race; its build is identical.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_tiny_model(out_dir: str | os.PathLike, seed: int = TINY_MODEL_SEED) -> Path:
    """Build the tiny model, processor and marker into ``out_dir`` (not atomic; see ensure_...)."""
    # Imported here so that `import uservlm_ros.model.tiny` stays cheap for callers that only need
    # the paths above.
    import torch
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer()
    image_processor = SiglipImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_seq_length=IMAGE_SEQ_LENGTH
    )
    # The processor registers <image> as special and appends the <loc>/<seg> tokens.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vocab_size = len(processor.tokenizer)

    config = PaliGemmaConfig(
        text_config={
            "model_type": "gemma2",
            "vocab_size": vocab_size,
            "hidden_size": HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": HIDDEN // 4,
            "query_pre_attn_scalar": HIDDEN // 4,
            "max_position_embeddings": 2048,
            "sliding_window": 512,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "vision_use_head": False,
        },
        image_token_index=processor.image_token_id,
        vocab_size=vocab_size,
        projection_dim=HIDDEN,
        hidden_size=HIDDEN,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    # fork_rng: building must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PaliGemmaForConditionalGeneration(config)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id

    model.save_pretrained(out)
    processor.save_pretrained(out)
    marker = {
        "model_id": TINY_MODEL_ID,
        "version": TINY_MODEL_VERSION,
        "seed": seed,
        "placeholder": True,
        "note": "Randomly initialised weights: generated text is meaningless.",
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return out


def _train_tokenizer():
    """A Gemma-style BPE (spaces as '▁', byte fallback) trained on the bundled corpus."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    # Same normaliser and pre-tokeniser as GemmaTokenizer builds, so the merges learnt here mean
    # the same thing once GemmaTokenizer wraps them.
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_TRAIN_VOCAB, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    bpe.train_from_iterator(lines, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]

    # Ids: specials first (Gemma's order: pad 0, eos 1, bos 2, unk 3, mask 4), then the byte
    # tokens, then everything the trainer learnt in its own order.
    ordered = SPECIAL_TOKENS + BYTE_TOKENS
    learnt = sorted(trained["vocab"].items(), key=lambda item: item[1])
    ordered += [token for token, _ in learnt if token not in SPECIAL_TOKENS]
    vocab = {token: index for index, token in enumerate(ordered)}
    merges = [tuple(pair) for pair in trained["merges"]]
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=False)
