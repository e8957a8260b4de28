"""uservlm_ros.robot.microphone_source: WAV replay (chunking, resampling, pacing, EOF, loop) and
sound-card capture against a fake sounddevice module (this machine has no audio device)."""

import numpy as np
import pytest

from uservlm_ros.robot.microphone_source import MicrophoneConfig, MicrophoneSource
from uservlm_ros.speech.audio import write_wav


class FakeClock:
    def __init__(self, start=50.0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def sine(freq, rate, seconds, amplitude=0.5):
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def dominant_frequency(samples, rate):
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)]


@pytest.fixture
def wav16k(tmp_path):
    """1.0 s of a 16 kHz mono ramp (each sample distinct) -> 25 chunks of 40 ms exactly."""
    samples = (np.arange(16000) % 30000 - 15000).astype(np.int16)
    path = tmp_path / "ramp.wav"
    write_wav(path, samples, 16000)
    return path, samples


# --------------------------------------------------------------------------- WAV files


def test_wav_chunks_have_the_configured_size_and_end_with_a_final_chunk(tmp_path):
    samples = (np.arange(16500) % 3000).astype(np.int16)  # 1.03125 s: 25 full chunks + 500
    path = tmp_path / "speech.wav"
    write_wav(path, samples, 16000)
    mic = MicrophoneSource(MicrophoneConfig(source=str(path), realtime=False), clock=FakeClock())
    chunks = mic.read_all()
    assert [c.samples.size for c in chunks] == [640] * 25 + [500]
    assert all(c.sample_rate == 16000 and c.samples.dtype == np.int16 for c in chunks)
    assert [c.index for c in chunks] == list(range(26))
    assert [c.final for c in chunks] == [False] * 25 + [True]
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert mic.ended and mic.status == "ended" and mic.read() is None
    stats = mic.stats()
    assert stats.chunks == 26 and stats.samples == 16500 and stats.ended


@pytest.mark.parametrize("chunk_ms, size", [(20, 320), (100, 1600)])
def test_chunk_length_is_configurable(wav16k, chunk_ms, size):
    path, _ = wav16k
    mic = MicrophoneSource(MicrophoneConfig(source=str(path), chunk_ms=chunk_ms, realtime=False))
    chunks = mic.read_all()
    assert {c.samples.size for c in chunks} == {size} and len(chunks) == 16000 // size


def test_44k1_stereo_wav_is_downmixed_and_resampled_to_16k_mono(tmp_path):
    left = sine(440.0, 44100, 1.0, 0.5)
    right = sine(1500.0, 44100, 1.0, 0.25)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    path = tmp_path / "stereo.wav"
    write_wav(path, stereo.astype(np.float32), 44100, channels=2)

    def replay(channel):
        mic = MicrophoneSource(MicrophoneConfig(source=str(path), realtime=False, channel=channel))
        return np.concatenate([c.samples for c in mic.read_all()]), mic

    mixed, mic = replay(-1)
    assert abs(mixed.size - 16000) <= 1 and mixed.dtype == np.int16
    assert mic.stats().device_rate == 44100
    assert dominant_frequency(mixed[400:-400], 16000) == pytest.approx(440.0, abs=3)
    spectrum = np.abs(np.fft.rfft(mixed[400:-400] * np.hanning(mixed.size - 800)))
    freqs = np.fft.rfftfreq(mixed.size - 800, 1 / 16000)
    assert spectrum[np.argmin(abs(freqs - 1500))] > 0.2 * spectrum.max()  # the right channel is in
    right_only, _ = replay(1)
    assert dominant_frequency(right_only[400:-400], 16000) == pytest.approx(1500.0, abs=3)
    # mean of a 0.5 and a 0.25 sine: the 440 Hz part is at 0.25 full scale
    assert np.abs(right_only[400:-400]).max() / 32768 == pytest.approx(0.25, abs=0.01)


def test_real_time_replay_is_paced_by_the_clock(wav16k):
    path, samples = wav16k
    clock = FakeClock(10.0)
    mic = MicrophoneSource(MicrophoneConfig(source=str(path), realtime=True), clock=clock)
    mic.start()
    assert mic.read() is None  # the first chunk is complete only 40 ms after start
    clock.advance(0.039)
    assert mic.read() is None
    clock.advance(0.001)
    first = mic.read()
    assert first is not None and first.stamp == pytest.approx(10.0)
    clock.advance(0.2)
    batch = mic.read_all()
    assert len(batch) == 5
    assert [c.stamp for c in batch] == pytest.approx([10.04, 10.08, 10.12, 10.16, 10.2])
    clock.advance(10.0)
    rest = mic.read_all()
    assert len(rest) == 19 and rest[-1].final and mic.ended
    assert np.array_equal(
        np.concatenate([first.samples] + [c.samples for c in batch + rest]), samples
    )


def test_looped_wav_never_ends_and_chunks_span_the_seam(tmp_path):
    samples = np.arange(1000, dtype=np.int16)  # shorter than two chunks
    path = tmp_path / "short.wav"
    write_wav(path, samples, 16000)
    mic = MicrophoneSource(MicrophoneConfig(source=str(path), realtime=False, loop=True))
    chunks = [mic.read() for _ in range(5)]
    assert all(c is not None and c.samples.size == 640 and not c.final for c in chunks)
    stream = np.concatenate([c.samples for c in chunks])
    assert np.array_equal(stream, np.tile(samples, 4)[:3200])
    assert not mic.ended and mic.status == "ok"


def test_missing_wav_is_retried_with_backoff_until_it_appears(tmp_path, wav16k):
    _, samples = wav16k
    clock = FakeClock(0.0)
    path = tmp_path / "later.wav"
    config = MicrophoneConfig(
        source=str(path), realtime=False, retry_initial_s=0.5, retry_max_s=2.0
    )
    mic = MicrophoneSource(config, clock=clock)
    mic.start()
    assert mic.status == "error" and mic.last_error == f"WAV file {path} does not exist"
    assert mic.stats().retry_in_s == pytest.approx(0.5)
    clock.advance(0.5)
    assert mic.read() is None and mic.stats().retry_in_s == pytest.approx(1.0)
    write_wav(path, samples, 16000)
    clock.advance(0.9)
    assert mic.read() is None  # not due yet
    clock.advance(0.1)
    chunk = mic.read()
    assert chunk is not None and mic.status == "ok" and mic.stats().opens == 1


def test_unreadable_wav_reports_why(tmp_path):
    path = tmp_path / "eight_bit.wav"
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(bytes(800))
    mic = MicrophoneSource(MicrophoneConfig(source=str(path)))
    assert mic.read() is None
    assert mic.status == "error" and "only 16-bit PCM" in mic.last_error


# --------------------------------------------------------------------------- devices


class FakeFlags:
    def __init__(self, overflow=False):
        self.input_overflow = overflow

    def __bool__(self):
        return self.input_overflow


class FakeStream:
    def __init__(self, owner, **kwargs):
        self.kwargs = kwargs
        self.active = False
        self.closed = False
        owner.streams.append(self)

    def start(self):
        self.active = True

    def abort(self):
        self.active = False

    def close(self):
        self.closed = True

    def feed(self, interleaved, overflow=False):
        channels = self.kwargs["channels"]
        block = np.asarray(interleaved, dtype=np.int16).reshape(-1, channels)
        self.kwargs["callback"](block, block.shape[0], None, FakeFlags(overflow))


class FakeSoundDevice:
    """The parts of the sounddevice module the microphone uses."""

    def __init__(self, present=True, rates=(16000,), default_rate=48000.0, channels=2):
        self.present = present
        self.rates = rates
        self.default_rate = default_rate
        self.channels = channels
        self.streams = []

    def query_devices(self, device, kind):
        if not self.present:
            raise ValueError(f"No {kind} device matching {device!r}")
        return {
            "name": "Fake USB mic",
            "max_input_channels": self.channels,
            "default_samplerate": self.default_rate,
        }

    def check_input_settings(self, device=None, channels=None, dtype=None, samplerate=None):
        if samplerate not in self.rates:
            raise RuntimeError("Invalid sample rate")

    def InputStream(self, **kwargs):  # noqa: N802 - the sounddevice name
        return FakeStream(self, **kwargs)


def test_no_portaudio_or_no_device_gives_a_clear_error():
    # the real module: here PortAudio itself is missing; elsewhere the device name does not exist
    mic = MicrophoneSource(MicrophoneConfig(source="no-such-microphone-xyz"), clock=FakeClock())
    mic.start()
    assert mic.status == "error"
    assert mic.last_error.startswith(
        "microphone input device 'no-such-microphone-xyz' unavailable: "
    )
    assert mic.read() is None


def test_missing_device_backoff_then_capture_when_it_is_plugged_in():
    clock = FakeClock(0.0)
    sd = FakeSoundDevice(present=False)
    config = MicrophoneConfig(source="USB", retry_initial_s=0.5, retry_max_s=4.0)
    mic = MicrophoneSource(config, clock=clock, sounddevice=sd)
    mic.start()
    assert mic.status == "error"
    assert (
        mic.last_error
        == "microphone input device 'USB' unavailable: No input device matching 'USB'"
    )
    attempts = 0
    for _ in range(100):  # 4 s at 25 Hz
        clock.advance(0.04)
        before = mic.stats().retry_in_s
        mic.read()
        attempts += before == 0.0
    assert attempts == 3  # at 0.5, 1.5 and 3.5 s
    sd.present = True
    clock.advance(4.0)
    assert mic.read() is None and mic.status == "ok"  # opened; no audio yet
    stream = sd.streams[-1]
    assert stream.kwargs["samplerate"] == 16000 and stream.kwargs["blocksize"] == 640
    assert stream.kwargs["dtype"] == "int16" and stream.active
    block = np.arange(640, dtype=np.int16)
    stream.feed(block)
    chunk = mic.read()
    assert np.array_equal(chunk.samples, block)
    assert chunk.stamp == pytest.approx(clock.now - 0.04)
    assert mic.stats().opens == 1


def test_overruns_and_a_full_queue_are_counted():
    sd = FakeSoundDevice()
    mic = MicrophoneSource(MicrophoneConfig(queue_seconds=0.2), clock=FakeClock(), sounddevice=sd)
    mic.start()
    stream = sd.streams[-1]
    stream.feed(np.zeros(640), overflow=True)
    for i in range(9):  # the queue holds 0.2 s = 5 chunks
        stream.feed(np.full(640, i + 1))
    chunks = mic.read_all()
    assert len(chunks) == 5
    assert [int(c.samples[0]) for c in chunks] == [5, 6, 7, 8, 9]  # the oldest were dropped
    stats = mic.stats()
    assert stats.overruns == 1 and stats.dropped_chunks == 5 and stats.chunks == 5


def test_a_device_without_16khz_is_captured_at_its_rate_and_resampled():
    sd = FakeSoundDevice(rates=(48000,), default_rate=48000.0)
    mic = MicrophoneSource(
        MicrophoneConfig(channels=2, channel=0), clock=FakeClock(), sounddevice=sd
    )
    mic.start()
    stream = sd.streams[-1]
    assert stream.kwargs["samplerate"] == 48000 and stream.kwargs["blocksize"] == 1920
    left = sine(1000.0, 48000, 0.5, 0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    pcm = np.rint(stereo * 32767).astype(np.int16)
    for i in range(0, pcm.size, 2 * 1920):
        stream.feed(pcm[i : i + 2 * 1920])
    chunks = mic.read_all()
    assert all(c.samples.size == 640 for c in chunks) and len(chunks) in (12, 13)
    audio = np.concatenate([c.samples for c in chunks])
    assert dominant_frequency(audio[100:], 16000) == pytest.approx(1000.0, abs=5)
    assert np.abs(audio[200:]).max() / 32768 == pytest.approx(0.5, abs=0.01)
    assert mic.stats().device_rate == 48000


def test_a_silent_device_is_declared_lost_and_reopened():
    clock = FakeClock(0.0)
    sd = FakeSoundDevice()
    mic = MicrophoneSource(
        MicrophoneConfig(stall_seconds=1.0, retry_initial_s=0.5), clock=clock, sounddevice=sd
    )
    mic.start()
    first = sd.streams[-1]
    first.feed(np.zeros(640))
    assert mic.read() is not None
    clock.advance(1.5)  # nothing for 1.5 s
    assert mic.read() is None
    assert mic.status == "error"
    assert (
        mic.last_error
        == "microphone input device 'default' stopped delivering audio (nothing for 1.5 s)"
    )
    assert first.closed
    clock.advance(0.5)
    mic.read()
    assert mic.status == "ok" and len(sd.streams) == 2 and mic.stats().opens == 2


def test_a_device_that_opens_but_stays_silent_keeps_backing_off():
    clock = FakeClock(0.0)
    sd = FakeSoundDevice()
    config = MicrophoneConfig(stall_seconds=1.0, retry_initial_s=0.5, retry_max_s=4.0)
    mic = MicrophoneSource(config, clock=clock, sounddevice=sd)
    opened_at = []
    for _ in range(250):  # 10 s at 25 Hz
        before = len(sd.streams)
        mic.read()
        if len(sd.streams) > before:
            opened_at.append(round(clock.now, 2))
        clock.advance(0.04)
    # open, silent for 1 s, wait 0.5 / 1 / 2 s: reopened at about 0, 1.5, 3.5 and 6.5 s
    assert len(opened_at) == 4, opened_at
    gaps = [b - a for a, b in zip(opened_at, opened_at[1:])]
    assert gaps == pytest.approx([1.5, 2.0, 3.0], abs=0.1), opened_at
    assert mic.stats().chunks == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_ms": 10},
        {"chunk_ms": 150},
        {"chunk_ms": 40.0},
        {"channels": 0},
        {"channels": 1, "channel": 1},
        {"queue_seconds": 0},
        {"retry_initial_s": 0},
    ],
)
def test_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        MicrophoneConfig(**kwargs)


def test_close_stops_everything(wav16k):
    path, _ = wav16k
    mic = MicrophoneSource(MicrophoneConfig(source=str(path), realtime=False))
    assert mic.read() is not None
    mic.close()
    assert mic.read() is None and mic.status == "closed"
    pairs = dict(mic.stats().key_values())
    assert pairs["status"] == "closed" and pairs["chunks"] == "1"
