"""Offline people and 640x480 camera scenes made from them, for the person-perception tests and
scripts/bench_person.py.

Two people ship with installed packages: scikit-image's astronaut (Eileen Collins) and
matplotlib's Grace Hopper, both public-domain photographs. A third, scikit-image's cameraman,
is a face turned nearly to profile and half hidden by his camera. ``head`` cuts a head-and-
shoulders patch at a chosen face size and applies a *variant* (a flip, light, roll, a simulated
turn of the head, compression, blur, occlusion); ``scene`` pastes patches on a face-free
background. The face boxes of the source photos were measured once with dlib's HOG detector.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480
PEOPLE = ("astronaut", "hopper")
#: (x0, y0, x1, y1) of the face in each source photo
FACE_BOX = {
    "astronaut": (179, 83, 267, 171),
    "hopper": (186, 160, 350, 324),
    "cameraman": (190, 110, 260, 190),
}
VARIANTS = (
    "plain",
    "mirror",
    "dark",
    "bright",
    "grey",
    "roll",
    "turn",
    "jpeg",
    "blur",
    "small",
    "large",
)
#: crops of the same two photos made for training/ (224 x 224), used as they are
TRAINING_CROPS = {
    "astronaut": ("astronaut_body", "astronaut_face", "astronaut_grey", "astronaut_mirror"),
    "hopper": ("hopper_body", "hopper_face", "hopper_grey", "hopper_mirror"),
}


@cache
def photo(name: str) -> np.ndarray:
    """The source photograph, RGB uint8 (read-only)."""
    if name == "astronaut":
        from skimage import data

        image = data.astronaut()
    elif name == "hopper":
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            image = np.asarray(Image.open(handle).convert("RGB"))
    elif name == "cameraman":
        from skimage import data

        image = np.repeat(data.camera()[:, :, None], 3, axis=2)
    else:
        raise ValueError(name)
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image


def training_crop(stem: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.open(REPO / "training" / "data" / "images" / f"{stem}.jpg").convert("RGB")
    )


def _turn(patch: np.ndarray, amount: float) -> np.ndarray:
    """Squeeze one side of the patch: a flat stand-in for a head turned by ~``amount``."""
    h, w = patch.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32(
        [[w * amount, h * amount / 2], [w, 0], [w, h], [w * amount, h - h * amount / 2]]
    )
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(patch, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _variant(patch: np.ndarray, variant: str, face: tuple[float, float]) -> np.ndarray:
    if variant in ("plain", "small", "large"):
        return patch
    if variant == "mirror":
        return np.ascontiguousarray(patch[:, ::-1])
    if variant == "dark":
        return (patch.astype(np.float32) * 0.55).astype(np.uint8)
    if variant == "bright":
        return np.clip(patch.astype(np.float32) * 1.25 + 25, 0, 255).astype(np.uint8)
    if variant == "grey":
        return np.repeat(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if variant == "roll":
        matrix = cv2.getRotationMatrix2D(face, 12.0, 1.0)
        return cv2.warpAffine(patch, matrix, patch.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    if variant == "turn":
        return _turn(patch, 0.18)
    if variant == "jpeg":
        ok, data = cv2.imencode(".jpg", patch[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 25])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    if variant == "blur":
        return cv2.GaussianBlur(patch, (0, 0), 1.6)
    if variant == "occluded":  # the face's left half behind a grey card
        out = patch.copy()
        out[:, : int(face[0])] = 128
        return out
    raise ValueError(f"unknown variant {variant!r}")


def head(name: str, face_px: int = 100, variant: str = "plain") -> tuple[np.ndarray, tuple]:
    """A head-and-shoulders patch of ``name`` whose face is about ``face_px`` wide, and the
    face box in the patch. ``small``/``large`` override the size (50 / 170 px)."""
    face_px = {"small": 50, "large": 170}.get(variant, face_px)
    x0, y0, x1, y1 = FACE_BOX[name]
    scale = face_px / (x1 - x0)
    source = photo(name)
    image = cv2.resize(
        source,
        None,
        fx=scale,
        fy=scale,
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    fx0, fy0, fx1, fy1 = (v * scale for v in (x0, y0, x1, y1))
    size = fx1 - fx0
    left, top = max(int(fx0 - 0.9 * size), 0), max(int(fy0 - 0.7 * size), 0)
    right = min(int(fx1 + 0.9 * size), image.shape[1])
    bottom = min(int(fy1 + 1.6 * size), image.shape[0])
    patch = np.ascontiguousarray(image[top:bottom, left:right])
    box = (fx0 - left, fy0 - top, fx1 - left, fy1 - top)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    return _variant(patch, variant, centre), box


@lru_cache(maxsize=1)
def _background() -> np.ndarray:
    """A plain lit wall: a smooth gradient with mild texture, no face-like structure."""
    from skimage import data

    texture = cv2.resize(data.brick(), (WIDTH, HEIGHT)).astype(np.float32)
    ramp = np.linspace(150, 110, WIDTH, dtype=np.float32)[None, :]
    grey = ramp + (texture - texture.mean()) * 0.15
    wall = np.stack([grey * 1.0, grey * 0.95, grey * 0.85], axis=2)
    wall = np.clip(wall, 0, 255).astype(np.uint8)
    wall.setflags(write=False)
    return wall


def scene(*placements: tuple[np.ndarray, tuple[int, int]]) -> np.ndarray:
    """A 640x480 RGB frame with each patch pasted with its top-left corner at (x, y) (cut at
    the frame's edges)."""
    frame = _background().copy()
    for patch, (x, y) in placements:
        h, w = patch.shape[:2]
        fx0, fy0 = max(x, 0), max(y, 0)
        fx1, fy1 = min(x + w, WIDTH), min(y + h, HEIGHT)
        if fx1 > fx0 and fy1 > fy0:
            frame[fy0:fy1, fx0:fx1] = patch[fy0 - y : fy1 - y, fx0 - x : fx1 - x]
    return frame


def at(
    name: str, face_center: tuple[int, int], face_px: int = 100, variant: str = "plain"
) -> tuple[tuple[np.ndarray, tuple[int, int]], tuple]:
    """A placement of ``name`` with the face centred at ``face_center``, and the face box in
    frame coordinates."""
    patch, box = head(name, face_px, variant)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x, y = int(round(face_center[0] - cx)), int(round(face_center[1] - cy))
    return (patch, (x, y)), (box[0] + x, box[1] + y, box[2] + x, box[3] + y)


def alone(
    name: str,
    variant: str = "plain",
    face_px: int = 100,
    face_center: tuple[int, int] = (320, 200),
) -> np.ndarray:
    """One person in the frame."""
    placement, _ = at(name, face_center, face_px, variant)
    return scene(placement)


def pair(
    left: str = "astronaut", right: str = "hopper", face_px: int = 100, shift: int = 0
) -> np.ndarray:
    """Two people side by side (``shift`` moves both to the right by that many pixels)."""
    a, _ = at(left, (180 + shift, 200), face_px)
    b, _ = at(right, (460 + shift, 200), face_px)
    return scene(a, b)


def crowd(columns: int = 4, rows: int = 2, face_px: int = 70) -> np.ndarray:
    """``columns`` x ``rows`` heads tiled over the frame, the two people alternating, each tile
    a different variant so no two faces are pixel-identical."""
    tiles, variants = [], ("plain", "mirror", "dark", "bright", "grey", "blur", "jpeg", "roll")
    cell_w, cell_h = WIDTH // columns, HEIGHT // rows
    for r in range(rows):
        for c in range(columns):
            index = r * columns + c
            name = PEOPLE[index % 2]
            centre = (c * cell_w + cell_w // 2, r * cell_h + int(cell_h * 0.38))
            placement, _ = at(name, centre, face_px, variants[index % len(variants)])
            patch, (x, y) = placement
            # each tile keeps to its cell so neighbours never overlap
            x0, y0 = c * cell_w, r * cell_h
            sub = scene((patch, (x, y)))[y0 : y0 + cell_h, x0 : x0 + cell_w]
            tiles.append((np.ascontiguousarray(sub), (x0, y0)))
    return scene(*tiles)
