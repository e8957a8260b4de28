"""microphone_node (robot side): 16 kHz mono int16 chunks -> ``audio`` (uservlm_ros/msg/AudioChunk,
reliable QoS sized to the chunk rate), from sounddevice or a WAV file (replay, tests, the demo).

Each chunk is stamped with the capture time of its first sample (wall clock), which is what ASR
uses for utterance boundaries and self-speech suppression. A missing device is retried with
backoff and reported on /diagnostics; a WAV source reports its end.
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from uservlm_ros.msg import AudioChunk
from uservlm_ros.robot.microphone_source import MicrophoneConfig, MicrophoneSource
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import array_to_audio, seconds_to_stamp
from uservlm_ros.ros.diagnostics import ERROR, OK, publish_status
from uservlm_ros.ros.parameters import config_from, dataclass_parameters, declare
from uservlm_ros.ros.runner import run_node

DESCRIPTIONS = {
    "source": 'Input: "default", a device index or name, or a .wav file',
    "chunk_ms": "Chunk length, milliseconds (40 ms: one chunk fits one Wi-Fi frame)",
    "channels": "Channels to capture from the device",
    "channel": "Channel to keep (-1 = average all)",
    "realtime": "Pace a WAV file in real time (false: as fast as possible)",
    "loop": "Loop a WAV file",
    "queue_seconds": "Audio buffered between the device callback and the publisher, seconds",
    "stall_seconds": "No audio for this long = device lost, seconds",
    "retry_initial_s": "First retry delay after the device fails, seconds",
    "retry_max_s": "Longest retry delay, seconds",
}


class MicrophoneNode(Node):
    def __init__(self, **kwargs):
        super().__init__("microphone_node", **kwargs)
        declare(self, dataclass_parameters(MicrophoneConfig, DESCRIPTIONS))
        declare(
            self,
            {
                "frame_id": ("microphone", "frame_id of the published audio"),
                "wait_for_subscriber": (
                    True,
                    "Start capturing only once something subscribes to `audio` "
                    "(a replayed WAV then loses nothing to discovery)",
                ),
            },
        )
        config = config_from(self, MicrophoneConfig, DESCRIPTIONS)
        self.source = MicrophoneSource(config, clock=time.time)
        self._audio = self.create_publisher(
            AudioChunk, "audio", qos.audio_qos(config.chunk_ms / 1000.0)
        )
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.published = 0
        self._last_status = ""
        self._ended_logged = False
        self._started = False
        self.create_timer(config.chunk_ms / 2000.0, self.tick)
        self.create_timer(1.0, self.report)

    def tick(self) -> None:
        if not self._started:
            # Reliable QoS keeps nothing for readers not yet discovered: wait for one.
            if (
                self.get_parameter("wait_for_subscriber").value
                and self._audio.get_subscription_count() == 0
            ):
                return
            self.source.start()
            self._started = True
        frame_id = self.get_parameter("frame_id").value
        for chunk in self.source.read_all():
            self._audio.publish(
                array_to_audio(
                    chunk.samples, chunk.sample_rate, seconds_to_stamp(chunk.stamp), frame_id
                )
            )
            self.published += 1
        if self.source.ended and not self._ended_logged:
            self.get_logger().info(
                f"end of {self.get_parameter('source').value}: {self.published} chunks published"
            )
            self._ended_logged = True

    def report(self) -> None:
        stats = self.source.stats()
        if stats.status != self._last_status:
            message = f"microphone {self.get_parameter('source').value!r}: {stats.status}" + (
                f" ({stats.last_error})" if stats.status == "error" else ""
            )
            # One call site per severity: rclpy refuses a call site whose severity changes.
            if stats.status == "error":
                self.get_logger().error(message)
            else:
                self.get_logger().info(message)
            self._last_status = stats.status
        values = dict(stats.key_values()) if hasattr(stats, "key_values") else {}
        values["published"] = self.published
        level = ERROR if stats.status == "error" else OK
        publish_status(self, self._diagnostics, level, f"microphone {stats.status}", values)

    def destroy_node(self):
        self.source.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(lambda: MicrophoneNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
