"""The replay benchmark: its arithmetic, the offline VAD, the report, and end-to-end runs on the
bundled bag (loopback, and over a shaped veth between two network namespaces when this machine
allows it)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess

import pytest

from ros_helpers import domain_of_its_own
from uservlm_ros.tools import bags, netlink
from uservlm_ros.tools.bench import metrics, report, run, vad_track

PARAMS = """/**/vlm_node:
  ros__parameters:
    max_new_tokens: 12
"""


def _row(**values) -> dict:
    row = {
        "uplink": "jpeg",
        "turn": 1,
        "warmup": False,
        "turn_id": "turn-1",
        "success": True,
        "error": "",
        "transcript": "q",
        "answer": "a",
        "clarification": False,
        "image_source": "camera/image_raw/compressed",
        "model": "tiny-random-paligemma2 (placeholder)",
        "placeholder_model": True,
        "speech_end_to_transcript": 1.70,
        "speech_end_to_answer": 2.10,
        "speech_end_to_audio_out": 2.12,
        "vad_wait": 0.34,
        "asr_start": 0.34,
        "replay_late": 0.0,
        "speculative_asr": False,
        "vad": 0.0,
        "asr": 1.30,
        "review": 0.02,
        "preprocess": 0.01,
        "prefill": 0.02,
        "generation": 0.05,
        "synthesis": 0.25,
        "ask_round_trip": 0.39,
        "server": 0.37,
        "speech_hop": 0.002,
        "speech_audio_hop": 0.003,
        "probe_rtt": 0.001,
        "frames_published": 35,
        "frames_received_vlm": 35,
        "frames_received_dialogue": 35,
        "chunks_published": 86,
        "chunks_received_asr": 86,
        "replay_error_median_ms": 0.2,
        "replay_error_max_ms": 1.0,
    }
    row.update(values)
    return metrics.fill_derived(row)


def test_middleware_is_end_to_end_minus_vad_wait_and_compute_and_its_hops_add_up():
    row = _row()
    compute = 1.30 + 0.02 + 0.01 + 0.02 + 0.05 + 0.25
    assert row["compute"] == pytest.approx(compute)
    assert row["middleware"] == pytest.approx(2.12 - 0.34 - compute)
    assert sum(row[h] for h in metrics.HOPS) == pytest.approx(row["middleware"])
    assert row["hop_ask_transport"] == pytest.approx(0.02)
    assert row["hop_cloud_internal"] == pytest.approx(0.37 - (compute - 1.30))
    timed_vad = _row(
        vad=0.004
    )  # the segmenter's work on the last chunk is compute, not middleware
    assert timed_vad["compute"] == pytest.approx(compute + 0.004)
    assert timed_vad["middleware"] == pytest.approx(row["middleware"] - 0.004)
    assert timed_vad["hop_audio_to_transcript"] == pytest.approx(
        row["hop_audio_to_transcript"] - 0.004
    )
    assert timed_vad["hop_cloud_internal"] == pytest.approx(row["hop_cloud_internal"])
    failed = _row(success=False)
    assert math.isnan(failed["middleware"]) and all(math.isnan(failed[h]) for h in metrics.HOPS)


def test_published_audio_splits_the_spoken_path_at_the_speech_audio_stamp():
    # publish_audio: vlm_node published the audio 0.37 s after the request arrived, 2.11 s after
    # the speech end; the request had left 1.71 s after it (2.10 - 0.39); the response came
    # back beside the audio and is off the spoken path.
    row = _row(first_audio=0.37, speech_end_to_speech_audio=2.11)
    compute = 1.30 + 0.02 + 0.01 + 0.02 + 0.05 + 0.25
    assert row["middleware"] == pytest.approx(2.12 - 0.34 - compute)
    assert sum(row[h] for h in metrics.HOPS) == pytest.approx(row["middleware"])
    assert row["hop_ask_transport"] == pytest.approx(2.11 - 1.71 - 0.37)
    assert row["hop_cloud_internal"] == pytest.approx(0.37 - (compute - 1.30))
    assert row["hop_answer_to_audio_out"] == pytest.approx(0.01)
    streamed = _row(first_audio=0.2, speech_end_to_speech_audio=1.9, streamed=True)
    assert math.isnan(streamed["middleware"]) and math.isnan(streamed["hop_cloud_internal"])


def test_speculative_asr_hides_the_vad_wait_it_overlaps():
    # ASR started 0.04 s after the speech end, while the VAD still confirmed the end (0.34 s):
    # only max(0.34 - asr, 0.04) of the wait is on the critical path.
    row = _row(asr_start=0.04, speculative_asr=True, asr=0.20)
    assert row["vad_exposed"] == pytest.approx(0.14)
    row = _row(asr_start=0.04, speculative_asr=True, asr=1.30)
    assert row["vad_exposed"] == pytest.approx(0.04)
    compute = 1.30 + 0.02 + 0.01 + 0.02 + 0.05 + 0.25
    assert row["middleware"] == pytest.approx(2.12 - 0.04 - compute)
    assert sum(row[h] for h in metrics.HOPS) == pytest.approx(row["middleware"])
    assert _row()["vad_exposed"] == pytest.approx(0.34)  # no speculation: the whole wait


def test_percentiles_and_summary_skip_warmups_and_failures():
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5 and metrics.percentile([5], 95) == 5
    rows = [_row(speech_end_to_audio_out=x) for x in (2.0, 3.0, 4.0)]
    rows += [
        _row(warmup=True, speech_end_to_audio_out=99.0),
        _row(success=False, speech_end_to_audio_out=50.0),
    ]
    summary = metrics.summarize(rows)
    assert summary["speech_end_to_audio_out"] == {"median": 3.0, "p95": pytest.approx(3.9), "n": 3}


@pytest.mark.parametrize("speculative", [False, True])
def test_vad_track_finds_the_question_once_per_replay(speculative):
    bag = bags.read_bag(bags.default_bag())
    track = vad_track.VadTrack(
        bag,
        {
            "vad_threshold": 0.5,
            "min_silence_ms": 500,
            "speech_pad_ms": 200,
            "max_utterance_seconds": 30.0,
            "speculative": speculative,
        },
    )
    replays = [track.next_replay() for _ in range(3)]
    assert [len(found) for found in replays] == [1, 1, 1]
    for (utterance,) in replays:
        # min_silence 500 ms - pad 200 ms, plus up to a chunk and a VAD window of alignment
        assert 0.25 < utterance["vad_wait"] < 0.45
        start_ns = bag.start - 41_000_000  # first chunk's capture time
        assert 2.3 < utterance["end"] - start_ns / 1e9 < 3.0  # the speech ends ~2.6 s into the bag
        # the chunk indices name the chunks whose receive times the waits were measured to
        audio = bag.of(bags.AUDIO)
        assert audio[utterance["chunk"]].log_time / 1e9 - utterance["end"] == pytest.approx(
            utterance["vad_wait"]
        )
        assert audio[utterance["start_chunk"]].log_time / 1e9 - utterance["end"] == pytest.approx(
            utterance["asr_start"]
        )
        if speculative and hasattr(track.listener, "candidate"):
            # offered within a chunk (40 ms) of the speech end, closed unchanged ~0.3 s later
            assert utterance["speculative"] and 0.0 <= utterance["asr_start"] <= 0.045
            assert utterance["start_chunk"] < utterance["chunk"]
        else:
            assert not utterance["speculative"] and utterance["asr_start"] == utterance["vad_wait"]


def test_the_replays_lateness_on_a_chunk_is_the_microphones_wait_not_middleware():
    report = bags.ReplayReport(
        started_wall=0.0,
        counts={},
        scheduled=[0.0, 0.0, 0.04, 0.04, 0.08],
        published=[0.0, 0.001, 0.043, 0.045, 0.0801],
        topics=["a", "c", "a", "c", "a"],
    )
    late = metrics.audio_lateness(
        report, {"a": "/robot/audio", "c": "/robot/camera/image_raw/compressed"}
    )
    assert late == pytest.approx([0.0, 0.003, 0.0001])  # audio chunks only, in bag order
    times = metrics.vad_times(
        {"vad_wait": 0.34, "asr_start": 0.02, "chunk": 1, "start_chunk": 2}, late
    )
    assert times == pytest.approx({"vad_wait": 0.343, "asr_start": 0.0201, "replay_late": 0.003})
    # early (negative lateness: the clock poll's overshoot) is not credited; unknown chunks are on
    # time
    assert metrics.vad_times(
        {"vad_wait": 0.34, "asr_start": 0.34, "chunk": 0, "start_chunk": 0}, [-0.001]
    ) == pytest.approx({"vad_wait": 0.34, "asr_start": 0.34, "replay_late": 0.0})
    assert metrics.vad_times({"vad_wait": 0.34, "asr_start": 0.34}, late)["replay_late"] == 0.0
    late_row = _row(vad_wait=0.343, asr_start=0.343, replay_late=0.003)
    assert late_row["middleware"] == pytest.approx(_row()["middleware"] - 0.003)
    assert late_row["hop_audio_to_transcript"] == pytest.approx(
        _row()["hop_audio_to_transcript"] - 0.003
    )


def test_report_csv_and_plot_from_rows(tmp_path):
    rows = [_row(turn=i, speech_end_to_audio_out=2.0 + i / 10) for i in range(1, 4)]
    session = {
        "params": {
            "asr_node": {"model": "base", "device": "cpu", "beam_size": 1},
            "vlm_node": {"base_model": "b", "adapter": "a", "device": "cpu", "max_new_tokens": 12},
            "tts_node": {"backend": "auto", "piper_voice": ""},
            "ethics_node": {"use_embeddings": True},
            "engines": {"tts_node": "active: piper:en_US-joe-medium"},
        },
        "question": "q?",
        "user_id": "bench-visitor",
        "review_decision": "allow",
        "phases": [
            {
                "uplink": "jpeg",
                "rows": rows,
                "seconds": 30.0,
                "link_before": None,
                "link_after": None,
            }
        ],
        "bag": {"path": "demo_bag", "messages": 121, "duration": 3.4, "topics": {}},
    }
    result = {"meta": {"hardware": report.hardware(), "link_text": "loopback"}, "session": session}
    text = report.finish(result, tmp_path, "unit")
    assert "no frame or audio chunk lost" in text and "ROS middleware share" in text
    assert "RANDOMLY INITIALISED" in text and "piper:en_US-joe-medium" in text
    assert (tmp_path / "bench_unit.png").stat().st_size > 10_000
    assert len(list(csv.DictReader((tmp_path / "bench_unit.csv").open()))) == 3
    lost = [_row(frames_received_vlm=30)]
    result["session"]["phases"][0]["rows"] = lost
    assert "LOSSES" in report.format_report(result)


def test_pipeline_comparison_reports_the_ratio_of_medians():
    def phase(pipeline, seconds):
        rows = [_row(turn=i, speech_end_to_audio_out=value) for i, value in enumerate(seconds, 1)]
        return {"uplink": "jpeg", "label": pipeline, "pipeline": pipeline, "rows": rows}

    lines = report.compare_pipelines(
        [
            phase("sequential", [3.0, 3.2, 2.8]),
            phase("short-window", [2.0, 2.0, 2.0]),
            phase("streamed", [1.5, 1.4, 1.6]),
        ]
    )
    assert "sequential 3000 (" in lines[1]
    assert (
        lines[2].startswith("  short-window: 2000 (") and "1.50x faster at the median" in lines[2]
    )
    assert "target" not in lines[2]  # the target is about the streamed pipeline
    assert "2.00x faster at the median" in lines[3] and "target >= 1.5x: met" in lines[3]
    lines = report.compare_pipelines([phase("sequential", [2.0]), phase("streamed", [1.9])])
    assert "NOT met" in lines[2]
    assert report.compare_pipelines([phase("", [2.0])]) == []  # nothing to compare


def test_link_rates():
    assert netlink.parse_rate("100mbit") == 100_000_000
    assert netlink.parse_rate("1.5Gbit") == 1_500_000_000
    assert netlink.parse_rate("500kbit") == 500_000
    with pytest.raises(ValueError):
        netlink.parse_rate("100 parsecs")
    arguments = netlink.tbf_arguments(100_000_000)
    assert arguments[:3] == ["tbf", "rate", "100000000bit"]
    assert (
        int(arguments[arguments.index("limit") + 1]) >= 921_600
    )  # a raw frame queues, not dropped


def _run_cli(argv) -> int:
    parser = argparse.ArgumentParser()
    run.add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *argv])
    return args.func(args)


def test_bench_runs_the_bundled_bag_end_to_end(tmp_path, capsys):
    """Brings the graph up (cloud side + speaker + dialogue), one measured turn per pipeline
    (--compare: sequential, then streamed, in the same graph)."""
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    # A namespace of its own: other tests' graphs may share this session's ROS domain.
    code = _run_cli(
        [
            "--turns",
            "1",
            "--warmup",
            "0",
            "--namespace",
            "benchtest",
            "--out",
            str(tmp_path / "out"),
            "--params-file",
            str(params),
            "--startup-timeout",
            "240",
            "--turn-timeout",
            "120",
            "--compare",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.out[-3000:] + output.err[-3000:]
    rows = list(csv.DictReader((tmp_path / "out" / "bench.csv").open()))
    assert [(r["pipeline"], r["success"], r["clarification"]) for r in rows] == [
        ("sequential", "True", "False"),
        ("short-window", "True", "False"),
        ("streamed", "True", "False"),
    ]
    for row in rows:
        assert row["transcript"].lower().startswith("what should i wear")
        # consented: the face is used, cropped around the person (person_node)
        assert row["image_source"] == "camera/image_raw/compressed:upper_body"
        assert float(row["person"]) > 0  # the person stage: detection and crop on every turn
    sequential, _, streamed = rows
    assert 0 < float(sequential["middleware"]) < float(sequential["speech_end_to_audio_out"])
    assert sequential["streamed"] == "False" and sequential["speculative_asr"] == "False"
    # streamed: dialogue_node and asr_node ran with stream_audio and speculative on for the phase
    assert streamed["streamed"] == "True" and streamed["speculative_asr"] == "True"
    assert float(streamed["speech_end_to_audio_out"]) > 0
    phases = json.loads((tmp_path / "out" / "bench.json").read_text())["session"]["phases"]
    # asr_node took the encoder window of each phase at run time (no reload)
    assert [p["window_seconds"] for p in phases] == [0.0, 10.0, 10.0]
    assert "time to first audio (jpeg), one run, median (p95) ms: sequential" in output.out
    assert (tmp_path / "out" / "bench.png").stat().st_size > 10_000
    assert "no frame or audio chunk lost" in output.out
    assert "tiny RANDOM" in output.out and "cores" in output.out


def _netns_available() -> str:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if not (shutil.which("ip") and shutil.which("tc")):
        return "needs iproute2 (ip, tc)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"ip netns unavailable: {probe.stderr.strip()}"


def test_an_output_path_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    from uservlm_ros.tools.cli import main

    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(["bench", "--turns", "1", "--out", str(taken)]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err


@pytest.mark.skipif(bool(_netns_available()), reason=_netns_available() or "netns available")
def test_link_setup_failure_names_the_step_and_cleans_up():
    link = netlink.Link(rate="0bit")  # tc refuses a zero rate
    with pytest.raises(netlink.LinkError, match=r"`tc -n uvr-\w+ qdisc add .* tbf rate 0bit"):
        link.setup()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert link.token not in listed and not link.created


@pytest.mark.skipif(bool(_netns_available()), reason=_netns_available() or "netns available")
def test_bench_over_a_shaped_link_compares_raw_and_jpeg(tmp_path, capsys, monkeypatch):
    # A DDS domain of its own: in the session's domain the replay found the session cloud
    # graph's asr_node subscribed and started before the bench's own had matched (85 of 86 audio
    # chunks for the first phase, in every full-suite run).
    monkeypatch.setenv("ROS_DOMAIN_ID", domain_of_its_own(3))
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    code = _run_cli(
        [
            "--link",
            "netns",
            "--rate",
            "100mbit",
            "--uplink",
            "jpeg",
            "raw",
            "--turns",
            "1",
            "--warmup",
            "0",
            "--out",
            str(tmp_path / "out"),
            "--params-file",
            str(params),
            "--startup-timeout",
            "240",
            "--turn-timeout",
            "120",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.out[-3000:] + output.err[-3000:]
    rows = list(csv.DictReader((tmp_path / "out" / "bench_netns.csv").open()))
    assert [(r["uplink"], r["success"]) for r in rows] == [("jpeg", "True"), ("raw", "True")]
    assert rows[1]["image_source"] == "camera/image_raw:upper_body"
    import json

    phases = json.loads((tmp_path / "out" / "bench_netns.json").read_text())["session"]["phases"]
    uplink = {
        p["uplink"]: p["link_after"]["robot"]["bytes"] - p["link_before"]["robot"]["bytes"]
        for p in phases
    }
    assert (
        uplink["raw"] > 30_000_000 > 5 * uplink["jpeg"]
    )  # 35 raw frames cross the link, not the JPEGs
    assert "no added delay" in output.out
    # Audio is reliable: nothing lost. Best-effort raw frames may lose a few to the receiver's UDP
    # socket buffer on 2 busy cores (the report counts them); JPEG frames are small.
    assert all(r["chunks_received_asr"] == r["chunks_published"] == "86" for r in rows)
    assert rows[0]["frames_received_vlm"] == rows[0]["frames_published"] == "35"
    assert int(rows[1]["frames_received_vlm"]) >= 25  # 28/35 seen once on 2 cores
    lossless = all(r["frames_received_vlm"] == r["frames_received_dialogue"] == "35" for r in rows)
    assert output.out.count("no frame or audio chunk lost") == (2 if lossless else 1)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "uvr-" not in listed and "uvc-" not in listed
