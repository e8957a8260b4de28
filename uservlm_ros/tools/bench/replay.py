"""One turn of the benchmark: the bag replayed into the graph, and the rows it yields."""

from __future__ import annotations

import math
import statistics
import time

from uservlm_ros.tools import bags
from uservlm_ros.tools.bench.metrics import audio_lateness, fill_derived, vad_times


def replay_turn(
    session,
    replayer,
    uplink: str,
    turn: int,
    warm: bool,
    utterances: list[dict],
    camera: list[str],
) -> list[dict]:
    """Replay the bag once (one turn, or several if the bag holds several utterances) and return
    one row per utterance, once the robot has answered and finished speaking. ``camera``: the
    replayed camera topics (their messages are counted as frames)."""
    timeout = session.config.turn_timeout
    # The robot must be silent (plus ASR's echo tail), or ASR ignores the question.
    session.spin_until(
        lambda: not session.speaking
        and time.monotonic() - session.speaking_changed > session.echo_tail + 0.2,
        timeout,
        "the robot to stop speaking before the turn",
    )
    before = session.fresh_counters(time.time())
    n_interactions, n_utterances, n_spoken = (
        len(session.interactions),
        len(session.utterances),
        len(session.spoken),
    )
    spoke = session.spoke
    report = replayer.play(session.executor, rate=session.config.speed)
    utterances = session.vad.next_replay() or utterances
    expected = len(utterances)
    session.spin_until(
        lambda: len(session.interactions) >= n_interactions + expected,
        timeout,
        f"{expected} interaction record(s) for this replay",
    )
    answers = sum(
        1 for _, r in session.interactions[n_interactions:] if r.speech_end_to_audio_out > 0
    )
    # robot_speaking and interactions are different topics: wait for the speaking to be seen.
    session.spin_until(
        lambda: session.spoke >= spoke + min(answers, 1) and not session.speaking,
        timeout,
        "the robot to finish speaking",
    )
    after = session.fresh_counters(time.time())
    probes = [session.probe() for _ in range(session.config.probes)]
    published_frames = sum(n for t, n in report.counts.items() if replayer.names[t] in camera)
    published_chunks = sum(
        n for t, n in report.counts.items() if replayer.names[t].endswith(bags.AUDIO)
    )

    def delta(node_name: str) -> int | None:
        if node_name not in before or node_name not in after:
            return None
        return sum(after[node_name].values()) - sum(before[node_name].values())

    late = audio_lateness(report, replayer.names)
    rows = []
    new_utterances = session.utterances[n_utterances:]
    for position, (received, record) in enumerate(
        session.interactions[n_interactions : n_interactions + expected]
    ):
        # this turn's speech_audio messages: (arrival at the bench, publish stamp), seconds
        spoken = [
            (t, s.sec + s.nanosec * 1e-9)
            for t, s, frame in session.spoken[n_spoken:]
            if frame == record.turn_id
        ]
        speech_end = record.speech_end.sec + record.speech_end.nanosec * 1e-9
        heard = [
            t - (u.header.stamp.sec + u.header.stamp.nanosec * 1e-9) for t, u in new_utterances
        ]
        row = {
            "uplink": uplink,
            "pipeline": session.pipeline,
            "turn": turn,
            "warmup": warm,
            "turn_id": record.turn_id,
            "success": bool(record.success) and record.speech_end_to_audio_out > 0,
            "error": record.error,
            "transcript": record.transcript,
            "answer": record.answer[:80],
            "clarification": bool(record.clarification),
            "image_source": record.image_source,
            "model": record.model,
            "placeholder_model": bool(record.placeholder_model),
            "speech_end_to_transcript": record.speech_end_to_transcript,
            "speech_end_to_answer": record.speech_end_to_answer,
            "speech_end_to_audio_out": record.speech_end_to_audio_out,
            **vad_times(utterances[min(position, len(utterances) - 1)], late),
            "speculative_asr": utterances[min(position, len(utterances) - 1)]["speculative"],
            # online speech end - where the offline VAD put it (restamped): ~0 when they agree
            "speech_end_error": (record.speech_end.sec + record.speech_end.nanosec * 1e-9)
            - (
                report.started_wall
                + utterances[min(position, len(utterances) - 1)]["end"]
                - replayer.messages[0].log_time / 1e9
            ),
            "vad": record.vad_seconds,
            "asr": record.asr_seconds,
            "review": record.review_seconds,
            "preprocess": record.preprocess_seconds,
            "prefill": record.prefill_seconds,
            "generation": record.generation_seconds,
            "synthesis": record.synthesis_seconds,
            "ask_round_trip": record.ask_round_trip_seconds,
            "server": record.server_seconds,
            "speech_hop": heard[position] if position < len(heard) else math.nan,
            "speech_audio_hop": spoken[0][0] - spoken[0][1] if spoken else math.nan,
            "first_audio": record.first_audio_seconds,
            "speech_end_to_speech_audio": spoken[0][1] - speech_end if spoken else math.nan,
            "probe_rtt": statistics.median(probes) if probes else math.nan,
            "frames_published": published_frames,
            "frames_received_vlm": delta("vlm_node"),
            "frames_received_dialogue": delta("dialogue_node"),
            "chunks_published": published_chunks,
            "chunks_received_asr": delta("asr_node"),
            "replay_error_median_ms": report.median_error_ms,
            "replay_error_max_ms": report.max_error_ms,
            "streamed": session.streaming,
        }
        fill_derived(row)
        rows.append(row)
    return rows
