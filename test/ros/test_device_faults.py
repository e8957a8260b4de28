"""A device lost and back, through the real nodes: the node stays up, /diagnostics says so while
the device is gone, and the stream resumes when it returns, with no restart. Each case changes
the node's status at least twice (rclpy once killed microphone_node on its first change: one log
call site, two severities).

- camera_node (own process): its video source vanishes in the middle of the stream (the file
  is emptied under it, as a camera is unplugged) and comes back;
- microphone_node (own process): its WAV source is missing at start and appears later;
- microphone_node (in this process): its sound device raises and stops mid-stream, then is
  plugged in again. This machine has no sound device (no PortAudio), so the device is a
  stand-in for the sounddevice module with PortAudio's failure modes: the stream stops, closing
  it raises, querying the device raises until it is back."""

from __future__ import annotations

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage

from graph_probe import Probe
from uservlm_ros.bringup.graph import GRAPH
from uservlm_ros.msg import AudioChunk
from uservlm_ros.ros import qos
from uservlm_ros.speech.audio import write_wav
from uservlm_ros.tools.launcher import GraphProcesses

SPECS = {spec.name: spec for spec in GRAPH}
OK, ERROR = DiagnosticStatus.OK, DiagnosticStatus.ERROR
RETRY = {"retry_initial_s": 0.2, "retry_max_s": 0.5}


def write_video(path, frames: int = 20, fps: float = 10.0) -> bytes:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for i in range(frames):
        writer.write(np.full((240, 320, 3), 10 * i, np.uint8))
    writer.release()
    return path.read_bytes()


def test_camera_unplugged_mid_stream_is_reported_and_picked_up_again(tmp_path, rclpy_context):
    video = tmp_path / "camera.avi"
    content = write_video(video)
    camera = {"source": str(video), "rate_hz": 10.0, "publish_raw": False, **RETRY}
    nodes = GraphProcesses(
        [SPECS["camera_node"]],
        log_dir=tmp_path,
        namespace="camera_fault",
        overrides={"camera_node": camera},
    ).start()
    probe = Probe(rclpy_context, "camera_fault")
    try:
        frames: list[CompressedImage] = []
        probe.node.create_subscription(
            CompressedImage, "camera/image_raw/compressed", frames.append, qos.CAMERA
        )
        log = lambda: (tmp_path / "camera_node.log").read_text()  # noqa: E731

        def streaming(count):
            return len(frames) >= count and probe.latest_level("camera_node", OK)

        assert probe.until(lambda: streaming(5), 60), log()

        video.write_bytes(b"")  # unplugged: the stream stops and the source cannot be opened
        assert probe.until(
            lambda: probe.latest_level("camera_node", ERROR, "could not be opened"), 30
        ), log()
        lost_at = len(frames)
        assert not probe.until(lambda: len(frames) > lost_at + 2, 2.0), "frames from no camera"

        video.write_bytes(content)  # plugged in again
        assert probe.until(lambda: streaming(lost_at + 5), 30), log()
        assert int(probe.value("camera_node", "reconnects")) >= 1
        assert nodes.exited() == {}, log()
        assert "[ERROR]" in log() and "camera" in log()
    finally:
        probe.close()
        nodes.stop()


def test_a_missing_microphone_source_is_reported_then_used_on_arrival(tmp_path, rclpy_context):
    wav = tmp_path / "later.wav"
    microphone = {"source": str(wav), "loop": True, "realtime": True, **RETRY}
    nodes = GraphProcesses(
        [SPECS["microphone_node"]],
        log_dir=tmp_path,
        namespace="mic_fault",
        overrides={"microphone_node": microphone},
    ).start()
    probe = Probe(rclpy_context, "mic_fault")
    try:
        chunks: list[AudioChunk] = []
        probe.node.create_subscription(AudioChunk, "audio", chunks.append, qos.AUDIO)
        log = lambda: (tmp_path / "microphone_node.log").read_text()  # noqa: E731
        assert probe.until(lambda: probe.latest_level("microphone_node", ERROR), 60), log()
        assert "does not exist" in probe.value("microphone_node", "last_error")
        reports = len(probe.status_of("microphone_node"))
        assert probe.until(lambda: len(probe.status_of("microphone_node")) >= reports + 2, 10)

        write_wav(wav, (np.sin(np.arange(16000) / 5.0) * 8000).astype(np.int16), 16000)
        assert probe.until(
            lambda: len(chunks) >= 10 and probe.latest_level("microphone_node", OK), 30
        ), log()
        assert nodes.exited() == {}, log()
        assert "[ERROR]" in log() and "microphone" in log()
    finally:
        probe.close()
        nodes.stop()


class _Stream:
    """An input stream that delivers 40 ms blocks from a thread, as PortAudio does, until its
    device is unplugged; then it stops, and closing it raises."""

    def __init__(self, owner, callback, blocksize, channels, **_):
        self.device, self.callback = owner, callback
        self.blocksize, self.channels = blocksize, channels
        self.active = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.active = True
        self._thread.start()

    def _run(self):
        phase = 0
        while self.active and self.device.plugged:
            wave = np.sin(np.arange(phase, phase + self.blocksize) / 5.0) * 8000
            phase += self.blocksize
            block = wave.astype(np.int16).reshape(-1, 1).repeat(self.channels, axis=1)
            self.callback(block, self.blocksize, None, None)
            time.sleep(self.blocksize / 16000)
        self.active = False

    def abort(self):
        if not self.device.plugged:
            raise OSError("Error stopping stream: Unanticipated host error [PaErrorCode -9999]")
        self.active = False

    def close(self):
        self.abort()


class _FlakyInput:
    """The parts of the sounddevice module microphone_source uses, for one USB microphone."""

    def __init__(self):
        self.plugged = True
        self.streams: list[_Stream] = []

    def query_devices(self, device, kind):
        if not self.plugged:
            raise OSError("Error querying device -1 [PaErrorCode -9996]: Invalid device")
        return {"name": "USB microphone", "max_input_channels": 1, "default_samplerate": 16000.0}

    def check_input_settings(self, **_):
        if not self.plugged:
            raise OSError("Invalid device [PaErrorCode -9996]")

    def InputStream(self, **kwargs):  # noqa: N802 - the sounddevice name
        self.streams.append(_Stream(self, **kwargs))
        return self.streams[-1]


def test_a_microphone_device_raising_mid_stream_is_reported_and_recovered(rclpy_context):
    from uservlm_ros.nodes.microphone import DESCRIPTIONS, MicrophoneNode
    from uservlm_ros.robot.microphone_source import MicrophoneConfig, MicrophoneSource
    from uservlm_ros.ros.parameters import config_from

    overrides = [
        Parameter("source", value="USB"),
        Parameter("channels", value=1),
        Parameter("stall_seconds", value=0.5),
        *(Parameter(name, value=value) for name, value in RETRY.items()),
    ]
    node = MicrophoneNode(
        context=rclpy_context, namespace="mic_device", parameter_overrides=overrides
    )
    device = _FlakyInput()
    node.source.close()
    node.source = MicrophoneSource(
        config_from(node, MicrophoneConfig, DESCRIPTIONS), clock=time.time, sounddevice=device
    )
    probe = Probe(rclpy_context, "mic_device")
    probe.executor.add_node(node)  # a callback that raises fails this test through spin_once
    try:
        chunks: list[AudioChunk] = []
        probe.node.create_subscription(AudioChunk, "audio", chunks.append, qos.AUDIO)

        def streaming(count):
            return len(chunks) >= count and probe.latest_level("microphone_node", OK)

        assert probe.until(lambda: streaming(10), 30)

        device.plugged = False
        assert probe.until(lambda: probe.latest_level("microphone_node", ERROR), 10)
        assert probe.until(
            lambda: "PaErrorCode" in probe.value("microphone_node", "last_error"), 10
        ), "a reopen while unplugged must report the device's error"
        lost_at = len(chunks)

        device.plugged = True
        assert probe.until(lambda: streaming(lost_at + 10), 15)
        assert int(probe.value("microphone_node", "opens")) >= 2
    finally:
        probe.close()
        node.destroy_node()
