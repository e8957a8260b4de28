"""ASREngine on the offline Whisper base, fed speech that the Piper engine synthesises at test time
(so this is also the TTS -> ASR round trip), plus checksum handling and the streaming segmenter."""

import shutil

import numpy as np
import pytest

from uservlm_ros.engines.asr import weights
from uservlm_ros.engines.asr.vad import VadConfig, VoiceActivitySegmenter
from uservlm_ros.engines.asr.weights import (
    WHISPER_BASE_SHA256,
    ASRLoadError,
    ChecksumError,
    ensure_whisper_base,
    verify_model_dir,
    whisper_base_sources,
)
from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine
from uservlm_ros.engines.asr.window import WINDOW_MARGIN_SECONDS, encoder_window, repeats_its_tail
from uservlm_ros.engines.tts import TTSConfig, TTSEngine
from uservlm_ros.speech.audio import float_to_int16, normalize_text, resample, word_error_rate

SENTENCE = "Hello Pepper, what is the weather like today?"
OTHER_SENTENCE = "Please tell me a short story about a friendly robot."
MAX_WER = 0.2


@pytest.fixture(scope="module")
def tts():
    engine = TTSEngine(TTSConfig(backend="piper"))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def speech(tts):
    return tts.synthesize(SENTENCE)


@pytest.fixture(scope="module")
def engine():
    # The real default cache: assembled once per machine, verified on every load.
    engine = ASREngine(ASRConfig(model="base", language="en"))
    engine.load()
    return engine


def test_round_trip_transcribes_synthesised_sentence(engine, speech):
    result = engine.transcribe(speech.samples, speech.sample_rate)
    wer = word_error_rate(SENTENCE, result.text)
    assert wer <= MAX_WER, f"WER {wer:.2f}: heard {result.text!r}"
    assert result.language == "en"
    assert 0.0 < result.confidence <= 1.0
    assert result.audio_seconds == pytest.approx(speech.seconds, abs=0.01)
    assert result.asr_seconds > 0
    assert result.segments and result.segments[0].text


def test_language_detection(engine, speech):
    result = engine.transcribe(speech.samples, speech.sample_rate, language="")
    assert result.language == "en"


def sharing(engine, **config):
    """An engine with another configuration on the same loaded model (no second load)."""
    other = ASREngine(ASRConfig(language="en", **config))
    other._model = engine._model
    return other


def test_short_window_transcribes_like_the_standard_window(engine, speech):
    assert engine.config.window_seconds == 10  # the default
    short = engine.transcribe(speech.samples, speech.sample_rate)
    standard = sharing(engine, window_seconds=0).transcribe(speech.samples, speech.sample_rate)
    assert (short.window_seconds, standard.window_seconds) == (10, 30)
    assert engine._model.feature_extractor.nb_max_frames == 3000  # the standard window is restored
    short_wer, standard_wer = (
        word_error_rate(SENTENCE, short.text),
        word_error_rate(SENTENCE, standard.text),
    )
    assert short_wer <= MAX_WER, short.text
    same_words = normalize_text(short.text) == normalize_text(standard.text)
    assert same_words or short_wer <= standard_wer, (short.text, standard.text)


def test_window_grows_to_cover_a_long_utterance(engine, tts):
    last = "Finally, which restaurant near the station serves vegetarian food?"
    harbour = "I would also like to visit the old harbour this afternoon."
    text = f"{SENTENCE} {OTHER_SENTENCE} {harbour} {last}"
    spoken = tts.synthesize(text)
    assert spoken.seconds > 9, spoken.seconds
    result = sharing(engine, window_seconds=5).transcribe(spoken.samples, spoken.sample_rate)
    assert result.window_seconds >= result.audio_seconds + WINDOW_MARGIN_SECONDS
    assert word_error_rate(text, result.text) <= MAX_WER, result.text
    heard = normalize_text(result.text)
    assert word_error_rate(last, " ".join(heard[-len(normalize_text(last)) :])) <= MAX_WER, (
        result.text
    )


@pytest.mark.parametrize(
    "audio_seconds, window_seconds, window",
    [
        (3.4, 10, 10),
        (3.4, 0, 30),
        (3.4, 5, 7),
        (8.5, 10, 12),
        (12.0, 5, 15),
        (29.5, 10, 30),
        (3.0, 7.5, 8),
    ],
)
def test_encoder_window(audio_seconds, window_seconds, window):
    assert encoder_window(audio_seconds, window_seconds) == window


def test_language_detection_encodes_once(engine, speech, monkeypatch):
    forced = engine.transcribe(speech.samples, speech.sample_rate)
    frames = []  # encoder output frames (50 per second) of each encoder pass
    original = engine._model.encode

    def encode(features):
        output = original(features)
        frames.append(output.shape[1])
        return output

    monkeypatch.setattr(engine._model, "encode", encode)
    detected = engine.transcribe(speech.samples, speech.sample_rate, language="")
    assert detected.language == "en"
    assert detected.text == forced.text
    assert frames == [50 * detected.window_seconds], "one encoder pass, over the short window"


def test_detection_on_silence_reports_no_language(engine):
    result = sharing(engine, vad=True).transcribe(np.zeros(32000, np.int16), 16000, language="")
    assert (result.text, result.language, result.segments) == ("", "", [])


def test_48k_stereo_is_downmixed_and_resampled(engine, tts):
    spoken = tts.synthesize(OTHER_SENTENCE)
    at_48k = resample(spoken.samples, spoken.sample_rate, 48000)
    stereo = np.stack([at_48k, 0.5 * at_48k], axis=1).reshape(-1)
    result = engine.transcribe(float_to_int16(stereo), 48000, channels=2)
    wer = word_error_rate(OTHER_SENTENCE, result.text)
    assert wer <= MAX_WER, f"WER {wer:.2f}: heard {result.text!r}"
    assert result.audio_seconds == pytest.approx(spoken.seconds, abs=0.01)


def test_tiny_en_model_also_works(speech):
    tiny = ASREngine(ASRConfig(model="tiny.en", beam_size=1))
    tiny.load()
    result = tiny.transcribe(speech.samples, speech.sample_rate)
    assert word_error_rate(SENTENCE, result.text) <= MAX_WER, result.text


def test_vad_filter_drops_silence_and_keeps_speech(speech):
    tiny = ASREngine(ASRConfig(model="tiny.en", vad=True, beam_size=1))
    tiny.load()
    silent = tiny.transcribe(np.zeros(32000, np.int16), 16000)
    assert (silent.text, silent.confidence, silent.segments) == ("", 0.0, [])
    gap = np.zeros(speech.sample_rate, np.int16)
    padded = tiny.transcribe(np.concatenate([gap, speech.samples, gap]), speech.sample_rate)
    assert word_error_rate(SENTENCE, padded.text) <= MAX_WER, padded.text
    assert padded.segments[0].start >= 0.5  # timestamps refer to the original audio


@pytest.mark.parametrize(
    "samples, rate, message",
    [
        (np.array([0.0, np.nan] * 800, np.float32), 16000, "NaN or infinite"),
        (np.full(1600, np.inf, np.float32), 16000, "NaN or infinite"),
        (np.zeros(0, np.int16), 16000, "zero samples"),
        (np.zeros(16000 * 31, np.int16), 16000, "maximum is 30 s"),
        (np.zeros(1600, np.uint8), 16000, "dtype uint8"),
        (np.zeros(1600, np.int16), 1000, "unsupported sample rate"),
    ],
)
def test_bad_audio_is_rejected(engine, samples, rate, message):
    with pytest.raises(ValueError, match=message):
        engine.transcribe(samples, rate)


@pytest.mark.parametrize("language", ["xx", "klingon"])
def test_unknown_language_is_rejected(engine, speech, language):
    with pytest.raises(ValueError, match=f"unsupported language '{language}'"):
        engine.transcribe(speech.samples, speech.sample_rate, language=language)


def test_max_seconds_is_configurable(engine, speech):
    short = ASREngine(ASRConfig(max_seconds=1.0))
    short._model = engine._model  # share the loaded model: only the limit differs
    with pytest.raises(ValueError, match="maximum is 1 s"):
        short.transcribe(speech.samples, speech.sample_rate)


def test_transcribe_before_load_is_an_error():
    with pytest.raises(RuntimeError, match="load"):
        ASREngine().transcribe(np.zeros(1600, np.int16), 16000)


# --------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def tmp_cache(tmp_path_factory):
    target = tmp_path_factory.mktemp("cache") / "whisper-base"
    ensure_whisper_base(target)
    return target


def test_assembled_cache_matches_published_checksums(tmp_cache):
    verify_model_dir(tmp_cache)
    assert not [p for p in tmp_cache.parent.iterdir() if p.name.startswith(".whisper-base.")]


def test_tampered_cache_file_is_detected_and_repaired(tmp_cache):
    config = tmp_cache / "config.json"
    config.write_bytes(config.read_bytes().replace(b"}", b"} ", 1))
    with pytest.raises(ChecksumError) as caught:
        verify_model_dir(tmp_cache)
    assert caught.value.name == "config.json"
    assert caught.value.expected == WHISPER_BASE_SHA256["config.json"]
    assert caught.value.actual in str(caught.value) and caught.value.expected in str(caught.value)
    ensure_whisper_base(tmp_cache)  # re-assembles once
    verify_model_dir(tmp_cache)


def test_tampered_source_is_refused_with_both_hashes(tmp_path):
    sources = whisper_base_sources()
    bad_vocab = tmp_path / "vocabulary.txt"
    shutil.copy(sources["vocabulary.txt"][0], bad_vocab)
    with open(bad_vocab, "ab") as handle:
        handle.write(b"injected\n")
    sources["vocabulary.txt"] = [bad_vocab]
    target = tmp_path / "cache" / "whisper-base"
    with pytest.raises(ChecksumError, match="vocabulary.txt") as caught:
        ensure_whisper_base(target, sources=sources)
    assert WHISPER_BASE_SHA256["vocabulary.txt"] in str(caught.value)
    assert not target.exists(), "a rejected model must not be left in the cache"
    assert list((tmp_path / "cache").iterdir()) == [], "staging directory left behind"


def test_engine_load_refuses_tampered_model(tmp_path, monkeypatch):
    sources = whisper_base_sources()
    bad_config = tmp_path / "config.json"
    bad_config.write_bytes(sources["config.json"][0].read_bytes() + b"\n")
    sources["config.json"] = [bad_config]
    monkeypatch.setattr(weights, "whisper_base_sources", lambda: sources)
    engine = ASREngine(ASRConfig(cache_dir=str(tmp_path / "cache")))
    with pytest.raises(ASRLoadError, match="config.json.*expected SHA-256"):
        engine.load()
    assert not engine.loaded


def test_large_v3_offline_fails_clearly(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty Hugging Face cache
    with pytest.raises(ASRLoadError, match="'large-v3' is not available offline"):
        ASREngine(ASRConfig(model="large-v3")).load()


@pytest.mark.parametrize(
    "model, message", [("/nonexistent/whisper", "does not exist"), ("huge-v9", "unknown model")]
)
def test_bad_model_names(model, message):
    with pytest.raises(ASRLoadError, match=message):
        ASREngine(ASRConfig(model=model)).load()


def test_incomplete_model_dir(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ASRLoadError, match="missing config.json, tokenizer.json, vocabulary"):
        ASREngine(ASRConfig(model=str(tmp_path))).load()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"device": "tpu"}, "device"),
        ({"beam_size": 0}, "beam_size"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"window_seconds": -1}, "window_seconds"),
        ({"window_seconds": 30.5}, "window_seconds"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ASRConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vad_threshold": 1.0}, "vad_threshold"),
        ({"min_silence_ms": -1}, "min_silence_ms"),
        ({"max_utterance_seconds": 0.01}, "max_utterance_seconds"),
    ],
)
def test_vad_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VadConfig(**kwargs)


# --------------------------------------------------------------------------- segmenter


def test_segmenter_finds_one_utterance_in_padded_speech(speech):
    voice = resample(speech.samples, speech.sample_rate, 16000)
    lead, tail = 16000, 24000  # 1 s and 1.5 s of near-silence
    noise = np.random.default_rng(0).normal(0.0, 1e-3, lead + voice.size + tail).astype(np.float32)
    stream = noise + np.concatenate([np.zeros(lead), voice, np.zeros(tail)]).astype(np.float32)
    loud = np.flatnonzero(np.abs(voice) > 0.02)
    first_loud, last_loud = lead + loud[0], lead + loud[-1]

    segmenter = VoiceActivitySegmenter()
    found = []
    for offset in range(0, stream.size, 1600):  # 100 ms chunks, as from a microphone topic
        found.extend(segmenter.feed(float_to_int16(stream[offset : offset + 1600])))
    assert not segmenter.in_speech
    found.extend(segmenter.flush())

    assert len(found) == 1, [(u.start, u.end) for u in found]
    utterance = found[0]
    assert utterance.start <= first_loud and utterance.end >= last_loud
    assert utterance.start >= lead - 8000 and utterance.end <= lead + voice.size + 8000
    assert utterance.samples.size == utterance.end - utterance.start
    np.testing.assert_allclose(
        utterance.samples,
        float_to_int16(stream[utterance.start : utterance.end]) / 32768.0,
        atol=1e-6,
    )


def test_segmenter_ignores_silence_and_splits_long_speech(speech):
    segmenter = VoiceActivitySegmenter(VadConfig(max_utterance_seconds=1.0))
    assert list(segmenter.feed(np.zeros(32000, np.float32))) == []
    assert list(segmenter.flush()) == []
    voice = resample(speech.samples, speech.sample_rate, 16000)
    pieces = list(segmenter.feed(voice)) + list(segmenter.flush())
    assert len(pieces) >= 2
    assert all(p.end - p.start <= 16000 + 3200 + 512 for p in pieces)
    assert all(a.end <= b.start for a, b in zip(pieces, pieces[1:])), "utterances overlap"


def test_segmenter_candidate_equals_the_utterance_it_becomes():
    """The speculative candidate (offered while the end of speech is being confirmed) is exactly
    the utterance feed() yields later: transcribing it early changes no result."""
    import numpy as np

    from uservlm_ros.speech.audio import read_wav
    from uservlm_ros.tools.demo import demo_file

    samples, rate, _ = read_wav(demo_file("question.wav"))
    segmenter = VoiceActivitySegmenter()
    candidates, finals = [], []
    for i in range(0, samples.size, 640):
        finals += list(segmenter.feed(samples[i : i + 640]))
        candidate = segmenter.candidate()
        if candidate is not None and not finals:
            candidates.append(candidate)
    assert len(finals) == 1 and candidates, "one utterance, announced before it was emitted"
    last = candidates[-1]
    assert (last.start, last.end) == (finals[0].start, finals[0].end)
    assert np.array_equal(last.samples, finals[0].samples)


def test_a_repeated_tail_is_recognised():
    """The short window's failure mode (the sentence decoded again into the padding) is what
    sends a request back to the standard window."""

    assert repeats_its_tail("Or say no and I will keep it general. I will keep it general.")
    assert repeats_its_tail("What should I wear? What should I wear?")
    assert not repeats_its_tail("What should I wear to a business meeting?")
    assert not repeats_its_tail("No, no, no. Very very good.")  # short repeats are speech
    assert not repeats_its_tail("")
