"""uservlm_ros.speech.pacer: the first piece at once, the rest paced ahead of playback, order kept,
nothing dropped."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from uservlm_ros.speech.pacer import SpeechPacer, pieces

RATE = 1000  # samples per second: 1 sample = 1 ms


def test_pieces_start_with_first_seconds_and_double():
    samples = np.arange(3500, dtype=np.int16)
    cut = pieces(samples, RATE, 0.5)
    assert [(start, piece.size) for start, piece in cut] == [(0, 500), (500, 1000), (1500, 2000)]
    assert np.array_equal(np.concatenate([piece for _, piece in cut]), samples)
    assert [piece.size for _, piece in pieces(samples, RATE, 0)] == [3500]
    assert [piece.size for _, piece in pieces(np.zeros(0, np.int16), RATE, 0.5)] == [0]


class Recorder:
    def __init__(self, fail_on: int | None = None):
        self.sent, self.fail_on = [], fail_on
        self.lock = threading.Lock()

    def __call__(self, piece, rate, turn_id):
        with self.lock:
            index = len(self.sent)
            self.sent.append(
                (
                    time.perf_counter(),
                    turn_id,
                    int(piece[0]) if piece.size else -1,
                    piece.size,
                    threading.current_thread().name,
                )
            )
        if index == self.fail_on:
            raise RuntimeError("link down")

    def wait(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.sent) >= count:
                    return True
            time.sleep(0.005)
        return False


def test_first_piece_goes_at_once_and_the_rest_when_half_the_audio_before_has_played():
    sent = Recorder()
    pacer = SpeechPacer(sent, first_seconds=0.2)
    try:
        samples = np.arange(1400, dtype=np.int16)  # pieces 0.2 s, 0.4 s, 0.8 s
        before = time.perf_counter()
        first = pacer.speak(samples, RATE, "turn-1")
        assert first is not None and before <= first
        assert len(sent.sent) == 1 and sent.sent[0][4] == threading.current_thread().name
        assert sent.wait(3)
        starts = [s[2] for s in sent.sent]
        assert starts == [0, 200, 600]  # in order, each piece once
        # piece k is due lead (0.5) x its start in the audio after the first: 100 ms, 300 ms
        assert sent.sent[1][0] - first >= 0.1 - 0.002 and sent.sent[2][0] - first >= 0.3 - 0.002
        assert sent.sent[1][0] - first < 0.2  # and before the audio before it has played
        assert all(s[4] == "speech_pacer" for s in sent.sent[1:])
    finally:
        pacer.close()


def test_a_new_turn_sends_the_old_turns_waiting_pieces_first_and_the_same_turn_queues_behind():
    sent = Recorder()
    pacer = SpeechPacer(sent, first_seconds=1.0)  # later pieces due 0.5 s, 1.5 s after the first
    try:
        pacer.speak(np.arange(7000, dtype=np.int16), RATE, "turn-1")
        assert pacer.waiting == 2
        # The same turn's next sentence waits behind its own pieces: nothing goes out now.
        assert (
            pacer.speak(np.arange(1000, dtype=np.int16), RATE, "turn-1") is None
            and len(sent.sent) == 1
        )
        # Another turn: turn-1's waiting pieces go out at once, in order, then turn-2's first
        # piece.
        assert pacer.speak(np.arange(500, dtype=np.int16), RATE, "turn-2") is not None
        assert [(s[1], s[2]) for s in sent.sent] == [
            ("turn-1", 0),
            ("turn-1", 1000),
            ("turn-1", 3000),
            ("turn-1", 0),
            ("turn-2", 0),
        ]
        # An empty turn id never joins: a speech without a turn flushes what waits.
        pacer.speak(np.arange(3000, dtype=np.int16), RATE, "")
        assert pacer.speak(np.arange(100, dtype=np.int16), RATE, "") is not None
        assert pacer.waiting == 0
    finally:
        pacer.close()


def test_close_sends_what_waits_and_a_failed_piece_is_counted_not_fatal():
    sent = Recorder(fail_on=1)
    pacer = SpeechPacer(
        sent, first_seconds=10.0
    )  # pieces due 5 s and 15 s later: still waiting at close
    pacer.speak(np.arange(70000, dtype=np.int16), RATE, "turn-1")
    assert pacer.waiting == 2
    pacer.close()
    assert [s[2] for s in sent.sent] == [0, 10000, 30000]
    assert pacer.sent == 2 and pacer.send_errors == 1 and pacer.waiting == 0
    with pytest.raises(RuntimeError, match="closed"):
        pacer.speak(np.arange(10, dtype=np.int16), RATE, "turn-2")


def test_an_error_sending_the_first_piece_reaches_the_caller():
    def refuse(piece, rate, turn_id):
        raise RuntimeError("publisher gone")

    pacer = SpeechPacer(refuse)
    try:
        with pytest.raises(RuntimeError, match="publisher gone"):
            pacer.speak(np.arange(100, dtype=np.int16), RATE, "turn-1")
    finally:
        pacer.close()
    with pytest.raises(ValueError):
        SpeechPacer(refuse, lead=1.5)
