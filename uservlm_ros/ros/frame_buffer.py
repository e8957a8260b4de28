"""The newest camera frames, raw or JPEG, kept undecoded until a turn needs one (plain Python).

Only a short history is kept (the frame nearest the end of an utterance is the user image); an
overwritten frame that was never used is counted as dropped, for /diagnostics.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Frame:
    stamp: float  # seconds, the message header stamp (receive time when the header is empty)
    received: float  # seconds, monotonic receive time
    message: Any
    source: str  # topic name it came from
    decode: Callable[[Any], Any]


class FrameBuffer:
    def __init__(self, history: int = 30):
        self._lock = threading.Lock()
        self._frames: deque[Frame] = deque(maxlen=max(1, history))
        self.received = 0
        self.dropped = 0

    def add(self, frame: Frame) -> None:
        with self._lock:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self.received += 1

    def newest(self, max_age: float | None = None, now: float | None = None) -> Frame | None:
        with self._lock:
            if not self._frames:
                return None
            frame = max(self._frames, key=lambda f: f.received)
        if max_age and now is not None and now - frame.received > max_age:
            return None
        return frame

    def nearest(self, stamp: float) -> Frame | None:
        """The frame whose stamp is closest to ``stamp`` (e.g. the end of an utterance)."""
        with self._lock:
            if not self._frames:
                return None
            return min(self._frames, key=lambda f: abs(f.stamp - stamp))

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
