"""TTSEngine with the bundled Piper voice (and the espeak-ng / Coqui paths where they can run)."""

import importlib.util
import shutil

import numpy as np
import pytest

from uservlm_ros.engines import tts as tts_module
from uservlm_ros.engines.tts import (
    TTSConfig,
    TTSEngine,
    TTSLoadError,
    split_sentences,
    validate_text,
)
from uservlm_ros.speech.audio import normalize_text, rms_dbfs

SENTENCE = "Hello, I am Pepper, and I am happy to meet you."
THREE_SENTENCES = "Good morning. How are you feeling today? I can tell you a joke if you like."


@pytest.fixture(scope="module")
def engine():
    engine = TTSEngine(TTSConfig(backend="piper"))
    engine.load()
    return engine


def plausible_seconds(text):
    words = len(normalize_text(text))
    return 0.15 * words, 0.8 * words + 1.0  # very slow to very fast speech, plus edges


def test_voice_and_rate(engine):
    assert engine.voice == "piper:en_US-joe-medium"
    assert engine.sample_rate == 22050
    assert engine.load_seconds > 0


def test_synthesize_returns_int16_speech(engine):
    speech = engine.synthesize(SENTENCE)
    assert speech.samples.dtype == np.int16 and speech.samples.ndim == 1
    assert speech.sample_rate == engine.sample_rate
    low, high = plausible_seconds(SENTENCE)
    assert low <= speech.seconds <= high, speech.seconds
    assert rms_dbfs(speech.samples) > -35.0, "synthesised audio is (nearly) silent"
    assert 0 < speech.synthesis_seconds < 10


def test_stream_yields_one_chunk_per_sentence_matching_whole(engine):
    chunks = list(engine.synthesize_stream(THREE_SENTENCES))
    assert len(chunks) == 3
    assert all(c.dtype == np.int16 and c.ndim == 1 and c.size for c in chunks)
    gap = int(engine.config.sentence_silence * engine.sample_rate)
    assert all(not np.any(c[:gap]) for c in chunks[1:]), "later chunks start with the pause"
    whole = engine.synthesize(THREE_SENTENCES)
    # Piper's VITS samples phoneme durations, so two runs differ slightly in length.
    assert sum(c.size for c in chunks) == pytest.approx(whole.samples.size, rel=0.15)


def test_length_scale_slows_speech(engine):
    slow = TTSEngine(TTSConfig(backend="piper", length_scale=1.6))
    slow.load()
    normal_seconds = np.mean([engine.synthesize(SENTENCE).seconds for _ in range(2)])
    slow_seconds = np.mean([slow.synthesize(SENTENCE).seconds for _ in range(2)])
    assert slow_seconds > 1.3 * normal_seconds


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty or only whitespace"),
        (" \n\t ", "empty or only whitespace"),
        ("a" * 2001, "2001 characters; the maximum is 2000"),
        ("hello\x07 there", "control character U\\+0007 at index 5"),
        ("null\x00byte", "control character U\\+0000"),
        ("?!...", "no letters or digits"),
        (None, "must be a string"),
    ],
)
def test_bad_text_is_rejected(engine, text, message):
    with pytest.raises(ValueError, match=message):
        engine.synthesize(text)
    with pytest.raises(ValueError, match=message):
        engine.synthesize_stream(text)  # raised by the call itself, before any audio


def test_newlines_and_tabs_are_allowed():
    assert validate_text("  Line one.\n\tLine two.  ", 100) == "Line one.\n\tLine two."


def test_split_sentences():
    assert split_sentences("One. Two?  Three!\nFour") == ["One.", "Two?", "Three!", "Four"]


def test_synthesize_before_load_is_an_error():
    with pytest.raises(RuntimeError, match="load"):
        TTSEngine().synthesize("hello")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "festival"}, "backend"),
        ({"max_chars": 0}, "max_chars"),
        ({"length_scale": 10}, "length_scale"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TTSConfig(**kwargs)


def test_tampered_bundled_voice_is_refused(monkeypatch):
    wrong = dict(tts_module.PIPER_VOICE_SHA256, **{"en_US-joe-medium.onnx": "0" * 64})
    monkeypatch.setattr(tts_module, "PIPER_VOICE_SHA256", wrong)
    with pytest.raises(
        TTSLoadError, match=r"en_US-joe-medium.onnx .*expected SHA-256 0{64}, got 58afce03"
    ):
        TTSEngine(TTSConfig(backend="piper")).load()


def test_missing_custom_voice(tmp_path):
    with pytest.raises(TTSLoadError, match="does not exist"):
        TTSEngine(TTSConfig(backend="piper", piper_voice=str(tmp_path / "none.onnx"))).load()


@pytest.mark.skipif(importlib.util.find_spec("TTS") is not None, reason="Coqui TTS is installed")
def test_without_coqui_auto_uses_piper_and_coqui_fails_clearly():
    with pytest.raises(TTSLoadError, match="Coqui TTS is not importable"):
        TTSEngine(TTSConfig(backend="coqui")).load()
    auto = TTSEngine(TTSConfig(backend="auto"))
    auto.load()
    assert auto.voice == "piper:en_US-joe-medium"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
def test_espeak_backend():
    espeak = TTSEngine(TTSConfig(backend="espeak"))
    espeak.load()
    assert espeak.voice == "espeak:en-us"
    chunks = list(espeak.synthesize_stream("-Leading dash. Second sentence."))
    assert len(chunks) == 2 and all(c.dtype == np.int16 and c.size for c in chunks)
    speech = espeak.synthesize(SENTENCE)
    low, high = plausible_seconds(SENTENCE)
    assert low <= speech.seconds <= high


@pytest.mark.skipif(shutil.which("espeak-ng") is not None, reason="espeak-ng binary installed")
def test_espeak_missing_fails_clearly():
    with pytest.raises(TTSLoadError, match="espeak-ng is not installed"):
        TTSEngine(TTSConfig(backend="espeak")).load()
