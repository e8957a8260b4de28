"""Speaking while the model writes: sentence cutting and in-order hand-over (plain Python)."""

import threading

import pytest

from uservlm_ros.speech.sentences import SentenceSpeaker, split_ready


def test_split_ready_cuts_sentences_and_long_clauses():
    assert split_ready("Wear a dark suit. A white shirt", min_chars=10) == (
        ["Wear a dark suit."],
        "A white shirt",
    )
    assert split_ready("Wear a dark suit. A white shirt") == (
        [],
        "Wear a dark suit. A white shirt",
    )  # < 20 chars
    assert split_ready("Hi. Wear a dark suit and a tie. Then", min_chars=10) == (
        ["Hi. Wear a dark suit and a tie."],
        "Then",
    )
    assert split_ready("no sentence end yet") == ([], "no sentence end yet")
    long = "word " * 40
    pieces, rest = split_ready(long, max_chars=50)
    assert all(len(p) <= 50 for p in pieces) and "".join(pieces + [rest]).replace(
        " ", ""
    ) == long.replace(" ", "")
    pieces, rest = split_ready("x" * 130, max_chars=60)
    assert pieces == ["x" * 60, "x" * 60] and rest == "x" * 10  # no space: a hard cut


def test_the_first_piece_is_cut_at_a_clause_and_shorter():
    text = (
        "For a business meeting, wear a dark suit and a white shirt. Polish your shoes and bring a"
    )
    pieces, rest = split_ready(text, first_max_chars=60)
    assert pieces == ["For a business meeting,", "wear a dark suit and a white shirt."]
    assert rest == "Polish your shoes and bring a"
    pieces, _ = split_ready("word " * 40, first_max_chars=30)
    assert len(pieces[0]) <= 30 and all(len(p) <= 120 for p in pieces[1:]) and len(pieces[1]) > 30
    assert split_ready("x" * 70, first_max_chars=60) == (["x" * 60], "x" * 10)
    # later pieces: sentences only (no cut at a comma)
    assert split_ready(
        "Yes, this is long enough. And then, after that, more", min_chars=10, first_max_chars=60
    ) == (["Yes, this is long enough."], "And then, after that, more")


def test_sentences_are_spoken_in_order_as_they_complete():
    spoken, first_ready = [], threading.Event()

    def speak(sentence):
        spoken.append(sentence)
        first_ready.set()
        return 0.1

    speaker = SentenceSpeaker(speak, min_chars=5)
    for piece in ["Wear a ", "dark suit. ", "Add a ", "tie, and ", "polish your shoes"]:
        speaker.feed(piece)
    assert first_ready.wait(5), "the first sentence must be spoken before the answer is complete"
    speaker.finish(5)
    # the first piece is cut at a clause boundary; a comma does not cut the later ones
    assert spoken == ["Wear a dark suit.", "Add a tie, and polish your shoes"]
    assert speaker.synthesis_seconds == pytest.approx(0.2) and speaker.first_audio_at is not None


def test_a_synthesis_failure_is_reported_by_finish():
    def speak(sentence):
        raise RuntimeError("voice crashed")

    speaker = SentenceSpeaker(speak, min_chars=1)
    speaker.feed("One. Two. ")
    with pytest.raises(RuntimeError, match="voice crashed"):
        speaker.finish(5)


def test_pieces_of_punctuation_alone_are_not_spoken_and_nothing_to_speak_is_an_error():
    # The tiny random model's answers can hold runs of punctuation: TTS refuses them, and they
    # are silent anyway, so they are skipped; an answer with no word at all is reported.
    spoken = []
    speaker = SentenceSpeaker(lambda sentence: spoken.append(sentence) or 0.1, min_chars=1)
    speaker.feed("Hello there. ... !!! Bye now.")
    speaker.finish(5)
    assert spoken == ["Hello there.", "Bye now."]
    silent = SentenceSpeaker(lambda sentence: spoken.append(sentence) or 0.1, min_chars=1)
    silent.feed("... ?!")
    with pytest.raises(ValueError, match="no letters or digits"):
        silent.finish(5)
    assert spoken == ["Hello there.", "Bye now."]
