"""Every parameter of person perception, with its default, validated once on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

DETECTORS = ("yunet", "hog")
ADDRESSEES = ("largest", "center")
USER_CROPS = ("face", "upper_body", "full")


def _check(condition: bool, field: str, message: str, value) -> None:
    if not condition:
        raise ValueError(f"{field} {message}, got {value!r}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class PersonConfig:
    """Parameters of :class:`~uservlm_ros.engines.person.engine.PersonEngine` (nodes declare
    these as ROS parameters with the same names and defaults)."""

    # --- detection --------------------------------------------------------------------------
    #: "yunet" (libfacedetection CNN, default: fast, finds small and turned faces) or "hog" (dlib).
    detector: str = "yunet"
    #: dlib HOG only: times the frame is doubled before the 80-px window scans it (0 finds
    #: faces from ~80 px, 1 from ~40 px at ~4x the cost).
    hog_upsample: int = 1
    #: The detector sees the frame scaled by this (1 = full size); landmarks, embeddings and
    #: crops always use the full frame. Below 1 it is faster but loses the smallest faces.
    detect_scale: float = 1.0
    #: Faces whose side is below this many pixels are ignored (counted as ``too_small``).
    min_face_px: int = 40
    #: Detector confidence in [0, 1] a face needs (YuNet; HOG keeps its own threshold 0).
    min_score: float = 0.6
    #: At most this many faces per frame, largest first; the rest are counted as ``dropped``.
    max_faces: int = 32
    #: A face is frontal when the nose sits within this fraction of the eye distance from the
    #: midpoint between the eyes (about 0 facing the camera; about 0.2 for a three-quarter view).
    max_yaw: float = 0.15

    # --- identity ---------------------------------------------------------------------------
    #: Largest embedding distance (dlib's 128-d space) at which a face is the same person.
    match_threshold: float = 0.5
    #: Embeddings kept per person (the closest match counts); more covers more poses and light.
    max_exemplars: int = 8
    #: A session person is forgotten this many seconds after last being seen.
    session_ttl_s: float = 1800.0
    #: Directory of remembered persons' templates (0700, files 0600); None = nothing on disk.
    store_dir: str | Path | None = None

    # --- the turn ---------------------------------------------------------------------------
    #: Whom a turn is for when several faces are in view: "largest" frontal face (the nearest)
    #: or the frontal face nearest the image "center".
    addressee: str = "largest"
    #: What the VLM sees: the addressee's "face", their "upper_body", or the "full" frame.
    user_crop: str = "upper_body"
    #: "face" crop: margin on each side, as a fraction of the face size.
    face_margin: float = 0.3
    #: "upper_body" crop: side of the (square) crop, in face sizes.
    upper_body_scale: float = 3.0

    # --- tracking ---------------------------------------------------------------------------
    #: Rate of ``track()`` calls on the camera stream (used by the node's timer), Hz.
    track_rate_hz: float = 5.0
    #: Overlap a face needs with a track's last box to continue it without an embedding.
    track_iou_min: float = 0.2
    #: A track ends after this many consecutive ``track()`` calls without its face.
    track_max_missed: int = 5
    #: Appearance similarity (aligned 32x32 grey chip, correlation) below which a continued
    #: track is checked by embedding: catches two people swapping places between frames.
    track_signature_min: float = 0.8
    #: A track's identity is re-checked by embedding about this often (one track per call),
    #: seconds; a turn whose addressee is such a track, verified this recently and still
    #: looking the same, takes the track's person without an embedding of its own.
    track_reverify_s: float = 5.0
    #: Let ``resolve`` reuse a live track's verified person as above (saves the turn's
    #: embedding, its costliest step); False = every turn embeds its addressee.
    reuse_track_identity: bool = True
    #: At most this many embeddings per ``track()`` call (each is one ResNet forward pass);
    #: the rest wait for the next call, so one call's cost stays bounded with many faces.
    track_max_embeddings: int = 2

    def __post_init__(self) -> None:
        _check(
            self.detector in DETECTORS, "detector", f"must be one of {DETECTORS}", self.detector
        )
        _check(
            self.hog_upsample in (0, 1, 2), "hog_upsample", "must be 0, 1 or 2", self.hog_upsample
        )
        _check(
            _number(self.detect_scale) and 0.25 <= self.detect_scale <= 1.0,
            "detect_scale",
            "must be in [0.25, 1]",
            self.detect_scale,
        )
        _check(
            isinstance(self.min_face_px, int) and 8 <= self.min_face_px <= 1024,
            "min_face_px",
            "must be an int in [8, 1024]",
            self.min_face_px,
        )
        _check(
            _number(self.min_score) and 0.0 <= self.min_score <= 1.0,
            "min_score",
            "must be in [0, 1]",
            self.min_score,
        )
        _check(
            isinstance(self.max_faces, int) and 1 <= self.max_faces <= 256,
            "max_faces",
            "must be an int in [1, 256]",
            self.max_faces,
        )
        _check(
            _number(self.max_yaw) and 0.0 < self.max_yaw <= 1.0,
            "max_yaw",
            "must be in (0, 1]",
            self.max_yaw,
        )
        _check(
            _number(self.match_threshold) and 0.1 <= self.match_threshold <= 1.0,
            "match_threshold",
            "must be in [0.1, 1.0]",
            self.match_threshold,
        )
        _check(
            isinstance(self.max_exemplars, int) and 1 <= self.max_exemplars <= 64,
            "max_exemplars",
            "must be an int in [1, 64]",
            self.max_exemplars,
        )
        _check(
            _number(self.session_ttl_s) and self.session_ttl_s > 0,
            "session_ttl_s",
            "must be > 0 seconds",
            self.session_ttl_s,
        )
        _check(
            self.store_dir is None
            or (isinstance(self.store_dir, (str, Path)) and str(self.store_dir) != ""),
            "store_dir",
            "must be None or a non-empty path",
            self.store_dir,
        )
        _check(
            self.addressee in ADDRESSEES,
            "addressee",
            f"must be one of {ADDRESSEES}",
            self.addressee,
        )
        _check(
            self.user_crop in USER_CROPS,
            "user_crop",
            f"must be one of {USER_CROPS}",
            self.user_crop,
        )
        _check(
            _number(self.face_margin) and 0.0 <= self.face_margin <= 2.0,
            "face_margin",
            "must be in [0, 2]",
            self.face_margin,
        )
        _check(
            _number(self.upper_body_scale) and 1.0 <= self.upper_body_scale <= 10.0,
            "upper_body_scale",
            "must be in [1, 10]",
            self.upper_body_scale,
        )
        _check(
            _number(self.track_rate_hz) and 0.1 <= self.track_rate_hz <= 60.0,
            "track_rate_hz",
            "must be in [0.1, 60]",
            self.track_rate_hz,
        )
        _check(
            _number(self.track_iou_min) and 0.0 < self.track_iou_min <= 1.0,
            "track_iou_min",
            "must be in (0, 1]",
            self.track_iou_min,
        )
        _check(
            isinstance(self.track_max_missed, int) and 0 <= self.track_max_missed <= 1000,
            "track_max_missed",
            "must be an int in [0, 1000]",
            self.track_max_missed,
        )
        _check(
            _number(self.track_signature_min) and -1.0 <= self.track_signature_min <= 1.0,
            "track_signature_min",
            "must be in [-1, 1]",
            self.track_signature_min,
        )
        _check(
            _number(self.track_reverify_s) and self.track_reverify_s > 0,
            "track_reverify_s",
            "must be > 0 seconds",
            self.track_reverify_s,
        )
        _check(
            isinstance(self.reuse_track_identity, bool),
            "reuse_track_identity",
            "must be a bool",
            self.reuse_track_identity,
        )
        _check(
            isinstance(self.track_max_embeddings, int) and 0 <= self.track_max_embeddings <= 64,
            "track_max_embeddings",
            "must be an int in [0, 64]",
            self.track_max_embeddings,
        )
