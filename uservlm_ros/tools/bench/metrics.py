"""Per-turn figures and their summary: the end-to-end times, the engines' compute and the ROS
middleware share, split into hops.

Per turn, from the ``interactions`` record dialogue_node publishes (all seconds; "speech end" is
the
end of the utterance as the VAD placed it, in the audio's capture clock):

- ``speech_end_to_transcript`` / ``_to_answer`` / ``_to_audio_out``: the utterance published by
  asr_node / the /uservlm/ask response received by dialogue_node / the first sample out of
  speaker_node.
- engine compute: ``vad``, ``asr``, ``review``, ``preprocess``, ``prefill``, ``generation``,
  ``synthesis``, each timed inside its node or engine.
- ``vad_wait``: audio the VAD must still hear after the speech end before it can close the
  utterance; ``asr_start``: the same for the chunk from which asr_node can start transcribing
  (earlier with speculative transcription). Both from :class:`~.vad_track.VadTrack`, moved to
  when the replay actually published that chunk (``replay_late``). Not compute, not middleware.
- ``vad_exposed`` = max(vad_wait - asr, asr_start): the part of that wait ASR does not hide.

**ROS middleware share**::

    middleware = speech_end_to_audio_out - vad_exposed
                 - (vad + asr + review + preprocess + prefill + generation + synthesis)

split exactly into five hops that sum to it (see :func:`fill_derived`): the ``audio`` topic and
the ASR queue; the ``speech`` topic and dialogue_node's preparation; the /uservlm/ask transport;
the review and synthesis round trips inside the cloud; the ``speech_audio`` topic and the speaker.
With ``--stream-audio`` the middleware and the last two hops are not defined (synthesis overlaps
generation).
"""

from __future__ import annotations

import math

from uservlm_ros.tools import bags

COMPUTE_STAGES = ("vad", "asr", "review", "preprocess", "prefill", "generation", "synthesis")


HOPS = (
    "hop_audio_to_transcript",
    "hop_transcript_to_ask",
    "hop_ask_transport",
    "hop_cloud_internal",
    "hop_answer_to_audio_out",
)


# (column, label) of the summary table, in order.
SUMMARY = (
    ("speech_end_to_transcript", "speech end -> transcript"),
    ("speech_end_to_answer", "speech end -> answer"),
    ("speech_end_to_audio_out", "speech end -> first audio out"),
    ("vad_wait", "  VAD: audio to hear after speech end"),
    ("replay_late", "  ... of it the replay's lateness"),
    ("vad_exposed", "  ... of it not hidden by ASR"),
    ("compute", "  engine compute (VAD+ASR+review+VLM+TTS)"),
    *((stage, f"    {stage}") for stage in COMPUTE_STAGES),
    ("middleware", "  ROS middleware share"),
    ("hop_audio_to_transcript", "    audio topic + ASR queue"),
    ("hop_transcript_to_ask", "    speech topic + dialogue prep"),
    ("hop_ask_transport", "    /uservlm/ask transport"),
    ("hop_cloud_internal", "    review/synthesize hops (cloud)"),
    ("hop_answer_to_audio_out", "    speech_audio topic + speaker"),
    ("speech_hop", "  speech topic hop (measured)"),
    ("probe_rtt", "  idle service round trip (probe)"),
)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (as numpy's default)."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return data[low] + (data[high] - data[low]) * (position - low)


def summarize(rows: list[dict]) -> dict[str, dict]:
    measured = [r for r in rows if not r.get("warmup") and r.get("success")]
    out = {}
    for column, _ in SUMMARY:
        values = [
            r[column]
            for r in measured
            if isinstance(r.get(column), (int, float)) and not math.isnan(r[column])
        ]
        out[column] = {
            "median": percentile(values, 50),
            "p95": percentile(values, 95),
            "n": len(values),
        }
    return out


def audio_lateness(report: bags.ReplayReport, names: dict) -> list[float]:
    """Seconds each audio chunk of one replay went out after its due time (the replay's own
    timing error: a busy bench process publishes a chunk late), in bag order."""
    return [
        published - scheduled
        for published, scheduled, topic in zip(report.published, report.scheduled, report.topics)
        if names[topic].endswith(bags.AUDIO)
    ]


def vad_times(utterance: dict, late: list[float]) -> dict:
    """``vad_wait`` and ``asr_start`` of one utterance (:class:`VadTrack`), each moved to when the
    replay actually published its chunk, and that lateness as ``replay_late`` (seconds): the
    audio was not there yet, so the wait is the microphone's, not the middleware's."""

    def lateness(key: str) -> float:
        index = utterance.get(key)
        return max(late[index], 0.0) if index is not None and index < len(late) else 0.0

    return {
        "vad_wait": utterance["vad_wait"] + lateness("chunk"),
        "asr_start": utterance["asr_start"] + lateness("start_chunk"),
        "replay_late": lateness("chunk"),
    }


def fill_derived(row: dict) -> dict:
    """compute, vad_exposed, middleware and its five hops (see the module docstring) from a row."""
    compute = sum(row[stage] for stage in COMPUTE_STAGES)
    cloud_compute = compute - row["asr"] - row["vad"]
    row["compute"] = compute
    # The VAD's wait that ASR does not hide: transcription (from asr_start) and the VAD's
    # confirmation of the end (vad_wait) run side by side; the transcript needs both.
    row["vad_exposed"] = max(row["vad_wait"] - row["asr"], row.get("asr_start", row["vad_wait"]))
    if not row["success"]:
        for name in ("middleware", *HOPS):
            row[name] = math.nan
        return row
    row["middleware"] = row["speech_end_to_audio_out"] - row["vad_exposed"] - compute
    row["hop_audio_to_transcript"] = (
        row["speech_end_to_transcript"] - row["vad_exposed"] - row["vad"] - row["asr"]
    )
    row["hop_transcript_to_ask"] = (
        row["speech_end_to_answer"] - row["speech_end_to_transcript"] - row["ask_round_trip"]
    )
    if row.get("first_audio", 0) > 0 and not math.isnan(
        row.get("speech_end_to_speech_audio", math.nan)
    ):
        # publish_audio: vlm_node published the audio for the speaker itself; the spoken path is
        # request -> cloud -> speech_audio -> speaker, the response travels back beside it.
        sent = row["speech_end_to_answer"] - row["ask_round_trip"]
        row["hop_ask_transport"] = row["speech_end_to_speech_audio"] - sent - row["first_audio"]
        row["hop_cloud_internal"] = row["first_audio"] - cloud_compute
        row["hop_answer_to_audio_out"] = (
            row["speech_end_to_audio_out"] - row["speech_end_to_speech_audio"]
        )
    else:  # the audio came back in the response and dialogue_node published it
        row["hop_ask_transport"] = row["ask_round_trip"] - row["server"]
        row["hop_cloud_internal"] = row["server"] - cloud_compute
        row["hop_answer_to_audio_out"] = (
            row["speech_end_to_audio_out"] - row["speech_end_to_answer"]
        )
    if row.get("streamed"):
        # Sentences were spoken while the answer was still being written: synthesis overlaps
        # generation and the first audio precedes the response, so these are not defined.
        for name in ("middleware", "hop_cloud_internal", "hop_answer_to_audio_out"):
            row[name] = math.nan
    return row


def losses(rows: list[dict]) -> dict:
    measured = [r for r in rows]
    total = {
        k: 0
        for k in (
            "frames_published",
            "frames_received_vlm",
            "frames_received_dialogue",
            "chunks_published",
            "chunks_received_asr",
        )
    }
    unknown = set()
    for row in measured:
        for key in total:
            if row.get(key) is None:
                unknown.add(key)
            else:
                total[key] += int(row[key])
    for key in unknown:
        total[key] = None
    return total
