"""uservlm_ros.speech.audio: conversions, downmix, resampling, WAV I/O, validation and word error
rate."""

import math
import wave

import numpy as np
import pytest

from uservlm_ros.speech.audio import (
    float_to_int16,
    int16_to_float32,
    normalize_text,
    prepare_for_asr,
    read_wav,
    resample,
    rms_dbfs,
    to_mono,
    validate_audio,
    word_error_rate,
    write_wav,
)


def sine(freq, rate, seconds=1.0, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return np.fft.rfftfreq(samples.size, 1 / rate)[np.argmax(spectrum)]


# --------------------------------------------------------------------------- conversions


def test_int16_float_round_trip_is_exact():
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    as_float = int16_to_float32(pcm)
    assert as_float.dtype == np.float32
    assert as_float.min() >= -1.0 and as_float.max() < 1.0
    np.testing.assert_array_equal(float_to_int16(as_float), pcm)


def test_float_to_int16_clips_instead_of_wrapping():
    out = float_to_int16(np.array([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=np.float32))
    np.testing.assert_array_equal(out, [-32768, -32768, 0, 32767, 32767])


def test_conversions_reject_wrong_dtype():
    with pytest.raises(ValueError, match="int16"):
        int16_to_float32(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="floating-point"):
        float_to_int16(np.zeros(3, dtype=np.int32))


def test_to_mono_averages_without_int16_overflow():
    stereo = np.array([32767, 32767, -32768, -32768, 100, 300], dtype=np.int16)
    mono = to_mono(stereo, channels=2)
    assert mono.dtype == np.int16
    np.testing.assert_array_equal(mono, [32767, -32768, 200])


def test_to_mono_selects_one_channel_of_four():
    frames = np.arange(12, dtype=np.int16).reshape(3, 4)  # 3 frames x 4 microphones
    np.testing.assert_array_equal(to_mono(frames.reshape(-1), 4, channel=2), [2, 6, 10])
    with pytest.raises(ValueError, match="out of range"):
        to_mono(frames.reshape(-1), 4, channel=4)
    with pytest.raises(ValueError, match="interleaved"):
        to_mono(np.zeros(5, dtype=np.int16), 2)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_resample_keeps_frequency_and_level(rate):
    tone = sine(440.0, rate, amplitude=0.3)
    out = resample(tone, rate, 16000)
    assert out.dtype == np.float32
    assert out.size == pytest.approx(16000, abs=1)
    assert dominant_frequency(out, 16000) == pytest.approx(440.0, abs=2.0)
    # Compare levels away from the filter's edge effects.
    core = slice(1000, -1000)
    assert rms_dbfs(out[core]) == pytest.approx(rms_dbfs(tone), abs=0.1)


def test_resample_removes_content_above_the_new_nyquist():
    # A 10 kHz tone cannot exist at 16 kHz: naive decimation would fold it to 6 kHz.
    out = resample(sine(10000.0, 48000, amplitude=0.5), 48000, 16000)
    assert rms_dbfs(out[1000:-1000]) < rms_dbfs(sine(10000.0, 48000, amplitude=0.5)) - 40


def test_resample_int16_input_and_same_rate():
    pcm = float_to_int16(sine(1000.0, 16000))
    out = resample(pcm, 16000, 16000)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, int16_to_float32(pcm))


def test_prepare_for_asr_downmixes_and_resamples():
    left = sine(300.0, 48000, seconds=0.5)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    out = prepare_for_asr(stereo, 48000, channels=2)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.size == 8000
    assert dominant_frequency(out, 16000) == pytest.approx(300.0, abs=3.0)


# --------------------------------------------------------------------------- WAV


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_round_trip(tmp_path, channels):
    pcm = float_to_int16(sine(523.0, 22050, seconds=0.3))
    pcm = np.repeat(pcm, channels)
    path = tmp_path / "tone.wav"
    write_wav(path, pcm, 22050, channels)
    samples, rate, got_channels = read_wav(path)
    assert (rate, got_channels) == (22050, channels)
    assert samples.dtype == np.int16
    np.testing.assert_array_equal(samples, pcm)


def test_write_wav_converts_float(tmp_path):
    path = tmp_path / "float.wav"
    write_wav(path, np.array([0.0, 0.5, -0.5], dtype=np.float32), 16000)
    samples, _, _ = read_wav(path)
    np.testing.assert_array_equal(samples, [0, 16384, -16384])


def test_read_wav_rejects_8_bit(tmp_path):
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(bytes(100))
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(path)


# --------------------------------------------------------------------------- validation


def test_validate_audio_returns_duration():
    assert validate_audio(np.zeros(32000, np.int16), 16000, 30.0) == pytest.approx(2.0)
    assert validate_audio(np.zeros(96000, np.float32), 48000, 30.0, channels=2) == pytest.approx(
        1.0
    )


@pytest.mark.parametrize(
    "samples, rate, channels, message",
    [
        (np.zeros(0, np.int16), 16000, 1, "zero samples"),
        (np.array([0.0, np.nan], np.float32), 16000, 1, "NaN or infinite"),
        (np.array([0.0, np.inf, -np.inf], np.float32), 16000, 1, "2 NaN or infinite"),
        (np.zeros(10, np.int32), 16000, 1, "dtype int32"),
        (np.zeros((10, 2), np.int16), 16000, 1, r"1-D .*shape \(10, 2\)"),
        ([0, 1, 2], 16000, 1, "numpy array"),
        (np.zeros(9, np.int16), 16000, 2, "whole number of frames"),
        (np.zeros(10, np.int16), 4000, 1, "unsupported sample rate 4000"),
        (np.zeros(10, np.int16), 16000.0, 1, "unsupported sample rate"),
        (np.zeros(16000 * 31, np.int16), 16000, 1, r"31.00 s long; the maximum is 30 s"),
    ],
)
def test_validate_audio_rejects(samples, rate, channels, message):
    with pytest.raises(ValueError, match=message):
        validate_audio(samples, rate, 30.0, channels)


# --------------------------------------------------------------------------- WER


def test_normalize_text():
    assert normalize_text("Hello, Pepper! Don't  stop—now.") == [
        "hello",
        "pepper",
        "dont",
        "stop",
        "now",
    ]


@pytest.mark.parametrize(
    "reference, hypothesis, expected",
    [
        ("the cat sat down", "the cat sat down", 0.0),
        ("Hello, Pepper. What's up?", "hello pepper whats up", 0.0),
        ("the cat sat down", "the dog sat down", 0.25),  # substitution
        ("the cat sat down", "the cat down", 0.25),  # deletion
        ("the cat sat down", "the cat sat right down", 0.25),  # insertion
        ("the cat sat down", "", 1.0),
        ("a b", "c d e f", 2.0),  # can exceed 1
    ],
)
def test_word_error_rate(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_word_error_rate_needs_reference_words():
    with pytest.raises(ValueError, match="reference has no words"):
        word_error_rate(" ?! ", "anything")


def test_rms_dbfs_of_full_scale_sine():
    assert rms_dbfs(sine(100.0, 16000, amplitude=1.0)) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(np.zeros(10, np.int16)) == -math.inf
