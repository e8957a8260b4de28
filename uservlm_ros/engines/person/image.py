"""Accept the frames a camera or a caller may hand over and turn them into contiguous RGB uint8.

Grey (``H x W`` or ``H x W x 1``) is replicated to three channels, RGBA drops its alpha, 16-bit
mono is scaled to 8 bits. Anything else is refused with a ValueError saying what was wrong, so
a bad frame never reaches the models.
"""

from __future__ import annotations

import numpy as np

MIN_SIDE = 16
MAX_SIDE = 8192


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous ``H x W x 3`` uint8 RGB array (a copy only when needed)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be H x W (grey) or H x W x C, got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise ValueError(f"image must have 1, 3 or 4 channels, got {image.shape[2]}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise ValueError(
            f"image is {width}x{height}; each side must be in [{MIN_SIDE}, {MAX_SIDE}]"
        )
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (or uint16), got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)
