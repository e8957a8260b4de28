"""One turn's validation and error handling, with a real (tiny) engine stand-in kept out: these
tests use plain callables to exercise run_turn's contract; the engine itself is tested elsewhere."""
from types import SimpleNamespace

import numpy as np
import pytest

from uservlm_ros.turn import EngineBusyError, Speech, run_turn, validate_question


def answer_of(text):
    return SimpleNamespace(text=text, model="m", placeholder=True, generated_tokens=3,
                           preprocess_seconds=0.1, prefill_seconds=0.2, generation_seconds=0.3)


@pytest.mark.parametrize("question, message", [
    ("", "empty"), ("   \n\t", "empty"), ("x" * 1001, "limit is 1000"),
    ("caf\ufffd?", "not valid UTF-8"), ("a\x00b", "NUL"), ("a\x07b", "control characters"),
])
def test_bad_questions(question, message):
    with pytest.raises(ValueError, match=message):
        validate_question(question)
    result = run_turn(question, lambda *a: pytest.fail("engine must not be called"))
    assert not result.success and message.split()[0] in result.error
    assert result.timings["total"] >= 0


def test_good_question_is_stripped():
    assert validate_question("  Recommend me a movie \n") == "Recommend me a movie"
    assert validate_question("Quel film me conseilles-tu ?")


def test_success_path_records_timings_and_speech():
    speech = Speech(samples=np.ones(100, np.int16), sample_rate=22050, seconds=0.05)
    result = run_turn("hi?", lambda q, i, c: answer_of("hello"), synthesize_fn=lambda t: speech)
    assert result.success and result.answer == "hello" and result.speech is speech
    assert set(result.timings) == {"preprocess", "prefill", "generation", "synthesis", "total"}


@pytest.mark.parametrize("error, prefix", [
    (EngineBusyError("another request"), "busy:"),
    (ValueError("image has 2 channels"), "bad request:"),
    (RuntimeError("CUDA out of memory"), "VLM engine failed: RuntimeError"),
])
def test_engine_errors_become_results(error, prefix):
    def fail(*args):
        raise error
    result = run_turn("hi?", fail)
    assert not result.success and result.error.startswith(prefix)


def test_synthesis_failure_keeps_the_answer():
    def fail(text):
        raise RuntimeError("voice crashed")
    result = run_turn("hi?", lambda q, i, c: answer_of("hello"), synthesize_fn=fail)
    assert not result.success and result.answer == "hello" and "voice crashed" in result.error
    empty = run_turn("hi?", lambda q, i, c: answer_of("  "), synthesize_fn=fail)
    assert not empty.success and "empty answer" in empty.error
