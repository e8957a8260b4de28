"""128-d face embeddings (dlib's ResNet) of detected faces, and the distance between them.

The network's buffers are shared, so calls are serialised. The cost per face does not depend on
its size in the frame: the face is aligned to a 150 x 150 chip first.
"""

from __future__ import annotations

import threading

import numpy as np

from uservlm_ros.engines.person import models
from uservlm_ros.engines.person.detection import Face

DIMENSIONS = 128


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings (dlib's metric: < 0.6 = same person on LFW)."""
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


class FaceEmbedder:
    def __init__(self):
        self._net = models.load_embedding()
        self._lock = threading.Lock()

    def embed(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The face's embedding: float32, shape (128,), unit-ish norm. No jitter: jittering
        costs one forward pass per jitter for a few hundredths of distance."""
        with self._lock:
            vector = self._net.compute_face_descriptor(rgb, face.shape, 0)
        return np.asarray(vector, dtype=np.float32)
