#!/usr/bin/env python3
"""CPU load and camera rate of the robot-side processes, as they would run on the Jetson.

    .venv/bin/python scripts/measure_robot_side.py [--seconds 20] [--source
    uservlm_ros/data/demo/person.avi]

Starts camera_node (looping the bundled video at 30 Hz, raw + JPEG), microphone_node (looping the
bundled question), speaker_node and dialogue_node as separate processes, lets them run, and prints
each process's CPU use (user+system time / wall time, from /proc) and the camera's achieved rate
from its /diagnostics.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["PYTHONPATH"] = str(REPO)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--source", default=str(REPO / "uservlm_ros/data/demo/person.avi"))
    args = parser.parse_args()

    from diagnostic_msgs.msg import DiagnosticArray

    from uservlm_ros.bringup.graph import nodes
    from uservlm_ros.ros import qos
    from uservlm_ros.tools.client import UserVLMClient
    from uservlm_ros.tools.launcher import GraphProcesses

    overrides = {
        "camera_node": {"source": args.source, "loop": True},
        "microphone_node": {
            "source": str(REPO / "uservlm_ros/data/demo/question.wav"),
            "loop": True,
            "wait_for_subscriber": False,
        },
        "speaker_node": {"mode": "file", "output_dir": tempfile.mkdtemp()},
    }
    graph = GraphProcesses(
        nodes("robot"), log_dir=Path(tempfile.mkdtemp(prefix="robot_side_")), overrides=overrides
    ).start()
    camera = {}
    try:
        with UserVLMClient(node_name="robot_side_probe") as client:
            client.node.create_subscription(
                DiagnosticArray,
                "/diagnostics",
                lambda m: [
                    camera.update({v.key: v.value for v in s.values})
                    for s in m.status
                    if s.name.endswith("camera_node")
                ],
                qos.DIAGNOSTICS,
            )
            warmup = time.monotonic() + 8.0
            while time.monotonic() < warmup:
                client.executor.spin_once(timeout_sec=0.1)
            start = {name: cpu_seconds(p.pid) for name, p in graph.processes.items()}
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                client.executor.spin_once(timeout_sec=0.1)
            wall = time.monotonic() - began
            used = {name: cpu_seconds(p.pid) - start[name] for name, p in graph.processes.items()}
    finally:
        graph.stop()
    print(f"robot side over {wall:.0f} s on {os.cpu_count()} cores (100% = one core busy):")
    for name, seconds in used.items():
        print(f"  {name:<16} {100 * seconds / wall:6.1f} % CPU")
    print(f"  {'total':<16} {100 * sum(used.values()) / wall:6.1f} % CPU")
    keys = (
        "achieved_rate_hz",
        "frames_delivered",
        "frames_dropped",
        "frames_repeated",
        "published",
        "read_ms_mean",
        "status",
    )
    print(
        "camera_node: " + ", ".join(f"{k}={camera[k]}" for k in keys if k in camera) or str(camera)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
