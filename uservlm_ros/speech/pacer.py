"""Send a spoken answer to the robot in pieces, each ahead of its playback but not all at once.

The speaker starts on the first piece and joins the later ones of the same turn gaplessly, so
only the first piece is urgent. :class:`SpeechPacer` cuts a speech into a first piece of
``first_seconds`` and pieces twice as long each after it (a long answer is a handful of
messages), sends the first at once from the caller's thread, and leaves the others to a worker
thread that sends each when the audio before it has half played: piece k, starting ``a`` seconds
into the speech, goes out ``a / 2`` seconds after the first (``lead`` = 0.5), so it arrives with
at least a quarter of a second to spare (half the first piece) and never with the first. Sent
all at once, their conversion, serialisation and delivery would fall exactly where the first
piece is being played out.

Order is kept: pieces go out in the order they were given. A speech of the same (non-empty) turn
as pieces still waiting queues behind them (sentence after sentence of one answer); a speech of
another turn first sends whatever is still waiting at once (it is older audio: early is
harmless), then its own first piece. :meth:`close` sends everything still waiting before the
worker stops: no piece is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

_LOG = logging.getLogger(__name__)


def pieces(
    samples: np.ndarray, sample_rate: int, first_seconds: float
) -> list[tuple[int, np.ndarray]]:
    """(start sample, piece) pairs: the first ``first_seconds`` long, each next twice as long as
    the
    one before; the whole as one piece if ``first_seconds`` <= 0. Always at least one piece."""
    first = int(round(max(0.0, first_seconds) * sample_rate))
    out, start, size = [], 0, first or samples.size
    while not out or start < samples.size:
        out.append((start, samples[start : start + size]))
        start, size = start + size, 2 * size
    return out


class SpeechPacer:
    """``send(piece, sample_rate, turn_id)`` publishes one piece; :meth:`speak` paces a speech."""

    def __init__(
        self,
        send: Callable[[np.ndarray, int, str], None],
        first_seconds: float = 0.5,
        lead: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if not 0.0 <= lead <= 1.0:
            raise ValueError(f"lead must be in [0, 1], got {lead}")
        self._send, self.first_seconds, self.lead, self._clock = send, first_seconds, lead, clock
        self._waiting: deque = deque()  # (due, piece, sample_rate, turn_id), in send order
        self._cond = threading.Condition()
        self._closed = False
        self.sent = 0
        self.send_errors = 0
        self._worker = threading.Thread(target=self._run, name="speech_pacer", daemon=True)
        self._worker.start()

    def speak(
        self,
        samples: np.ndarray,
        sample_rate: int,
        turn_id: str,
        first_seconds: float | None = None,
    ) -> float | None:
        """Send the first piece now (unless it must wait behind this turn's earlier pieces), the
        rest paced. Returns the clock time the first piece went out, or None if it waits.
        ``first_seconds`` overrides the constructor's for this speech. ``send`` errors of the
        first piece propagate; later ones are logged and counted."""
        first_seconds = self.first_seconds if first_seconds is None else first_seconds
        with self._cond:
            if self._closed:
                raise RuntimeError("SpeechPacer is closed")
            if self._waiting and not (turn_id and self._waiting[-1][3] == turn_id):
                self._flush_locked()  # another turn's pieces: older audio, out now
            now = self._clock()
            first_at = None
            for index, (start, piece) in enumerate(pieces(samples, sample_rate, first_seconds)):
                if index == 0 and not self._waiting:
                    self._send(piece, sample_rate, turn_id)
                    self.sent += 1
                    first_at = now
                else:
                    self._waiting.append(
                        (now + self.lead * start / sample_rate, piece, sample_rate, turn_id)
                    )
            self._cond.notify()
            return first_at

    def close(self, timeout: float = 5.0) -> None:
        """Send what is waiting and stop the worker."""
        with self._cond:
            self._flush_locked()
            self._closed = True
            self._cond.notify()
        self._worker.join(timeout)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _flush_locked(self) -> None:
        while self._waiting:
            self._send_waiting_locked()

    def _send_waiting_locked(self) -> None:
        _, piece, sample_rate, turn_id = self._waiting.popleft()
        try:
            self._send(piece, sample_rate, turn_id)
            self.sent += 1
        except Exception as error:  # keep pacing the others; say which piece did not go out
            self.send_errors += 1
            _LOG.error(
                "speech piece of %r (%.2f s) not sent: %s: %s",
                turn_id,
                piece.size / sample_rate,
                type(error).__name__,
                error,
            )

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._waiting:
                    self._cond.wait()
                    continue
                remaining = self._waiting[0][0] - self._clock()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._send_waiting_locked()
