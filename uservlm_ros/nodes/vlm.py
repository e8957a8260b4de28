"""vlm_node: User-VLM answers at ``uservlm/ask``, as a service (uservlm_ros/srv/Ask) and as an
action with feedback and cancel (uservlm_ros/action/Ask), one turn and one code path
(:meth:`VLMNode.run_ask`).

Lifecycle node around :class:`uservlm_ros.engines.vlm.VLMEngine` (PaliGemma 2 + a LoRA or MoLE
adapter; a tiny randomly initialised PaliGemma 2 offline, whose answers are meaningless). Keeps the
newest frames of ``camera/image_raw`` and ``camera/image_raw/compressed`` (sensor-data QoS) for
requests that carry no image, and calls ``uservlm/synthesize`` when a request asks
to speak; with ``publish_audio`` or ``stream_audio`` the audio goes to the robot's speaker on
``speech_audio`` itself instead of back to the caller.

Who the answer is for: with an image, person_node's ``uservlm/identify`` finds the addressee;
the model and the review see the crop around them, and a request without a ``user_id`` is for the
person resolved from the face (anonymous when there is none). What perception saw goes to the
review: no face, nothing to infer from looks. ``persons/forgotten`` drops the cached image
features of a person who left or was forgotten.

A cancelled goal (a cancel request, or preempted by a newer one under ``goal_policy: preempt``)
stops generating at the next token, drops the sentences not yet synthesised and the pieces not yet
sent, and tells the speaker to stop the turn's audio (``stop_speaking``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from std_msgs.msg import String

from uservlm_ros.action import Ask as AskAction
from uservlm_ros.engines import turn
from uservlm_ros.engines import vlm as vlm_engine
from uservlm_ros.ros import qos
from uservlm_ros.ros.ask_action import AskActionServer, AskProgress
from uservlm_ros.ros.conversions import (
    array_to_audio,
    check_compressed,
    compressed_is_empty,
    compressed_to_rgb,
    image_is_empty,
    image_to_rgb,
)
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.executors import InlineCallbackGroup
from uservlm_ros.ros.frame_buffer import FrameBuffer, subscribe_camera
from uservlm_ros.ros.runner import run_node
from uservlm_ros.ros.service_client import call_with_timeout, wait_for_server
from uservlm_ros.ros.speech_out import SpeechOut
from uservlm_ros.speech.sentences import SentenceSpeaker
from uservlm_ros.srv import Ask, Identify, Review

FORGOTTEN_TOPIC = "persons/forgotten"  # person_node's: a person left or was forgotten
# what can be inferred from an image without a face: the surroundings, nothing about looks
NO_FACE_INFERENCE = ["scene"]
DISCOVERY_SECONDS = 10.0  # after activation, a server not seen yet may still be discovered


@dataclass
class Person:
    """Whom an ask is for, and the user image after cropping around them."""

    person_id: str  # the request's user_id, else the person resolved from the face
    status: str  # Ask person_status
    image: np.ndarray | None
    source: str  # Ask image_source
    seconds: float = 0.0
    no_face: bool = False  # perception found no face in the image


PLACEHOLDER_NOTE = (
    "tiny randomly initialised PaliGemma 2 stand-in: its answers are meaningless "
    "(the real User-VLM weights are not available here)"
)


class VLMNode(EngineNode):
    CONFIG = vlm_engine.VLMConfig
    DESCRIPTIONS = {
        "base_model": "PaliGemma 2 base model: hub id or local directory",
        "adapter": "User-VLM PEFT adapter (LoRA or MoLE): hub id, local directory, or empty for "
        "none",
        "offline_fallback": "When the base model is unavailable, use a tiny randomly initialised "
        "PaliGemma 2 (meaningless answers) instead of failing",
        "local_files_only": "Never contact the model hub (use the local cache and paths only)",
        "device": "cpu | cuda | cuda:N | auto",
        "dtype": "float32 | bfloat16 | float16 (bfloat16 on a GPU)",
        "max_new_tokens": "Greedy decoding stops after this many new tokens",
        "max_question_chars": "Longest question accepted (characters)",
        "suppress_location_tokens": "Never emit PaliGemma's <loc>/<seg> detection tokens in an "
        "answer",
        "vision_cache_size": "People whose image features are kept to skip the vision tower on "
        "follow-up turns with the same image (0 = off)",
        "prefix_mode": "bidirectional (PaliGemma's) | cacheable (image block bidirectional, text "
        "causal: needs adapters trained in that mode)",
    }
    EXTRA_PARAMETERS = {
        "busy_timeout": (
            20.0,
            "Seconds a request waits for the model while another is answered, before a 'busy' "
            "error",
        ),
        "synthesize_timeout": (
            30.0,
            "Seconds to wait for uservlm/synthesize when a request asks to speak",
        ),
        "review_timeout": (10.0, "Seconds to wait for the ethics review (uservlm/review)"),
        "require_review": (
            False,
            "Refuse to answer when no ethics node is running (false: answer unreviewed, logged "
            "once)",
        ),
        "max_frame_age": (
            10.0,
            "Camera frames older than this (seconds) are not used as the user image; 0 = any age",
        ),
        "frame_history": (
            30,
            "Camera frames kept (raw and compressed together) to pick the one nearest an "
            "utterance",
        ),
        "person_identification": (
            True,
            "Ask person_node (uservlm/identify) about each image: the model sees the crop "
            "around the addressee, and a request without a user_id is for the person resolved "
            "from the face (false: the whole image, user_id as given)",
        ),
        "identify_timeout": (
            5.0,
            "Seconds to wait for person_node's uservlm/identify (then: the whole image, "
            "anonymous unless a user_id was given)",
        ),
        "goal_policy": (
            "preempt",
            "What a new Ask action goal does while one runs: preempt (the running goal ends "
            "cancelled) | queue (it waits its turn)",
        ),
        "speech_chunk_seconds": (
            0.5,
            "Spoken audio goes out on speech_audio in pieces: the first this many "
            "seconds long and sent at once, each next one twice the one before and sent "
            "when the audio before it has half played. The speaker starts on the first "
            "(it crosses a link in a fraction of the whole's time) and joins the turn's "
            "pieces gaplessly (0 = one message per answer or sentence)",
        ),
    }

    def __init__(self, **kwargs):
        super().__init__("vlm_node", **kwargs)
        self.frames = FrameBuffer(self.param("frame_history"))
        self._service_group = ReentrantCallbackGroup()
        self._camera_group = InlineCallbackGroup()  # frames are only stored: no pool hand-off
        self._camera_subscriptions = []
        self._review = self.create_client(
            Review, "uservlm/review", qos_profile=qos.SERVICES, callback_group=self._service_group
        )
        self._review_was_up: bool | None = None
        self._review_seen = False
        self._identify = self.create_client(
            Identify,
            "uservlm/identify",
            qos_profile=qos.SERVICES,
            callback_group=self._service_group,
        )
        self._identify_was_up: bool | None = None
        self._identify_seen = False
        self._activated_at = time.monotonic()
        self.persons_dropped = 0
        self.create_subscription(
            String,
            FORGOTTEN_TOPIC,
            self.on_forgotten,
            qos.EVENTS,
            callback_group=MutuallyExclusiveCallbackGroup(),  # may wait for a running answer
        )
        # speak asks: synthesis, and with publish_audio / stream_audio the answer (each
        # sentence) straight to the robot's speaker
        self.speech = SpeechOut(
            self,
            self._service_group,
            timeout=lambda: self.param("synthesize_timeout"),
            first_seconds=lambda: self.param("speech_chunk_seconds"),
        )
        self._ask_action: AskActionServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def load_engine(self, config):
        engine = vlm_engine.VLMEngine(config)
        engine.load()
        for warning in getattr(engine, "warnings", []):
            self.get_logger().warning(warning)
        if engine.placeholder:
            self.get_logger().warning(PLACEHOLDER_NOTE)
        return engine

    def describe_engine(self) -> str:
        if self.engine is None:
            return "no engine"
        note = " (placeholder: meaningless answers)" if self.engine.placeholder else ""
        return f"{self.engine.model_name}{note}"

    def create_interfaces(self) -> None:
        self._activated_at = time.monotonic()
        self._camera_subscriptions = subscribe_camera(self, self.frames, self._camera_group)
        self.serve(Ask, "uservlm/ask", self.on_ask, self._service_group)
        self._ask_action = AskActionServer(
            self,
            AskAction,
            "uservlm/ask",
            self.on_ask_goal,
            policy=lambda: self.param("goal_policy"),
            callback_group=self._service_group,
        )

    def destroy_interfaces(self) -> None:
        if self._ask_action is not None:
            self._ask_action.destroy()
            self._ask_action = None
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions = []
        super().destroy_interfaces()

    def destroy_node(self):
        self.speech.close()
        return super().destroy_node()

    def diagnostic_values(self) -> dict[str, str]:
        return {
            "frames_received": str(self.frames.received),
            "frames_dropped": str(self.frames.dropped),
            "speech_pieces_sent": str(self.speech.pacer.sent),
            "speech_piece_errors": str(self.speech.pacer.send_errors),
            "speech_pieces_dropped": str(self.speech.pacer.dropped),
            "goals": str(self._ask_action.goals if self._ask_action else 0),
            "goals_cancelled": str(self._ask_action.cancelled if self._ask_action else 0),
            "goals_preempted": str(self._ask_action.preempted if self._ask_action else 0),
            "person_node": str(bool(self._identify_was_up)),
            "cached_persons_dropped": str(self.persons_dropped),
            "placeholder_model": str(bool(self.engine and self.engine.placeholder)),
        }

    # -- ask ----------------------------------------------------------------------------------
    def _request_image(self, request: Ask.Request):
        """(image or None, source, its message: Image or CompressedImage, or a function that
        makes it). ValueError for a malformed request image."""
        has_raw, has_compressed = (
            not image_is_empty(request.image),
            not compressed_is_empty(request.compressed_image),
        )
        if has_raw and has_compressed:
            raise ValueError("set at most one of image and compressed_image")
        if has_raw:
            return image_to_rgb(request.image), "request", request.image
        if has_compressed:
            message = check_compressed(request.compressed_image)
            return compressed_to_rgb(message), "request/compressed", message
        frame = self.frames.newest(max_age=self.param("max_frame_age"), now=time.monotonic())
        if frame is None:
            return None, "none", None
        try:
            return frame.rgb(), frame.source, frame.to_message  # deserialized if needed
        except ValueError as error:
            self.get_logger().warning(
                f"newest frame on {frame.source} unusable ({error}); answering without an image"
            )
            return None, "none", None

    # -- who the answer is for ----------------------------------------------------------------
    def _identify_ready(self) -> bool:
        """person_node's uservlm/identify is there. Once seen, its absence is waited out a
        little (it may be restarting); before, only just after activation (DDS discovery):
        a graph without person_node must not pay a wait on every ask."""
        if self._identify_seen:
            wait = 2.0
        elif time.monotonic() - self._activated_at < DISCOVERY_SECONDS:
            wait = 0.5
        else:
            wait = 0.0
        up = wait_for_server(self._identify, wait)
        if up != self._identify_was_up:
            self._identify_was_up = up
            if up:
                self.get_logger().info("person_node found: asks are resolved from the face")
            else:
                self.get_logger().warning(
                    "person_node not reachable (uservlm/identify): whole images, anonymous "
                    "unless the request names a user_id"
                )
        self._identify_seen = self._identify_seen or up
        return up

    def resolve_person(self, request: Ask.Request, image, source: str, message) -> Person:
        """Whom the ask is for and the user image (the crop around the addressee). Never
        raises: without person_node, or when it fails, the whole image and the request's
        user_id (anonymous when empty)."""
        given = request.user_id
        if image is None:
            return Person(given, "given" if given else "no_image", None, source)
        if not self.param("person_identification") or not self._identify_ready():
            return Person(given, "given" if given else "unavailable", image, source)
        started = time.perf_counter()
        call = Identify.Request(identify=not given)
        try:
            if callable(message):  # a buffered frame, kept serialized until now
                message = message()
            if source.endswith("compressed"):
                call.compressed_image = message
            else:
                call.image = message
            found = call_with_timeout(self._identify, call, self.param("identify_timeout"))
            if not found.success:
                raise RuntimeError(found.error)
        except Exception as error:  # unreachable, timed out, refused: never fatal to the ask
            self.get_logger().warning(f"person not resolved ({error}): whole image")
            return Person(
                given,
                "given" if given else "failed",
                image,
                source,
                time.perf_counter() - started,
            )
        crop = found.crop or "full"
        if crop != "full":
            region = found.crop_region
            x0, y0 = int(region.x_offset), int(region.y_offset)
            cut = image[y0 : y0 + int(region.height), x0 : x0 + int(region.width)]
            if cut.size:
                image = np.ascontiguousarray(cut)
            else:  # a region outside the image: never expected, never fatal
                crop = "full"
        return Person(
            given or found.person_id,
            "given" if given else found.status,
            image,
            f"{source}:{crop}",
            time.perf_counter() - started,
            no_face=found.status == "no_face",
        )

    def on_forgotten(self, message: String) -> None:
        """A person left or was forgotten: drop what the vision cache keeps of their picture."""
        engine = self.engine
        if engine is not None and message.data and engine.forget_person(message.data):
            self.persons_dropped += 1

    def answer(self, question, image, user_context, person_key: str = "", on_token=None):
        try:
            return self.engine.answer(
                question,
                image,
                user_context=user_context,
                on_token=on_token,
                lock_timeout=self.param("busy_timeout"),
                person_key=person_key or None,
            )
        except vlm_engine.EngineBusy as error:
            raise turn.EngineBusyError(str(error)) from error

    def review(
        self, question: str, has_image: bool, user_id: str, no_face: bool = False
    ) -> turn.ReviewOutcome | None:
        """The ethics node's decision, or None (pass-through) when no ethics node runs.

        Once an ethics node has been seen, its absence fails the ask (it crashed or is restarting:
        never silently answer unreviewed); before that, a short wait covers DDS discovery."""
        seen_before = bool(self._review_seen)
        up = wait_for_server(self._review, self.param("review_timeout") if seen_before else 1.0)
        if up != self._review_was_up:
            self._review_was_up = up
            if up:
                self.get_logger().info("ethics node found: every ask is reviewed (uservlm/review)")
            elif seen_before or self.param("require_review"):
                self.get_logger().error(
                    "ethics node not reachable: asks are refused until it is back"
                )
            else:
                self.get_logger().warning("no ethics node running: answering without review")
        if up:
            self._review_seen = True
        else:
            if seen_before or self.param("require_review"):
                raise RuntimeError("the ethics node (uservlm/review) is not reachable")
            return None
        # The VLM sees the face when there is an image with one: everything could be inferred
        # (unknown). Without a face only the surroundings; without an image nothing.
        request = Review.Request(question=question, user_id=user_id, has_inferred=not has_image)
        if has_image and no_face:
            request.has_inferred, request.inferred_attributes = True, list(NO_FACE_INFERENCE)
        response = call_with_timeout(self._review, request, self.param("review_timeout"))
        if not response.success:
            raise RuntimeError(response.error)
        return turn.ReviewOutcome(
            decision=response.decision,
            reason=response.reason,
            clarifying_question=response.clarifying_question,
            user_context=response.user_context,
            question=response.original_question if response.resolved_reply else "",
            seconds=float(response.review_seconds),
            acknowledgement=response.acknowledgement,
            follow_up=response.follow_up,
        )

    def on_ask(self, request: Ask.Request, response: Ask.Response):
        """The service: the turn, answered when it is done."""
        self.fill_response(response, self.run_ask(request, AskProgress()))
        return response

    def on_ask_goal(self, goal: AskAction.Goal, progress: AskProgress) -> AskAction.Result:
        """The action: the same turn, reporting its stages and stoppable (AskActionServer)."""
        result = self.run_ask(goal, progress)
        message = AskAction.Result()
        self.fill_response(message, result)
        message.cancelled = result.cancelled
        return message

    def run_ask(self, request, progress: AskProgress) -> turn.TurnResult:
        """One turn for an Ask request or goal: image, person, review, answer, speech."""
        started = time.perf_counter()
        progress.stage("transcribed", "")
        progress.on_cancel(lambda: self.speech.stop(request.turn_id))
        speaking = _Speaking(self, request, progress)
        try:
            image, source, message = self._request_image(request)
        except ValueError as error:
            result = turn.TurnResult(
                success=False, error=f"bad image: {error}", image_source="request"
            )
            result.timings["total"] = time.perf_counter() - started
        else:
            # Decoding the image is image preprocessing: counted with the VLM's own preprocess.
            decode_seconds = time.perf_counter() - started
            person = self.resolve_person(request, image, source, message)

            def answer(question, image, context):
                progress.check()
                return self.answer(
                    question,
                    image,
                    context,
                    person_key=person.person_id,
                    on_token=speaking.on_token,
                )

            def review(question, has_image):
                progress.check()
                outcome = self.review(question, has_image, person.person_id, person.no_face)
                speaking.reviewed = outcome
                progress.check()
                progress.stage("reviewed")
                return outcome

            try:
                result = turn.run_turn(
                    request.question,
                    answer,
                    image=person.image,
                    image_source=person.source,
                    synthesize_fn=speaking.synthesize_fn(),
                    review_fn=review,
                    max_question_chars=self.param("max_question_chars"),
                    started=started,
                )
            finally:
                speaking.close()
            result.person_id, result.person_status = person.person_id, person.status
            result.timings["person"] = person.seconds
            result.timings["preprocess"] = result.timings.get("preprocess", 0.0) + decode_seconds
        if progress.cancelled and not result.cancelled:  # cancelled after its last check
            result.success, result.cancelled = False, True
            result.error = f"cancelled: {progress.reason}"
        first_audio = speaking.first_audio_at()
        if first_audio is not None:
            result.timings["first_audio"] = first_audio - started
        if result.success:
            progress.stage("answered", result.answer)
        self.count_request(result.error)
        if result.success:
            self.stage_times.add(**result.timings)
        else:
            self.get_logger().warning(f"ask failed: {result.error}")
        return result

    def fill_response(self, response, result: turn.TurnResult) -> None:
        """An Ask response or an Ask action result (the same fields) from ``result``."""
        response.success = result.success
        response.error = result.error
        response.answer = result.answer
        response.clarification = result.clarification
        response.model = result.model or (self.engine.model_name if self.engine else "")
        response.placeholder_model = bool(
            result.placeholder_model or (self.engine and self.engine.placeholder)
        )
        response.image_source = result.image_source
        response.review_decision = result.review_decision
        response.review_reason = result.review_reason
        response.person_id, response.person_status = result.person_id, result.person_status
        response.generated_tokens = int(result.generated_tokens)
        timings = result.timings
        response.person_seconds = float(timings.get("person", 0.0))
        response.review_seconds = float(timings.get("review", 0.0))
        response.preprocess_seconds = float(timings.get("preprocess", 0.0))
        response.prefill_seconds = float(timings.get("prefill", 0.0))
        response.generation_seconds = float(timings.get("generation", 0.0))
        response.synthesis_seconds = float(timings.get("synthesis", 0.0))
        response.total_seconds = float(timings.get("total", 0.0))
        response.first_audio_seconds = float(timings.get("first_audio", 0.0))
        if result.speech is not None and result.speech.samples.size:
            response.audio = array_to_audio(
                result.speech.samples,
                result.speech.sample_rate,
                stamp=self.get_clock().now().to_msg(),
                frame_id="tts",
            )


class _Speaking:
    """How one ask's answer is spoken (``speak``, ``publish_audio``, ``stream_audio``), its
    feedback as sentences are written and audio goes out, and its checks for a cancel."""

    def __init__(self, node: VLMNode, request, progress: AskProgress):
        self.node, self.request, self.progress = node, request, progress
        self.reviewed: turn.ReviewOutcome | None = None
        self.published: list[float] = []  # publish_audio: when the answer's audio went out
        self.speaker: SentenceSpeaker | None = None
        self._reported = 0  # sentences reported as feedback
        if request.speak and request.stream_audio:
            self.speaker = SentenceSpeaker(self._speak_sentence)
            progress.on_cancel(self.speaker.cancel)

    def synthesize_fn(self):
        request = self.request
        if not request.speak:
            return None
        if request.stream_audio:
            return self._finish_stream
        if request.publish_audio:
            return self._speak_whole
        return self.node.speech.synthesize

    def on_token(self, piece: str) -> None:
        """The model wrote ``piece``: stop here if cancelled; feed the sentence speaker and
        report each sentence it cut."""
        self.progress.check()
        if self.speaker is None:
            return
        self.speaker.feed(piece)
        self._report_sentences()

    def _report_sentences(self) -> None:
        sentences = list(self.speaker.written)
        for count in range(self._reported + 1, len(sentences) + 1):
            stage = "first_sentence" if count == 1 else "sentence"
            self.progress.stage(stage, " ".join(sentences[:count]))
        self._reported = max(self._reported, len(sentences))

    def _speak_sentence(self, sentence: str) -> float:
        """The sentence speaker's worker: synthesize one sentence and send it at once, unless
        the ask was cancelled meanwhile (the turn's thread then ends it)."""
        if self.progress.cancelled:
            return 0.0
        speech = self.node.speech.synthesize(sentence)
        if not self.progress.cancelled:
            self._published(self.node.speech.publish(speech, self.request.turn_id))
        return speech.seconds

    def _speak_whole(self, text: str) -> turn.Speech:
        """publish_audio: the whole answer to the robot's speaker as soon as it is synthesized."""
        self.progress.check()
        speech = self.node.speech.synthesize(text)
        self.progress.check()
        self._published(self.node.speech.publish(speech, self.request.turn_id))
        return turn.Speech(samples=np.zeros(0, np.int16), sample_rate=0, seconds=speech.seconds)

    def _finish_stream(self, text: str) -> turn.Speech:
        """stream_audio: the answer's sentences are already on their way (a clarifying question
        is fed whole, a review's follow-up after the answer); wait for the last one."""
        speaker = self.speaker
        follow_up = self.reviewed.follow_up if self.reviewed else ""
        if not speaker.fed:
            speaker.feed(text)
        elif follow_up and text.endswith(follow_up):
            speaker.feed(" " + follow_up)
        self._report_sentences()
        speaker.finish(self.node.param("synthesize_timeout"))
        self.progress.check()
        return turn.Speech(
            samples=np.zeros(0, np.int16), sample_rate=0, seconds=speaker.synthesis_seconds
        )

    def _published(self, first_piece_at: float | None) -> None:
        if first_piece_at is not None:
            if not self.published:
                self.progress.stage("first_audio")
            self.published.append(first_piece_at)

    def first_audio_at(self) -> float | None:
        if self.speaker is not None and self.speaker.first_audio_at is not None:
            return self.speaker.first_audio_at
        return self.published[0] if self.published else None

    def close(self) -> None:
        if self.speaker is not None:
            self.speaker.close()


def main(args=None) -> int:
    return run_node(lambda: VLMNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
