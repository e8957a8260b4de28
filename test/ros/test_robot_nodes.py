"""Robot-side nodes and the dialogue loop's faults, each node in its own process:
self-speech suppression in asr_node (the robot speaking with no reference of what it played), a
missing camera, the cloud side absent, and the cloud side restarted mid-conversation (the turn in
flight ends with an error, the next one works)."""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticStatus

from graph_probe import Probe
from uservlm_ros.bringup.graph import GRAPH
from uservlm_ros.msg import AudioChunk, BargeIn, Interaction, SpeakingState, Utterance
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import array_to_audio, seconds_to_stamp
from uservlm_ros.speech.audio import read_wav
from uservlm_ros.tools.demo import demo_file
from uservlm_ros.tools.launcher import GraphProcesses

SPECS = {spec.name: spec for spec in GRAPH}


def graph(tmp_path, names, namespace, overrides=None) -> GraphProcesses:
    return GraphProcesses(
        [SPECS[n] for n in names], log_dir=tmp_path, namespace=namespace, overrides=overrides or {}
    ).start()


def test_asr_ignores_audio_while_the_robot_speaks(tmp_path, rclpy_context):
    ns = "selfspeech"
    nodes = graph(tmp_path, ["asr_node"], ns, {"asr_node": {"beam_size": 1}})
    try:
        probe = Probe(rclpy_context, ns)
        heard: list[Utterance] = []
        probe.node.create_subscription(Utterance, "speech", heard.append, qos.EVENTS)
        barge_ins: list[BargeIn] = []
        probe.node.create_subscription(BargeIn, "barge_in", barge_ins.append, qos.EVENTS)
        audio = probe.node.create_publisher(AudioChunk, "audio", qos.AUDIO)
        speaking = probe.node.create_publisher(SpeakingState, "robot_speaking", qos.LATCHED)

        def state(on: bool) -> SpeakingState:
            msg = SpeakingState(speaking=on, turn_id="t1", reason="" if on else "finished")
            msg.header.stamp = seconds_to_stamp(time.time())
            return msg

        assert probe.until(lambda: audio.get_subscription_count() > 0, 120), (
            tmp_path / "asr_node.log"
        ).read_text()
        samples, rate, _ = read_wav(demo_file("question.wav"))

        def play(start: float) -> None:
            # Faster than real time, stamped with capture times from `start` on.
            for i in range(0, samples.size, 640):
                audio.publish(
                    array_to_audio(samples[i : i + 640], rate, seconds_to_stamp(start + i / rate))
                )

        speaking.publish(state(True))
        assert probe.until(lambda: any(s.name.endswith("asr_node") for s in probe.diagnostics), 30)
        probe.until(lambda: False, 0.5)  # let robot_speaking arrive before the audio
        play(time.time() + 0.5)
        assert not probe.until(lambda: heard, 8.0), f"the robot heard itself: {heard[0].text!r}"
        # No reference of what the robot played: its voice cannot be told from a person's.
        assert not barge_ins, "a barge-in without the speaker's reference"

        def ignored():
            return [
                s
                for s in probe.status_of("asr_node")
                if any(
                    v.key == "chunks_ignored_self_speech" and int(v.value) > 0 for v in s.values
                )
            ]

        assert probe.until(ignored, 5), "asr_node must count the chunks it ignored"

        speaking.publish(state(False))
        probe.until(lambda: False, 0.5)
        play(time.time() + 1.0)  # after the echo's tail (tail_ms + echo_delay_max_ms)
        assert probe.until(lambda: heard, 60), "speech after the robot stopped must be heard"
        assert "business meeting" in heard[0].text.lower()
        assert (
            heard[0].end.sec > heard[0].start.sec or heard[0].end.nanosec > heard[0].start.nanosec
        )
        # the "heard" line is logged a little after the utterance went out, and not lost
        log = tmp_path / "asr_node.log"
        assert probe.until(lambda: f"{heard[0].text!r}" in log.read_text(), 10), log.read_text()[
            -2000:
        ]
    finally:
        nodes.stop()


def test_missing_camera_is_reported_and_diagnostics_keep_flowing(tmp_path, rclpy_context):
    ns = "nocamera"
    nodes = graph(
        tmp_path,
        ["camera_node"],
        ns,
        {"camera_node": {"source": "7", "retry_initial_s": 0.2, "retry_max_s": 0.5}},
    )
    try:
        probe = Probe(rclpy_context, ns)

        def errors():
            return [s for s in probe.status_of("camera_node") if s.level == DiagnosticStatus.ERROR]

        assert probe.until(lambda: len(errors()) >= 3, 60), (
            tmp_path / "camera_node.log"
        ).read_text()
        assert "7" in errors()[-1].message
        assert nodes.exited() == {}, "a missing camera must not kill the node"
    finally:
        nodes.stop()


def utterance(text: str) -> Utterance:
    now = time.time()
    msg = Utterance(
        text=text,
        language="en",
        confidence=0.9,
        asr_seconds=0.1,
        start=seconds_to_stamp(now - 2.0),
        end=seconds_to_stamp(now),
    )
    msg.header.stamp = seconds_to_stamp(now)
    return msg


def test_dialogue_survives_cloud_absence_and_restart(tmp_path, rclpy_context):
    ns = "restart"
    dialogue_overrides = {
        "dialogue_node": {"speak": False, "ask_timeout": 5.0},
        # vlm_node alone, without ethics_node (cloud.yaml requires the review)
        "vlm_node": {"max_new_tokens": 4, "require_review": False},
    }
    nodes = graph(tmp_path, ["dialogue_node"], ns, dialogue_overrides)
    try:
        probe = Probe(rclpy_context, ns)
        records: list[Interaction] = []
        probe.node.create_subscription(Interaction, "interactions", records.append, qos.EVENTS)
        speech = probe.node.create_publisher(Utterance, "speech", qos.EVENTS)
        assert probe.until(lambda: speech.get_subscription_count() > 0, 60)

        # 1. No cloud side: the robot keeps running, says so, and the turn fails cleanly.
        def warned():
            return [
                s
                for s in probe.status_of("dialogue_node")
                if s.level == DiagnosticStatus.WARN and "not reachable" in s.message
            ]

        assert probe.until(warned, 30)
        speech.publish(utterance("Recommend me a movie"))
        assert probe.until(lambda: len(records) >= 1, 30)
        assert not records[0].success and "cloud side" in records[0].error

        # 2. The cloud side comes up: the next turn works with no manual step.
        nodes.restart(SPECS["vlm_node"])

        def ok():
            return [s for s in probe.status_of("dialogue_node") if s.level == DiagnosticStatus.OK]

        assert probe.until(ok, 120), (tmp_path / "vlm_node.log").read_text()[-3000:]
        speech.publish(utterance("Recommend me a movie"))
        assert probe.until(lambda: len(records) >= 2, 60)
        assert records[1].success, records[1].error
        assert records[1].speech_end_to_answer > 0 and records[1].model

        # 3. The cloud side dies with a turn in flight: that turn ends with an error, not a hang.
        nodes.stop("vlm_node")
        speech.publish(utterance("What is the weather like?"))
        assert probe.until(lambda: len(records) >= 3, 30), "the turn in flight must end"
        assert not records[2].success and "cloud side" in records[2].error

        # 4. ... and it comes back: recovered.
        nodes.restart(SPECS["vlm_node"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (len(records) >= 4 and records[-1].success):
            speech.publish(utterance("Recommend me a movie"))
            count = len(records)
            probe.until(lambda: len(records) > count, 30)
        assert records[-1].success, records[-1].error
        assert "dialogue_node" not in nodes.exited(), (
            "the robot side never goes down with the cloud"
        )
    finally:
        nodes.stop()
