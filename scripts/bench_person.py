#!/usr/bin/env python3
"""Cost of person resolution per ask at 640x480, and re-identification accuracy on the offline
people's variants.

    .venv/bin/python scripts/bench_person.py [-n 60] [--json out.json]

1. Per ask: ``PersonEngine.resolve`` (detect + 5-point landmarks + embed the addressee +
   identify + upper-body crop) on 640x480 frames of two people (faces ~100 and ~80 px, moving
   between asks), median and p95 over N asks after 3 warm-ups (asks interleaved across the
   options), for each detector option:
   YuNet at full size (the default), YuNet on the frame halved, dlib HOG with the frame doubled
   (finds faces from ~40 px) and HOG as is; the last column says whether each finds a 42 px
   face. "no tracks": a cold turn (always one embedding). "tracked": ``track`` saw the
   previous frame (as the 5 Hz stream does), so the turn may reuse the track's verified person
   ("reused" counts those turns); the track calls are not timed. "CPU ms": the process's CPU
   time per ask (both cores; it grows less than wall time when other processes share the
   cores). dlib's CNN (mmod) detector is timed on a few frames for reference.
2. ``track`` per frame paced at ``track_rate_hz`` (5 Hz) with 2 and 8 faces, after everybody
   was identified: the p95 holds the periodic identity re-checks (each track every
   ``track_reverify_s``); "busy" is the share of one core the stream takes.
3. Re-identification: the addressee's embedding on every variant of both people (flip, light,
   grey, roll, simulated turn, JPEG, blur, 50/170 px faces, the training/ crops), all pairs:
   same-person and different-person distance distributions and the decisions at the engine's
   threshold. The half-occluded variants are reported apart (their defined outcome is
   "unidentified", see test_person_resolve.py).

The machine's load average is printed first: other processes on the same cores inflate every
figure, so quote figures together with it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))  # the scene builder shared with the tests

import numpy as np  # noqa: E402

import person_scenes as ps  # noqa: E402
from uservlm_ros.engines.person import (  # noqa: E402
    PersonConfig,
    PersonEngine,
    models,  # noqa: E402
)
from uservlm_ros.engines.person.embedding import distance  # noqa: E402

# label -> (config overrides, whether track() saw the previous frame before each ask)
OPTIONS = {
    "yunet (default), no tracks": ({}, False),
    "yunet (default), tracked": ({}, True),
    "yunet, detect_scale 0.5, no tracks": ({"detect_scale": 0.5}, False),
    "hog, upsample 1, no tracks": ({"detector": "hog", "hog_upsample": 1}, False),
    "hog, upsample 0, no tracks": ({"detector": "hog", "hog_upsample": 0}, False),
}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ask_frames() -> list[np.ndarray]:
    frames = []
    for shift in range(0, 60, 6):
        a, _ = ps.at("astronaut", (170 + shift, 200), 80)
        b, _ = ps.at("hopper", (450 + shift, 210), 100)
        frames.append(ps.scene(a, b))
    return frames


def bench_asks(n: int) -> list[dict]:
    """Asks interleaved across the options (ask i of every option, then ask i + 1), so that
    load from other processes falls on all options alike."""
    frames = ask_frames()
    small = ps.alone("hopper", face_px=42)
    engines = {
        label: PersonEngine(PersonConfig(**overrides)).load()
        for label, (overrides, _) in OPTIONS.items()
    }
    stats = {
        label: {"total": [], "cpu": [], "detect": [], "embed": [], "reused": 0, "faces": 0}
        for label in OPTIONS
    }
    for engine in engines.values():
        for frame in frames[:3]:
            engine.resolve(frame)
    for i in range(n):
        for label, (_, tracked) in OPTIONS.items():
            engine, row = engines[label], stats[label]
            if tracked:  # the 5 Hz stream saw the frame before this one
                engine.track(frames[(i - 1) % len(frames)])
            before = time.process_time()
            turn = engine.resolve(frames[i % len(frames)])
            row["cpu"].append((time.process_time() - before) * 1000)
            row["total"].append(turn.timings["total"] * 1000)
            row["detect"].append(turn.timings["detect"] * 1000)
            if "embed" in turn.timings:
                row["embed"].append(turn.timings["embed"] * 1000)
            row["reused"] += turn.reused_track
            row["faces"] = turn.faces
    rows = []
    for label, row in stats.items():
        rows.append(
            {
                "option": label,
                "median_ms": statistics.median(row["total"]),
                "p95_ms": percentile(row["total"], 95),
                "cpu_ms": statistics.median(row["cpu"]),
                "detect_ms": statistics.median(row["detect"]),
                "embed_ms": statistics.median(row["embed"]) if row["embed"] else 0.0,
                "reused": row["reused"],
                "faces": row["faces"],
                "small_face_found": engines[label].resolve(small).faces == 1,
            }
        )
    return rows


def bench_mmod(frames: list[np.ndarray]) -> float:
    import dlib

    detector = dlib.cnn_face_detection_model_v1(str(models.dlib_model(models.MMOD)))
    times = []
    for frame in frames:
        start = time.perf_counter()
        detector(frame, 0)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_track(n: int) -> list[dict]:
    rows = []
    for label, frame in (("2 faces", ps.pair()), ("8 faces", ps.crowd(4, 2))):
        engine = PersonEngine(PersonConfig()).load()
        for _ in range(6):  # identify everybody first (2 embeddings per call)
            engine.track(frame)
        period = 1.0 / engine.config.track_rate_hz
        totals, embeddings, start = [], 0, time.perf_counter()
        for i in range(n):
            result = engine.track(frame)
            totals.append(result.timings["total"] * 1000)
            embeddings += result.embeddings
            time.sleep(max(0.0, start + (i + 1) * period - time.perf_counter()))
        rows.append(
            {
                "scene": label,
                "median_ms": statistics.median(totals),
                "p95_ms": percentile(totals, 95),
                "embeddings": embeddings,
                "busy": sum(totals) / 1000 / (time.perf_counter() - start),
            }
        )
    return rows


def variant_embeddings(engine: PersonEngine) -> list[tuple[str, str, np.ndarray]]:
    found = []
    images = [
        (name, variant, ps.alone(name, variant))
        for name in ps.PEOPLE
        for variant in ps.VARIANTS + ("occluded",)
    ]
    images += [
        (name, stem, ps.scene((ps.training_crop(stem), (200, 100))))
        for name in ps.PEOPLE
        for stem in ps.TRAINING_CROPS[name]
    ]
    for name, variant, frame in images:
        faces = engine._detector.detect(frame).faces
        if faces:
            found.append((name, variant, engine._embedder.embed(frame, faces[0])))
        else:
            print(f"  (no face of 40 px or more in {name}/{variant})")
    return found


def describe(values: list[float]) -> str:
    return (
        f"n={len(values)} min {min(values):.3f}  p5 {percentile(values, 5):.3f}  "
        f"median {statistics.median(values):.3f}  p95 {percentile(values, 95):.3f}  "
        f"max {max(values):.3f}"
    )


def bench_reid() -> dict:
    engine = PersonEngine(PersonConfig()).load()
    threshold = engine.config.match_threshold
    found = variant_embeddings(engine)
    clean = [f for f in found if f[1] != "occluded"]
    same, different = [], []
    for (n1, _, e1), (n2, _, e2) in itertools.combinations(clean, 2):
        (same if n1 == n2 else different).append(distance(e1, e2))
    occluded = [
        distance(e1, e2)
        for (n1, v1, e1), (n2, v2, e2) in itertools.product(found, found)
        if v1 == "occluded" and v2 != "occluded"
    ]
    occluded_same = [
        distance(e1, e2)
        for (n1, v1, e1), (n2, v2, e2) in itertools.product(found, found)
        if v1 == "occluded" and v2 != "occluded" and n1 == n2
    ]
    return {
        "threshold": threshold,
        "images": len(clean),
        "same": same,
        "different": different,
        "same_accepted": sum(d <= threshold for d in same),
        "different_accepted": sum(d <= threshold for d in different),
        "occluded_same": occluded_same,
        "occluded_other": [d for d in occluded if d not in occluded_same],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=60, help="asks (and track frames) per option")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    load = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"(1 / 5 / 15 min) before the run; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset: PASSIVE is set at load)')}\n"
    )

    asks = bench_asks(args.n)
    print(f"## Person resolution per ask, 640x480, 2 faces, {args.n} asks\n")
    print(
        "| detector | median ms | p95 ms | CPU ms | detect ms | embed ms | reused | faces "
        "| 42 px face |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in asks:
        print(
            f"| {row['option']} | {row['median_ms']:.0f} | {row['p95_ms']:.0f} | "
            f"{row['cpu_ms']:.0f} | "
            f"{row['detect_ms']:.0f} | {row['embed_ms']:.0f} | {row['reused']}/{args.n} | "
            f"{row['faces']} | {'found' if row['small_face_found'] else 'missed'} |"
        )
    mmod_ms = bench_mmod(ask_frames()[:3])
    print(
        f"\ndlib CNN (mmod) detector alone, no upsampling: median {mmod_ms:.0f} ms per frame "
        f"(3 frames)\n"
    )

    track = bench_track(args.n)
    print(f"## track() per frame at 5 Hz, {args.n} frames\n")
    print("| scene | median ms | p95 ms | embeddings | busy |")
    print("|---|---:|---:|---:|---:|")
    for row in track:
        print(
            f"| {row['scene']} | {row['median_ms']:.0f} | {row['p95_ms']:.0f} | "
            f"{row['embeddings']} | {row['busy']:.0%} |"
        )

    reid = bench_reid()
    t = reid["threshold"]
    print(
        f"\n## Re-identification on {reid['images']} variant images of 2 people (threshold {t})\n"
    )
    print(f"same person:      {describe(reid['same'])}")
    print(f"different people: {describe(reid['different'])}")
    print(
        f"same pairs accepted {reid['same_accepted']}/{len(reid['same'])}, "
        f"different pairs accepted {reid['different_accepted']}/{len(reid['different'])}; "
        f"margin {min(reid['different']) - max(reid['same']):.3f}"
    )
    print(f"half-occluded vs same person:  {describe(reid['occluded_same'])}")
    print(f"half-occluded vs other person: {describe(reid['occluded_other'])}")
    load = os.getloadavg()
    print(f"\nload average after the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"asks": asks, "mmod_ms": mmod_ms, "track": track, "reid": reid}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
