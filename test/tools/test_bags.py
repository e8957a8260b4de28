"""Bags without rosbag2: the bundled demo bag, record -> replay round trips, restamping, uplinks.

Everything runs in this process (private rclpy contexts), DDS on localhost (conftest.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ros_helpers import spin_until
from uservlm_ros.tools import bags
from uservlm_ros.tools.bags import cli as bags_cli
from uservlm_ros.tools.bags import storage

REPO = Path(__file__).resolve().parents[2]
JPEG, AUDIO = "/" + bags.CAMERA_JPEG, "/" + bags.AUDIO


@pytest.fixture(scope="module")
def demo():
    return bags.read_bag(bags.default_bag())


def test_bundled_bag_has_the_demo_recording(demo):
    assert demo.storage == "mcap" and demo.version == storage.BAG_VERSION
    assert {name: (t.msgtype, t.count) for name, t in demo.topics.items()} == {
        JPEG: ("sensor_msgs/msg/CompressedImage", 35),
        AUDIO: ("uservlm_ros/msg/AudioChunk", 86),
    }
    assert demo.count("audio") == 86 and demo.count(bags.CAMERA_JPEG) == 35
    assert 3.3 < demo.duration < 3.6
    assert sum(p.stat().st_size for p in bags.default_bag().iterdir()) <= 3_000_000
    # Offered QoS as the publishers of the package offer them: camera best effort, audio reliable.
    assert demo.topics[JPEG].offered_qos[0].reliability.name == "BEST_EFFORT"
    assert demo.topics[AUDIO].offered_qos[0].reliability.name == "RELIABLE"
    # The custom type's definition travels with the bag, and its hash is rclpy's (rosidl's).
    assert (
        "int16[] data" in demo.topics[AUDIO].msgdef
        and "MSG: std_msgs/Header" in demo.topics[AUDIO].msgdef
    )
    generated = json.loads(
        (Path(sys.prefix) / "share/uservlm_ros/msg/AudioChunk.json").read_text()
    )
    assert demo.topics[AUDIO].digest == generated["type_hashes"][0]["hash_string"]


def test_bundled_bag_messages_are_what_the_nodes_publish(demo):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage

    from uservlm_ros.msg import AudioChunk
    from uservlm_ros.ros.conversions import compressed_to_rgb

    chunks = [deserialize_message(m.data, AudioChunk) for m in demo.of("audio")]
    assert {(c.sample_rate, c.channels, c.header.frame_id) for c in chunks} == {
        (16000, 1, "microphone")
    }
    assert [len(c.data) for c in chunks[:-1]] == [640] * 85  # 40 ms
    stamps = [c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in chunks]
    assert {b - a for a, b in zip(stamps, stamps[1:])} == {40_000_000}
    # received when the chunk's last sample is captured (+1 ms)
    assert demo.of("audio")[0].log_time - stamps[0] == 41_000_000
    frame = deserialize_message(demo.of(bags.CAMERA_JPEG)[0].data, CompressedImage)
    assert frame.header.frame_id == "camera" and compressed_to_rgb(frame).shape == (480, 640, 3)


def test_make_demo_bag_regenerates_the_bundled_bag_exactly(tmp_path):
    out = tmp_path / "demo_bag"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_demo_bag.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in ("demo_bag.mcap", "metadata.yaml"):
        assert (
            hashlib.sha256((out / name).read_bytes()).digest()
            == hashlib.sha256((bags.default_bag() / name).read_bytes()).digest()
        ), name


def test_header_restamp_rewrites_only_the_stamp():
    import numpy as np
    from rclpy.serialization import deserialize_message, serialize_message

    from uservlm_ros.msg import AudioChunk
    from uservlm_ros.ros.conversions import array_to_audio, seconds_to_stamp

    msg = array_to_audio(np.arange(7, dtype=np.int16), 16000, seconds_to_stamp(12.5), "mic")
    data = serialize_message(msg)
    assert bags.header_stamp(data) == 12_500_000_000
    moved = deserialize_message(bags.with_header_stamp(data, 99_000_000_123), AudioChunk)
    assert (moved.header.stamp.sec, moved.header.stamp.nanosec) == (99, 123)
    assert moved.header.frame_id == "mic" and list(moved.data) == list(range(7))


def test_camera_uplink_raw_decodes_the_jpeg_frames(demo):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    raw = bags.camera_uplink(demo, "raw")
    frames = [m for m in raw if m.topic == "/" + bags.CAMERA_RAW]
    assert len(frames) == 35 and not [m for m in raw if m.topic == JPEG]
    assert [m.log_time for m in frames] == [m.log_time for m in demo.of(bags.CAMERA_JPEG)]
    image = deserialize_message(frames[3].data, Image)
    source = deserialize_message(demo.of(bags.CAMERA_JPEG)[3].data, CompressedImage)
    assert (image.width, image.height, image.encoding, image.header.stamp) == (
        640,
        480,
        "rgb8",
        source.header.stamp,
    )
    assert bags.camera_uplink(demo, "jpeg") == demo.messages


def _record_while(play, out: Path, topics, log=None):
    """Record ``topics`` into ``out`` while ``play(ready_event)`` runs; returns the summary."""
    ready, stop, result = threading.Event(), threading.Event(), {}

    def run():
        result["summary"] = bags.record(out, topics=topics, stop=stop, on_ready=ready.set, log=log)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        play()
    finally:
        stop.set()
        thread.join(30)
    return result["summary"]


def test_record_then_replay_keeps_every_message_and_its_timing(tmp_path, demo, rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("bag_round_trip", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    player = bags.Replayer(node, demo)  # publishers first: the recorder stores their offered QoS
    reports = {}

    def recorder_subscribed() -> bool:
        # The recorder itself, not any subscriber: the session's cloud graph (conftest `cloud`)
        # subscribes to the same topics, and playing for it alone lost the recorder's first third.
        return all(
            any(
                info.node_name.startswith("uservlm_recorder_")
                for info in node.get_subscriptions_info_by_topic(topic)
            )
            for topic in (JPEG, AUDIO)
        )

    def play(key, bag_player, restamp):
        def run():
            assert spin_until(executor, recorder_subscribed, 30), "the recorder never subscribed"
            bag_player.wait_for_subscribers(executor, 30)
            reports[key] = bag_player.play(executor, restamp=restamp)
            # drain: the recorder is another participant; give it the last messages
            deadline = reports[key].ended_wall + 1.0
            import time

            while time.time() < deadline:
                executor.spin_once(timeout_sec=0.05)

        return run

    first = tmp_path / "first"
    summary = _record_while(
        play("first", player, restamp=False), first, [bags.CAMERA_JPEG, bags.AUDIO]
    )
    assert summary.counts == {JPEG: 35, AUDIO: 86} and not summary.missing
    assert reports["first"].median_error_ms <= 5.0
    recorded = bags.read_bag(first)
    assert recorded.topics[AUDIO].offered_qos[0].reliability.name == "RELIABLE"
    assert recorded.topics[JPEG].offered_qos[0].reliability.name == "BEST_EFFORT"
    assert recorded.topics[AUDIO].digest == demo.topics[AUDIO].digest
    for topic in (JPEG, AUDIO):
        # every message, in order, byte for byte (header included: restamp=False)
        assert [m.data for m in recorded.of(topic)] == [m.data for m in demo.of(topic)], topic
    errors = [
        abs((r.log_time - recorded.start) - (o.log_time - demo.start)) / 1e6
        for r, o in zip(recorded.messages, demo.messages)
    ]
    assert statistics.median(errors) <= 5.0, errors

    # ...and the recorded bag replays with its own timing; restamped headers keep stamp - receive
    # time.
    player.destroy()
    again = bags.Replayer(node, recorded)
    second = tmp_path / "second"
    summary = _record_while(
        play("second", again, restamp=True), second, [bags.CAMERA_JPEG, bags.AUDIO]
    )
    assert summary.counts == {JPEG: 35, AUDIO: 86}
    assert reports["second"].median_error_ms <= 5.0
    replayed = bags.read_bag(second)
    errors = [
        abs((r.log_time - replayed.start) - (o.log_time - recorded.start)) / 1e6
        for r, o in zip(replayed.messages, recorded.messages)
    ]
    assert statistics.median(errors) <= 5.0
    lags = [
        (r.log_time - bags.header_stamp(r.data)) - (o.log_time - bags.header_stamp(o.data))
        for r, o in zip(replayed.messages, recorded.messages)
    ]
    assert statistics.median(abs(lag) for lag in lags) / 1e6 <= 5.0
    assert (
        abs(
            bags.header_stamp(replayed.messages[0].data)
            - bags.header_stamp(recorded.messages[0].data)
        )
        > 1e9
    )
    executor.shutdown()
    node.destroy_node()


def test_record_cli_writes_a_bag_even_when_nothing_publishes(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bags_cli.add_record_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["record", str(tmp_path / "quiet"), "--duration", "0.5", "--topics", "audio"]
    )
    assert args.func(args) == 0
    bag = bags.read_bag(tmp_path / "quiet")
    assert bag.topics[AUDIO].count == 0 and "wrote" in capsys.readouterr().out
    # a second run refuses to overwrite it
    assert args.func(args) == 1


def test_recording_leaves_the_face_crops_out_by_default():
    # humans/faces/<id>/cropped carries face images (person_node, REP-155): a bag records them
    # only when someone names them
    assert not [topic for topic in bags.DEFAULT_TOPICS if "humans" in topic]
    parser = argparse.ArgumentParser()
    bags_cli.add_record_parser(parser.add_subparsers())
    assert parser.parse_args(["record", "out"]).topics == list(bags.DEFAULT_TOPICS)
