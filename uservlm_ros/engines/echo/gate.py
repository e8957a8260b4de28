"""Echo-aware listening: cancel the robot's own voice, hear a person who talks over it.

:class:`EchoGate` replaces the deaf self-speech gate on the microphone stream. It is given what
the loudspeaker played (:meth:`EchoGate.add_reference`, stamped with the time its first sample
went out) and when the robot speaks (:meth:`EchoGate.set_speaking`, stamped), and is fed the
microphone (:meth:`EchoGate.feed`: 16 kHz chunks stamped with the capture time of their first
sample). Per call it returns the audio the speech recogniser should hear and any barge-in.

How, per 10 ms block of microphone audio:

1. The reference for the block's capture time (shifted by ``echo_delay_min_ms``) comes from the
   :class:`ReferenceTimeline`. While the robot speaks and that reference has not arrived, blocks
   wait for it (at most ``max_reference_wait_ms`` of microphone time); a block that waited longer
   is cancelled with what is known and cannot trigger a barge-in.
2. WebRTC's AEC3 (``pywebrtc-audio``) removes the echo: it finds the acoustic delay itself and
   suppresses what its linear filter leaves. Measured on the test recordings
   (scripts/measure_echo_options.py) it removes 25-33 dB of echo from the first half second on,
   where the numpy, Speex and other filters measured remove 1-15 dB.
3. While echo is possible (the robot speaks, or spoke less than ``tail_ms`` before the block's
   echo could arrive), every 32 ms of cancelled audio goes through Silero. A window is the
   person's speech when Silero says so, it is above ``min_level_dbfs``, and it is no more than
   ``echo_level_db + guard_margin_db`` quieter than the echo removed from it (what AEC3 leaves
   of the robot's voice is far quieter than that), and ``min_snr_db`` above the noise floor
   measured while the robot was silent. ``min_speech_ms`` of such windows in a row is a
   barge-in, dated at the first of them. The first ``warmup_ms`` of echo the gate ever hears
   cannot trigger one: AEC3 is still finding the echo path (it keeps it between answers).
4. Audio out: when the robot is silent, the microphone as captured. While it speaks, nothing
   until a barge-in; then the cancelled audio from ``pre_roll_ms`` before the barge-in's onset
   (so the first word is whole), and the cancelled audio after it until the person is silent for
   ``release_ms`` (the robot still speaking: back to withholding) or the echo has ended.

``enabled=False`` is today's deaf gate: audio captured while the robot speaks (plus
``tail_ms``) is withheld, nothing is cancelled and there is never a barge-in.

Capture stamps that drift within ``jitter_ms`` of the sample count are taken as the sample
count (the echo path would jump otherwise); a stamp further ahead is a gap (the chunks between
were lost), further behind an overlap (the samples already covered are dropped, counted). After
a gap, and after audio cancelled without its reference, the echo still comes from reference the
canceller did not use for ``echo_delay_max_ms + tail_ms``: no barge-in is taken from that time.
Thread-safe: references and speaking changes may come from one thread, audio from another.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.engines.echo.reference import ReferenceTimeline
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, to_float32

#: Samples per cancellation block (10 ms, WebRTC's frame) and per Silero window (32 ms).
BLOCK = ASR_SAMPLE_RATE // 100
WINDOW = 512
#: The longest echo delay range AEC3's delay estimator covers reliably here, ms.
MAX_DELAY_RANGE_MS = 500.0
#: The noise floor: the 10th percentile of the levels of the last this many 10 ms blocks heard
#: while the robot was silent (AEC3 also suppresses noise, so its output would understate it).
FLOOR_BLOCKS = 300


@dataclass
class EchoGateConfig:
    """Validated on construction (ValueError naming the field)."""

    #: False: the deaf gate (withhold everything while the robot speaks, no barge-in).
    enabled: bool = True
    #: Expected delay from the speaker's stamp to the echo at the microphone, ms.
    echo_delay_ms: float = 50.0
    #: Range the echo delay may take for this robot, ms: the reference is shifted by the minimum
    #: and the canceller searches the rest (at most MAX_DELAY_RANGE_MS wide).
    echo_delay_min_ms: float = 0.0
    echo_delay_max_ms: float = 250.0
    #: Loudest echo expected at the microphone relative to the person's voice, dB.
    echo_level_db: float = 6.0
    #: Extra margin under that before a window can count as the person, dB.
    guard_margin_db: float = 6.0
    #: Silero speech probability that counts as speech (low: AEC3 thins out a voice talking over
    #: the echo, and the level and guard tests reject what it leaves of the echo).
    speech_threshold: float = 0.3
    #: A window counts only this far above the microphone's noise floor, dB.
    min_snr_db: float = 20.0
    #: Quieter windows never count as speech, whatever the noise floor, dBFS.
    min_level_dbfs: float = -60.0
    #: Speech needed in a row for a barge-in, ms (rounded up to whole 32 ms windows).
    min_speech_ms: float = 32.0
    #: Audio handed on from before the barge-in's onset, ms.
    pre_roll_ms: float = 400.0
    #: After a barge-in, silence that ends it while the robot still speaks, ms.
    release_ms: float = 800.0
    #: No barge-in until the canceller has heard this much of the robot (a cold AEC3 has not
    #: found the echo path yet; it keeps it from one answer to the next), ms.
    warmup_ms: float = 500.0
    #: Echo outlives the speaker's last sample by this (room, buffers), ms.
    tail_ms: float = 300.0
    #: Longest wait for a reference that is due, in microphone time, ms.
    max_reference_wait_ms: float = 200.0
    #: Capture stamps within this of the sample count are jitter, ms.
    jitter_ms: float = 10.0
    #: References and speaking intervals kept, seconds.
    history_s: float = 30.0

    def __post_init__(self) -> None:
        ranges = {
            "echo_delay_ms": (0.0, 2000.0),
            "echo_delay_min_ms": (0.0, 2000.0),
            "echo_delay_max_ms": (0.0, 2500.0),
            "echo_level_db": (-40.0, 40.0),
            "guard_margin_db": (0.0, 40.0),
            "speech_threshold": (0.05, 0.95),
            "min_snr_db": (0.0, 80.0),
            "min_level_dbfs": (-120.0, 0.0),
            "min_speech_ms": (32.0, 2000.0),
            "pre_roll_ms": (0.0, 5000.0),
            "release_ms": (100.0, 10000.0),
            "warmup_ms": (0.0, 10000.0),
            "tail_ms": (0.0, 5000.0),
            "max_reference_wait_ms": (0.0, 5000.0),
            "jitter_ms": (0.5, 1000.0),
            "history_s": (1.0, 3600.0),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be a bool, got {self.enabled!r}")
        if self.echo_delay_max_ms < self.echo_delay_min_ms:
            raise ValueError(
                f"echo_delay_max_ms ({self.echo_delay_max_ms}) must be >= "
                f"echo_delay_min_ms ({self.echo_delay_min_ms})"
            )
        if self.echo_delay_max_ms - self.echo_delay_min_ms > MAX_DELAY_RANGE_MS:
            raise ValueError(
                f"echo_delay_max_ms - echo_delay_min_ms must be <= "
                f"{MAX_DELAY_RANGE_MS} ms, got {self.echo_delay_max_ms} - "
                f"{self.echo_delay_min_ms}"
            )
        if not self.echo_delay_min_ms <= self.echo_delay_ms <= self.echo_delay_max_ms:
            raise ValueError(
                f"echo_delay_ms ({self.echo_delay_ms}) must be within "
                f"[echo_delay_min_ms, echo_delay_max_ms]"
            )

    @property
    def speech_windows(self) -> int:
        return max(1, math.ceil(self.min_speech_ms * ASR_SAMPLE_RATE / 1000.0 / WINDOW))


@dataclass
class GatedAudio:
    """Audio for the speech recogniser: 16 kHz float32 from capture time ``stamp`` on."""

    samples: np.ndarray
    stamp: float
    cancelled: bool  # echo-cancelled (the robot was speaking) or as captured

    @property
    def end(self) -> float:
        return self.stamp + self.samples.size / ASR_SAMPLE_RATE


@dataclass
class BargeIn:
    """The person started speaking over the robot."""

    onset: float  # capture time of the first window of speech
    detected: float  # capture time of the end of the window that decided it
    probability: float  # Silero's speech probability in that window
    level_dbfs: float  # level of the cancelled audio in that window


@dataclass
class GateResult:
    audio: list[GatedAudio] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    withheld_s: float = 0.0  # microphone audio not handed on (the robot's echo), seconds
    waiting_s: float = 0.0  # microphone audio held back for its reference, seconds


@dataclass
class EchoGateStats:
    enabled: bool
    speaking: bool
    stuck: bool
    listening_through: bool
    chunks: int
    gaps: int
    overlaps: int
    dropped_overlap_s: float
    waiting_s: float
    unreferenced_blocks: int
    cancelled_s: float
    withheld_s: float
    passed_s: float
    barge_ins: int
    cancel_seconds: float  # CPU time in the canceller
    vad_seconds: float  # CPU time in Silero


class _Block:
    __slots__ = ("samples", "stamp")

    def __init__(self, samples: np.ndarray, stamp: float):
        self.samples = samples
        self.stamp = stamp


class EchoGate:
    """See the module docstring. ``canceller`` and ``vad`` can be given (tests); by default AEC3
    and the project's Silero segmenter are built on first use."""

    def __init__(self, config: EchoGateConfig | None = None, canceller=None, vad=None):
        self.config = config or EchoGateConfig()
        c = self.config
        self.timeline = ReferenceTimeline(history_s=c.history_s)
        self._canceller = canceller
        self._vad = vad
        self._lock = threading.Lock()
        self._shift = c.echo_delay_min_ms / 1000.0
        self._max_delay = c.echo_delay_max_ms / 1000.0
        self._tail = c.tail_ms / 1000.0
        # stream position
        self._anchor: float | None = None  # capture time of sample 0 since the last re-anchor
        self._count = 0  # samples since the anchor
        self._partial = np.zeros(0, dtype=np.float32)  # < BLOCK samples not yet blocked
        self._pending: deque[_Block] = deque()  # blocks waiting for their reference
        # detection
        self._window = np.zeros(0, dtype=np.float32)  # cancelled audio for the next VAD window
        self._window_removed = np.zeros(0, dtype=np.float32)  # what the canceller took from it
        self._window_stamp = 0.0
        self._untrusted_until = -math.inf  # audio cancelled without its reference, until then
        # Echo until then comes from reference the canceller did not get (missing, or skipped
        # over by a gap in the microphone stream): no barge-in from it.
        self._blind_until = -math.inf
        self._run: list[tuple[float, float, float]] = []  # (stamp, probability, level)
        self._through = False  # listening through the robot after a barge-in
        self._silent_for = 0.0
        self._echo_active = False
        self._pre_roll: deque[GatedAudio] = deque()
        self._emitted_until = float("-inf")
        self._levels: deque[float] = deque(maxlen=FLOOR_BLOCKS)  # dBFS of recent blocks
        # counters
        self.chunks = self.gaps = self.overlaps = self.unreferenced_blocks = self.barge_ins = 0
        self.dropped_overlap_s = self.cancelled_s = self.withheld_s = self.passed_s = 0.0
        self.cancel_seconds = self.vad_seconds = 0.0

    # ------------------------------------------------------------------ speaker side

    def add_reference(self, samples: np.ndarray, sample_rate: int, start: float) -> None:
        """A piece the speaker played, its first sample out at ``start`` (ReferenceTimeline)."""
        self.timeline.add(samples, sample_rate, start)

    def set_speaking(self, speaking: bool, stamp: float) -> None:
        """The speaker started or stopped at ``stamp`` (the stamp the message carries)."""
        self.timeline.set_speaking(bool(speaking), stamp)

    # ------------------------------------------------------------------ microphone side

    def feed(self, samples: np.ndarray, stamp: float) -> GateResult:
        """One 16 kHz mono chunk (int16 or float) captured from ``stamp`` on. ValueError for
        unusable audio or stamp."""
        audio = to_float32(np.asarray(samples))
        if audio.ndim != 1:
            raise ValueError(f"microphone chunk must be 1-D mono samples, got shape {audio.shape}")
        if audio.size and not np.all(np.isfinite(audio)):
            raise ValueError("microphone chunk contains NaN or infinite samples")
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, (int, float))
            or not math.isfinite(stamp)
        ):
            raise ValueError(f"stamp must be a finite capture time, got {stamp!r}")
        with self._lock:
            result = GateResult()
            self.chunks += 1
            audio = self._place(audio, float(stamp), result)
            if audio.size:
                self._partial = np.concatenate([self._partial, audio])
                self._count += audio.size
                full = self._partial.size // BLOCK * BLOCK
                start = self._anchor + (self._count - self._partial.size) / ASR_SAMPLE_RATE
                for offset in range(0, full, BLOCK):
                    self._pending.append(
                        _Block(
                            self._partial[offset : offset + BLOCK].copy(),
                            start + offset / ASR_SAMPLE_RATE,
                        )
                    )
                self._partial = self._partial[full:]
            self.timeline.note_time(self._position())
            self._drain(result, force=False)
            return result

    def flush(self) -> GateResult:
        """End of the stream (or before a long pause): process everything held, as it is."""
        with self._lock:
            result = GateResult()
            self._close_partial()
            self._drain(result, force=True)
            return result

    def stats(self) -> EchoGateStats:
        with self._lock:
            return EchoGateStats(
                enabled=self.config.enabled,
                speaking=self.timeline.speaking,
                stuck=self.timeline.stuck,
                listening_through=self._through,
                chunks=self.chunks,
                gaps=self.gaps,
                overlaps=self.overlaps,
                dropped_overlap_s=self.dropped_overlap_s,
                waiting_s=len(self._pending) * BLOCK / ASR_SAMPLE_RATE,
                unreferenced_blocks=self.unreferenced_blocks,
                cancelled_s=self.cancelled_s,
                withheld_s=self.withheld_s,
                passed_s=self.passed_s,
                barge_ins=self.barge_ins,
                cancel_seconds=self.cancel_seconds,
                vad_seconds=self.vad_seconds,
            )

    # ------------------------------------------------------------------ stream position

    def _position(self) -> float:
        if self._anchor is None:
            return -math.inf
        return self._anchor + self._count / ASR_SAMPLE_RATE

    def _place(self, audio: np.ndarray, stamp: float, result: GateResult) -> np.ndarray:
        """Fit the chunk to the stream: jitter is ignored, a gap or a jump back re-anchors."""
        if self._anchor is None:
            self._anchor, self._count = stamp, 0
            return audio
        expected = self._position()
        drift = stamp - expected
        if abs(drift) <= self.config.jitter_ms / 1000.0:
            return audio
        if drift > 0:
            self.gaps += 1
        else:
            self.overlaps += 1
            overlap = min(audio.size, int(round(-drift * ASR_SAMPLE_RATE)))
            self.dropped_overlap_s += overlap / ASR_SAMPLE_RATE
            audio, stamp = audio[overlap:], stamp + overlap / ASR_SAMPLE_RATE
            if not audio.size:
                return audio
        self._close_partial()
        self._drain(result, force=False)
        self._anchor, self._count = stamp, 0
        self._blind_until = max(self._blind_until, stamp + self._max_delay + self._tail)
        return audio

    def _close_partial(self) -> None:
        """Pad the unfinished block with silence so its samples are not lost at a gap."""
        if self._partial.size:
            start = self._position() - self._partial.size / ASR_SAMPLE_RATE
            silence = np.zeros(BLOCK - self._partial.size, np.float32)
            padded = np.concatenate([self._partial, silence])
            self._pending.append(_Block(padded, start))
            self._count += BLOCK - self._partial.size
            self._partial = np.zeros(0, dtype=np.float32)

    # ------------------------------------------------------------------ processing

    def _drain(self, result: GateResult, force: bool) -> None:
        newest = self._position()
        wait = self.config.max_reference_wait_ms / 1000.0
        while self._pending:
            block = self._pending[0]
            far, complete = self.timeline.window(block.stamp - self._shift, BLOCK)
            overdue = newest - (block.stamp + BLOCK / ASR_SAMPLE_RATE) >= wait
            if not complete and not force and not overdue:
                break  # its reference is due: wait for it
            self._pending.popleft()
            self._process(block, far, complete, result)
        result.waiting_s = len(self._pending) * BLOCK / ASR_SAMPLE_RATE

    def _process(self, block: _Block, far: np.ndarray, complete: bool, result: GateResult) -> None:
        end = block.stamp + BLOCK / ASR_SAMPLE_RATE
        echo = self.timeline.speaking_between(
            block.stamp - self._max_delay, end - self._shift, tail=self._tail
        )
        if not self.config.enabled:
            if echo:
                self.withheld_s += BLOCK / ASR_SAMPLE_RATE
                result.withheld_s += BLOCK / ASR_SAMPLE_RATE
            else:
                self._emit(GatedAudio(block.samples, block.stamp, False), result)
            return
        began = time.perf_counter()
        cleaned = self._cancel(block.samples, far)
        self.cancel_seconds += time.perf_counter() - began
        if not echo:  # the noise floor is measured on the microphone while the robot is silent
            energy = float(np.dot(block.samples, block.samples)) / BLOCK
            self._levels.append(10.0 * math.log10(max(energy, 1e-20)))
            if self._echo_active:
                self._end_echo()
            self._emit(GatedAudio(block.samples, block.stamp, False), result)
            return
        if not self._echo_active:
            self._start_echo()
        if not complete:
            self.unreferenced_blocks += 1
        self.cancelled_s += BLOCK / ASR_SAMPLE_RATE
        if not complete:
            self._blind_until = max(self._blind_until, end + self._max_delay + self._tail)
        trusted = (
            complete
            and block.stamp >= self._blind_until
            and self.cancelled_s > self.config.warmup_ms / 1000.0
        )
        piece = GatedAudio(cleaned, block.stamp, True)
        if self._through:
            self._emit(piece, result)
        else:
            self._pre_roll.append(piece)
            self._trim_pre_roll()
            self.withheld_s += BLOCK / ASR_SAMPLE_RATE
            result.withheld_s += BLOCK / ASR_SAMPLE_RATE
        self._detect(block, cleaned, trusted, result)

    def _cancel(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        if self._canceller is None:
            from uservlm_ros.engines.echo.canceller import WebRtcEchoCanceller

            hint = self.config.echo_delay_ms - self.config.echo_delay_min_ms
            self._canceller = WebRtcEchoCanceller(delay_hint_ms=int(round(hint)))
        return np.asarray(self._canceller.process(near, far), dtype=np.float32)

    def _detect(
        self, block: _Block, cleaned: np.ndarray, trusted: bool, result: GateResult
    ) -> None:
        expected = self._window_stamp + self._window.size / ASR_SAMPLE_RATE
        if not self._window.size or abs(block.stamp - expected) > 0.5 / ASR_SAMPLE_RATE:
            # first block, or a gap: windows restart at this block
            self._window = np.zeros(0, dtype=np.float32)
            self._window_removed = np.zeros(0, dtype=np.float32)
            self._window_stamp = block.stamp
        if not trusted:
            self._untrusted_until = block.stamp + BLOCK / ASR_SAMPLE_RATE
        self._window = np.concatenate([self._window, cleaned])
        self._window_removed = np.concatenate([self._window_removed, block.samples - cleaned])
        while self._window.size >= WINDOW:
            window, self._window = self._window[:WINDOW], self._window[WINDOW:]
            removed = self._window_removed[:WINDOW]
            self._window_removed = self._window_removed[WINDOW:]
            stamp = self._window_stamp
            self._window_stamp += WINDOW / ASR_SAMPLE_RATE
            energy = float(np.dot(removed.astype(np.float64), removed))
            self._judge(window, stamp, energy, stamp >= self._untrusted_until, result)

    def _judge(
        self, window: np.ndarray, stamp: float, removed: float, trusted: bool, result: GateResult
    ) -> None:
        c = self.config
        began = time.perf_counter()
        probability = self._speech_probability(window)
        self.vad_seconds += time.perf_counter() - began
        energy = float(np.dot(window.astype(np.float64), window))
        level = 10.0 * math.log10(max(energy / WINDOW, 1e-20))
        guard = energy >= removed * 10.0 ** (-(c.echo_level_db + c.guard_margin_db) / 10.0)
        floor = float(np.percentile(self._levels, 10)) if self._levels else -math.inf
        loud = level >= max(c.min_level_dbfs, floor + c.min_snr_db)
        speech = trusted and probability >= c.speech_threshold and loud and guard
        if self._through:
            if probability < max(c.speech_threshold - 0.15, 0.01):
                self._silent_for += WINDOW / ASR_SAMPLE_RATE
                if self._silent_for >= c.release_ms / 1000.0:
                    self._through = False  # the person stopped; the robot still speaks
                    self._run = []
            else:
                self._silent_for = 0.0
            return
        if not speech:
            self._run = []
            return
        self._run.append((stamp, probability, level))
        if len(self._run) < c.speech_windows:
            return
        onset = self._run[0][0]
        event = BargeIn(
            onset=onset,
            detected=stamp + WINDOW / ASR_SAMPLE_RATE,
            probability=probability,
            level_dbfs=level,
        )
        self.barge_ins += 1
        result.barge_ins.append(event)
        self._through, self._silent_for, self._run = True, 0.0, []
        first = onset - c.pre_roll_ms / 1000.0
        for piece in self._pre_roll:
            if piece.end > first:
                self.withheld_s -= piece.samples.size / ASR_SAMPLE_RATE
                result.withheld_s -= piece.samples.size / ASR_SAMPLE_RATE
                self._emit(piece, result)
        self._pre_roll.clear()

    def _speech_probability(self, window: np.ndarray) -> float:
        if self._vad is None:
            from uservlm_ros.engines.asr.vad import VadConfig, VoiceActivitySegmenter

            self._vad = VoiceActivitySegmenter(VadConfig(max_utterance_seconds=5.0))
        for _ in self._vad.feed(window):
            pass  # its utterances are not used: only its speech probability
        return float(self._vad.last_probability)

    def _start_echo(self) -> None:
        self._echo_active = True
        self._through = False
        self._run = []
        self._window = np.zeros(0, dtype=np.float32)
        if self._vad is not None:
            self._vad.reset()

    def _end_echo(self) -> None:
        self._echo_active = False
        self._through = False
        self._run = []
        self._pre_roll.clear()

    def _trim_pre_roll(self) -> None:
        keep = (self.config.pre_roll_ms + 1000.0) / 1000.0  # the onset precedes the decision
        while self._pre_roll and self._pre_roll[-1].end - self._pre_roll[0].stamp > keep:
            self._pre_roll.popleft()

    def _emit(self, piece: GatedAudio, result: GateResult) -> None:
        if piece.stamp < self._emitted_until - 1e-6:  # never hand the same audio on twice
            skip = int(round((self._emitted_until - piece.stamp) * ASR_SAMPLE_RATE))
            if skip >= piece.samples.size:
                return
            piece = GatedAudio(piece.samples[skip:], self._emitted_until, piece.cancelled)
        self._emitted_until = piece.end
        self.passed_s += piece.samples.size / ASR_SAMPLE_RATE
        if (
            result.audio
            and result.audio[-1].cancelled == piece.cancelled
            and abs(result.audio[-1].end - piece.stamp) < 0.5 / ASR_SAMPLE_RATE
        ):
            last = result.audio[-1]
            result.audio[-1] = GatedAudio(
                np.concatenate([last.samples, piece.samples]), last.stamp, last.cancelled
            )
        else:
            result.audio.append(piece)


__all__ = [
    "BLOCK",
    "BargeIn",
    "EchoGate",
    "EchoGateConfig",
    "EchoGateStats",
    "GateResult",
    "GatedAudio",
    "MAX_DELAY_RANGE_MS",
    "WINDOW",
]
