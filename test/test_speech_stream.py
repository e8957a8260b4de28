"""Speaking while the model writes: sentence cutting and in-order hand-over (plain Python)."""
import threading

import pytest

from uservlm_ros.speech_stream import SentenceSpeaker, split_ready


def test_split_ready_cuts_sentences_and_long_clauses():
    assert split_ready("Wear a dark suit. A white shirt", min_chars=10) == (["Wear a dark suit."], "A white shirt")
    assert split_ready("Wear a dark suit. A white shirt") == ([], "Wear a dark suit. A white shirt")  # < 20 chars
    assert split_ready("Hi. Wear a dark suit and a tie. Then", min_chars=10) == (
        ["Hi. Wear a dark suit and a tie."], "Then")
    assert split_ready("no sentence end yet") == ([], "no sentence end yet")
    long = "word " * 40
    pieces, rest = split_ready(long, max_chars=50)
    assert all(len(p) <= 50 for p in pieces) and "".join(pieces + [rest]).replace(" ", "") == long.replace(" ", "")
    pieces, rest = split_ready("x" * 130, max_chars=60)
    assert pieces == ["x" * 60, "x" * 60] and rest == "x" * 10  # no space: a hard cut


def test_sentences_are_spoken_in_order_as_they_complete():
    spoken, first_ready = [], threading.Event()

    def speak(sentence):
        spoken.append(sentence)
        first_ready.set()
        return 0.1

    speaker = SentenceSpeaker(speak, min_chars=5)
    for piece in ["Wear a ", "dark suit. ", "Add a ", "tie! And ", "polish your shoes"]:
        speaker.feed(piece)
    assert first_ready.wait(5), "the first sentence must be spoken before the answer is complete"
    speaker.finish(5)
    assert spoken == ["Wear a dark suit.", "Add a tie!", "And polish your shoes"]
    assert speaker.synthesis_seconds == pytest.approx(0.3) and speaker.first_audio_at is not None


def test_a_synthesis_failure_is_reported_by_finish():
    def speak(sentence):
        raise RuntimeError("voice crashed")

    speaker = SentenceSpeaker(speak, min_chars=1)
    speaker.feed("One. Two. ")
    with pytest.raises(RuntimeError, match="voice crashed"):
        speaker.finish(5)
