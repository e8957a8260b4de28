"""The benchmark's outputs: the printed table, CSV (one row per turn), PNG (stacked stages and
latency CDFs) and JSON (everything, with the hardware and the models)."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path

from uservlm_ros.tools.bench.config import PAPER_MIDDLEWARE, TTFA_TARGET
from uservlm_ros.tools.bench.metrics import COMPUTE_STAGES, SUMMARY, losses, summarize


def hardware() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(
            next(
                line
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            ).split()[1]
        )
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = "none"
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        gpu = result.stdout.strip() or "none"
    return {
        "cpu": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory": memory,
        "gpu": gpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)"),
    }


def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(rows[0].keys()) if rows else []
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def plot(phases: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("vad_exposed", *COMPUTE_STAGES, "middleware")
    colours = dict(zip(stages, plt.get_cmap("tab10").colors))
    figure, (bars, cdf) = plt.subplots(1, 2, figsize=(13, 5))
    x = 0
    ticks, labels = [], []
    for phase in phases:
        rows = [r for r in phase["rows"] if not r["warmup"] and r["success"]]
        for row in rows:
            bottom = 0.0
            for stage in stages:
                value = max(0.0, row[stage])
                bars.bar(
                    x, value, bottom=bottom, color=colours[stage], label=stage if x == 0 else None
                )
                bottom += value
            ticks.append(x)
            labels.append(
                f"{_label(phase)[0].upper()}{row['turn']}" if len(phases) > 1 else str(row["turn"])
            )
            x += 1
        x += 1
    bars.set_xticks(ticks, labels, fontsize=7)
    bars.set_ylabel("seconds from end of speech to first audio out")
    bars.set_xlabel(
        "turn"
        + (
            " (" + ", ".join(f"{_label(p)[0].upper()} = {_label(p)}" for p in phases) + ")"
            if len(phases) > 1
            else ""
        )
    )
    bars.set_title("per-turn stages (stacked)")
    bars.set_ylim(0, bars.get_ylim()[1] * 1.4)
    bars.legend(fontsize=7, loc="upper left", ncol=4)
    for phase in phases:
        rows = [r for r in phase["rows"] if not r["warmup"] and r["success"]]
        for column, style in (
            ("speech_end_to_transcript", ":"),
            ("speech_end_to_answer", "--"),
            ("speech_end_to_audio_out", "-"),
            ("middleware", "-."),
        ):
            values = sorted(r[column] for r in rows)
            if not values:
                continue
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            cdf.step(
                values,
                fractions,
                where="post",
                linestyle=style,
                label=f"{column.replace('speech_end_to_', 'to ')}"
                + (f" ({_label(phase)})" if len(phases) > 1 else ""),
            )
    cdf.set_xscale("log")
    cdf.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    cdf.set_xlabel("seconds (log scale)")
    cdf.set_ylabel("fraction of turns")
    cdf.set_title("latency CDF")
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=7, loc="lower right")
    import textwrap

    figure.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _label(phase: dict) -> str:
    return phase.get("label") or phase["uplink"]


def pipeline_label(stream_audio: bool, speculative: bool, window_seconds) -> str:
    window = "standard 30 s window" if not window_seconds else f"{window_seconds:g} s window"
    return (
        f"speech {'streamed' if stream_audio else 'whole'}, ASR "
        f"{'speculative' if speculative else 'after the end'}, "
        f"{window}"
    )


def describe_phase(phase: dict) -> str:
    if "stream_audio" not in phase:  # a result written before phases said what they ran
        return "uplink " + phase["uplink"]
    speech = (
        "each sentence spoken as soon as it is synthesized (stream_audio on): the middleware "
        "share is "
        "not defined when synthesis overlaps generation"
        if phase["stream_audio"]
        else "the whole answer once synthesized (stream_audio off)"
    )
    asr = (
        "transcription starts when the silence begins (speculative on)"
        if phase["speculative"]
        else "transcription starts when the end of speech is confirmed (speculative off)"
    )
    window = phase.get("window_seconds")
    asr += (
        "; Whisper's standard 30 s window"
        if not window
        else f"; encoder window {window:g} s (grown to fit)"
    )
    return f"uplink {phase['uplink']}; speech out: {speech}; ASR: {asr}"


def compare_pipelines(phases: list[dict]) -> list[str]:
    """Time to first audio of each pipeline against the sequential one, per uplink (--compare)."""
    lines = []
    for uplink in dict.fromkeys(p["uplink"] for p in phases):
        by_pipeline = {
            p.get("pipeline"): summarize(p["rows"])["speech_end_to_audio_out"]
            for p in phases
            if p["uplink"] == uplink
        }
        base = by_pipeline.get("sequential")
        others = [name for name in by_pipeline if name and name != "sequential"]
        if base is None or not others:
            continue
        lines.append("")
        lines.append(
            f"time to first audio ({uplink}), one run, median (p95) ms: sequential "
            f"{_ms(base['median']).strip()} ({_ms(base['p95']).strip()})"
        )
        for name in others:
            after = by_pipeline[name]
            ratio = base["median"] / after["median"] if after["median"] else math.nan
            ratio95 = base["p95"] / after["p95"] if after["p95"] else math.nan
            target = (
                f"; target >= {TTFA_TARGET}x: {'met' if ratio >= TTFA_TARGET else 'NOT met'}"
                if name == "streamed"
                else ""
            )
            lines.append(
                f"  {name}: {_ms(after['median']).strip()} ({_ms(after['p95']).strip()}): "
                f"{ratio:.2f}x faster at the median, {ratio95:.2f}x at p95{target}"
            )
    return lines


def _ms(value: float) -> str:
    return "     -" if value is None or math.isnan(value) else f"{value * 1000:8.0f}"


def format_report(result: dict) -> str:
    meta = result["meta"]
    hw = meta["hardware"]
    lines = [
        f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']} RAM, GPU: {hw['gpu']}; "
        f"Linux {hw['kernel']}, Python {hw['python']}, {hw['rmw']}"
    ]
    lines.append("models: " + meta["models_text"])
    lines.append("link: " + meta["link_text"])
    if "cloud_processes" in meta:
        lines.append("cloud nodes: " + meta["cloud_processes"])
    if "cpu_idle" in meta:
        lines.append(meta["cpu_idle"])
    session = result["session"]
    bag = session["bag"]
    lines.append(
        f"bag: {bag['path']} ({bag['messages']} messages, {bag['duration']:.2f} s); question "
        f"{session['question']!r}; user {session['user_id'] or '(anonymous)'} -> review: "
        f"{session['review_decision']}"
    )
    for phase in session["phases"]:
        rows = phase["rows"]
        measured = [r for r in rows if not r["warmup"]]
        ok = [r for r in measured if r["success"]]
        summary = summarize(rows)
        lines.append("")
        lines.append(
            f"{_label(phase)}: {len(ok)}/{len(measured)} turns answered and spoken "
            f"(+{len(rows) - len(measured)} warm-up); clarifications: "
            f"{sum(1 for r in ok if r['clarification'])}; user image: "
            f"{', '.join(sorted({r['image_source'] for r in ok})) or '-'}"
        )
        lines.append("  " + describe_phase(phase))
        lines.append(
            f"  {'':40s} {'median':>8s} {'p95':>8s}   (ms, "
            f"n={summary['speech_end_to_audio_out']['n']})"
        )
        for column, label in SUMMARY:
            lines.append(
                f"  {label:40s} {_ms(summary[column]['median'])} {_ms(summary[column]['p95'])}"
            )
        lines.append(f"  paper's ROS 2 middleware latency per interaction: {PAPER_MIDDLEWARE}")
        lost = losses(rows)
        frames_ok = all(
            lost[k] == lost["frames_published"]
            for k in ("frames_received_vlm", "frames_received_dialogue")
            if lost[k] is not None
        )
        chunks_ok = lost["chunks_received_asr"] in (None, lost["chunks_published"])
        verdict = "no frame or audio chunk lost" if frames_ok and chunks_ok else "LOSSES"
        lines.append(
            f"  {verdict}: frames published {lost['frames_published']}, received by vlm_node "
            f"{lost['frames_received_vlm']}, by dialogue_node {lost['frames_received_dialogue']}; "
            f"audio chunks published {lost['chunks_published']}, received by asr_node "
            f"{lost['chunks_received_asr']} (warm-up included)"
        )
        errors = [r["replay_error_median_ms"] for r in rows]
        lines.append(
            f"  replay timing error: median {statistics.median(errors):.2f} ms per turn, max "
            f"{max(r['replay_error_max_ms'] for r in rows):.2f} ms"
        )
        before, after = phase.get("link_before"), phase.get("link_after")
        if before and after and "error" not in before and "error" not in after:
            up = after["robot"]["bytes"] - before["robot"]["bytes"]
            down = after["cloud"]["bytes"] - before["cloud"]["bytes"]
            rcvbuf = {
                side: after[side].get("udp_rcvbuf_errors", 0)
                - before[side].get("udp_rcvbuf_errors", 0)
                for side in ("cloud", "robot")
            }
            lines.append(
                f"  link: uplink {up / 1e6:.1f} MB ({up * 8 / phase['seconds'] / 1e6:.1f} Mbit/s "
                f"average), downlink {down / 1e6:.1f} MB in {phase['seconds']:.0f} s; shaper "
                f"drops up {after['robot']['dropped'] - before['robot']['dropped']}, down "
                f"{after['cloud']['dropped'] - before['cloud']['dropped']}; UDP datagrams dropped "
                f"for a full socket receive buffer: cloud side {rcvbuf['cloud']}, robot side "
                f"{rcvbuf['robot']}"
            )
    lines += compare_pipelines(session["phases"])
    if meta.get("placeholder"):
        lines.append("")
        lines.append(
            "NOTE: the VLM is the tiny RANDOMLY INITIALISED PaliGemma 2 stand-in (meaningless "
            "answers, about 0.3 M parameters): its prefill/generation times say nothing about "
            "User-VLM 3B."
        )
    return "\n".join(lines)


def describe_models(session: dict) -> tuple[str, bool]:
    params = session["params"]
    rows = [r for phase in session["phases"] for r in phase["rows"] if r["success"]]
    answered_by = sorted({r["model"] for r in rows if r["model"]})
    placeholder = any(r["placeholder_model"] for r in rows)
    asr, vlm, tts, ethics = (
        params["asr_node"],
        params["vlm_node"],
        params["tts_node"],
        params["ethics_node"],
    )
    engines = params.get("engines", {})

    def loaded(node: str) -> str:
        message = engines.get(node, "")
        return f" [{node}: {message}]" if message else ""

    text = (
        f"ASR Whisper {asr['model']} ({asr['device']}, beam {asr['beam_size']}); "
        f"VLM answered by {', '.join(answered_by) or '?'}"
        + (" = tiny RANDOM stand-in" if placeholder else "")
        + f" (configured: base {vlm['base_model']}, adapter {vlm['adapter'] or '-'}, "
        f"{vlm['device']}, "
        f"max_new_tokens {vlm['max_new_tokens']}); TTS {tts['backend']}"
        + (f" {Path(tts['piper_voice']).name}" if tts.get("piper_voice") else "")
        + loaded("tts_node")
        + f"; ethics rules{' + MiniLM' if ethics['use_embeddings'] else ''}"
    )
    return text, placeholder


def finish(result: dict, out_dir: Path, label: str) -> str:
    """Write CSV, PNG and JSON; return the printed report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    session = result["session"]
    result["meta"]["models_text"], result["meta"]["placeholder"] = describe_models(session)
    stem = "bench" + (f"_{label}" if label else "")
    rows = [r for phase in session["phases"] for r in phase["rows"]]
    paths = {
        "csv": out_dir / f"{stem}.csv",
        "png": out_dir / f"{stem}.png",
        "json": out_dir / f"{stem}.json",
    }
    write_csv(rows, paths["csv"])
    title = (
        f"uservlm bench: {Path(session['bag']['path']).name}, {result['meta']['link_text']}; "
        f"{result['meta']['hardware']['cpu']} x{result['meta']['hardware']['cores']}"
        + ("; VLM = tiny random stand-in" if result["meta"]["placeholder"] else "")
    )
    plot(session["phases"], paths["png"], title)
    result["summary"] = {_label(phase): summarize(phase["rows"]) for phase in session["phases"]}
    paths["json"].write_text(json.dumps(result, indent=1, default=str))
    report = format_report(result)
    return report + "\n\nwrote " + ", ".join(str(p) for p in paths.values())
