"""run_turn's contract (validation, review, stages, errors), with plain callables standing in for
the stages; the engines and the nodes are tested with the real models in their own files."""

from types import SimpleNamespace

import numpy as np
import pytest

from uservlm_ros.engines.turn import EngineBusyError, Speech, run_turn, validate_question


def answer_of(text):
    return SimpleNamespace(
        text=text,
        model="m",
        placeholder=True,
        generated_tokens=3,
        preprocess_seconds=0.1,
        prefill_seconds=0.2,
        generation_seconds=0.3,
    )


@pytest.mark.parametrize(
    "question, message",
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("x" * 1001, "limit is 1000"),
        ("caf\ufffd?", "not valid UTF-8"),
        ("a\x00b", "NUL"),
        ("a\x07b", "control characters"),
    ],
)
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


@pytest.mark.parametrize(
    "error, prefix",
    [
        (EngineBusyError("another request"), "busy:"),
        (ValueError("image has 2 channels"), "bad request:"),
        (RuntimeError("CUDA out of memory"), "VLM engine failed: RuntimeError"),
    ],
)
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


def test_review_clarify_speaks_the_question_without_the_model():
    from uservlm_ros.engines.turn import ReviewOutcome

    speech = Speech(samples=np.ones(10, np.int16), sample_rate=16000, seconds=0.01)
    review = ReviewOutcome(
        decision="clarify", clarifying_question="Any dietary preferences?", seconds=0.01
    )
    result = run_turn(
        "What should I eat?",
        lambda *a: pytest.fail("no answer before consent"),
        image=np.zeros((4, 4, 3), np.uint8),
        review_fn=lambda q, has_image: review,
        synthesize_fn=lambda text: speech,
    )
    assert result.success and result.clarification and result.answer == "Any dietary preferences?"
    assert (
        result.review_decision == "clarify"
        and result.speech is speech
        and "review" in result.timings
    )


def test_review_resolution_answers_the_original_question_with_context():
    from uservlm_ros.engines.turn import ReviewOutcome

    seen = {}

    def answer(question, image, context):
        seen.update(question=question, image=image, context=context)
        return answer_of("a vegetarian curry")

    review = ReviewOutcome(
        decision="allow",
        question="What should I eat?",
        user_context="The user said: I'm vegetarian.",
    )
    result = run_turn(
        "I'm vegetarian",
        answer,
        image=np.zeros((4, 4, 3), np.uint8),
        image_source="request",
        review_fn=lambda q, has_image: review,
    )
    assert result.success and seen["question"] == "What should I eat?"
    assert seen["context"] == "The user said: I'm vegetarian." and seen["image"] is not None


def test_review_generic_withholds_the_face_and_failure_fails_closed():
    from uservlm_ros.engines.turn import ReviewOutcome

    seen = {}

    def answer(question, image, context):
        seen["image"] = image
        return answer_of("a classic")

    generic = run_turn(
        "Recommend a film",
        answer,
        image=np.zeros((4, 4, 3), np.uint8),
        image_source="request",
        review_fn=lambda q, has_image: ReviewOutcome(decision="generic", reason="declined"),
    )
    assert generic.success and seen["image"] is None and generic.image_source == "withheld"

    def broken(question, has_image):
        raise TimeoutError("review did not answer")

    failed = run_turn(
        "Recommend a film", lambda *a: pytest.fail("must not answer unreviewed"), review_fn=broken
    )
    assert not failed.success and failed.error.startswith("ethics review failed: TimeoutError")
