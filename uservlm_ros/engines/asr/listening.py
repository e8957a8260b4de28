"""Audio stream -> utterances with capture times, minus the robot's own voice (plain Python).

Feeds 16 kHz mono chunks, each stamped with the capture time of its first sample, through the
self-speech gate and the Silero voice-activity segmenter, and maps the segmenter's sample indices
back to capture times. The ASR node transcribes what comes out; with speculation it starts on the
utterance about to end (:meth:`StreamListener.speculate`), and the benchmark replays the same
logic offline to date each utterance.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from uservlm_ros.engines.asr.vad import VoiceActivitySegmenter
from uservlm_ros.robot.self_speech import SelfSpeechGate
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


class StreamListener:
    def __init__(
        self, segmenter: VoiceActivitySegmenter | None = None, gate: SelfSpeechGate | None = None
    ):
        self.segmenter = segmenter or VoiceActivitySegmenter()
        self.gate = gate or SelfSpeechGate()
        self._offsets: list[int] = []  # stream sample index where each fed chunk starts
        self._stamps: list[float] = []  # capture time of that chunk's first sample
        self._fed = 0
        self.chunks_ignored = 0
        self.chunks_heard = 0
        self.offered: HeardSpeech | None = None  # the candidate speculate() offered last

    def time_of(self, index: int) -> float:
        """Capture time of stream sample ``index`` (from the chunk that contains it)."""
        if not self._offsets:
            return 0.0
        i = max(0, bisect.bisect_right(self._offsets, index) - 1)
        return self._stamps[i] + (index - self._offsets[i]) / ASR_SAMPLE_RATE

    def feed(self, samples: np.ndarray, stamp: float) -> list[HeardSpeech]:
        """One 16 kHz mono chunk captured from ``stamp`` on. Returns finished utterances."""
        samples = np.asarray(samples).reshape(-1)
        end = stamp + samples.size / ASR_SAMPLE_RATE
        if self.gate.should_ignore(stamp, end):
            # The robot is (or just was) speaking: drop the chunk and anything half-heard, so
            # the robot never answers itself.
            self.chunks_ignored += 1
            if self.segmenter.in_speech:
                self.segmenter.reset()
                self._reset_index()
            return []
        self.chunks_heard += 1
        self._offsets.append(self._fed)
        self._stamps.append(stamp)
        self._fed += samples.size
        heard = [self._to_speech(u) for u in self.segmenter.feed(samples)]
        self._forget_before(self._fed - 60 * ASR_SAMPLE_RATE)
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
        heard = [self._to_speech(u) for u in self.segmenter.flush()]
        self._reset_index()
        return heard

    def _to_speech(self, utterance) -> HeardSpeech:
        return HeardSpeech(
            start=self.time_of(utterance.start),
            end=self.time_of(utterance.end),
            samples=utterance.samples,
        )

    def _reset_index(self) -> None:
        # The segmenter restarts its sample count at 0 after reset().
        self._offsets, self._stamps, self._fed = [], [], 0

    def _forget_before(self, index: int) -> None:
        keep = max(0, bisect.bisect_right(self._offsets, index) - 1)
        if keep:
            del self._offsets[:keep], self._stamps[:keep]
