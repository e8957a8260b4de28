"""speaker_node (robot side): plays ``speech_audio`` through sounddevice and says what it plays.

The pieces of one turn (same frame_id: the cloud sends an answer in short chunks, or sentence by
sentence) join its utterance while it plays: one gapless stream. With no output device (servers,
CI) or ``mode: file``, each utterance is written to a WAV in ``output_dir``. It publishes, on the
robot's clock (``time.time``, the clock the microphone stamps its audio with):

- ``robot_speaking`` (uservlm_ros/SpeakingState, latched): each start and stop, stamped with when
  it happened at the loudspeaker (first sample out, end of what played), with the turn id and
  why it stopped;
- ``speech_played`` (AudioChunk per block going out, header.stamp = when its first sample leaves
  the speaker, frame_id = the turn id): the echo canceller's reference in asr_node; nothing is
  reported after a stop;
- ``speech_started`` (std_msgs/Header: stamp = first sample out, frame_id = the turn id) so the
  dialogue loop can time speech end -> first audio out.

It stops on ``barge_in`` (asr_node heard the person over the robot: everything playing and
queued stops, and the interrupted turn's later pieces are dropped) and on ``stop_speaking``
(std_msgs/Header, frame_id = the turn to stop, "" = everything: a cancelled turn). Each stop
takes effect within one output block (50 ms on a device) and is reported as ``robot_speaking``
false with its reason; dropped pieces and the stops' latency are on /diagnostics.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Header

from uservlm_ros.msg import AudioChunk, BargeIn, SpeakingState
from uservlm_ros.robot.speaker_sink import SpeakerConfig, SpeakerSink, TurnStopped
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import array_to_audio, audio_to_array, seconds_to_stamp
from uservlm_ros.ros.diagnostics import ERROR, OK, publish_status
from uservlm_ros.ros.parameters import config_from, dataclass_parameters, declare
from uservlm_ros.ros.runner import EVENTS, run_node

DESCRIPTIONS = {
    "mode": "auto (device if one exists, else WAV files) | device | file",
    "device": "Output device name or index for sounddevice",
    "output_dir": "Folder for the WAV files when there is no device (or mode: file)",
    "realtime": "In file mode, play in real time: report the end of an utterance after its "
    "duration and what played as it goes (as a speaker would)",
    "max_queue": "Utterances waiting to be played; more are refused and counted",
    "max_seconds": "Longest utterance accepted, seconds",
}


def speaking_state(speaking: bool, stamp: float, turn: str, reason: str = "") -> SpeakingState:
    msg = SpeakingState(speaking=speaking, turn_id=turn, reason=reason)
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.header.frame_id = "speaker"
    return msg


class SpeakerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("speaker_node", **kwargs)
        declare(self, dataclass_parameters(SpeakerConfig, DESCRIPTIONS))
        self._speaking = self.create_publisher(SpeakingState, "robot_speaking", qos.LATCHED)
        self._played = self.create_publisher(AudioChunk, "speech_played", qos.PLAYED)
        self._started = self.create_publisher(Header, "speech_started", qos.EVENTS)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._speaking.publish(speaking_state(False, time.time(), ""))
        self._lock = threading.Lock()
        self.barge_ins = 0
        self.stop_requests = 0
        self._dropped_turn = ""  # the last stopped turn whose late pieces were logged
        self.stop_latency: float | None = None  # last stop: request received -> stopped, s
        self.sink = SpeakerSink(
            config_from(self, SpeakerConfig, DESCRIPTIONS),
            on_start=self.on_start,
            on_end=self.on_end,
            on_played=self.on_played,
            clock=time.time,
        )
        self.sink.start()
        self.create_subscription(AudioChunk, "speech_audio", self.on_audio, qos.SPEECH_AUDIO)
        self.create_subscription(BargeIn, "barge_in", self.on_barge_in, qos.EVENTS)
        self.create_subscription(Header, "stop_speaking", self.on_stop_speaking, qos.EVENTS)
        self.create_timer(1.0, self.report)

    # -- input ------------------------------------------------------------------------------------
    def on_audio(self, msg: AudioChunk) -> None:
        turn = msg.header.frame_id
        try:
            samples = audio_to_array(msg)
            mono = (
                samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1).astype(np.int16)
            )
            if mono.size == 0:
                raise ValueError("empty audio")
            # A turn's pieces (frame_id = turn id) join its utterance while it plays.
            self.sink.play(mono, int(msg.sample_rate), key=turn)
        except TurnStopped:  # counted by the sink (dropped_pieces); logged once per turn
            if turn != self._dropped_turn:
                self._dropped_turn = turn
                self.get_logger().info(f"turn {turn!r} was stopped: its later pieces are dropped")
        except Exception as error:  # refused (queue full, too long) or malformed: say so
            self.get_logger().warning(f"speech_audio {turn!r} not played: {error}")

    def on_barge_in(self, msg: BargeIn) -> None:
        """The person talks over the robot: stop everything, and the interrupted turn's pieces
        still to come."""
        stopped = self.sink.stop("", reason="barge_in")
        if msg.header.frame_id:
            self.sink.refuse(msg.header.frame_id)
        self.barge_ins += 1
        self.get_logger().info(
            f"barge-in over turn {msg.header.frame_id!r}: {stopped} utterance(s) stopped"
        )

    def on_stop_speaking(self, msg: Header) -> None:
        """Stop turn ``frame_id`` (every turn when empty): a cancelled turn."""
        stopped = self.sink.stop(msg.frame_id, reason="stopped")
        self.stop_requests += 1
        self.get_logger().info(
            f"stop_speaking {msg.frame_id or '(everything)'!r}: {stopped} utterance(s) stopped"
        )

    # -- the sink's reports (its worker thread) ---------------------------------------------------
    def on_start(self, playback) -> None:
        turn = playback.key  # the turn id the audio carried
        self._speaking.publish(speaking_state(True, playback.started_at, turn))
        header = Header(frame_id=turn)
        header.stamp = seconds_to_stamp(playback.started_at)
        self._started.publish(header)
        self.get_logger().info(
            f"speaking {turn or playback.id}" + (f" -> {playback.path}" if playback.path else "")
        )

    def on_played(self, playback, samples: np.ndarray, rate: int, start: float) -> None:
        self._played.publish(
            array_to_audio(samples, rate, seconds_to_stamp(start), frame_id=playback.key)
        )

    def on_end(self, playback) -> None:
        # A queued next utterance sets it true again at once; the echo gate's tail covers it.
        reason = playback.stop_reason or ("finished" if playback.completed else "error")
        self._speaking.publish(speaking_state(False, playback.ended_at, playback.key, reason))
        if playback.stop_requested_at is not None:
            with self._lock:
                self.stop_latency = playback.ended_at - playback.stop_requested_at

    def report(self) -> None:
        stats = self.sink.stats()
        with self._lock:
            latency = self.stop_latency
        values = stats.key_values() + [
            ("barge_ins", str(self.barge_ins)),
            ("stop_requests", str(self.stop_requests)),
            ("last_stop_ms", "" if latency is None else f"{1000 * latency:.1f}"),
        ]
        publish_status(
            self,
            self._diagnostics,
            OK if stats.status == "ok" else ERROR,
            f"speaker {stats.mode}: {stats.status}",
            values,
        )

    def destroy_node(self):
        self.sink.close()
        return super().destroy_node()


def main(args=None) -> int:
    # Callbacks only hand audio to the sink thread: the events executor, one thread, no pool
    # hand-off and no wait set rebuilt per message (the sink thread starts sooner).
    return run_node(lambda: SpeakerNode(), args, threads=EVENTS)


if __name__ == "__main__":
    raise SystemExit(main())
