"""speaker_node (robot side): plays ``speech_audio`` through sounddevice and says when it speaks.

Publishes ``robot_speaking`` (std_msgs/Bool, latched) so ASR ignores the robot's own voice, and
``speech_started`` (std_msgs/Header: stamp = first sample out, frame_id = the turn id carried in
the audio's header) so the dialogue loop can time speech end -> first audio out. The pieces of one
turn (same frame_id: the cloud sends an answer in short chunks, or sentence by sentence) join its
utterance while it plays: one gapless stream, one speech_started. With no output device (servers,
CI) or ``mode: file``, each utterance is written to a WAV in ``output_dir``.
"""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool, Header

from uservlm_ros.msg import AudioChunk
from uservlm_ros.robot.speaker_sink import SpeakerConfig, SpeakerSink
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import audio_to_array, seconds_to_stamp
from uservlm_ros.ros.diagnostics import ERROR, OK, publish_status
from uservlm_ros.ros.parameters import config_from, dataclass_parameters, declare
from uservlm_ros.ros.runner import EVENTS, run_node

DESCRIPTIONS = {
    "mode": "auto (device if one exists, else WAV files) | device | file",
    "device": "Output device name or index for sounddevice",
    "output_dir": "Folder for the WAV files when there is no device (or mode: file)",
    "realtime": "In file mode, report the end of an utterance after its duration (as a speaker "
    "would)",
    "max_queue": "Utterances waiting to be played; more are refused and counted",
    "max_seconds": "Longest utterance accepted, seconds",
}


class SpeakerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("speaker_node", **kwargs)
        declare(self, dataclass_parameters(SpeakerConfig, DESCRIPTIONS))
        self._speaking = self.create_publisher(Bool, "robot_speaking", qos.LATCHED)
        self._started = self.create_publisher(Header, "speech_started", qos.EVENTS)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._speaking.publish(Bool(data=False))
        self.sink = SpeakerSink(
            config_from(self, SpeakerConfig, DESCRIPTIONS),
            on_start=self.on_start,
            on_end=self.on_end,
            clock=time.time,
        )
        self.sink.start()
        self.create_subscription(AudioChunk, "speech_audio", self.on_audio, qos.SPEECH_AUDIO)
        self.create_timer(1.0, self.report)

    def on_audio(self, msg: AudioChunk) -> None:
        try:
            samples = audio_to_array(msg)
            mono = (
                samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1).astype(np.int16)
            )
            if mono.size == 0:
                raise ValueError("empty audio")
            # A turn's pieces (frame_id = turn id) join its utterance while it plays.
            self.sink.play(mono, int(msg.sample_rate), key=msg.header.frame_id)
        except Exception as error:  # refused (queue full, too long) or malformed: say so
            self.get_logger().warning(f"speech_audio {msg.header.frame_id!r} not played: {error}")

    def on_start(self, playback) -> None:
        self._speaking.publish(Bool(data=True))
        turn = playback.key  # the turn id the audio carried
        header = Header(frame_id=turn)
        header.stamp = seconds_to_stamp(playback.started_at)
        self._started.publish(header)
        self.get_logger().info(
            f"speaking {turn or playback.id}" + (f" -> {playback.path}" if playback.path else "")
        )

    def on_end(self, playback) -> None:
        # A queued next utterance sets it true again at once; ASR's echo tail covers the gap.
        self._speaking.publish(Bool(data=False))

    def report(self) -> None:
        stats = self.sink.stats()
        publish_status(
            self,
            self._diagnostics,
            OK if stats.status == "ok" else ERROR,
            f"speaker {stats.mode}: {stats.status}",
            stats.key_values(),
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
