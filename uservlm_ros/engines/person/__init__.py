"""Person perception: who the robot is talking to, with identity kept private (see engine)."""

from __future__ import annotations

from uservlm_ros.engines.person.config import PersonConfig
from uservlm_ros.engines.person.engine import PersonEngine, Resolution, TrackedFace, TrackResult
from uservlm_ros.engines.person.geometry import Box
from uservlm_ros.engines.person.models import ModelError
from uservlm_ros.engines.person.store import StoreError

__all__ = [
    "Box",
    "ModelError",
    "PersonConfig",
    "PersonEngine",
    "Resolution",
    "StoreError",
    "TrackResult",
    "TrackedFace",
]
