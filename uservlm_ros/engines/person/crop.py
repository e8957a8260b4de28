"""The user image the VLM and the ethics review see: a crop around the addressee.

User-VLM was trained on portraits, so by default the crop is the addressee's ``upper_body``: a
square of ``upper_body_scale`` face sizes, centred on the face horizontally, starting half a
face above it. ``face`` is the face box plus ``face_margin`` on each side; ``full`` is the
whole frame (also what a frame without a face gives). A crop that would leave the frame is
shifted back inside, then cut at the border.
"""

from __future__ import annotations

import math

import numpy as np

from uservlm_ros.engines.person.geometry import Box


def region(
    face: Box, kind: str, width: int, height: int, face_margin: float, upper_body_scale: float
) -> Box:
    """The crop box for ``kind`` ("face" | "upper_body" | "full") around ``face``."""
    if kind == "full":
        return Box(0, 0, width, height)
    size = max(face.width, face.height)
    cx, cy = face.center
    if kind == "face":
        side = size * (1.0 + 2.0 * face_margin)
        x0, y0 = cx - side / 2, cy - side / 2
    elif kind == "upper_body":
        side = size * upper_body_scale
        x0, y0 = cx - side / 2, face.y0 - 0.5 * size
    else:
        raise ValueError(f"unknown crop kind {kind!r}")
    # shift inside the frame where it fits, then cut what still sticks out
    x0 = min(max(x0, 0.0), max(width - side, 0.0))
    y0 = min(max(y0, 0.0), max(height - side, 0.0))
    return Box(x0, y0, x0 + side, y0 + side).clip(width, height)


def cut(rgb: np.ndarray, box: Box) -> np.ndarray:
    """A contiguous copy of ``box``'s pixels, edges rounded to the nearest pixel (at least
    1 x 1)."""
    x0, y0, x1, y1 = (int(math.floor(v + 0.5)) for v in (box.x0, box.y0, box.x1, box.y1))
    height, width = rgb.shape[:2]
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = max(min(x1, width), x0 + 1), max(min(y1, height), y0 + 1)
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
