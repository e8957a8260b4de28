"""pepper_audio_node (robot side): naoqi_driver2's microphones -> the same ``audio`` stream as
microphone_node (16 kHz mono int16 AudioChunk).

naoqi_driver2 publishes naoqi_bridge_msgs/AudioBuffer at 48 kHz with 4 interleaved channels on
``<prefix>/audio`` (remap it to ``naoqi_audio``). The conversion (channel choice or mix through
the buffer's channel_map, stateful anti-aliased resampling) is plain Python in
uservlm_ros.robot.pepper_audio; this node only needs naoqi_bridge_msgs when it runs.
Malformed buffers are dropped with a logged reason and counted on /diagnostics.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from uservlm_ros.msg import AudioChunk
from uservlm_ros.robot.pepper_audio import PepperAudioConfig, PepperAudioConverter
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import array_to_audio, seconds_to_stamp, stamp_to_seconds
from uservlm_ros.ros.diagnostics import OK, WARN, publish_status
from uservlm_ros.ros.parameters import config_from, dataclass_parameters, declare
from uservlm_ros.ros.runner import run_node

DESCRIPTIONS = {
    "channel": "front (mean of the front microphones), mean, a channel name (front_left, ...) or "
    "an index 0-3",
    "input_rate": "Expected AudioBuffer rate, Hz (0 = accept any)",
    "channels": "Expected channel count (0 = accept any)",
}


def audio_buffer_type():
    try:
        from naoqi_bridge_msgs.msg import AudioBuffer
    except ImportError as error:
        raise RuntimeError(
            "pepper_audio_node needs naoqi_bridge_msgs (ros-<distro>-naoqi-bridge-msgs); "
            f"it is not installed: {error}"
        ) from error
    return AudioBuffer


class PepperAudioNode(Node):
    def __init__(self, buffer_type, **kwargs):
        super().__init__("pepper_audio_node", **kwargs)
        declare(self, dataclass_parameters(PepperAudioConfig, DESCRIPTIONS))
        self.converter = PepperAudioConverter(config_from(self, PepperAudioConfig, DESCRIPTIONS))
        self._audio = self.create_publisher(AudioChunk, "audio", qos.AUDIO)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_subscription(buffer_type, "naoqi_audio", self.on_buffer, qos.AUDIO)
        self.create_timer(1.0, self.report)

    def on_buffer(self, msg) -> None:
        channel_map = getattr(msg, "channel_map", None)
        if channel_map is None:
            channel_map = getattr(msg, "channelMap", [])
        try:
            samples = self.converter.convert(int(msg.frequency), channel_map, msg.data)
        except ValueError as error:
            self.get_logger().warning(f"AudioBuffer dropped: {error}", throttle_duration_sec=5.0)
            return
        if samples.size == 0:
            return
        received = stamp_to_seconds(msg.header.stamp) or self.get_clock().now().nanoseconds * 1e-9
        first = self.converter.first_sample_time(received, samples.size)
        self._audio.publish(
            array_to_audio(samples, 16000, seconds_to_stamp(first), "pepper_microphones")
        )

    def report(self) -> None:
        c = self.converter
        values = {
            "buffers": c.buffers,
            "rejected": c.rejected,
            "restarts": c.restarts,
            "last_reject_reason": c.last_reject_reason,
        }
        publish_status(
            self,
            self._diagnostics,
            WARN if c.rejected else OK,
            f"{c.buffers} buffers, {c.rejected} rejected",
            values,
        )


def main(args=None) -> int:
    try:
        buffer_type = audio_buffer_type()
    except RuntimeError as error:
        print(f"pepper_audio_node: {error}", file=sys.stderr)
        return 2
    return run_node(lambda: PepperAudioNode(buffer_type), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
