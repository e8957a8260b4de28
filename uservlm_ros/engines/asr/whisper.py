"""Speech recognition: faster-whisper (CTranslate2) on offline, checksum-verified weights.

``ASRConfig.model`` names the weights (see :mod:`.weights`): ``"base"`` (default, offline),
``"tiny.en"``, ``"large-v3"`` (the paper's; local cache only) or a model directory. On CPU the
default compute type is int8; on a GPU use ``device="cuda", compute_type="float16"``. One request
holds at most ``max_seconds`` of audio; the encoder sees a window of ``window_seconds``, grown to
cover the request (see :mod:`.window`; ``window_seconds=0`` restores Whisper's standard 30 s).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uservlm_ros.engines.asr.weights import ASRLoadError, resolve_model
from uservlm_ros.engines.asr.window import (
    WHISPER_WINDOW_SECONDS,
    WINDOW_MARGIN_SECONDS,
    WINDOW_SECONDS_DEFAULT,
    encoder_window,
    repeats_its_tail,
    windowed_model_class,
)
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, prepare_for_asr

_LOG = logging.getLogger(__name__)
_DEVICES = ("cpu", "cuda", "auto")


@dataclass
class ASRConfig:
    """How to build the recogniser. Validated on construction (ValueError)."""

    #: "base" (offline, verified), "tiny.en" (offline), a faster-whisper name such as "large-v3"
    #: (local HF cache only), or a path to a CTranslate2 model directory.
    model: str = "base"
    #: "cpu", "cuda" or "auto" (CUDA when CTranslate2 sees a GPU).
    device: str = "cpu"
    #: "" picks int8 on CPU and float16 on CUDA; any CTranslate2 compute type is accepted.
    compute_type: str = ""
    #: CPU threads for CTranslate2; 0 = all cores, at most 4.
    cpu_threads: int = 0
    beam_size: int = 5
    #: Drop non-speech with the Silero VAD bundled with faster-whisper before decoding.
    vad: bool = False
    #: ISO code such as "en"; "" = detect per request.
    language: str = ""
    #: Longest accepted request, seconds (Whisper decodes 30 s windows).
    max_seconds: float = 30.0
    #: Shortest encoder window, seconds, in [0, 30]; 0 = Whisper's standard 30 s. The window grows
    #: to cover the request (audio is never cut): see :func:`encoder_window` and
    #: WINDOW_SECONDS_DEFAULT for the measurements behind the default.
    window_seconds: float = WINDOW_SECONDS_DEFAULT
    # : Where the "base" model is assembled; "" =
    # ${XDG_CACHE_HOME:-~/.cache}/uservlm_ros/whisper-base.
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError("model must not be empty")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {self.device!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")
        if not 0 < self.max_seconds <= 30 * 60:
            raise ValueError(f"max_seconds must be in (0, 1800], got {self.max_seconds}")
        if not 0 <= self.window_seconds <= WHISPER_WINDOW_SECONDS:
            raise ValueError(
                f"window_seconds must be in [0, {WHISPER_WINDOW_SECONDS}] (0 = the standard "
                f"{WHISPER_WINDOW_SECONDS} s), got {self.window_seconds}"
            )


@dataclass
class TranscriptSegment:
    start: float  # seconds from the start of the request
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float


@dataclass
class Transcript:
    text: str
    language: str
    # : exp of the duration-weighted mean token log-probability, in [0, 1]; 0 when nothing was
    # heard.
    confidence: float
    audio_seconds: float
    #: wall time of transcribe(): resampling, (VAD) and decoding.
    asr_seconds: float
    segments: list[TranscriptSegment] = field(default_factory=list)
    #: the encoder window used, seconds (see :func:`encoder_window`).
    window_seconds: int = WHISPER_WINDOW_SECONDS


class ASREngine:
    """Whisper transcription of one utterance at a time; thread-safe (requests are serialised)."""

    def __init__(self, config: ASRConfig | None = None):
        self.config = config or ASRConfig()
        self._model = None
        self._lock = threading.Lock()
        self.model_path: Path | None = None
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        return f"faster-whisper:{self.config.model}"

    def load(self) -> None:
        """Resolve, verify and load the model; idempotent. Raises :class:`ASRLoadError`."""
        if self._model is not None:
            return
        start = time.perf_counter()
        path = resolve_model(self.config.model, self.config.cache_dir)
        try:
            import ctranslate2

            WhisperModel = windowed_model_class()
        except ImportError as exc:
            raise ASRLoadError(f"faster-whisper is not installed: {exc}") from exc
        device = self.config.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute_type = self.config.compute_type or ("int8" if device == "cpu" else "float16")
        threads = self.config.cpu_threads or min(4, os.cpu_count() or 1)
        try:
            self._model = WhisperModel(
                str(path),
                device=device,
                compute_type=compute_type,
                cpu_threads=threads,
                local_files_only=True,
            )
        except Exception as exc:
            raise ASRLoadError(
                f"could not load {path} on {device} with compute_type={compute_type}: {exc}"
            ) from exc
        if self.config.language and self.config.language not in self._model.supported_languages:
            unsupported = self.config.language
            self._model = None
            raise ASRLoadError(
                f"model {self.config.model!r} does not support language {unsupported!r}"
            )
        self.model_path = path
        self.load_seconds = time.perf_counter() - start
        _LOG.info("ASR %s loaded from %s in %.2f s", self.name, path, self.load_seconds)

    def transcribe(
        self,
        samples: np.ndarray,
        sample_rate: int,
        channels: int = 1,
        language: str | None = None,
    ) -> Transcript:
        """Transcribe int16 or float32 (interleaved if ``channels`` > 1) audio at any supported
        rate.

        ``language``: None = the configured language, "" = detect, else an ISO code the model
        supports. Raises ValueError for unusable audio (see
        :func:`uservlm_ros.speech.audio.validate_audio`)
        or an unsupported language, and RuntimeError if :meth:`load` has not succeeded.
        """
        if self._model is None:
            raise RuntimeError("ASREngine.load() has not been called (or failed)")
        start = time.perf_counter()
        audio = prepare_for_asr(samples, sample_rate, channels, self.config.max_seconds)
        lang = (language if language is not None else self.config.language) or None
        if lang is not None and lang not in self._model.supported_languages:
            raise ValueError(
                f"unsupported language {lang!r} for model {self.config.model!r}; "
                f"use an ISO 639-1 code it supports or '' to detect"
            )
        audio_seconds = audio.size / ASR_SAMPLE_RATE
        window = encoder_window(audio_seconds, self.config.window_seconds)
        model = self._model
        # Detecting the language is one decoder step on an encoder output; faster-whisper's own
        # detection (language=None) encodes the first window once more just for it. When the
        # request fits in one window, multilingual=True detects it on the output the transcription
        # encodes anyway (the placeholder language is replaced before any prompt is built); the
        # result is the same language and text, one encoder pass cheaper.
        detect_once = (
            lang is None
            and model.model.is_multilingual
            and audio_seconds + WINDOW_MARGIN_SECONDS <= window
        )
        with self._lock:  # also guards the model's per-request state (window, first output)
            segments, language = self._decode(audio, lang, window, detect_once)
            if window < WHISPER_WINDOW_SECONDS and repeats_its_tail(
                " ".join(s.text for s in segments)
            ):
                # The short window's known failure: the sentence decoded again into the padding.
                # Rare (see encoder_window); the standard window then decides.
                _LOG.info(
                    "ASR: repeated tail in a %d s window; decoding again in the standard window",
                    window,
                )
                window = WHISPER_WINDOW_SECONDS
                segments, language = self._decode(audio, lang, window, False)
        return Transcript(
            text=" ".join(s.text for s in segments if s.text).strip(),
            language=language,
            confidence=_confidence(segments),
            audio_seconds=audio_seconds,
            asr_seconds=time.perf_counter() - start,
            segments=segments,
            window_seconds=window,
        )

    def _decode(self, audio: np.ndarray, lang: str | None, window: int, detect_once: bool):
        """(segments, language) of one faster-whisper pass with an encoder window of ``window``
        s."""
        model = self._model
        model.first_encoder_output = None
        segments_iter, info = model.transcribe(
            audio,
            language="en" if detect_once else lang,
            multilingual=detect_once,
            chunk_length=window,  # always passed: faster-whisper keeps the last one otherwise
            beam_size=self.config.beam_size,
            vad_filter=self.config.vad,
            condition_on_previous_text=False,
        )
        segments = [
            TranscriptSegment(s.start, s.end, s.text.strip(), s.avg_logprob, s.no_speech_prob)
            for s in segments_iter
        ]
        encoded, model.first_encoder_output = model.first_encoder_output, None
        language = info.language
        if detect_once:
            # The decoder's top language token (~30-90 ms); nothing was encoded when the VAD
            # found no speech, and then there is no language to report.
            language = (
                "" if encoded is None else model.model.detect_language(encoded)[0][0][0][2:-2]
            )
        return segments, language


def _confidence(segments: Sequence[TranscriptSegment]) -> float:
    if not segments:
        return 0.0
    weights = [max(s.end - s.start, 0.0) for s in segments]
    if sum(weights) <= 0:
        weights = [1.0] * len(segments)
    mean = sum(w * s.avg_logprob for w, s in zip(weights, segments)) / sum(weights)
    return float(min(1.0, max(0.0, math.exp(mean))))
