"""One question-answer turn, the same for ``/uservlm/ask`` and the spoken loop (plain Python).

question (+ image, user) -> [ethics review] -> User-VLM -> [speech synthesis], with every stage
timed and every failure turned into a result that says what was wrong. Nothing here imports rclpy:
the ROS nodes hand in callables for the stages that live in other processes.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MAX_QUESTION_CHARS_DEFAULT = 1000


@dataclass
class Speech:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    seconds: float  # synthesis wall time


@dataclass
class ReviewOutcome:
    """What the ethics review decided for one question (see uservlm_ros/srv/Review.srv)."""

    decision: str  # allow | clarify | generic
    reason: str = ""
    clarifying_question: str = ""
    user_context: str = ""  # what the person told us, for the prompt
    question: str = ""  # the question to answer now, when this utterance was a reply
    seconds: float = 0.0


@dataclass
class TurnResult:
    success: bool
    error: str = ""
    answer: str = ""
    clarification: bool = False
    model: str = ""
    placeholder_model: bool = False
    image_source: str = "none"
    review_decision: str = ""
    review_reason: str = ""
    generated_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    speech: Speech | None = None


def validate_question(question: str, max_chars: int = MAX_QUESTION_CHARS_DEFAULT) -> str:
    """The question, stripped; ValueError naming the problem otherwise."""
    if not isinstance(question, str):
        raise ValueError(f"question must be text, got {type(question).__name__}")
    if "\ufffd" in question:
        # rclpy decodes incoming strings with errors="replace": U+FFFD marks bytes that were
        # not valid UTF-8 on the wire.
        raise ValueError("question is not valid UTF-8 (undecodable bytes were received)")
    if "\x00" in question:
        raise ValueError("question contains a NUL character")
    stripped = question.strip()
    if not stripped:
        raise ValueError("question is empty")
    if len(stripped) > max_chars:
        raise ValueError(f"question is {len(stripped)} characters long; the limit is {max_chars}")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in stripped):
        raise ValueError("question contains control characters")
    return stripped


class EngineBusyError(RuntimeError):
    """The model is serving another request and did not become free in time."""


def run_turn(
    question: str,
    answer_fn: Callable,
    image: np.ndarray | None = None,
    image_source: str = "none",
    user_context: str | None = None,
    synthesize_fn: Callable[[str], Speech] | None = None,
    review_fn: Callable[[str, bool], ReviewOutcome] | None = None,
    max_question_chars: int = MAX_QUESTION_CHARS_DEFAULT,
    started: float | None = None,
) -> TurnResult:
    """Answer one question. ``review_fn(question, has_image)`` is the ethics review (it may
    return None when no review runs); ``answer_fn(question, image, user_context)`` returns the VLM
    engine's answer object;
    ``synthesize_fn`` (when speaking) returns a Speech. Never raises."""
    started = time.perf_counter() if started is None else started
    result = TurnResult(success=False, image_source=image_source)
    try:
        question = validate_question(question, max_question_chars)
    except ValueError as error:
        result.error = str(error)
        return _finish(result, started)
    if review_fn is not None:
        try:
            review = review_fn(question, image is not None)
        except Exception as error:  # no review, no personalised answer: fail closed
            result.error = f"ethics review failed: {type(error).__name__}: {error}"
            return _finish(result, started)
    else:
        review = None
    if review is not None:  # None: no ethics node is running (pass-through)
        result.review_decision, result.review_reason = review.decision, review.reason
        result.timings["review"] = review.seconds
        if review.decision == "clarify":
            result.answer, result.clarification = review.clarifying_question, True
            return _speak(result, synthesize_fn, started)
        question = review.question or question
        user_context = review.user_context or user_context
        if review.decision == "generic" and image is not None:
            # Nothing personal to lean on: the model does not see the face at all.
            image, result.image_source = None, "withheld"
    try:
        reply = answer_fn(question, image, user_context)
    except EngineBusyError as error:
        result.error = f"busy: {error}"
        return _finish(result, started)
    except ValueError as error:
        result.error = f"bad request: {error}"
        return _finish(result, started)
    except Exception as error:  # an engine fault must come back as an error, not kill the node
        result.error = f"VLM engine failed: {type(error).__name__}: {error}"
        return _finish(result, started)
    result.answer = reply.text
    result.model = reply.model
    result.placeholder_model = reply.placeholder
    result.generated_tokens = reply.generated_tokens
    result.timings.update(
        preprocess=reply.preprocess_seconds,
        prefill=reply.prefill_seconds,
        generation=reply.generation_seconds,
    )
    return _speak(result, synthesize_fn, started)


def _speak(result: TurnResult, synthesize_fn, started: float) -> TurnResult:
    """Synthesize ``result.answer`` when asked to; the turn succeeds unless that fails."""
    if synthesize_fn is not None:
        text = result.answer.strip()
        if not text:
            result.error = "the model produced an empty answer; nothing to speak"
            return _finish(result, started)
        try:
            result.speech = synthesize_fn(text)
            result.timings["synthesis"] = result.speech.seconds
        except Exception as error:
            result.error = f"speech synthesis failed: {type(error).__name__}: {error}"
            return _finish(result, started)
    result.success = True
    return _finish(result, started)


def _finish(result: TurnResult, started: float) -> TurnResult:
    result.timings["total"] = time.perf_counter() - started
    return result
