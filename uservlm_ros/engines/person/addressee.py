"""Whom a turn is for when several faces are in view.

- ``largest``: the largest frontal face, i.e. usually the nearest person facing the robot.
- ``center``: the frontal face whose centre is nearest the image centre (the robot looks at
  whom it talks to); ties go to the larger face.

Frontal faces win over turned ones under both policies; with no frontal face the same rule
picks among all faces. Not offered: the active speaker. Telling who speaks from the image needs
lip motion, and the landmark models here have no lip points (the 5-point predictor has none;
the 68-point one is licensed for non-commercial use only); sound-source direction would need
the microphone array's geometry calibrated to the camera, which this engine never sees.
"""

from __future__ import annotations

from collections.abc import Sequence

from uservlm_ros.engines.person.detection import Face


def choose(faces: Sequence[Face], policy: str, width: int, height: int) -> int | None:
    """Index into ``faces`` of the addressee, None when there is no face."""
    if not faces:
        return None
    pool = [i for i, f in enumerate(faces) if f.frontal] or list(range(len(faces)))
    if policy == "largest":
        return max(pool, key=lambda i: (faces[i].box.area, -i))
    if policy == "center":

        def off_center(i: int) -> tuple[float, float]:
            cx, cy = faces[i].box.center
            return ((cx - width / 2) ** 2 + (cy - height / 2) ** 2, -faces[i].box.area)

        return min(pool, key=off_center)
    raise ValueError(f"unknown addressee policy {policy!r}")
