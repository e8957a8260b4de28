"""Voice activity: a 16 kHz stream cut into utterances by the Silero VAD bundled with
faster-whisper.

:class:`VadConfig` holds the segmenter's settings once: asr_node declares them as parameters and
the benchmark reads them back from the node, so both cut the stream alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from uservlm_ros.engines.asr.weights import ASRLoadError
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, to_float32


@dataclass
class VadConfig:
    """How the audio stream is cut into utterances. Validated on construction (ValueError)."""

    #: Silero speech probability above which audio counts as speech.
    vad_threshold: float = 0.5
    #: Silence that ends an utterance, milliseconds.
    min_silence_ms: int = 500
    #: Speech shorter than this is dropped, milliseconds.
    min_speech_ms: int = 250
    #: Audio kept before and after the detected speech, milliseconds.
    speech_pad_ms: int = 200
    #: An utterance is cut after this long, seconds.
    max_utterance_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError(f"vad_threshold must be in (0, 1), got {self.vad_threshold}")
        for name in ("min_silence_ms", "min_speech_ms", "speech_pad_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        window_seconds = VoiceActivitySegmenter.WINDOW / ASR_SAMPLE_RATE
        if self.max_utterance_seconds <= window_seconds:
            raise ValueError(
                f"max_utterance_seconds must be > {window_seconds}, "
                f"got {self.max_utterance_seconds}"
            )


@dataclass
class Utterance:
    #: sample indices in the stream fed so far (16 kHz); ``end`` is exclusive.
    start: int
    end: int
    samples: np.ndarray  # float32, 16 kHz mono

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / ASR_SAMPLE_RATE


class VoiceActivitySegmenter:
    """Cut a 16 kHz mono stream into utterances with the Silero VAD v6 bundled in faster-whisper.

    Feed chunks of any length with :meth:`feed`; each finished utterance (speech followed by
    ``min_silence_ms`` of silence, or ``max_utterance_seconds`` long) is yielded once, padded by
    ``speech_pad_ms`` on both sides. Call :meth:`flush` at the end of the stream. Speech shorter
    than
    ``min_speech_ms`` is dropped. Not thread-safe: one segmenter per stream.
    """

    WINDOW = 512  # samples per Silero decision at 16 kHz (32 ms)
    _CONTEXT = 64  # samples of the previous window the v6 model sees

    def __init__(self, config: VadConfig | None = None):
        config = config or VadConfig()
        self.config = config
        self.threshold = config.vad_threshold
        self.neg_threshold = max(config.vad_threshold - 0.15, 0.01)  # hysteresis, as Silero's own
        rate = ASR_SAMPLE_RATE
        self.min_silence = int(rate * config.min_silence_ms / 1000)
        self.min_speech = int(rate * config.min_speech_ms / 1000)
        self.pad = int(rate * config.speech_pad_ms / 1000)
        self.max_utterance = int(rate * config.max_utterance_seconds)
        self._session = _silero_session()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # < WINDOW samples not yet classified
        self._kept: list[np.ndarray] = []  # audio from _kept_start to the stream's end
        self._kept_start = 0
        self._seen = 0  # samples fed
        self._classified = 0  # samples covered by VAD decisions
        self._speech_start: int | None = None
        self._silence_start: int | None = None
        self._last_end = 0
        self.last_probability = 0.0

    @property
    def in_speech(self) -> bool:
        return self._speech_start is not None

    def feed(self, chunk: np.ndarray) -> Iterator[Utterance]:
        """Add 16 kHz mono audio (int16 or float32); yield the utterances it completes."""
        audio = to_float32(np.asarray(chunk))
        if audio.ndim != 1:
            raise ValueError(f"audio chunk must be 1-D mono samples, got shape {audio.shape}")
        if audio.size and not np.all(np.isfinite(audio)):
            raise ValueError("audio chunk contains NaN or infinite samples")
        self._kept.append(audio)
        self._seen += audio.size
        self._pending = np.concatenate([self._pending, audio])
        n_windows = self._pending.size // self.WINDOW
        if n_windows:
            windows = self._pending[: n_windows * self.WINDOW].reshape(n_windows, self.WINDOW)
            self._pending = self._pending[n_windows * self.WINDOW :]
            for prob in self._probabilities(windows):
                done = self._step(float(prob))
                if done is not None:
                    yield done
        if self._speech_start is None:
            self._trim(self._seen - self.pad - self.WINDOW)

    def candidate(self) -> Utterance | None:
        """The utterance this segmenter will emit if the silence that has begun lasts, or None.

        Offered once the silence is ``speech_pad_ms`` old, when its audio is exactly what
        :meth:`feed` will yield ``min_silence_ms`` later (same start, end and samples), so it can
        be
        transcribed speculatively while the end of speech is being confirmed."""
        if self._speech_start is None or self._silence_start is None:
            return None
        end = self._silence_start + self.pad
        if self._seen < end or end - self._speech_start < self.min_speech:
            return None
        start = max(self._speech_start - self.pad, self._last_end, self._kept_start)
        audio = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        return Utterance(
            start=start,
            end=end,
            samples=audio[start - self._kept_start : end - self._kept_start].copy(),
        )

    def flush(self) -> Iterator[Utterance]:
        """End of stream: yield the utterance still open, if long enough; then reset."""
        if self._speech_start is not None:
            end = self._silence_start + self.pad if self._silence_start is not None else self._seen
            utterance = self._emit(self._speech_start, min(end, self._seen))
            if utterance is not None:
                yield utterance
        self.reset()

    def _probabilities(self, windows: np.ndarray) -> np.ndarray:
        contexts = np.concatenate([self._context[None, :], windows[:-1, -self._CONTEXT :]])
        batch = np.concatenate([contexts, windows], axis=1)
        probs, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -self._CONTEXT :].copy()
        return np.asarray(probs).reshape(-1)

    def _step(self, prob: float) -> Utterance | None:
        window_start = self._classified
        self._classified += self.WINDOW
        self.last_probability = prob
        if self._speech_start is None:
            if prob >= self.threshold:
                self._speech_start = window_start
                self._silence_start = None
            return None
        if prob >= self.threshold:
            self._silence_start = None
        elif prob < self.neg_threshold and self._silence_start is None:
            self._silence_start = window_start
        if (
            self._silence_start is not None
            and self._classified - self._silence_start >= self.min_silence
        ):
            return self._close(self._silence_start + self.pad)
        if self._classified - self._speech_start >= self.max_utterance:
            return self._close(self._classified, split=True)
        return None

    def _close(self, end: int, split: bool = False) -> Utterance | None:
        start = self._speech_start
        self._speech_start = self._classified if split else None
        self._silence_start = None
        return self._emit(start, min(end, self._seen))

    def _emit(self, speech_start: int, end: int) -> Utterance | None:
        if end - speech_start < self.min_speech:
            return None
        start = max(speech_start - self.pad, self._last_end, self._kept_start)
        audio = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        samples = audio[start - self._kept_start : end - self._kept_start].copy()
        self._last_end = end
        self._trim(
            min(end, self._speech_start - self.pad) if self._speech_start is not None else end
        )
        return Utterance(start=start, end=end, samples=samples)

    def _trim(self, keep_from: int) -> None:
        """Forget audio before ``keep_from``."""
        if keep_from <= self._kept_start or not self._kept:
            return
        audio = np.concatenate(self._kept)
        drop = min(keep_from - self._kept_start, audio.size)
        self._kept = [audio[drop:]]
        self._kept_start += drop


def _silero_session():
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    if not os.path.isfile(path):
        raise ASRLoadError(
            f"Silero VAD model not found at {path} (faster-whisper==1.2.1 bundles it)"
        )
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )
