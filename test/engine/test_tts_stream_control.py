"""TTS output rate and cancel between sentences, with the bundled Piper voice; SentenceSpeaker's
cancel (barge-in while the answer is still being written)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from uservlm_ros.engines.tts import TTSConfig, TTSEngine
from uservlm_ros.speech.sentences import SentenceSpeaker

THREE = "Good morning. How are you feeling today? I can tell you a joke if you like."


@pytest.fixture(scope="module")
def engines():
    native = TTSEngine(TTSConfig(backend="piper", length_scale=1.0))
    at_16k = TTSEngine(TTSConfig(backend="piper", sample_rate=16000))
    native.load()
    at_16k.load()
    return native, at_16k


def test_output_is_resampled_to_the_configured_rate(engines):
    native, at_16k = engines
    assert native.sample_rate == 22050 and at_16k.sample_rate == 16000
    speech = at_16k.synthesize("Hello, I am Pepper, and I am happy to meet you.")
    assert speech.sample_rate == 16000 and speech.samples.dtype == np.int16
    reference = native.synthesize("Hello, I am Pepper, and I am happy to meet you.")
    # Piper samples phoneme durations, so two runs differ a little in length
    assert speech.seconds == pytest.approx(reference.seconds, rel=0.15)
    spectrum = np.abs(np.fft.rfft(speech.samples.astype(np.float32)))
    freqs = np.fft.rfftfreq(speech.samples.size, 1 / 16000)
    assert spectrum[(freqs > 200) & (freqs < 4000)].mean() > 10 * spectrum[freqs > 7800].mean(), (
        "speech band kept, no aliasing above the new Nyquist"
    )
    gap = int(round(at_16k.config.sentence_silence * 16000))
    chunks = list(at_16k.synthesize_stream(THREE))
    assert len(chunks) == 3 and all(not np.any(c[:gap]) for c in chunks[1:])


def test_cancel_stops_the_stream_between_sentences(engines):
    native, _ = engines
    cancel = threading.Event()
    chunks = []
    for chunk in native.synthesize_stream(THREE, cancel=cancel):
        chunks.append(chunk)
        cancel.set()
    assert len(chunks) == 1
    assert list(native.synthesize_stream(THREE, cancel=cancel)) == []
    assert len(list(native.synthesize_stream(THREE))) == 3, "the engine is usable after a cancel"


def test_output_rate_is_validated():
    with pytest.raises(ValueError, match="sample_rate"):
        TTSConfig(sample_rate=4000)


def test_sentence_speaker_cancel_drops_what_is_not_spoken_yet():
    started, release, spoken = threading.Event(), threading.Event(), []

    def speak(sentence):
        started.set()
        assert release.wait(5)
        spoken.append(sentence)
        return 0.1

    speaker = SentenceSpeaker(speak, min_chars=1)
    speaker.feed("First one. Second one. Third one. ")
    assert started.wait(5), "the first sentence is being synthesised"
    assert speaker.cancel() == 2
    speaker.feed("Fourth one. ")  # after the cancel: ignored
    release.set()
    speaker.finish(5)
    assert spoken == ["First one."] and speaker.cancelled


def test_sentence_speaker_cancel_before_anything_is_not_an_error():
    speaker = SentenceSpeaker(lambda sentence: 0.1, min_chars=1)
    speaker.cancel()
    speaker.feed("Nothing. ")
    speaker.finish(5)
    assert speaker.sentences == []
