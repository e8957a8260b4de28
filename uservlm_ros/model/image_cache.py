"""Per-person cache of what the VLM computed from a person's picture: reused on follow-up turns.

The person in front of the robot changes rarely between turns, yet every answer runs the SigLIP
tower (about 1 TFLOP at 448 px, see :mod:`uservlm_ros.model.flops`) on their picture again. The
cache keeps, per person key, the picture's digest and either

* the projected image features (prefix mode "bidirectional": the vision tower and projector are
  skipped, the language model still prefills the whole prompt), or
* the KV cache of the image block + BOS (prefix mode "cacheable", see :mod:`.prefix`: only the
  question is prefilled).

Exactness: an entry is used only when the new picture is byte-identical (same shape, same
pixels: BLAKE2b digest) to the one it was computed from; otherwise it is recomputed and replaces
the person's entry. Reuse therefore never changes an answer. A live camera frame differs from
the previous one in every pixel's noise, so callers that want the saving pass the same picture of
the person on each turn (e.g. the face snapshot taken when the person was first seen).

One entry per person (a new picture replaces the old one), at most ``size`` persons, least
recently used evicted first. Memory per entry at PaliGemma 2 3B / 448 px: features 1,024 x 2,304
values (4.7 MB in bfloat16); image-block KV 26 layers x 2 x 4 heads x 256 x 1,025 positions
(109 MB in bfloat16, twice that in float32). Not thread-safe: the engine uses it under its lock.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np


def image_digest(image: np.ndarray) -> str:
    """BLAKE2b digest of an image's shape, dtype and pixels."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


@dataclasses.dataclass
class CacheEntry:
    digest: str
    features: Any = None  # projected image features, (1, image tokens, hidden)
    prefix: Any = None  # transformers Cache of the image block + BOS ("cacheable" mode)
    prefix_ids: Any = None  # the token ids that cache was computed for


class PersonImageCache:
    def __init__(self, size: int):
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"cache size must be a non-negative integer, got {size!r}")
        self.size = size
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def lookup(self, person_key: str, digest: str) -> CacheEntry | None:
        """The person's entry if it was computed from the picture with ``digest``, else None."""
        entry = self._entries.get(person_key)
        if entry is None or entry.digest != digest:
            return None
        self._entries.move_to_end(person_key)
        return entry

    def store(self, person_key: str, entry: CacheEntry) -> None:
        """Set the person's entry (replacing an older one); evict the least recently used."""
        if not self.enabled:
            return
        self._entries[person_key] = entry
        self._entries.move_to_end(person_key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, person_key: str) -> bool:
        """Drop what was cached for ``person_key``; True if there was something."""
        return self._entries.pop(person_key, None) is not None

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, person_key: str) -> bool:
        return person_key in self._entries


def image_features(model, pixel_values):
    """Vision tower + projector output, exactly as ``generate`` computes it before prefilling."""
    import torch

    with torch.inference_mode():
        return model.get_image_features(pixel_values=pixel_values).pooler_output


def encoder_outputs(features) -> dict:
    """``mm_encoder_outputs`` for ``generate``/``forward``: pre-computed image features, which
    transformers (>= 5) uses instead of running the vision tower on ``pixel_values``."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    return {"image": BaseModelOutputWithPooling(pooler_output=features)}
