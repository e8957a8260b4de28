"""Play an :class:`EchoRecording` through an :class:`EchoGate` the way the nodes would.

The microphone arrives in ``chunk_ms`` chunks; the speaker reports what it played in
``piece_ms`` pieces, each ``reference_lag_s`` after it went out (negative: before, as when the
speaker hands a block to the device ahead of playing it) and ``speaking`` changes with their
stamps. With ``stop_after_s`` the speaker stops that long after the first barge-in (as the
node-level loop will make it), and the microphone hears the echo stop then too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.engines.echo.gate import BargeIn, EchoGate, GatedAudio
from uservlm_ros.engines.echo.recordings import EchoRecording
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE


@dataclass
class Replay:
    barge_ins: list[BargeIn] = field(default_factory=list)
    audio: list[GatedAudio] = field(default_factory=list)
    detected_in_chunk: list[float] = field(default_factory=list)  # end stamp of that chunk
    chunk_seconds: list[float] = field(default_factory=list)  # CPU per chunk
    stopped_at: float | None = None

    def heard(self, start: float, end: float) -> np.ndarray:
        """The gate's output audio captured within [start, end), silence where none came out."""
        out = np.zeros(int(round((end - start) * ASR_SAMPLE_RATE)), dtype=np.float32)
        for piece in self.audio:
            offset = int(round((piece.stamp - start) * ASR_SAMPLE_RATE))
            lo, hi = max(0, offset), min(out.size, offset + piece.samples.size)
            if hi > lo:
                out[lo:hi] = piece.samples[lo - offset : hi - offset]
        return out


def replay(
    recording: EchoRecording,
    gate: EchoGate,
    chunk_ms: int = 40,
    piece_ms: int = 50,
    reference_lag_s: float = 0.0,
    stop_after_s: float | None = None,
    drop_chunks: frozenset[int] = frozenset(),
    send_reference: bool = True,
) -> Replay:
    """Feed ``recording`` to ``gate``; ``drop_chunks`` are chunk indices lost on the way."""
    result = Replay()
    stop = None
    if stop_after_s is not None:
        # The gate is causal: the first barge-in is the same whether or not the echo stops later.
        first = replay(recording, type(gate)(gate.config), chunk_ms, piece_ms, reference_lag_s)
        if first.barge_ins:
            stop = first.detected_in_chunk[0] + stop_after_s
    result.stopped_at = stop
    played = recording.played(stop)
    rate = recording.reference_rate
    step = max(1, rate * piece_ms // 1000)
    pieces = [
        (played[i : i + step], recording.reference_start + i / rate)
        for i in range(0, played.size, step)
    ]
    end_of_speech = recording.reference_start + played.size / rate
    events = (
        []
        if not send_reference
        else (
            [(start + reference_lag_s, "piece", (samples, start)) for samples, start in pieces]
            + [
                (recording.reference_start + max(reference_lag_s, 0.0), "speaking", True),
                (end_of_speech + max(reference_lag_s, 0.0), "speaking", False),
            ]
        )
    )
    if not send_reference:  # the speaking state alone, as today
        events = [
            (recording.reference_start, "speaking", True),
            (end_of_speech, "speaking", False),
        ]
    events.sort(key=lambda e: e[0])
    chunk_s = chunk_ms / 1000.0
    for index, (samples, stamp) in enumerate(recording.chunks(chunk_ms, stop)):
        arrival = stamp + chunk_s  # a chunk is sent once captured
        while events and events[0][0] <= arrival:
            _, kind, payload = events.pop(0)
            if kind == "piece":
                gate.add_reference(payload[0], rate, payload[1])
            else:
                gate.set_speaking(payload, recording.reference_start if payload else end_of_speech)
        if index in drop_chunks:
            continue
        began = time.perf_counter()
        out = gate.feed(samples, stamp)
        result.chunk_seconds.append(time.perf_counter() - began)
        result.audio += out.audio
        for event in out.barge_ins:
            result.barge_ins.append(event)
            result.detected_in_chunk.append(stamp + samples.size / ASR_SAMPLE_RATE)
    out = gate.flush()
    result.audio += out.audio
    result.barge_ins += out.barge_ins
    return result


__all__ = ["Replay", "replay"]
