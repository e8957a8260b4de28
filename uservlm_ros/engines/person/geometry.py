"""Axis-aligned boxes in pixel coordinates, their overlap, and REP-155's normalised ROI."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A rectangle ``[x0, x1) x [y0, y1)`` in pixels of the frame it was found in."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box coordinates must be finite, got {values}")
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box has negative size: {values}")

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 for disjoint or empty boxes."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.area + other.area - inter)

    def clip(self, width: int, height: int) -> Box:
        """This box cut to a ``width`` x ``height`` frame (empty if it lies outside)."""
        x0 = min(max(self.x0, 0.0), width)
        y0 = min(max(self.y0, 0.0), height)
        return Box(x0, y0, max(x0, min(self.x1, width)), max(y0, min(self.y1, height)))

    def normalized(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` in [0, 1] of the frame, as REP-155's
        NormalizedRegionOfInterest2D has them."""
        c = self.clip(width, height)
        return (c.x0 / width, c.y0 / height, c.x1 / width, c.y1 / height)

    def scaled(self, factor: float) -> Box:
        return Box(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor)
