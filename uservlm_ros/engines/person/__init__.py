"""Person perception: who the robot is talking to, with identity kept private (see engine).

The names below load on first use, so that a module needing only the person-id rules
(``identity.valid_person_id``, e.g. the ethics engine) does not pull in the models' libraries.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Box": "geometry",
    "ModelError": "models",
    "PersonConfig": "config",
    "PersonEngine": "engine",
    "Resolution": "engine",
    "StoreError": "store",
    "TrackResult": "engine",
    "TrackedFace": "engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
