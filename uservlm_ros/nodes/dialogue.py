"""dialogue_node (robot side): the spoken loop. speech -> /uservlm/ask -> speech_audio.

For each utterance on ``speech`` it picks the camera frame nearest the end of the utterance (kept
locally, so one frame per turn crosses the uplink instead of a 30 Hz stream; a JPEG frame is sent
as it came, undecoded), sends it as a goal of the ``uservlm/ask`` action with ``speak: true`` (the
same turn as the Ask service, ethics review included), has the cloud publish the answer's audio
on ``speech_audio`` for the speaker (``publish_audio``: it does not come back through this node),
and times speech end -> first sample out from the speaker's ``speech_started``. A turn lasts
until its answer has been spoken (the speaker reports its end on ``robot_speaking``); then one
``interactions`` record with every stage's time is published. A barge-in over the turn being
spoken (``barge_in``, or :meth:`DialogueNode.cancel_turn`) ends it there: its goal is cancelled
if it still runs, the speaker stops, and the record ends with a ``cancelled`` error; the
person's words come next on ``speech``, as the next turn.

The cloud side may be down or restarted at any time: the node keeps running, says so in its log
and on /diagnostics, and a turn in flight ends with an error as soon as its server is seen gone
(else after ``ask_timeout``), never a hang.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Header

from uservlm_ros.action import Ask as AskAction
from uservlm_ros.msg import AudioChunk, BargeIn, Interaction, SpeakingState, Utterance
from uservlm_ros.ros import qos
from uservlm_ros.ros.ask_client import AskActionClient
from uservlm_ros.ros.conversions import check_compressed, check_image, stamp_to_seconds
from uservlm_ros.ros.diagnostics import OK, WARN, publish_status
from uservlm_ros.ros.frame_buffer import FrameBuffer, subscribe_camera
from uservlm_ros.ros.parameters import declare
from uservlm_ros.ros.runner import EVENTS, run_node
from uservlm_ros.ros.service_client import ServiceUnavailable

PARAMETERS = {
    "user_id": (
        "",
        "Who the robot is talking to (consent memory); empty = the person the cloud side "
        "resolves from the face in each turn's frame (anonymous when there is none)",
    ),
    "speak": (True, "Speak the answers (false: text only, e.g. for a screen)"),
    "stream_audio": (
        True,
        "Speak while the answer is written: the cloud side sends each sentence to the speaker as "
        "soon as it is synthesized",
    ),
    "ask_timeout": (60.0, "Seconds to wait for /uservlm/ask before the turn ends with an error"),
    "audio_out_timeout": (10.0, "Seconds to wait for the speaker to report the first sample out"),
    "max_speaking_seconds": (
        300.0,
        "A turn ends at the latest this long after its first sample out, if the speaker never "
        "reports the end of its answer on robot_speaking",
    ),
    "max_frame_skew": (
        2.0,
        "A camera frame further than this (seconds) from the end of speech is not used",
    ),
    "frame_history": (60, "Camera frames kept to pick the one nearest the end of an utterance"),
    "max_pending_turns": (
        4,
        "Utterances queued while a turn is in flight; older ones beyond this are dropped and "
        "counted",
    ),
}


def seen_image(sent: str, reported: str) -> str:
    """What the model saw of the turn's frame: the frame ``sent`` with the crop the cloud side
    reports ("request/compressed:upper_body" -> "camera/image_raw/compressed:upper_body"), or
    the cloud side's word when it used no frame of ours ("withheld", "none", ...)."""
    if not reported or reported.startswith("request"):
        crop = reported.partition(":")[2]
        return f"{sent}:{crop}" if crop and sent != "none" else sent
    return reported


class DialogueNode(Node):
    # Callbacks only queue and record: the turns run on their own thread, so the events executor
    # (one thread, no wait set rebuilt per camera frame) serves it.
    EXECUTOR_THREADS = EVENTS

    def __init__(self, **kwargs):
        super().__init__("dialogue_node", **kwargs)
        declare(self, PARAMETERS)
        self.frames = FrameBuffer(self.param("frame_history"))
        self._turns: queue.Queue = queue.Queue(maxsize=max(1, self.param("max_pending_turns")))
        self._queueing = threading.Lock()
        self._started: dict[str, float] = {}
        self._started_event = threading.Condition()
        self._counter = itertools.count(1)
        self.turns_done = self.turns_failed = self.turns_dropped = self.turns_interrupted = 0
        # The turn in flight (its goal runs or its answer is being spoken), why it was cancelled
        # ("" while it was not), and the speaker's latest state (speaking, turn, stamp).
        self._turn = threading.Condition()
        self._current = ""
        self._cancel_reason = ""
        self._speaker: tuple[bool, str, float] | None = None
        self.cloud_up: bool | None = None
        self.last_error = ""

        services = ReentrantCallbackGroup()
        events = MutuallyExclusiveCallbackGroup()
        self._ask = AskActionClient(self, callback_group=services)
        self._audio_out = self.create_publisher(AudioChunk, "speech_audio", qos.SPEECH_AUDIO)
        self._interactions = self.create_publisher(Interaction, "interactions", qos.EVENTS)
        self._stop_speaking = self.create_publisher(Header, "stop_speaking", qos.EVENTS)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_subscription(
            Utterance, "speech", self.on_speech, qos.EVENTS, callback_group=events
        )
        self.create_subscription(
            Header, "speech_started", self.on_speech_started, qos.EVENTS, callback_group=events
        )
        self.create_subscription(
            BargeIn, "barge_in", self.on_barge_in, qos.EVENTS, callback_group=events
        )
        self.create_subscription(
            SpeakingState,
            "robot_speaking",
            self.on_robot_speaking,
            qos.LATCHED,
            callback_group=events,
        )
        subscribe_camera(self, self.frames, callback_group=events)
        self.create_timer(1.0, self.tick, callback_group=events)
        self._worker = threading.Thread(target=self._work, name="dialogue_turns", daemon=True)
        self._stopping = threading.Event()
        self._worker.start()

    def param(self, name):
        return self.get_parameter(name).value

    def destroy_node(self):
        self._stopping.set()
        with self._turn:
            self._turn.notify_all()
        self._turns.put(None)
        self._worker.join(timeout=5)
        return super().destroy_node()

    # -- inputs -------------------------------------------------------------------------------
    def on_speech(self, utterance: Utterance) -> None:
        if not utterance.text.strip():
            return
        with self._queueing:  # callers may be on any thread
            try:
                self._turns.put_nowait(utterance)
            except queue.Full:
                dropped = self._turns.get_nowait()
                self._turns.put_nowait(utterance)
                self.turns_dropped += 1
                self.get_logger().warning(
                    f"turn queue full: dropped the utterance {dropped.text!r}"
                )

    def on_barge_in(self, event: BargeIn) -> None:
        """The person spoke over the robot: the turn being spoken ends here (the speaker has
        stopped by itself); what they said comes next on ``speech``, as the next turn."""
        if event.header.frame_id:
            self.cancel_turn("barge-in", turn=event.header.frame_id, stop_speaker=False)

    def on_robot_speaking(self, state: SpeakingState) -> None:
        """The speaker's state. A stop for a barge-in ends the turn as cancelled whether it comes
        before or after asr_node's barge_in (two publishers: either may be taken first)."""
        barge_in = not state.speaking and state.reason == "barge_in" and state.turn_id
        with self._turn:
            cancelled = bool(barge_in) and self._mark_cancelled(state.turn_id, "barge-in")
            self._speaker = (state.speaking, state.turn_id, stamp_to_seconds(state.header.stamp))
            self._turn.notify_all()
        if cancelled:
            self._cancel_now(state.turn_id, "barge-in", stop_speaker=False)

    def on_speech_started(self, header: Header) -> None:
        with self._started_event:
            self._started[header.frame_id] = stamp_to_seconds(header.stamp)
            while len(self._started) > 100:
                self._started.pop(next(iter(self._started)))
            self._started_event.notify_all()

    # -- the loop -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            utterance = self._turns.get()
            if utterance is None:
                return
            try:
                self.take_turn(utterance)
            except Exception as error:  # a bug in one turn must not end the loop
                self.get_logger().error(f"turn failed: {type(error).__name__}: {error}")

    def _user_image(self, speech_end: float, request: AskAction.Goal) -> str:
        """Put the camera frame nearest the end of speech into ``request`` as it arrived (a JPEG
        stays a JPEG: no decoding here, ~40 KB instead of 900 KB on the uplink); its source."""
        frame = self.frames.nearest(speech_end)
        if frame is None or abs(frame.stamp - speech_end) > self.param("max_frame_skew"):
            return "none"
        try:
            message = frame.to_message()
            if frame.compressed:
                request.compressed_image = check_compressed(message)
            else:
                request.image = check_image(message)
        except ValueError as error:
            self.get_logger().warning(f"unusable frame on {frame.source}: {error}")
            return "none"
        return frame.source

    def take_turn(self, utterance: Utterance) -> Interaction:
        turn_id = f"turn-{next(self._counter)}"
        speech_end = stamp_to_seconds(utterance.end)
        record = Interaction(
            turn_id=turn_id,
            user_id=self.param("user_id"),
            transcript=utterance.text,
            language=utterance.language,
            speech_start=utterance.start,
            speech_end=utterance.end,
            asr_seconds=utterance.asr_seconds,
            vad_seconds=utterance.vad_seconds,
        )
        record.speech_end_to_transcript = max(
            0.0, stamp_to_seconds(utterance.header.stamp) - speech_end
        )
        # The cloud publishes the answer's audio for the speaker itself (publish_audio): it does
        # not travel back through this node first.
        request = AskAction.Goal(
            question=utterance.text,
            user_id=self.param("user_id"),
            speak=self.param("speak"),
            publish_audio=True,
            stream_audio=self.param("stream_audio"),
            turn_id=turn_id,
        )
        record.image_source = self._user_image(speech_end, request)
        with self._turn:
            self._current, self._cancel_reason = turn_id, ""
        try:
            return self._finish(self._ask_and_speak(request, record, speech_end))
        finally:
            with self._turn:
                self._current = ""

    def _ask_and_speak(
        self, request: AskAction.Goal, record: Interaction, speech_end: float
    ) -> Interaction:
        """The turn's goal, then its answer spoken (or the turn cancelled meanwhile)."""
        turn_id = request.turn_id
        if self._cancelled():  # before its goal was sent
            record.success, record.error = False, f"cancelled: {self._cancelled()}"
            return record
        sent = time.time()
        try:
            response = self._ask.run(request, self.param("ask_timeout"), self._on_feedback)
        except (ServiceUnavailable, TimeoutError, RuntimeError) as error:
            record.success, record.error = False, f"cloud side: {error}"
            return record
        answered = time.time()
        record.speech_end_to_answer = max(0.0, answered - speech_end)
        record.ask_round_trip_seconds = answered - sent
        record.server_seconds = response.total_seconds
        record.person_id, record.person_status = response.person_id, response.person_status
        record.person_seconds = response.person_seconds
        record.image_source = seen_image(record.image_source, response.image_source)
        record.review_seconds = response.review_seconds
        record.success, record.error = response.success, response.error
        record.answer, record.clarification = response.answer, response.clarification
        record.model, record.placeholder_model = response.model, response.placeholder_model
        record.preprocess_seconds = response.preprocess_seconds
        record.prefill_seconds = response.prefill_seconds
        record.generation_seconds = response.generation_seconds
        record.synthesis_seconds = response.synthesis_seconds
        record.first_audio_seconds = response.first_audio_seconds
        published = response.first_audio_seconds > 0  # the audio went straight to the speaker
        if response.success and (published or len(response.audio.data)):
            if not published:  # a cloud side that returns the audio instead
                audio = response.audio
                audio.header.frame_id = turn_id
                audio.header.stamp = self.get_clock().now().to_msg()
                self._audio_out.publish(audio)
            started = self._wait_started(turn_id, self.param("audio_out_timeout"))
            if started is None:
                if not self._cancelled():
                    record.error = "the speaker did not report playing the answer"
                    self.get_logger().warning(f"{turn_id}: {record.error}")
            else:
                record.speech_end_to_audio_out = max(0.0, started - speech_end)
                self._wait_spoken(turn_id, started)
        elif published:  # cancelled after its first audio: when it started, if it did
            with self._started_event:
                started = self._started.pop(turn_id, None)
            if started is not None:
                record.speech_end_to_audio_out = max(0.0, started - speech_end)
        reason = self._cancelled()
        if reason:
            record.success, record.error = False, f"cancelled: {reason}"
        return record

    def _on_feedback(self, feedback: AskAction.Feedback) -> None:
        self.get_logger().debug(f"ask: {feedback.stage} after {feedback.elapsed_seconds:.2f} s")

    def cancel_turn(
        self, reason: str = "cancel requested", turn: str | None = None, stop_speaker: bool = True
    ) -> bool:
        """Cancel the turn in flight (only if it is ``turn``, when given): its goal is cancelled
        if it still runs, and with ``stop_speaker`` the speaker is told to stop its audio (a
        barge-in has stopped it already). False when there was no such turn."""
        with self._turn:
            current = self._current
            if not self._mark_cancelled(current if turn is None else turn, reason):
                return False
        self._cancel_now(current, reason, stop_speaker)
        return True

    def _mark_cancelled(self, turn: str, reason: str) -> bool:
        """(Holding the turn lock.) Mark ``turn`` cancelled if it is the turn in flight and was
        not cancelled yet."""
        if not self._current or turn != self._current or self._cancel_reason:
            return False
        self._cancel_reason = reason
        self._turn.notify_all()
        return True

    def _cancel_now(self, turn: str, reason: str, stop_speaker: bool) -> None:
        self._ask.cancel()  # if its goal still runs
        if stop_speaker:
            header = Header(frame_id=turn)
            header.stamp = self.get_clock().now().to_msg()
            self._stop_speaking.publish(header)
        self.turns_interrupted += 1
        self.get_logger().info(f"{turn}: {reason}, turn cancelled")

    def _cancelled(self) -> str:
        with self._turn:
            return self._cancel_reason

    def _wait_spoken(self, turn_id: str, started: float) -> None:
        """Until the speaker has ended ``turn_id``'s answer (a robot_speaking state from its
        start on that is not this turn speaking), the turn is cancelled, or
        ``max_speaking_seconds`` have passed."""
        deadline = time.monotonic() + self.param("max_speaking_seconds")
        with self._turn:
            while not self._stopping.is_set() and not self._cancel_reason:
                state = self._speaker
                if state is not None and state[2] >= started - 1e-6:
                    speaking, turn, _ = state
                    if not (speaking and turn == turn_id):
                        return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.get_logger().warning(
                        f"{turn_id}: the speaker did not report the end of the answer within "
                        f"{self.param('max_speaking_seconds'):.0f} s"
                    )
                    return
                self._turn.wait(min(remaining, 0.5))

    def _wait_started(self, turn_id: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._started_event:
            while turn_id not in self._started:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return None
                self._started_event.wait(remaining)
            return self._started.pop(turn_id)

    def _finish(self, record: Interaction) -> Interaction:
        record.header.stamp = self.get_clock().now().to_msg()
        self._interactions.publish(record)
        if record.success:
            self.turns_done += 1
            self.get_logger().info(
                f"{record.turn_id}: {record.transcript!r} -> {record.answer[:80]!r} "
                f"(speech end -> audio out {record.speech_end_to_audio_out:.2f} s)"
            )
        elif self._cancelled():  # counted as interrupted by cancel_turn
            self.get_logger().info(f"{record.turn_id}: {record.transcript!r} {record.error}")
        else:
            self.turns_failed += 1
            self.last_error = record.error
            self.get_logger().warning(
                f"{record.turn_id}: {record.transcript!r} failed: {record.error}"
            )
        return record

    # -- health -------------------------------------------------------------------------------
    def tick(self) -> None:
        up = self._ask.server_is_ready()
        if up != self.cloud_up:
            if up:
                self.get_logger().info("cloud side reachable: /uservlm/ask is up")
            else:
                self.get_logger().warning(
                    "cloud side not reachable: /uservlm/ask has no server; "
                    "the robot keeps listening, turns fail until it is back"
                )
            self.cloud_up = up
        values = {
            "turns_done": self.turns_done,
            "turns_failed": self.turns_failed,
            "turns_dropped": self.turns_dropped,
            "turns_interrupted": self.turns_interrupted,
            "frames_received": self.frames.received,
            "last_error": self.last_error,
        }
        publish_status(
            self,
            self._diagnostics,
            OK if up else WARN,
            "cloud side reachable" if up else "cloud side not reachable (/uservlm/ask)",
            values,
        )


def main(args=None) -> int:
    return run_node(lambda: DialogueNode(), args, threads=DialogueNode.EXECUTOR_THREADS)


if __name__ == "__main__":
    raise SystemExit(main())
