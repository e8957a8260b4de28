"""uservlm_ros.robot.speaker_sink: WAV output without a device, callbacks and their order, cancel,
and device playback against a fake sounddevice module."""

import re
import threading
import time

import numpy as np
import pytest

from uservlm_ros.robot.speaker_sink import SpeakerConfig, SpeakerSink
from uservlm_ros.speech.audio import read_wav


def tone(seconds, rate=22050, amplitude=0.3):
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


class Recorder:
    """Collects (event, id, playback) from both callbacks, in order."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def start(self, playback):
        with self.lock:
            self.events.append(("start", playback.id, playback))

    def end(self, playback):
        with self.lock:
            self.events.append(("end", playback.id, playback))

    def order(self):
        return [(kind, ident) for kind, ident, _ in self.events]


def file_sink(tmp_path, realtime=False, **kwargs):
    recorder = Recorder()
    sink = SpeakerSink(
        SpeakerConfig(
            mode="file", output_dir=str(tmp_path / "speech"), realtime=realtime, **kwargs
        ),
        on_start=recorder.start,
        on_end=recorder.end,
    )
    sink.start()
    return sink, recorder


def test_without_a_device_each_utterance_becomes_a_wav_and_callbacks_fire_in_order(tmp_path):
    sink, recorder = file_sink(tmp_path)
    first, second = tone(0.3), tone(0.2, rate=16000)
    assert sink.play(first, 22050) == 1
    assert sink.play(second, 16000) == 2
    assert sink.wait_idle(5.0)
    sink.close()
    assert recorder.order() == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    files = sorted((tmp_path / "speech").iterdir())
    assert [re.fullmatch(r"\d{8}-\d{6}-\d{3}_(\d+)\.wav", f.name).group(1) for f in files] == [
        "1",
        "2",
    ]
    samples, rate, channels = read_wav(files[0])
    assert (rate, channels) == (22050, 1) and np.array_equal(samples, first)
    assert np.array_equal(read_wav(files[1])[0], second)
    playback = recorder.events[1][2]
    assert playback.completed and playback.output == "file" and playback.path == str(files[0])
    assert playback.seconds == pytest.approx(0.3, abs=1e-3)
    assert playback.queued_at <= playback.started_at <= playback.ended_at
    stats = sink.stats()
    assert stats.mode == "file" and stats.played == 2 and stats.queued == 0 and not stats.speaking


def test_auto_mode_falls_back_to_files_and_says_why(tmp_path):
    class NoDevice:
        def query_devices(self, device, kind):
            raise ValueError("No output device matching 'default'")

    sink = SpeakerSink(
        SpeakerConfig(mode="auto", output_dir=str(tmp_path), realtime=False),
        sounddevice=NoDevice(),
    )
    sink.start()
    stats = sink.stats()
    assert stats.mode == "file"
    assert (
        "no output device" in stats.last_error and "No output device matching" in stats.last_error
    )
    sink.play(tone(0.05), 22050)
    assert sink.wait_idle(5.0)
    sink.close()
    assert len(list(tmp_path.glob("*.wav"))) == 1


def test_auto_mode_on_this_machine_still_produces_output(tmp_path):
    sink = SpeakerSink(SpeakerConfig(output_dir=str(tmp_path), realtime=False))
    sink.start()
    assert sink.stats().mode in ("file", "device")
    sink.close()


def test_realtime_end_fires_after_the_audio_duration_and_play_does_not_block(tmp_path):
    sink, recorder = file_sink(tmp_path, realtime=True)
    begin = time.monotonic()
    sink.play(tone(0.25), 22050)
    assert time.monotonic() - begin < 0.1  # queued, not played, in the caller's thread
    assert sink.wait_idle(5.0)
    sink.close()
    (_, _, started), (_, _, ended) = recorder.events
    assert ended.ended_at - started.started_at >= 0.25
    assert ended.ended_at - started.started_at < 1.0


def test_cancel_stops_the_current_utterance_and_drops_the_queue(tmp_path):
    sink, recorder = file_sink(tmp_path, realtime=True)
    sink.play(tone(5.0), 22050)
    sink.play(tone(1.0), 22050)
    deadline = time.monotonic() + 5.0
    while not sink.speaking and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sink.speaking
    assert sink.cancel() == 2
    assert sink.wait_idle(2.0)
    sink.close()
    assert recorder.order() == [("start", 1), ("end", 1)]
    assert not recorder.events[1][2].completed
    assert sink.stats().cancelled == 2 and sink.stats().played == 0


def test_full_queue_and_bad_audio_are_refused(tmp_path):
    sink, _ = file_sink(tmp_path, realtime=True, max_queue=1)
    sink.play(tone(2.0), 22050)  # plays
    deadline = time.monotonic() + 5.0
    while not sink.speaking and time.monotonic() < deadline:
        time.sleep(0.005)
    sink.play(tone(0.1), 22050)  # waits
    with pytest.raises(ValueError, match="queue is full"):
        sink.play(tone(0.1), 22050)
    with pytest.raises(ValueError, match="zero samples"):
        sink.play(np.zeros(0, np.int16), 22050)
    with pytest.raises(ValueError, match="NaN"):
        sink.play(np.array([0.0, np.nan], np.float32), 22050)
    with pytest.raises(ValueError, match="sample rate"):
        sink.play(tone(0.1), 100)
    sink.cancel()
    sink.close()
    assert sink.stats().refused == 1


def test_float_audio_is_written_as_int16(tmp_path):
    sink, _ = file_sink(tmp_path)
    sink.play(np.array([0.0, 0.5, -0.5, 1.5], np.float32), 16000)
    assert sink.wait_idle(5.0)
    sink.close()
    samples, _, _ = read_wav(next((tmp_path / "speech").iterdir()))
    assert samples.tolist() == [0, 16384, -16384, 32767]


def test_a_failing_callback_does_not_stop_playback(tmp_path):
    ends = []

    def broken_start(playback):
        raise RuntimeError("subscriber gone")

    sink = SpeakerSink(
        SpeakerConfig(mode="file", output_dir=str(tmp_path), realtime=False),
        on_start=broken_start,
        on_end=lambda p: ends.append(p.id),
    )
    sink.start()
    sink.play(tone(0.05), 22050)
    sink.play(tone(0.05), 22050)
    assert sink.wait_idle(5.0)
    sink.close()
    assert ends == [1, 2] and sink.stats().callback_errors == 2


def test_play_before_start_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="start"):
        SpeakerSink(SpeakerConfig(mode="file", output_dir=str(tmp_path))).play(tone(0.1), 22050)


@pytest.mark.parametrize("kwargs", [{"mode": "alsa"}, {"output_dir": ""}, {"max_queue": 0}])
def test_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        SpeakerConfig(**kwargs)


# --------------------------------------------------------------------------- device (fake)


class FakeOutputStream:
    def __init__(self, owner, **kwargs):
        if owner.broken:
            raise RuntimeError("Device unavailable")
        self.owner = owner
        self.kwargs = kwargs
        self.latency = 0.02
        self.written = []
        self.stopped = self.aborted = self.closed = False
        owner.streams.append(self)

    def start(self):
        pass

    def write(self, block):
        self.owner.events.append("write")
        self.written.append(np.array(block).reshape(-1))

    def stop(self):
        self.owner.events.append("stop")
        self.stopped = True

    def abort(self):
        self.aborted = True

    def close(self):
        self.closed = True


class FakeSoundDevice:
    def __init__(self, rates=(22050,), default_rate=48000.0):
        self.rates = rates
        self.default_rate = default_rate
        self.broken = False
        self.streams = []
        self.events = []

    def query_devices(self, device, kind):
        return {
            "name": "Fake speaker",
            "max_output_channels": 2,
            "default_samplerate": self.default_rate,
        }

    def check_output_settings(self, device=None, channels=None, dtype=None, samplerate=None):
        if samplerate not in self.rates:
            raise RuntimeError("Invalid sample rate")

    def OutputStream(self, **kwargs):  # noqa: N802 - the sounddevice name
        return FakeOutputStream(self, **kwargs)


def test_device_playback_writes_every_sample_between_start_and_end(tmp_path):
    sd = FakeSoundDevice()
    events = sd.events
    sink = SpeakerSink(
        SpeakerConfig(output_dir=str(tmp_path)),
        sounddevice=sd,
        on_start=lambda p: events.append(("start", p.started_at)),
        on_end=lambda p: events.append(("end", p.completed)),
    )
    before = time.monotonic()
    sink.start()
    assert sink.stats().mode == "device"
    audio = tone(0.5)
    sink.play(audio, 22050)
    assert sink.wait_idle(5.0)
    sink.close()
    stream = sd.streams[0]
    assert stream.kwargs["samplerate"] == 22050 and stream.kwargs["dtype"] == "int16"
    assert np.array_equal(np.concatenate(stream.written), audio)
    assert stream.stopped and stream.closed
    kinds = [e if isinstance(e, str) else e[0] for e in events]
    assert kinds[0] == "start" and kinds[1] == "write" and kinds[-2:] == ["stop", "end"]
    started_at = events[0][1]
    assert before + 0.02 <= started_at  # first sample out = first write + output latency
    assert events[-1] == ("end", True)
    assert not list(tmp_path.glob("*.wav"))


def test_device_without_the_rate_gets_resampled_audio(tmp_path):
    sd = FakeSoundDevice(rates=(48000,), default_rate=48000.0)
    sink = SpeakerSink(SpeakerConfig(mode="device", output_dir=str(tmp_path)), sounddevice=sd)
    sink.start()
    sink.play(tone(0.5), 22050)
    assert sink.wait_idle(5.0)
    sink.close()
    stream = sd.streams[0]
    assert stream.kwargs["samplerate"] == 48000
    assert abs(sum(b.size for b in stream.written) - 24000) <= 1


def test_a_device_error_writes_the_utterance_to_a_wav_instead(tmp_path):
    sd = FakeSoundDevice()
    sd.broken = True
    recorder = Recorder()
    sink = SpeakerSink(
        SpeakerConfig(mode="device", output_dir=str(tmp_path), realtime=False),
        sounddevice=sd,
        on_start=recorder.start,
        on_end=recorder.end,
    )
    sink.start()
    sink.play(tone(0.1), 22050)
    assert sink.wait_idle(5.0)
    sink.close()
    assert recorder.order() == [("start", 1), ("end", 1)]
    playback = recorder.events[1][2]
    assert playback.output == "file" and playback.path.endswith("_1.wav")
    assert "Device unavailable" in playback.error
    assert sink.stats().status == "error" and "Device unavailable" in sink.stats().last_error


def test_pieces_of_one_turn_join_its_utterance_gaplessly_in_a_file(tmp_path):
    # realtime: the first piece "plays" for its duration, and the turn's next pieces join it.
    sink, recorder = file_sink(tmp_path, realtime=True)
    first, second, third, other = tone(0.3), tone(0.2), tone(0.1, rate=16000), tone(0.1)
    assert sink.play(first, 22050, key="turn-1") == 1
    assert sink.play(second, 22050, key="turn-1") == 1  # joined
    assert sink.play(third, 16000, key="turn-1") == 2  # another rate cannot join
    assert sink.play(other, 22050, key="turn-2") == 3
    assert sink.wait_idle(5.0)
    sink.close()
    assert recorder.order() == [
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
        ("start", 3),
        ("end", 3),
    ]
    files = sorted((tmp_path / "speech").iterdir(), key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    assert len(files) == 3
    assert np.array_equal(read_wav(files[0])[0], np.concatenate([first, second]))
    joined = recorder.events[1][2]
    assert joined.completed and joined.seconds == pytest.approx(0.5, abs=1e-3)
    assert joined.ended_at - joined.started_at >= 0.49  # it lasted the joined duration
    assert sink.stats().played == 3


def test_a_piece_after_its_utterance_ended_or_was_cancelled_starts_a_new_one(tmp_path):
    sink, recorder = file_sink(tmp_path)  # not realtime: an utterance ends when it is written
    assert sink.play(tone(0.1), 22050, key="turn-1") == 1
    assert sink.wait_idle(5.0)
    assert sink.play(tone(0.1), 22050, key="turn-1") == 2  # too late to join: a new utterance
    assert sink.wait_idle(5.0)
    sink.close()
    assert recorder.order() == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]

    sink, recorder = file_sink(tmp_path / "cancel", realtime=True)
    assert sink.play(tone(2.0), 22050, key="turn-1") == 1
    deadline = time.monotonic() + 5
    while not sink.speaking and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.cancel() == 1
    assert sink.play(tone(0.1), 22050, key="turn-1") == 2  # never joins a cancelled utterance
    assert sink.wait_idle(5.0)
    sink.close()
    assert [(kind, ident, p.completed) for kind, ident, p in recorder.events if kind == "end"] == [
        ("end", 1, False),
        ("end", 2, True),
    ]


def test_pieces_of_one_turn_play_as_one_device_stream(tmp_path):
    sd = FakeSoundDevice()
    sink = SpeakerSink(SpeakerConfig(mode="device", output_dir=str(tmp_path)), sounddevice=sd)
    release = threading.Event()
    started = []
    sink.on_start = lambda playback: (started.append(playback.id), release.wait(5))
    sink.start()
    pieces = [tone(0.2), tone(0.3), tone(0.1)]
    assert sink.play(pieces[0], 22050, key="turn-7") == 1
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    # The first piece is playing (on_start holds the worker): the others join the open stream.
    assert [sink.play(piece, 22050, key="turn-7") for piece in pieces[1:]] == [1, 1]
    release.set()
    assert sink.wait_idle(5.0)
    sink.close()
    assert len(sd.streams) == 1 and started == [1]
    assert np.array_equal(np.concatenate(sd.streams[0].written), np.concatenate(pieces))
    assert sd.streams[0].stopped
    assert sink.stats().played == 1 and sink.stats().seconds_played == pytest.approx(0.6, abs=1e-3)


def test_a_joined_utterance_is_refused_beyond_max_seconds(tmp_path):
    sink, _ = file_sink(tmp_path, realtime=True, max_seconds=1.0)
    sink.play(tone(0.8), 22050, key="turn-1")
    with pytest.raises(ValueError, match="longer than 1.0 s"):
        sink.play(tone(0.3), 22050, key="turn-1")
    assert sink.stats().refused == 1
    sink.close()
