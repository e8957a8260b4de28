#!/usr/bin/env python3
"""Wall time per follow-up turn of the same person with and without the engine's image caches.

    .venv/bin/python scripts/bench_vlm_cache.py [-n 30] [--max-new-tokens 20] [--base
    tiny-random-paligemma2]

One engine per mode, the same picture every turn, questions alternating; the first turn of each
mode (cache miss) is a warm-up and not counted. Prints the median over N follow-up turns (one
run) of the engine's preprocess, prefill (up to the first answer token) and total time:

* no cache            — vision tower + projector + full prefill every turn
* vision cache        — image features reused (``vision_cache_size`` > 0, ``person_key``)
* cacheable, no cache — ``prefix_mode="cacheable"`` alone: the reference for the next row
* cacheable + KV cache — the image block's KV reused; only the question is prefilled

By default this runs the tiny random stand-in (2 layers of width 64 in each tower, 224 px): its
times show the overheads of the mechanism, not the savings on PaliGemma 2 3B, where the vision
tower is ~1 TFLOP per turn (see scripts/flops_table.py). ``--base`` takes any local PaliGemma path.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from uservlm_ros.engines.vlm import VLMConfig, VLMEngine  # noqa: E402
from uservlm_ros.model.prompt import neutral_image  # noqa: E402

QUESTIONS = (
    "What should I eat tonight?",
    "Which sport would suit me best?",
    "Recommend me a movie, and tell me why.",
)
MODES = {
    "no cache": dict(vision_cache_size=0, prefix_mode="bidirectional"),
    "vision cache": dict(vision_cache_size=4, prefix_mode="bidirectional"),
    "cacheable, no cache": dict(vision_cache_size=0, prefix_mode="cacheable"),
    "cacheable + KV cache": dict(vision_cache_size=4, prefix_mode="cacheable"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="follow-up turns per mode")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--base", default="tiny-random-paligemma2")
    args = parser.parse_args()

    import torch

    picture = _picture()
    print(
        f"{args.base}, {args.n} follow-up turns per mode, max_new_tokens={args.max_new_tokens}, "
        f"torch {torch.__version__} on {platform.processor() or platform.machine()} "
        f"({torch.get_num_threads()} threads)\n"
    )
    print("| mode | cache | preprocess ms | prefill ms | total ms | tokens |")
    print("|---|---|---|---|---|---|")
    for name, config in MODES.items():
        engine = VLMEngine(
            VLMConfig(
                base_model=args.base, adapter=None, max_new_tokens=args.max_new_tokens, **config
            )
        )
        engine.load()
        engine.answer(QUESTIONS[0], picture, person_key="alice")  # warm-up / cache miss
        replies = [
            engine.answer(QUESTIONS[(turn + 1) % len(QUESTIONS)], picture, person_key="alice")
            for turn in range(args.n)
        ]
        states = sorted({reply.image_cache for reply in replies})
        print(
            f"| {name} | {'/'.join(states)} | {_median(replies, 'preprocess_seconds')} | "
            f"{_median(replies, 'prefill_seconds')} | {_median(replies, 'total_seconds')} | "
            f"{statistics.median(r.generated_tokens for r in replies):.0f} |"
        )
        engine.close()
    return 0


def _median(replies, field: str) -> str:
    return f"{1000 * statistics.median(getattr(reply, field) for reply in replies):.1f}"


def _picture():
    """The bundled photo of a person, else the neutral grey image."""
    path = Path(__file__).resolve().parents[1] / "uservlm_ros" / "data" / "person.jpg"
    try:
        import numpy as np
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))
    except (OSError, ImportError):
        return neutral_image()


if __name__ == "__main__":
    sys.exit(main())
