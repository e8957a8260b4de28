#!/usr/bin/env python3
"""Regenerate ``uservlm_ros/data/demo_bag/`` from the demo recording, without the node graph.

The bag is what ``uservlm record`` would capture from camera_node and microphone_node playing
``uservlm_ros/data/demo/person.avi`` and ``question.wav`` (see uservlm_ros/data/README.md):

- ``/camera/image_raw/compressed`` (sensor_msgs/CompressedImage): the 35 frames of person.avi,
  10 Hz, JPEG quality 80 (camera_node's default), frame_id ``camera``; stamp = capture time,
  received 3 ms later;
- ``/audio`` (uservlm_ros/msg/AudioChunk): question.wav as 16 kHz mono int16 chunks of 40 ms
  (microphone_node's default; the last one shorter), frame_id ``microphone``; stamp = capture time
  of the chunk's first sample, received when its last sample is captured plus 1 ms.

No raw frames (921,600 bytes each would not fit the size budget): the benchmark's raw uplink
decodes the JPEG frames to rgb8 before it replays. Times start at 2026-01-01T00:00:00Z, so the
output is the same on every run (same bytes with the pinned OpenCV). Offered QoS = the
publishers' profiles from uservlm_ros/ros/qos.py.

    .venv/bin/python scripts/make_demo_bag.py            # rewrites uservlm_ros/data/demo_bag
    .venv/bin/python scripts/make_demo_bag.py --out /tmp/bag
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z
FRAME_RATE = 10.0
CHUNK_MS = 40
JPEG_QUALITY = 80
CAMERA_LATENCY_NS = 3_000_000
AUDIO_LATENCY_NS = 1_000_000


def frames(video: Path):
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {video}")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def make(out: Path, video: Path, wav: Path) -> dict[str, int]:
    import numpy as np

    from uservlm_ros.ros import qos
    from uservlm_ros.ros.conversions import rgb_to_compressed
    from uservlm_ros.speech.audio import read_wav
    from uservlm_ros.tools import bags

    # Serialized with rosbags, not rclpy: Fast CDR leaves alignment padding bytes uninitialised,
    # rosbags writes zeros, so the bag is byte-for-byte reproducible. Same wire format.
    store = bags.make_typestore()
    types = store.types

    def header(ns: int, frame_id: str):
        time = types["builtin_interfaces/msg/Time"](
            sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000
        )
        return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    messages = []
    for index, rgb in enumerate(frames(video)):
        captured = START_NS + int(round(index * 1e9 / FRAME_RATE))
        jpeg = rgb_to_compressed(rgb, JPEG_QUALITY)
        msg = types[bags.KNOWN_TYPES[bags.CAMERA_JPEG]](
            header=header(captured, "camera"),
            format=jpeg.format,
            data=np.frombuffer(bytes(jpeg.data), dtype=np.uint8),
        )
        messages.append(
            (
                "/" + bags.CAMERA_JPEG,
                captured + CAMERA_LATENCY_NS,
                bytes(store.serialize_cdr(msg, bags.KNOWN_TYPES[bags.CAMERA_JPEG])),
            )
        )
    samples, rate, channels = read_wav(wav)
    samples = (
        np.asarray(samples).reshape(-1, channels)[:, 0]
        if channels > 1
        else np.asarray(samples).reshape(-1)
    )
    if samples.dtype != np.int16:
        raise SystemExit(f"{wav}: expected 16-bit PCM")
    step = rate * CHUNK_MS // 1000
    for start in range(0, samples.size, step):
        chunk = samples[start : start + step]
        captured = START_NS + start * 1_000_000_000 // rate
        msg = types[bags.KNOWN_TYPES[bags.AUDIO]](
            header=header(captured, "microphone"),
            sample_rate=rate,
            channels=1,
            data=np.ascontiguousarray(chunk, dtype=np.int16),
        )
        received = captured + chunk.size * 1_000_000_000 // rate + AUDIO_LATENCY_NS
        messages.append(
            (
                "/" + bags.AUDIO,
                received,
                bytes(store.serialize_cdr(msg, bags.KNOWN_TYPES[bags.AUDIO])),
            )
        )
    messages.sort(key=lambda m: m[1])

    if out.exists():
        shutil.rmtree(out)
    custom = {
        bags.NAMESPACE_KEY: "",
        "uservlm_ros.source": f"{video.name} ({FRAME_RATE:g} Hz JPEG q{JPEG_QUALITY}) + "
        f"{wav.name} "
        f"({CHUNK_MS} ms chunks); scripts/make_demo_bag.py",
    }
    with bags.BagWriter(out, custom_data=custom, typestore=store) as writer:
        writer.add_topic("/" + bags.CAMERA_JPEG, bags.KNOWN_TYPES[bags.CAMERA_JPEG], [qos.CAMERA])
        writer.add_topic(
            "/" + bags.AUDIO, bags.KNOWN_TYPES[bags.AUDIO], [qos.audio_qos(CHUNK_MS / 1000.0)]
        )
        for topic, log_time, data in messages:
            writer.write(topic, log_time, data)
    return dict(writer.counts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "uservlm_ros" / "data" / "demo_bag")
    parser.add_argument(
        "--video", type=Path, default=REPO / "uservlm_ros" / "data" / "demo" / "person.avi"
    )
    parser.add_argument(
        "--wav", type=Path, default=REPO / "uservlm_ros" / "data" / "demo" / "question.wav"
    )
    args = parser.parse_args(argv)
    counts = make(args.out, args.video, args.wav)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{t} {n}" for t, n in counts.items())
        + f"; {size:,} bytes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
