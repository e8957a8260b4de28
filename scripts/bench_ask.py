#!/usr/bin/env python3
"""Per-stage timings of /uservlm/ask on the offline defaults, and the service overhead.

    .venv/bin/python scripts/bench_ask.py [-n 20] [--speak] [--no-image]

Brings the cloud side up (three processes, DDS on loopback), sends N asks about the bundled photo
one after another, and prints the median of each stage, plus
  transport  = client round trip - server total            (DDS + (de)serialisation both ways)
  overhead   = client round trip - engine stages            (everything that is not model compute:
               DDS hops client->vlm_node->ethics_node/tts_node and back, (de)serialisation, glue)
as median and p95. The offline VLM is the tiny random stand-in: its text is meaningless, and its
compute times say nothing about PaliGemma 2 3B.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "test")]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["PYTHONPATH"] = str(REPO)


def p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--speak", action="store_true", help="also synthesize each answer")
    parser.add_argument("--no-image", action="store_true")
    args = parser.parse_args()

    from ros_helpers import start_cloud
    from uservlm_ros.ros.conversions import read_image_file
    from uservlm_ros.tools.cli import DEMO_QUESTION, bundled_photo
    from uservlm_ros.tools.client import UserVLMClient

    image = None if args.no_image else read_image_file(str(bundled_photo()))
    graph = start_cloud(Path(tempfile.mkdtemp(prefix="bench_ask_")), overrides={})
    rows = []
    try:
        with UserVLMClient() as client:
            client.ask(DEMO_QUESTION, image=image, speak=args.speak)  # warm-up, not counted
            for _ in range(args.n):
                reply = client.ask(DEMO_QUESTION, image=image, speak=args.speak, timeout=300)
                r = reply.response
                if not r.success:
                    print(f"error: {r.error}")
                    return 1
                engine = (
                    r.review_seconds
                    + r.preprocess_seconds
                    + r.prefill_seconds
                    + r.generation_seconds
                    + r.synthesis_seconds
                )
                rows.append(
                    dict(
                        review=r.review_seconds,
                        preprocess=r.preprocess_seconds,
                        prefill=r.prefill_seconds,
                        generation=r.generation_seconds,
                        synthesis=r.synthesis_seconds,
                        server_total=r.total_seconds,
                        round_trip=reply.round_trip_seconds,
                        transport=reply.round_trip_seconds - r.total_seconds,
                        overhead=reply.round_trip_seconds - engine,
                        tokens=r.generated_tokens,
                    )
                )
                model = r.model
    finally:
        graph.stop()
    print(
        f"/uservlm/ask x{args.n} ({'speak' if args.speak else 'text only'}, "
        f"{'no image' if args.no_image else 'bundled photo 512x512'}), model {model} "
        f"(tiny random stand-in: meaningless text)"
    )
    print(
        f"host: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"{'stage':<14}{'median ms':>12}{'p95 ms':>10}")
    for key in (
        "review",
        "preprocess",
        "prefill",
        "generation",
        "synthesis",
        "server_total",
        "round_trip",
        "transport",
        "overhead",
    ):
        values = [row[key] * 1000 for row in rows]
        print(f"{key:<14}{statistics.median(values):>12.2f}{p95(values):>10.2f}")
    print(f"tokens generated per answer: median {statistics.median(r['tokens'] for r in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
