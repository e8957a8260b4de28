"""Speak while the model writes (plain Python): cut the streamed answer into sentences and hand
each one, in order, to a synthesis-and-publish function on a worker thread.

A sentence is cut as soon as it ends (., !, ?, ;, : followed by a space) and is at least
``min_chars`` long; text that never ends a sentence is cut at the last space before ``max_chars``
(or at ``max_chars`` if there is none), so a long clause still starts speaking early.

The first piece decides the time to first audio, and synthesis time grows with the length of
the piece, so it is cut sooner: at the first clause boundary (a comma too) or at
``first_max_chars``. Later pieces are
synthesized while the earlier ones play, so they keep whole sentences for a natural prosody.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable

_BOUNDARY = re.compile(r"[.!?;:](?=\s)")
_CLAUSE = re.compile(r"[.!?;:,](?=\s)")
FIRST_MAX_CHARS = 60


def split_ready(
    text: str, min_chars: int = 20, max_chars: int = 120, first_max_chars: int | None = None
) -> tuple[list[str], str]:
    """(finished pieces, remainder) of streamed text. With ``first_max_chars``, the first piece
    is cut like a clause (commas too) and at most that long; the others as sentences."""
    pieces = []
    while True:
        first = first_max_chars is not None and not pieces
        boundary, limit = (
            (_CLAUSE, min(first_max_chars, max_chars)) if first else (_BOUNDARY, max_chars)
        )
        cut = None
        for match in boundary.finditer(text):
            if match.end() >= min_chars:
                cut = match.end()
                break
        if cut is None and len(text) > limit:
            space = text.rfind(" ", 0, limit)
            cut = space if space >= min_chars else limit
        if cut is None:
            return pieces, text
        piece, text = text[:cut].strip(), text[cut:].lstrip()
        if piece:
            pieces.append(piece)


class SentenceSpeaker:
    """Feed text pieces (``feed``); each finished sentence goes to ``speak(sentence)`` in order on
    a
    worker thread. ``finish()`` speaks the rest and waits; errors are kept, not raised in feed."""

    def __init__(
        self,
        speak: Callable[[str], float],
        min_chars: int = 20,
        max_chars: int = 120,
        first_max_chars: int = FIRST_MAX_CHARS,
    ):
        self._speak = speak  # returns the synthesis seconds of that sentence
        self._min, self._max, self._first_max = min_chars, max_chars, first_max_chars
        self._queued = 0
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
        ready, self._text = split_ready(
            self._text, self._min, self._max, self._first_max if self._queued == 0 else None
        )
        for sentence in ready:
            self._put(sentence)

    def finish(self, timeout: float | None = None) -> None:
        rest = self._text.strip()
        self._text = ""
        if rest:
            self._put(rest)
        if not self._queued and self.fed:
            self.error = self.error or ValueError("the answer has no letters or digits to speak")
        self._queue.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            raise TimeoutError("speech synthesis did not finish in time")
        if self.error is not None:
            raise self.error

    def _put(self, sentence: str) -> None:
        """Queue one piece for speech; a piece of punctuation alone ("...") is silent, and TTS
        refuses it, so it is not queued."""
        if any(char.isalnum() for char in sentence):
            self._queue.put(sentence)
            self._queued += 1

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
