"""Audio stream -> utterances with capture times, minus the robot's own voice (plain Python).

Feeds 16 kHz mono chunks, each stamped with the capture time of its first sample, through the
echo gate (:class:`~uservlm_ros.engines.echo.EchoGate`: the robot's own voice cancelled or
withheld, a person talking over it reported as a barge-in) and the Silero voice-activity
segmenter, and maps the segmenter's sample indices back to capture times. The ASR node
transcribes what comes out; with speculation it starts on the utterance about to end
(:meth:`StreamListener.speculate`), and the benchmark replays the same logic offline to date
each utterance.

What the gate hands on after a barge-in (from ``pre_roll_ms`` before its onset) continues the
stream the segmenter hears, and the utterance that follows starts no later than that: the
segmenter, on echo-cancelled audio, may find the speech later than the gate did, and the
person's first word is kept all the same. With the deaf gate
(``enabled=False``) an utterance half heard when the robot's voice starts is dropped, as the
robot could have started it; the echo-aware gate dates the robot's voice by the speaker's
stamps, so what it handed on before is the person's and is kept.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uservlm_ros.engines.asr.vad import VoiceActivitySegmenter
from uservlm_ros.engines.echo.gate import BargeIn, EchoGate, GateResult
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE


@dataclass
class HeardSpeech:
    start: float  # capture time of the first sample, seconds
    end: float  # capture time just after the last sample
    samples: np.ndarray  # float32, 16 kHz mono

    def same_as(self, other: HeardSpeech | None) -> bool:
        return (
            other is not None
            and abs(self.start - other.start) < 1e-6
            and abs(self.end - other.end) < 1e-6
            and self.samples.size == other.samples.size
        )


#: Audio kept after a barge-in until the utterance that follows it is finished, samples.
SINCE_BARGE_IN_MAX = 40 * ASR_SAMPLE_RATE


class StreamListener:
    """``gate``: None hears everything (no robot voice to remove). ``on_barge_in`` is called
    with each :class:`BargeIn` as soon as the gate reports it, before the audio it came with is
    segmented."""

    def __init__(
        self,
        segmenter: VoiceActivitySegmenter | None = None,
        gate: EchoGate | None = None,
        on_barge_in: Callable[[BargeIn], None] | None = None,
    ):
        self.segmenter = segmenter or VoiceActivitySegmenter()
        self.gate = gate
        self.on_barge_in = on_barge_in
        self._offsets: list[int] = []  # stream sample index where each fed piece starts
        self._stamps: list[float] = []  # capture time of that piece's first sample
        self._fed = 0
        self.chunks_ignored = 0
        self.chunks_heard = 0
        self.barge_ins = 0
        self.offered: HeardSpeech | None = None  # the candidate speculate() offered last
        # The latest barge-in, until the utterance that follows it is finished: its onset, the
        # first capture time to hand on (onset - pre-roll) and the audio fed since.
        self._barge_onset: float | None = None
        self._barge_from = 0.0
        self._since_barge: deque[tuple[float, np.ndarray]] = deque()
        self._since_barge_size = 0
        self._last_end = float("-inf")  # end of the last finished utterance

    def time_of(self, index: int) -> float:
        """Capture time of stream sample ``index`` (from the piece that contains it)."""
        if not self._offsets:
            return 0.0
        i = max(0, bisect.bisect_right(self._offsets, index) - 1)
        return self._stamps[i] + (index - self._offsets[i]) / ASR_SAMPLE_RATE

    def feed(self, samples: np.ndarray, stamp: float) -> list[HeardSpeech]:
        """One 16 kHz mono chunk captured from ``stamp`` on. Returns finished utterances.
        ValueError for unusable audio or stamp (nothing is changed then)."""
        samples = np.asarray(samples).reshape(-1)
        if self.gate is None:
            self.chunks_heard += 1
            return self._segment(samples, stamp)
        return self._hear(self.gate.feed(samples, stamp), chunk=True)

    def replace_gate(self, gate: EchoGate) -> list[HeardSpeech]:
        """Hear what the current gate still holds, then listen through ``gate``."""
        heard = self._hear(self.gate.flush(), chunk=False) if self.gate is not None else []
        self.gate = gate
        return heard

    def _hear(self, result: GateResult, chunk: bool) -> list[HeardSpeech]:
        for barge_in in result.barge_ins:
            self.barge_ins += 1
            if self.on_barge_in is not None:
                self.on_barge_in(barge_in)
            self._barge_onset = barge_in.onset
            self._barge_from = barge_in.onset - self.gate.config.pre_roll_ms / 1000.0
            self._since_barge.clear()
            self._since_barge_size = 0
        if result.withheld_s > 0 and not result.barge_ins:
            if chunk and not result.audio:
                self.chunks_ignored += 1
            if not self.gate.config.enabled and self.segmenter.in_speech:
                # The deaf gate cannot tell the robot's first words from the person's: drop
                # anything half-heard, so the robot never answers itself.
                self.segmenter.reset()
                self._reset_index()
        if result.audio and chunk:
            self.chunks_heard += 1
        heard = []
        for piece in result.audio:
            heard += self._segment(piece.samples, piece.stamp)
        return heard

    def _segment(self, samples: np.ndarray, stamp: float) -> list[HeardSpeech]:
        self._offsets.append(self._fed)
        self._stamps.append(stamp)
        self._fed += samples.size
        if self._barge_onset is not None:
            self._since_barge.append((stamp, samples))
            self._since_barge_size += samples.size
            while self._since_barge_size > SINCE_BARGE_IN_MAX:
                self._since_barge_size -= self._since_barge.popleft()[1].size
        heard = self._finished(self.segmenter.feed(samples))
        self._forget_before(self._fed - 60 * ASR_SAMPLE_RATE)
        return heard

    def _finished(self, utterances) -> list[HeardSpeech]:
        heard = []
        for utterance in utterances:
            speech = self._to_speech(utterance)
            if self._barge_onset is not None and speech.end > self._barge_onset:
                self._barge_onset = None  # this is the utterance that followed the barge-in
                self._since_barge.clear()
                self._since_barge_size = 0
            self._last_end = speech.end
            heard.append(speech)
        return heard

    def candidate(self) -> HeardSpeech | None:
        """The utterance about to end (see VoiceActivitySegmenter.candidate), or None."""
        utterance = self.segmenter.candidate()
        return self._to_speech(utterance) if utterance is not None else None

    def speculate(self) -> HeardSpeech | None:
        """The utterance about to end, when it is not the one offered last: what to start
        transcribing while its end is being confirmed. None when there is nothing new."""
        candidate = self.candidate()
        if candidate is None or candidate.same_as(self.offered):
            return None
        self.offered = candidate
        return candidate

    def settle(self, heard: HeardSpeech) -> bool:
        """Whether the finished utterance ``heard`` is the candidate offered last (so its early
        transcription holds). Each finished utterance consumes the offer."""
        matched = heard.same_as(self.offered)
        self.offered = None
        return matched

    def flush(self) -> list[HeardSpeech]:
        """End of the stream: what the gate holds, then the utterance still open."""
        heard = self._hear(self.gate.flush(), chunk=False) if self.gate is not None else []
        heard += self._finished(self.segmenter.flush())
        self._reset_index()
        return heard

    def _to_speech(self, utterance) -> HeardSpeech:
        speech = HeardSpeech(
            start=self.time_of(utterance.start),
            end=self.time_of(utterance.end),
            samples=utterance.samples,
        )
        if self._barge_onset is None or speech.end <= self._barge_onset:
            return speech
        # The utterance after a barge-in starts where the gate's pre-roll does, at the latest.
        first = max(self._barge_from, self._last_end)
        before = []
        for stamp, samples in self._since_barge:
            lo = max(0, int(round((first - stamp) * ASR_SAMPLE_RATE)))
            hi = min(samples.size, int(round((speech.start - stamp) * ASR_SAMPLE_RATE)))
            if hi > lo:
                if not before:
                    first = stamp + lo / ASR_SAMPLE_RATE
                before.append(samples[lo:hi])
        if not before:
            return speech
        return HeardSpeech(
            start=first, end=speech.end, samples=np.concatenate([*before, speech.samples])
        )

    def _reset_index(self) -> None:
        # The segmenter restarts its sample count at 0 after reset().
        self._offsets, self._stamps, self._fed = [], [], 0

    def _forget_before(self, index: int) -> None:
        keep = max(0, bisect.bisect_right(self._offsets, index) - 1)
        if keep:
            del self._offsets[:keep], self._stamps[:keep]
