"""uservlm_ros.robot.pepper_audio and .resampler: Pepper's 48 kHz 4-channel buffers -> 16 kHz
mono."""

import array
import math
import time

import numpy as np
import pytest

from uservlm_ros.robot.pepper_audio import PepperAudioConfig, PepperAudioConverter, channel_names
from uservlm_ros.robot.resampler import StreamingResampler
from uservlm_ros.speech.audio import resample

OLD_HEAD = [0, 2, 1, 4]  # FRONT_LEFT, FRONT_RIGHT, FRONT_CENTER, REAR_CENTER (naoqi_driver2)
NEW_HEAD = [3, 5, 0, 2]  # REAR_LEFT, REAR_RIGHT, FRONT_LEFT, FRONT_RIGHT
BUFFER = 4800  # 100 ms at 48 kHz per channel


def tone(freq, seconds=1.0, rate=48000, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def interleave(columns):
    """Float columns in [-1, 1] (one per channel) -> interleaved int16."""
    frames = np.stack(columns, axis=1)
    return np.clip(np.rint(frames * 32767), -32768, 32767).astype(np.int16).reshape(-1)


def in_channel(signal, position, channels=4):
    columns = [np.zeros_like(signal) for _ in range(channels)]
    columns[position] = signal
    return interleave(columns)


def convert_in_buffers(converter, data, channel_map, frames=BUFFER):
    step = frames * len(channel_map)
    return np.concatenate(
        [
            converter.convert(48000, channel_map, data[i : i + step])
            for i in range(0, data.size, step)
        ]
    )


def rms(x):
    return math.sqrt(float(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def dominant_frequency(samples, rate):
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)]


def steady(x, margin=400):
    return x[margin:-margin]


# --------------------------------------------------------------------------- signal


def test_1khz_tone_in_one_channel_keeps_frequency_and_level():
    signal = tone(1000.0, seconds=1.0, amplitude=0.5)
    data = in_channel(signal, position=2)  # FRONT_CENTER on the old head
    converter = PepperAudioConverter(PepperAudioConfig(channel="front_center"))
    out = convert_in_buffers(converter, data, OLD_HEAD)
    assert out.dtype == np.int16
    assert abs(out.size - 16000) <= 1
    assert dominant_frequency(steady(out), 16000) == pytest.approx(1000.0, abs=2.0)
    level_in = 20 * math.log10(rms(data.reshape(-1, 4)[:, 2]))
    level_out = 20 * math.log10(rms(steady(out)))
    assert abs(level_out - level_in) < 0.5, (level_in, level_out)


def test_10khz_tone_is_attenuated_by_more_than_40_db():
    data = in_channel(tone(10000.0, amplitude=0.5), position=2)
    out = convert_in_buffers(PepperAudioConverter(PepperAudioConfig(channel="2")), data, OLD_HEAD)
    attenuation = 20 * math.log10(rms(data.reshape(-1, 4)[:, 2]) / max(rms(steady(out)), 1e-9))
    assert attenuation >= 40.0, attenuation
    # and the speech band passes: 7 kHz within 0.5 dB
    data = in_channel(tone(7000.0, amplitude=0.5), position=2)
    out = convert_in_buffers(PepperAudioConverter(PepperAudioConfig(channel="2")), data, OLD_HEAD)
    assert abs(20 * math.log10(rms(steady(out)) / rms(data.reshape(-1, 4)[:, 2]))) < 0.5


def test_buffer_by_buffer_equals_one_shot_conversion():
    rng = np.random.default_rng(1)
    speechlike = tone(300.0) + tone(1200.0, amplitude=0.2) + 0.05 * rng.standard_normal(48000)
    data = interleave(
        [speechlike * 0.5, speechlike * 0.4, speechlike * 0.3, rng.uniform(-0.1, 0.1, 48000)]
    )
    whole = PepperAudioConverter(PepperAudioConfig(channel="mean")).convert(48000, OLD_HEAD, data)
    streaming = PepperAudioConverter(PepperAudioConfig(channel="mean"))
    parts, start = [], 0
    while start < 48000:  # ragged sizes, most of them not a multiple of 3 frames
        frames = int(rng.integers(1, 3000))
        parts.append(streaming.convert(48000, OLD_HEAD, data[4 * start : 4 * (start + frames)]))
        start += frames
    chunked = np.concatenate(parts)
    assert chunked.size == whole.size
    assert np.abs(chunked.astype(int) - whole.astype(int)).max() <= 1


def test_stream_matches_the_one_shot_resampler_of_uservlm_audio_after_the_delay():
    signal = tone(440.0, amplitude=0.3) + tone(2500.0, amplitude=0.2)
    data = in_channel(signal, position=0)
    converter = PepperAudioConverter(PepperAudioConfig(channel="0"))
    out = convert_in_buffers(converter, data, OLD_HEAD, frames=4096).astype(np.float64) / 32768
    reference = resample(data.reshape(-1, 4)[:, 0], 48000, 16000).astype(np.float64)
    delay = round(converter.delay_seconds * 16000)
    assert delay == 18
    n = out.size - delay
    difference = (
        out[delay:][200 : n - 200] - reference[200 : n - 200]
    )  # edges: zero padding differs
    assert rms(difference) < 1e-3 * rms(reference)


def test_naive_per_buffer_resampling_clicks_where_the_stream_does_not():
    signal = tone(440.0, seconds=0.5, amplitude=0.5)
    data = in_channel(signal, position=0)
    frames = 4096
    naive = np.concatenate(
        [
            resample(data.reshape(-1, 4)[i : i + frames, 0], 48000, 16000)
            for i in range(0, signal.size, frames)
        ]
    )
    ours = (
        convert_in_buffers(
            PepperAudioConverter(PepperAudioConfig(channel="0")), data, OLD_HEAD, frames=frames
        ).astype(np.float64)
        / 32768
    )
    # a clean 440 Hz sine moves at most 2*pi*440/16000*0.5 = 0.086 per sample
    assert np.abs(np.diff(ours[40:-40])).max() < 0.1
    assert np.abs(np.diff(naive)).max() > 0.1


def test_front_mean_and_names_follow_the_channel_map():
    a, b, c, d = (np.full(BUFFER, v) for v in (0.1, 0.2, 0.3, 0.4))
    data = interleave([a, b, c, d])

    def level(channel, channel_map):
        out = PepperAudioConverter(PepperAudioConfig(channel=channel)).convert(
            48000, channel_map, data
        )
        return float(np.median(out[200:])) / 32767

    assert level("front", OLD_HEAD) == pytest.approx(
        0.2, abs=2e-3
    )  # FRONT_LEFT/RIGHT/CENTER = 0.1 .2 .3
    assert level("front", NEW_HEAD) == pytest.approx(
        0.35, abs=2e-3
    )  # FRONT_LEFT/RIGHT at positions 2, 3
    assert level("mean", OLD_HEAD) == pytest.approx(0.25, abs=2e-3)
    assert level("rear_center", OLD_HEAD) == pytest.approx(0.4, abs=2e-3)
    assert level("CHANNEL_REAR_LEFT", NEW_HEAD) == pytest.approx(0.1, abs=2e-3)
    assert level("1", NEW_HEAD) == pytest.approx(0.2, abs=2e-3)
    assert channel_names(NEW_HEAD) == ["REAR_LEFT", "REAR_RIGHT", "FRONT_LEFT", "FRONT_RIGHT"]


def test_accepts_rclpy_array_types():
    data = array.array("h", in_channel(tone(1000.0, seconds=0.1), position=1).tolist())
    out = PepperAudioConverter().convert(48000, array.array("B", OLD_HEAD), data)
    assert out.dtype == np.int16 and out.size == 1600
    assert PepperAudioConverter().convert(48000, bytes(OLD_HEAD), list(data)).size == 1600


# --------------------------------------------------------------------------- rejects


@pytest.mark.parametrize(
    "frequency, channel_map, data, reason",
    [
        (48000, OLD_HEAD, np.zeros(0, np.int16), "empty audio buffer"),
        (48000, OLD_HEAD, np.zeros(4 * 100 + 3, np.int16), "not a whole number of frames of 4"),
        (48000, [0, 2], np.zeros(400, np.int16), "channel_map has 2 entries"),
        (48000, [], np.zeros(400, np.int16), "channel_map is empty"),
        (44100, OLD_HEAD, np.zeros(400, np.int16), "unexpected sample rate 44100 Hz"),
        (0, OLD_HEAD, np.zeros(400, np.int16), "unexpected sample rate 0 Hz"),
        (48000, OLD_HEAD, np.zeros(400, np.float32), "int16"),
        (48000, OLD_HEAD, np.zeros(4 * 48000 * 6, np.int16), "maximum is 5 s"),
    ],
)
def test_malformed_buffers_are_rejected_with_a_reason(frequency, channel_map, data, reason):
    converter = PepperAudioConverter()
    with pytest.raises(ValueError, match=reason):
        converter.convert(frequency, channel_map, data)
    assert converter.rejected == 1 and reason.split()[0] in converter.last_reject_reason


def test_a_named_channel_missing_from_the_map_is_rejected():
    converter = PepperAudioConverter(PepperAudioConfig(channel="front_center"))
    with pytest.raises(
        ValueError, match=r"FRONT_CENTER is not in this buffer's channel_map \[3, 5, 0, 2\]"
    ):
        converter.convert(48000, NEW_HEAD, np.zeros(400, np.int16))


def test_rejected_buffers_leave_the_stream_untouched():
    data = in_channel(tone(1000.0, seconds=0.3), position=2)
    clean = convert_in_buffers(PepperAudioConverter(), data, OLD_HEAD)
    converter = PepperAudioConverter()
    parts = []
    for i in range(0, data.size, 4 * BUFFER):
        with pytest.raises(ValueError):
            converter.convert(
                48000, OLD_HEAD, np.append(data[i : i + 4 * BUFFER], 0)
            )  # odd length
        parts.append(converter.convert(48000, OLD_HEAD, data[i : i + 4 * BUFFER]))
    assert np.array_equal(np.concatenate(parts), clean)
    assert converter.rejected == 3 and converter.buffers == 3


def test_any_rate_mode_restarts_the_filter_on_a_rate_change():
    converter = PepperAudioConverter(PepperAudioConfig(input_rate=0))
    assert converter.convert(48000, OLD_HEAD, np.zeros(4 * 4800, np.int16)).size == 1600
    assert converter.convert(44100, OLD_HEAD, np.zeros(4 * 4410, np.int16)).size == 1600
    assert converter.restarts == 1
    with pytest.raises(ValueError, match="sample rate"):
        converter.convert(4000, OLD_HEAD, np.zeros(400, np.int16))


@pytest.mark.parametrize("kwargs", [{"channel": "left"}, {"input_rate": 1000}, {"channels": -1}])
def test_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        PepperAudioConfig(**kwargs)


def test_first_sample_time_accounts_for_buffer_length_and_delay():
    converter = PepperAudioConverter()
    out = converter.convert(48000, OLD_HEAD, np.zeros(4 * BUFFER, np.int16))
    assert converter.first_sample_time(10.0, out.size) == pytest.approx(10.0 - 0.1 - 0.001125)


def test_conversion_of_a_100ms_buffer_is_cheap():
    data = in_channel(tone(1000.0, seconds=0.1), position=2)
    converter = PepperAudioConverter()
    for _ in range(5):
        converter.convert(48000, OLD_HEAD, data)
    start = time.perf_counter()
    for _ in range(50):
        converter.convert(48000, OLD_HEAD, data)
    per_buffer = (time.perf_counter() - start) / 50
    assert per_buffer < 0.02, f"{per_buffer * 1000:.2f} ms per 100 ms buffer"


# --------------------------------------------------------------------------- resampler


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000)])
def test_streaming_resampler_any_split_equals_whole(rates):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(rates[0] // 2)
    whole = StreamingResampler(*rates)
    expected = np.concatenate([whole.process(x), whole.flush()])
    chunked = StreamingResampler(*rates)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 1500))
        parts.append(chunked.process(x[i : i + n]))
        i += n
    parts.append(chunked.flush())
    got = np.concatenate(parts)
    assert got.size == expected.size == -(-x.size * rates[1] // rates[0]) + chunked.delay_samples
    assert np.abs(got - expected).max() < 1e-6


def test_streaming_resampler_rejects_bad_rates_and_passes_equal_rates_through():
    with pytest.raises(ValueError):
        StreamingResampler(0, 16000)
    same = StreamingResampler(16000, 16000)
    x = np.linspace(-1, 1, 100)
    assert np.allclose(same.process(x), x) and same.delay_seconds == 0
