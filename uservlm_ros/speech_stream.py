"""Speak while the model writes (plain Python): cut the streamed answer into sentences and hand
each one, in order, to a synthesis-and-publish function on a worker thread.

The first sentence is cut as soon as it ends (., !, ?, ;, : followed by a space) and is at least
``min_chars`` long; text that never ends a sentence is cut at the last space before ``max_chars``
(or at ``max_chars`` if there is none), so a long clause still starts speaking early.
"""
from __future__ import annotations

import queue
import re
import threading
import time
from typing import Callable

_BOUNDARY = re.compile(r"[.!?;:](?=\s)")


def split_ready(text: str, min_chars: int = 20, max_chars: int = 120) -> tuple[list[str], str]:
    """(finished pieces, remainder) of streamed text."""
    pieces = []
    while True:
        cut = None
        for match in _BOUNDARY.finditer(text):
            if match.end() >= min_chars:
                cut = match.end()
                break
        if cut is None and len(text) > max_chars:
            space = text.rfind(" ", 0, max_chars)
            cut = space if space >= min_chars else max_chars
        if cut is None:
            return pieces, text
        piece, text = text[:cut].strip(), text[cut:].lstrip()
        if piece:
            pieces.append(piece)


class SentenceSpeaker:
    """Feed text pieces (``feed``); each finished sentence goes to ``speak(sentence)`` in order on a
    worker thread. ``finish()`` speaks the rest and waits; errors are kept, not raised in feed."""

    def __init__(self, speak: Callable[[str], float], min_chars: int = 20, max_chars: int = 120):
        self._speak = speak  # returns the synthesis seconds of that sentence
        self._min, self._max = min_chars, max_chars
        self._text = ""
        self.fed = False
        self._queue: queue.Queue = queue.Queue()
        self.sentences: list[str] = []
        self.synthesis_seconds = 0.0
        self.first_audio_at: float | None = None  # perf_counter time the first sentence was out
        self.error: Exception | None = None
        self._worker = threading.Thread(target=self._run, name="sentence_speaker", daemon=True)
        self._worker.start()

    def feed(self, piece: str) -> None:
        self.fed = True
        self._text += piece
        ready, self._text = split_ready(self._text, self._min, self._max)
        for sentence in ready:
            self._queue.put(sentence)

    def finish(self, timeout: float | None = None) -> None:
        rest = self._text.strip()
        self._text = ""
        if rest:
            self._queue.put(rest)
        self._queue.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            raise TimeoutError("speech synthesis did not finish in time")
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the worker if finish() was never reached (the turn failed before speaking)."""
        if self._worker.is_alive():
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            sentence = self._queue.get()
            if sentence is None:
                return
            if self.error is not None:
                continue  # drain after a failure; finish() reports it
            try:
                self.synthesis_seconds += self._speak(sentence)
                self.sentences.append(sentence)
                if self.first_audio_at is None:
                    self.first_audio_at = time.perf_counter()
            except Exception as error:  # reported by finish()
                self.error = error
