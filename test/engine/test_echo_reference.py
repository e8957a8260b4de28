"""ReferenceTimeline: pieces joined by time at 16 kHz, completeness while the robot speaks."""

from __future__ import annotations

import numpy as np
import pytest

from uservlm_ros.engines.echo.reference import ReferenceTimeline
from uservlm_ros.robot.resampler import StreamingResampler
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE


def tone(seconds: float, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def test_joined_pieces_equal_one_stream_resampled_at_16k():
    audio = tone(1.0)
    timeline = ReferenceTimeline()
    rate = 22050
    for start in range(0, audio.size, 1103):  # 50 ms pieces
        timeline.add(audio[start : start + 1103], rate, 5.0 + start / rate)
    resampler = StreamingResampler(rate, ASR_SAMPLE_RATE)
    whole = resampler.process(audio)
    window, complete = timeline.window(5.0 - resampler.delay_seconds, whole.size)
    assert complete
    np.testing.assert_allclose(window, whole, atol=1e-5)
    assert timeline.pieces == -(-audio.size // 1103)


def test_window_is_placed_by_time_and_zero_elsewhere():
    timeline = ReferenceTimeline()
    # 16 kHz: no resampling
    timeline.add(np.full(1600, 0.5, dtype=np.float32), ASR_SAMPLE_RATE, 2.0)
    window, complete = timeline.window(1.95, 3200)
    assert complete
    assert np.all(window[:800] == 0.0) and np.all(window[2400:] == 0.0)
    assert np.all(window[800:2400] == 0.5)


def test_speaking_without_its_reference_is_incomplete_until_it_arrives():
    timeline = ReferenceTimeline()
    timeline.set_speaking(True, 10.0)
    _, complete = timeline.window(10.1, 160)
    assert not complete
    _, complete = timeline.window(9.0, 160)  # before the robot spoke: silence is known
    assert complete
    timeline.add(np.ones(3200, dtype=np.float32) * 0.1, ASR_SAMPLE_RATE, 10.0)  # arrives late
    _, complete = timeline.window(10.1, 160)
    assert complete
    timeline.set_speaking(False, 10.2)
    assert not timeline.speaking
    _, complete = timeline.window(10.3, 160)  # after the stop: silence is known again
    assert complete
    assert timeline.speaking_between(10.3, 10.31, tail=0.2)
    assert not timeline.speaking_between(10.5, 10.51, tail=0.2)


def test_a_speaking_state_never_closed_times_out():
    timeline = ReferenceTimeline(max_speaking_s=5.0)
    timeline.set_speaking(True, 0.0)
    timeline.note_time(6.0)
    assert timeline.stuck
    assert not timeline.speaking_between(5.5, 6.0)


def test_old_reference_is_forgotten():
    timeline = ReferenceTimeline(history_s=2.0)
    timeline.add(np.ones(1600, dtype=np.float32), ASR_SAMPLE_RATE, 1.0)
    timeline.set_speaking(True, 1.0)
    timeline.set_speaking(False, 1.1)
    timeline.note_time(10.0)
    window, complete = timeline.window(1.0, 1600)
    assert complete and not window.any()


@pytest.mark.parametrize(
    "samples,rate,start,match",
    [
        (np.zeros((2, 10), np.float32), 16000, 0.0, "1-D"),
        (np.array([np.inf], np.float32), 16000, 0.0, "NaN"),
        (np.zeros(10, np.float32), 1000, 0.0, "sample_rate"),
        (np.zeros(10, np.float32), 16000, float("nan"), "start"),
    ],
)
def test_bad_reference_is_refused(samples, rate, start, match):
    with pytest.raises(ValueError, match=match):
        ReferenceTimeline().add(samples, rate, start)
