#!/usr/bin/env python3
"""The VLM stage at the paper's sizes: PaliGemma 2 3B and 10B (448 px) through the engine.

RANDOM WEIGHTS. PaliGemma 2 cannot be downloaded here; the models are built from their public
configurations (``uservlm_ros.model.architectures``) with random weights, directly on the device
(:mod:`uservlm_ros.model.random_weights`). Timings and memory are the architecture's; the
generated text means nothing (and mostly decodes to nothing: the tokenizer is the tiny one).

For each size: build time (allocate + random fill, not a checkpoint read), weight memory, the
vision tower + projector alone on one 448 px picture, then the project's own ``VLMEngine`` path
with a fixed number of new tokens (EOS ignored) in each cache mode, on follow-up turns of one
person with the same picture:

* ``none``   -- vision tower, projector and the whole prompt prefilled on every turn
* ``vision`` -- the person's image features reused (``vision_cache_size`` > 0)
* ``prefix`` -- ``prefix_mode="cacheable"``: the image block's KV cache reused, only the question
  is prefilled (changes the attention: adapters must be trained that way)

and batches of k asks from k robots (k pictures) in one ``generate`` (``VLMEngine.answer_batch``).
Per mode: median preprocess, prefill (= time to first token), decode tokens/s and total, the
first turn (cache miss) apart, peak memory (CUDA: allocated by torch; CPU: the process's peak
resident set, reset per phase where Linux allows). Asks per second = what one device serves.

GPU (a session lent an H200: torch 2.11, transformers 5.17, Python 3.12; about 3 minutes): one
command, rerunnable, printing every figure (3B and 10B, bfloat16, each mode, batch 1 and 4, 30
new tokens) through scripts/gpu_model_scale.sh, which runs

    PYTHONPATH=. python scripts/bench_model_scale.py --device cuda --dtype bfloat16 \
        --sizes 3b 10b --modes none vision prefix --batch 1 4 --asks 5 --warmup 1 --new-tokens 30 \
        --json $OUT/model_scale_gpu.json

    run(command="bash scripts/gpu_model_scale.sh", carry=[".gpu_wheels"], timeout_s=420)

then copy the JSON files to docs/model_scale/ and re-render the doc (below). transformers 5.17
lacks ``mm_encoder_outputs``, so there the ``vision`` mode reports itself unsupported (the vision
tower row shows what it would save); the wrapper measures it again with the project's
transformers 5.23 when its wheel is carried (see the wrapper).

CPU here (3B; check ``free -g`` first: bfloat16 needs ~7 GB, float32 ~13 GB; about 6 minutes
each on 2 cores, more when the machine is shared; one at a time):

    nice -n 10 .venv/bin/python scripts/bench_model_scale.py --device cpu --dtype bfloat16 \
        --sizes 3b --modes none vision prefix --batch 1 --asks 2 --warmup 1 --new-tokens 3 \
        --json docs/model_scale/cpu-3b-bfloat16.json

The doc, from every JSON kept in docs/model_scale/:

    .venv/bin/python scripts/bench_model_scale.py --render docs/model_scale.md \
        docs/model_scale/*.json
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from uservlm_ros.engines.vlm import VLMAsk, VLMConfig, VLMEngine, VLMLoadError  # noqa: E402
from uservlm_ros.model.random_weights import PAPER_SIZES, random_loader  # noqa: E402
from uservlm_ros.model.tiny import TINY_MODEL_ID  # noqa: E402

BANNER = (
    "RANDOM WEIGHTS: timings and memory are the architecture's; the generated text is meaningless."
)
SIZES = {**PAPER_SIZES, "tiny": TINY_MODEL_ID}
MODES = {
    "none": dict(vision_cache_size=0, prefix_mode="bidirectional"),
    "vision": dict(vision_cache_size=4, prefix_mode="bidirectional"),
    "prefix": dict(vision_cache_size=4, prefix_mode="cacheable"),
}
# The paper's mean response time, end to end (ASR + VLM + TTS) on an Apple M4 Max.
PAPER_RESPONSE_S = {"3b": 1.8, "10b": 4.2}
# The human turn-taking gap the project aims to answer within (time to first audio).
TURN_GAP_S = 0.76
QUESTIONS = (
    "What should I eat tonight?",
    "Which sport would suit me best?",
    "Recommend me a movie, and tell me why.",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["3b"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--batch", nargs="+", type=int, default=[1], help="asks per generate")
    parser.add_argument("--asks", type=int, default=5, help="measured turns (batches) per mode")
    parser.add_argument(
        "--warmup", type=int, default=1, help="turns before measuring (the cache miss)"
    )
    parser.add_argument("--new-tokens", type=int, default=30, help="new tokens per answer")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--render", metavar="DOC", help="write DOC from the JSON files given")
    parser.add_argument("files", nargs="*", help="with --render: result JSON files")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    if args.render:
        runs = [json.loads(Path(name).read_text()) for name in args.files]
        if not runs:
            parser.error("--render needs at least one result JSON file")
        Path(args.render).write_text(render_doc(runs, args.files))
        print(f"wrote {args.render} from {len(runs)} run(s)")
        return 0
    if args.files:
        parser.error("result files are only read with --render")
    if args.asks < 1 or args.warmup < 0 or args.new_tokens < 1 or min(args.batch) < 1:
        parser.error("--asks, --new-tokens and --batch must be >= 1, --warmup >= 0")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"*** {BANNER} ***\n")
    run = {
        "random_weights": True,
        "note": BANNER,
        "environment": _environment(args, argv),
        "settings": dict(vars(args)),
        "sizes": [],
    }
    for size in args.sizes:
        result = measure_size(size, args)
        run["sizes"].append(result)
        print_size(result)
        if args.json:  # after each size: a later failure keeps what was measured
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(run, indent=1) + "\n")
    print(f"\n*** {BANNER} ***")
    return 0


# --------------------------------------------------------------------------- measuring


def measure_size(size: str, args) -> dict:
    import torch

    key = SIZES[size]
    memory = _Memory(args.device)
    base = VLMConfig(
        base_model=key,
        adapter=None,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.new_tokens,
    )
    memory.reset()
    model, processor, info = random_loader(key)(base)
    result = {
        "size": size,
        "architecture": key,
        "model": info.model_name,
        "device": info.device,
        "dtype": info.dtype,
        "build_seconds": info.load_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "image_tokens": processor.image_seq_length,
        "weights_memory_gb": memory.current_gb(),
        "build_peak_memory_gb": memory.peak_gb(),
        "vision_tower": _vision_tower(model, processor, info, args),
        "modes": {},
        "batches": {},
    }

    def shared(config, built=(model, processor, info)):  # built once, used by each mode
        return built

    picture = _picture()
    for mode in args.modes:
        engine = VLMEngine(VLMConfig(**{**vars(base), **MODES[mode]}), loader=shared)
        memory.reset()
        try:
            engine.load()
        except VLMLoadError as error:  # e.g. a transformers without what this mode needs
            result["modes"][mode] = {"error": str(error)}
            continue
        try:  # one failing mode (e.g. out of memory) must not lose the others' figures
            turns = [
                engine.answer(QUESTIONS[turn % len(QUESTIONS)], picture, person_key="robot-1")
                for turn in range(args.warmup + args.asks)
            ]
            result["modes"][mode] = _summary(turns[args.warmup :], turns[: args.warmup], memory, 1)
        except Exception as error:  # noqa: BLE001 (reported in the results)
            result["modes"][mode] = {"error": f"{type(error).__name__}: {error}"[:300]}
        engine.close()
    for k in sorted(set(args.batch) - {1}):
        engine = VLMEngine(base, loader=shared)
        engine.load()
        memory.reset()
        asks = [
            VLMAsk(QUESTIONS[row % len(QUESTIONS)], _robot_picture(picture, row))
            for row in range(k)
        ]
        try:
            batches = [engine.answer_batch(asks)[0] for _ in range(args.warmup + args.asks)]
            result["batches"][str(k)] = _summary(
                batches[args.warmup :], batches[: args.warmup], memory, k
            )
        except Exception as error:  # noqa: BLE001 (reported in the results)
            result["batches"][str(k)] = {"error": f"{type(error).__name__}: {error}"[:300]}
        engine.close()
    result["load_average_after"] = os.getloadavg()
    del model, processor, shared
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def _vision_tower(model, processor, info, args) -> dict:
    """Vision tower + projector alone on one picture: what the vision cache saves per turn."""
    import time

    import torch

    from uservlm_ros.model.image_cache import image_features
    from uservlm_ros.model.prompt import prepare_inputs

    pixels = prepare_inputs(processor, QUESTIONS[0], _picture())["pixel_values"]
    pixels = pixels.to(info.device, getattr(torch, info.dtype))
    times = []
    for _ in range(args.warmup + args.asks):
        started = time.perf_counter()
        image_features(model, pixels).float().sum().item()  # .item() waits for the device
        times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times[args.warmup :]), "runs": args.asks}


def _summary(measured: list, first: list, memory: _Memory, k: int) -> dict:
    def median(field):
        return statistics.median(getattr(answer, field) for answer in measured)

    tokens = statistics.median(answer.generated_tokens for answer in measured)
    generation = median("generation_seconds")
    total = median("total_seconds")
    summary = {
        "turns": len(measured),
        "asks_per_generate": k,
        "image_cache": sorted({answer.image_cache for answer in measured}),
        "preprocess_s": median("preprocess_seconds"),
        "prefill_s": median("prefill_seconds"),
        "generation_s": generation,
        "total_s": total,
        "new_tokens": tokens,
        "decode_tokens_per_s": (
            (tokens - 1) / generation if tokens > 1 and generation > 0 else None
        ),
        "asks_per_s": k / total,
        "peak_memory_gb": memory.peak_gb(),
    }
    if first:
        summary["first_turn"] = {
            "image_cache": first[0].image_cache,
            "prefill_s": first[0].prefill_seconds,
            "total_s": first[0].total_seconds,
        }
    return summary


class _Memory:
    """CUDA: bytes torch allocated (now / peak since reset). CPU: the process's resident set
    (VmRSS / VmHWM; the peak is reset through /proc/self/clear_refs where Linux allows it)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # the peak then covers the whole run so far

    def current_gb(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.memory_allocated() / 1e9
        return _proc_status_kb("VmRSS") / 1e6

    def peak_gb(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated() / 1e9
        return _proc_status_kb("VmHWM") / 1e6


def _proc_status_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def _environment(args, argv: list[str]) -> dict:
    import torch
    import transformers

    device = args.device
    name = (
        torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else (platform.processor() or platform.machine())
    )
    return {
        "date": datetime.date.today().isoformat(),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "command": " ".join(["scripts/bench_model_scale.py", *argv]),
    }


def _picture():
    """The bundled photo of a person (RGB uint8)."""
    import numpy as np
    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "uservlm_ros" / "data" / "person.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def _robot_picture(picture, row: int):
    """A different picture per robot of a batch (the photo shifted)."""
    import numpy as np

    return np.ascontiguousarray(np.roll(picture, 37 * row, axis=1))


# --------------------------------------------------------------------------- reporting


def _params(count: int) -> str:
    return f"{count / 1e9:.2f} B" if count >= 1e8 else f"{count / 1e6:.2f} M"


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{1000 * seconds:,.0f}"


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _rows(result: dict) -> list[str]:
    rows = []
    for mode, summary in result["modes"].items():
        rows.append(_row(f"{mode}, batch 1", summary))
    for k, summary in result["batches"].items():
        rows.append(_row(f"none, batch {k}", summary))
    return rows


def _row(name: str, s: dict) -> str:
    if "error" in s:
        return f"| {name} | not run: {s['error']} |" + " |" * 7
    first = s.get("first_turn")
    first_text = f"{_ms(first['prefill_s'])} ({first['image_cache']})" if first else "-"
    return (
        f"| {name} | {'/'.join(s['image_cache'])} | {_ms(s['preprocess_s'])} | "
        f"{_ms(s['prefill_s'])} | {first_text} | {_rate(s['decode_tokens_per_s'])} | "
        f"{_ms(s['total_s'])} ({s['new_tokens']:.0f} tok) | {s['asks_per_s']:.2f} | "
        f"{s['peak_memory_gb']:.1f} |"
    )


TABLE_HEAD = (
    "| mode | cache | preprocess ms | prefill (TTFT) ms | first turn prefill ms | "
    "decode tok/s | total ms | asks/s | peak GB |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def print_size(result: dict) -> None:
    print(
        f"\n## {result['model']} on {result['device']}, {result['dtype']}: "
        f"{_params(result['parameters'])} parameters, {result['image_tokens']} image tokens"
    )
    print(
        f"build (allocate + random fill) {result['build_seconds']:.1f} s; weights "
        f"{result['weights_memory_gb']:.1f} GB (peak while building "
        f"{result['build_peak_memory_gb']:.1f} GB); vision tower + projector alone "
        f"{_ms(result['vision_tower']['seconds'])} ms"
    )
    print(TABLE_HEAD)
    for row in _rows(result):
        print(row)
    stage = _vlm_stage(result)
    if stage:
        print(stage)


def _vlm_stage(result: dict) -> str:
    """The headline lines: the VLM stage beside the paper, first token beside the turn gap,
    asks served per second."""
    none = result["modes"].get("none", {})
    if "total_s" not in none:
        return ""
    lines = [
        f"VLM stage, {none['new_tokens']:.0f}-token answer (no cache, batch 1): "
        f"{none['total_s']:.2f} s"
    ]
    paper = PAPER_RESPONSE_S.get(result["size"])
    if paper is not None:
        lines[0] += (
            f"; the paper's mean response for {result['size'].upper()} (whole turn: "
            f"ASR + VLM + TTS, Apple M4 Max): {paper} s"
        )
    best = min((s["prefill_s"], m) for m, s in result["modes"].items() if "prefill_s" in s)
    lines.append(
        f"first token: {none['prefill_s']:.2f} s without cache, {best[0]:.2f} s best "
        f"({best[1]}); the human turn-taking gap is about {TURN_GAP_S} s"
    )
    served = [f"{none['asks_per_s']:.2f} asks/s unbatched"] + [
        f"{s['asks_per_s']:.2f} asks/s in batches of {k}"
        for k, s in result["batches"].items()
        if "asks_per_s" in s
    ]
    lines.append(f"one {result['device']} serves {', '.join(served)}")
    return "\n".join(lines)


def render_doc(runs: list[dict], names: list[str]) -> str:
    """docs/model_scale.md from result JSON files (generated: edit the script, not the doc)."""
    out = [
        "# PaliGemma 2 at the paper's sizes, measured through the engine",
        "",
        "<!-- Generated by scripts/bench_model_scale.py --render from docs/model_scale/*.json;"
        " do not edit by hand. -->",
        "",
        f"**{BANNER}** The models are PaliGemma 2 3B-448 and 10B-448 built from their public "
        "configurations with random weights (no checkpoint can be downloaded here), so what is "
        "measured is the cost of the architecture in this engine: 448 px, 1,024 image tokens, "
        "a fixed number of new tokens with EOS ignored. Build time is allocation plus random "
        "fill, not a checkpoint read.",
        "",
        "Modes: `none` = vision tower, projector and the whole prompt on every turn; `vision` = "
        "the person's image features reused; `prefix` = the image block's KV cache reused "
        '(`prefix_mode="cacheable"`), only the question prefilled. Follow-up turns of one '
        "person with the same picture; the first turn (cache miss) is shown apart. `batch k` = k "
        "asks from k robots in one `generate`. Medians over the measured turns of one run. "
        "Memory: on CUDA what torch allocated, on CPU the whole process's resident set.",
        "",
    ]
    if not any(size["device"].startswith("cuda") for run in runs for size in run["sizes"]):
        out += [
            "**No GPU figures yet**: no GPU was lent to this work. `bash "
            "scripts/gpu_model_scale.sh` on an H200 (see its header) measures 3B and 10B in "
            "bfloat16; add its JSON files to docs/model_scale/ and render this page again.",
            "",
        ]
    for run, name in zip(runs, names):
        env = run["environment"]
        out += [
            f"## {env['device_name']}: {Path(name).name}",
            "",
            f"{env['date']}, torch {env['torch']}, transformers {env['transformers']}, "
            f"{env['torch_threads']} torch threads ({env['cpu_count']} CPUs), load average "
            f"at the start {env['load_average'][0]:.1f} (the machine may be shared). "
            f"Command: `{env['command']}`",
            "",
        ]
        for result in run["sizes"]:
            out += [
                f"### {result['model']}, {result['dtype']} on {result['device']}",
                "",
                f"{_params(result['parameters'])} parameters, {result['image_tokens']} "
                f"image tokens. Build {result['build_seconds']:.1f} s; weights "
                f"{result['weights_memory_gb']:.1f} GB (peak while building "
                f"{result['build_peak_memory_gb']:.1f} GB); vision tower + projector alone "
                f"{_ms(result['vision_tower']['seconds'])} ms. Load average at the end "
                f"{result['load_average_after'][0]:.1f}.",
                "",
                TABLE_HEAD,
                *_rows(result),
                "",
            ]
            stage = _vlm_stage(result)
            if stage:
                out += [line + "." for line in stage.splitlines()] + [""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
