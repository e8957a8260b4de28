"""The fallback for the Jazzy-only rclpy API the robot side uses (see
test/unit/test_humble_api.py), exercised by making it fail here: without ``rclpy.experimental``
(Humble's rclpy 3.3 has none) speaker_node and dialogue_node run on rclpy's
SingleThreadedExecutor and do their work."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Header

from graph_probe import Probe
from uservlm_ros.bringup.graph import GRAPH, config_path, dds_environment
from uservlm_ros.msg import AudioChunk
from uservlm_ros.ros import executors, qos
from uservlm_ros.ros.conversions import array_to_audio

WITHOUT_EVENTS_EXECUTOR = (
    "import sys; sys.modules['rclpy.experimental'] = None; "
    "from uservlm_ros.nodes.{module} import main; sys.exit(main())"
)
SPECS = {spec.name: spec for spec in GRAPH}


def test_no_events_executor_means_a_single_threaded_executor(monkeypatch, rclpy_context):
    monkeypatch.setitem(sys.modules, "rclpy.experimental", None)  # the import fails, as on Humble
    assert executors.events_executor_class() is None
    executor = executors.single_thread_executor(context=rclpy_context)
    assert type(executor) is SingleThreadedExecutor
    executor.shutdown()
    with pytest.raises(ImportError, match="EventsExecutor"):
        executors.EventsSpinner(context=rclpy_context)


def start_without_events_executor(name: str, namespace: str, log, parameters: list[str]):
    spec = SPECS[name]
    command = [
        sys.executable,
        "-c",
        WITHOUT_EVENTS_EXECUTOR.format(module=spec.module),
        "--ros-args",
        "-r",
        f"__node:={name}",
        "-r",
        f"__ns:=/{namespace}",
        "--params-file",
        str(config_path(spec.params_file)),
        *(item for parameter in parameters for item in ("-p", parameter)),
    ]
    return subprocess.Popen(
        command,
        env=dds_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def test_speaker_and_dialogue_nodes_run_without_the_events_executor(tmp_path, rclpy_context):
    ns = "humble"
    with open(tmp_path / "nodes.log", "wb") as log:
        speaker = start_without_events_executor(
            "speaker_node",
            ns,
            log,
            ["mode:=file", f"output_dir:={tmp_path / 'speech'}", "realtime:=false"],
        )
        dialogue = start_without_events_executor("dialogue_node", ns, log, ["ask_timeout:=5.0"])
    probe = Probe(rclpy_context, ns)
    try:
        started: list[Header] = []
        probe.node.create_subscription(Header, "speech_started", started.append, qos.EVENTS)
        audio = probe.node.create_publisher(AudioChunk, "speech_audio", qos.SPEECH_AUDIO)
        text = lambda: (tmp_path / "nodes.log").read_text()  # noqa: E731
        assert probe.until(lambda: audio.get_subscription_count() > 0, 60), text()
        tone = (np.sin(np.arange(8000) / 3.0) * 6000).astype(np.int16)
        message = array_to_audio(tone, 16000, frame_id="turn-humble")
        audio.publish(message)
        assert probe.until(lambda: any(h.frame_id == "turn-humble" for h in started), 30), text()
        assert list((tmp_path / "speech").glob("*.wav")), "the speaker wrote no WAV"
        assert probe.until(
            lambda: probe.latest_level("dialogue_node", DiagnosticStatus.WARN, "not reachable"), 30
        ), text()
        assert text().count("using SingleThreadedExecutor") == 2, text()
        for process in (speaker, dialogue):
            process.send_signal(signal.SIGINT)
        assert [p.wait(timeout=20) for p in (speaker, dialogue)] == [0, 0], text()
    finally:
        probe.close()
        for process in (speaker, dialogue):
            if process.poll() is None:
                process.kill()
