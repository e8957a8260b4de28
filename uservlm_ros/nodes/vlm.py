"""vlm_node: User-VLM answers as the service ``uservlm/ask`` (uservlm_ros/srv/Ask).

Lifecycle node around :class:`uservlm_ros.engines.vlm.VLMEngine` (PaliGemma 2 + a LoRA or MoLE
adapter; a tiny randomly initialised PaliGemma 2 offline, whose answers are meaningless). Keeps the
newest frames of ``camera/image_raw`` and ``camera/image_raw/compressed`` (sensor-data QoS) for
requests that carry no image, and calls ``uservlm/synthesize`` when a request asks
to speak; with ``publish_audio`` or ``stream_audio`` the audio goes to the robot's speaker on
``speech_audio`` itself instead of back to the caller.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup

from uservlm_ros.engines import turn
from uservlm_ros.engines import vlm as vlm_engine
from uservlm_ros.msg import AudioChunk
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import (
    array_to_audio,
    audio_to_array,
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
from uservlm_ros.speech.pacer import SpeechPacer
from uservlm_ros.speech.sentences import SentenceSpeaker
from uservlm_ros.srv import Ask, Review, Synthesize

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
        self._synthesize = self.create_client(
            Synthesize,
            "uservlm/synthesize",
            qos_profile=qos.SERVICES,
            callback_group=self._service_group,
        )
        self._review = self.create_client(
            Review, "uservlm/review", qos_profile=qos.SERVICES, callback_group=self._service_group
        )
        self._review_was_up: bool | None = None
        self._review_seen = False
        # publish_audio / stream_audio asks: the answer (each sentence) goes straight to the
        # robot's speaker.
        self._speech_audio = self.create_publisher(AudioChunk, "speech_audio", qos.SPEECH_AUDIO)
        self._pacer = SpeechPacer(self._send_piece)

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
        self._camera_subscriptions = subscribe_camera(self, self.frames, self._camera_group)
        self.serve(Ask, "uservlm/ask", self.on_ask, self._service_group)

    def destroy_interfaces(self) -> None:
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions = []
        super().destroy_interfaces()

    def destroy_node(self):
        self._pacer.close()  # pieces still waiting go out before the publisher goes
        return super().destroy_node()

    def diagnostic_values(self) -> dict[str, str]:
        return {
            "frames_received": str(self.frames.received),
            "frames_dropped": str(self.frames.dropped),
            "speech_pieces_sent": str(self._pacer.sent),
            "speech_piece_errors": str(self._pacer.send_errors),
            "placeholder_model": str(bool(self.engine and self.engine.placeholder)),
        }

    # -- ask ----------------------------------------------------------------------------------
    def _request_image(self, request: Ask.Request):
        """(image or None, source). ValueError for a malformed request image."""
        has_raw, has_compressed = (
            not image_is_empty(request.image),
            not compressed_is_empty(request.compressed_image),
        )
        if has_raw and has_compressed:
            raise ValueError("set at most one of image and compressed_image")
        if has_raw:
            return image_to_rgb(request.image), "request"
        if has_compressed:
            return compressed_to_rgb(
                check_compressed(request.compressed_image)
            ), "request/compressed"
        frame = self.frames.newest(max_age=self.param("max_frame_age"), now=time.monotonic())
        if frame is None:
            return None, "none"
        try:
            return frame.rgb(), frame.source
        except ValueError as error:
            self.get_logger().warning(
                f"newest frame on {frame.source} unusable ({error}); answering without an image"
            )
            return None, "none"

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

    def review(self, question: str, has_image: bool, user_id: str) -> turn.ReviewOutcome | None:
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
        # The VLM sees the face when there is an image: everything could be inferred (unknown).
        request = Review.Request(question=question, user_id=user_id, has_inferred=not has_image)
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
        )

    def synthesize(self, text: str) -> turn.Speech:
        request = Synthesize.Request(text=text)
        response = call_with_timeout(self._synthesize, request, self.param("synthesize_timeout"))
        if not response.success:
            raise RuntimeError(response.error)
        samples = audio_to_array(response.audio)[:, 0]
        return turn.Speech(
            samples=samples,
            sample_rate=int(response.audio.sample_rate),
            seconds=float(response.synthesis_seconds),
        )

    def _publish_speech(self, speech: turn.Speech, turn_id: str) -> float | None:
        """Send synthesized speech on speech_audio for the robot's speaker (frame_id = turn id:
        the speaker joins the pieces), paced (:class:`uservlm_ros.speech.pacer.SpeechPacer`): a
        first piece of ``speech_chunk_seconds`` at once, then pieces twice as long each, every
        one sent when the audio before it has half played. Returns the perf_counter time of the
        first piece's header stamp (where the bench splits the spoken path), None if it waits
        behind this turn's earlier pieces."""
        return self._pacer.speak(
            speech.samples,
            speech.sample_rate,
            turn_id,
            first_seconds=float(self.param("speech_chunk_seconds")),
        )

    def _send_piece(self, samples: np.ndarray, sample_rate: int, turn_id: str) -> None:
        self._speech_audio.publish(
            array_to_audio(
                samples, sample_rate, stamp=self.get_clock().now().to_msg(), frame_id=turn_id
            )
        )

    def speak_sentence(self, sentence: str, turn_id: str) -> float:
        """Synthesize one sentence and publish it for the robot's speaker at once."""
        speech = self.synthesize(sentence)
        self._publish_speech(speech, turn_id)
        return speech.seconds

    def speak_whole(self, text: str, turn_id: str, published: list) -> turn.Speech:
        """run_turn's synthesis step with publish_audio: the whole answer goes to the robot's
        speaker as soon as it is synthesized; its publish time is appended to ``published``."""
        speech = self.synthesize(text)
        sent = self._publish_speech(speech, turn_id)
        if sent is not None:
            published.append(sent)
        return turn.Speech(samples=np.zeros(0, np.int16), sample_rate=0, seconds=speech.seconds)

    def finish_stream(self, speaker: SentenceSpeaker, text: str) -> turn.Speech:
        """run_turn's synthesis step in stream_audio mode: the answer's sentences are already on
        their way (a clarifying question is fed whole); wait for the last one."""
        if not speaker.fed:
            speaker.feed(text)
        speaker.finish(self.param("synthesize_timeout"))
        return turn.Speech(
            samples=np.zeros(0, np.int16), sample_rate=0, seconds=speaker.synthesis_seconds
        )

    def on_ask(self, request: Ask.Request, response: Ask.Response):
        started = time.perf_counter()
        speaker = None
        published: list[float] = []  # publish_audio: when the answer's audio went out
        try:
            image, source = self._request_image(request)
        except ValueError as error:
            result = turn.TurnResult(
                success=False, error=f"bad image: {error}", image_source="request"
            )
            result.timings["total"] = time.perf_counter() - started
        else:
            # Decoding the image is image preprocessing: counted with the VLM's own preprocess.
            decode_seconds = time.perf_counter() - started
            synthesize_fn = self.synthesize if request.speak else None
            if request.speak and request.publish_audio and not request.stream_audio:
                synthesize_fn = lambda text: self.speak_whole(text, request.turn_id, published)  # noqa: E731
            if request.speak and request.stream_audio:
                speaker = SentenceSpeaker(
                    lambda sentence: self.speak_sentence(sentence, request.turn_id)
                )
                synthesize_fn = lambda text: self.finish_stream(speaker, text)  # noqa: E731
            on_token = speaker.feed if speaker else None

            def answer(question, image, context):
                return self.answer(
                    question, image, context, person_key=request.user_id, on_token=on_token
                )

            try:
                result = turn.run_turn(
                    request.question,
                    answer,
                    image=image,
                    image_source=source,
                    synthesize_fn=synthesize_fn,
                    review_fn=lambda question, has_image: self.review(
                        question, has_image, request.user_id
                    ),
                    max_question_chars=self.param("max_question_chars"),
                    started=started,
                )
            finally:
                if speaker is not None:
                    speaker.close()
            result.timings["preprocess"] = result.timings.get("preprocess", 0.0) + decode_seconds
        if speaker is not None and speaker.first_audio_at is not None:
            result.timings["first_audio"] = speaker.first_audio_at - started
        elif published:  # publish_audio: the whole answer went out
            result.timings["first_audio"] = published[0] - started
        self.fill_response(response, result)
        self.count_request(result.error)
        if result.success:
            self.stage_times.add(**result.timings)
        else:
            self.get_logger().warning(f"ask failed: {result.error}")
        return response

    def fill_response(self, response: Ask.Response, result: turn.TurnResult) -> None:
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
        response.generated_tokens = int(result.generated_tokens)
        timings = result.timings
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


def main(args=None) -> int:
    return run_node(lambda: VLMNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
