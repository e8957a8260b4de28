"""The TTS engine's ``coqui`` backend end to end, on an UNTRAINED Tacotron 2 + HiFi-GAN built from
coqui-tts's own configurations (random weights: the audio is noise, and the voice name says so).

Same engine code as for a downloaded model: a local model directory, its vocoder directory,
synthesis, resampling to the output rate, sentence streaming and cancel between sentences.
scripts/bootstrap.sh installs coqui-tts (requirements/coqui.txt, coqui-no-deps.txt).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from uservlm_ros.engines.tts import TTSConfig, TTSEngine, TTSLoadError

MODEL_RATE = 16000  # the model's rate; the engine outputs OUTPUT_RATE
OUTPUT_RATE = 22050
STEPS = 30  # decoder steps per sentence: 30 * r 2 * hop 256 = 15,360 samples = 0.96 s at 16 kHz
THREE = "Good morning. How are you feeling today? I can tell you a joke if you like."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from uservlm_ros.tools.untrained_tacotron2 import build_untrained_tacotron2

    return build_untrained_tacotron2(
        tmp_path_factory.mktemp("tacotron2"), sample_rate=MODEL_RATE, max_decoder_steps=STEPS
    )


@pytest.fixture(scope="module")
def engine(model_dir):
    engine = TTSEngine(
        TTSConfig(
            backend="coqui",
            coqui_model=str(model_dir),
            coqui_vocoder=str(model_dir / "vocoder"),
            sample_rate=OUTPUT_RATE,
            sentence_silence=0.1,
        )
    )
    engine.load()
    return engine


def test_untrained_local_model_loads_and_says_it_is_noise(engine, model_dir):
    assert engine.voice == f"coqui:{model_dir.name} (untrained: noise)"
    assert engine.sample_rate == OUTPUT_RATE


def test_synthesis_is_resampled_to_the_output_rate(engine, model_dir):
    native = TTSEngine(
        TTSConfig(
            backend="coqui", coqui_model=str(model_dir), coqui_vocoder=str(model_dir / "vocoder")
        )
    )
    native.load()
    assert native.sample_rate == MODEL_RATE
    reference = native.synthesize("Hello, I am Pepper.")
    speech = engine.synthesize("Hello, I am Pepper.")
    assert speech.sample_rate == OUTPUT_RATE and speech.samples.dtype == np.int16
    # the untrained decoder always runs STEPS steps: one known length, kept by resampling
    assert reference.seconds == pytest.approx(STEPS * 2 * 256 / MODEL_RATE, rel=0.2)
    longer = native.synthesize("Good morning, it is really nice to see you again today.")
    assert longer.samples.size == reference.samples.size
    assert np.any(reference.samples[-200:]), "Coqui's trailing silence pad is dropped"
    assert speech.seconds == pytest.approx(reference.seconds, abs=1 / MODEL_RATE)
    assert np.abs(speech.samples).max() > 0, "noise, but not silence"
    assert 0 < speech.synthesis_seconds < 60


def test_stream_yields_one_chunk_per_sentence(engine):
    chunks = list(engine.synthesize_stream(THREE))
    assert len(chunks) == 3
    gap = int(round(0.1 * OUTPUT_RATE))
    assert all(not np.any(c[:gap]) for c in chunks[1:]), "later chunks start with the pause"
    assert sum(c.size for c in chunks) == engine.synthesize(THREE).samples.size


def test_cancel_stops_between_sentences(engine):
    cancel = threading.Event()
    chunks = []
    for chunk in engine.synthesize_stream(THREE, cancel=cancel):
        chunks.append(chunk)
        cancel.set()  # barge-in while the first sentence plays
    assert len(chunks) == 1
    assert list(engine.synthesize_stream(THREE, cancel=cancel)) == [], "set before: nothing"


def test_missing_files_are_named(tmp_path, model_dir):
    with pytest.raises(TTSLoadError, match="has no config.json"):
        TTSEngine(TTSConfig(backend="coqui", coqui_model=str(tmp_path))).load()
    (tmp_path / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(TTSLoadError, match="has none of model.pth, model_file.pth"):
        TTSEngine(TTSConfig(backend="coqui", coqui_model=str(tmp_path))).load()
    with pytest.raises(TTSLoadError, match="vocoder directory .* does not exist"):
        TTSEngine(
            TTSConfig(
                backend="coqui", coqui_model=str(model_dir), coqui_vocoder=str(tmp_path / "none")
            )
        ).load()
