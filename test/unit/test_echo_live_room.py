"""LiveRoom: the microphone of a robot whose speaker really plays. The echo follows what the
speaker reported playing (placed by its stamps, at the path's delay and level), a stop cuts it
even when the report of a block comes after the stop, the person's words land where they were
put, and a microphone chunk knows when the speaker's report is still missing."""

from __future__ import annotations

import numpy as np
import pytest

from uservlm_ros.engines.echo.live import LiveRoom
from uservlm_ros.engines.echo.room import EchoPath, active_rms
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, to_float32

RATE = 22050  # the speaker's (Piper's) rate
T0 = 5000.0  # the speaker's first sample out, robot clock


def voice(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    """Speech-like int16: noise under a 4 Hz syllable envelope, about -20 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (rng.standard_normal(t.size) * envelope * 3000).astype(np.int16)


@pytest.fixture
def room():
    path = EchoPath(delay_s=0.05, gain_db=-6.0, rt60_s=0.2)
    return LiveRoom(path, voice(2.0, ASR_SAMPLE_RATE, seed=2), seed=3)


def play(room: LiveRoom, seconds: float, turn: str = "t1", block: float = 0.02) -> None:
    audio = voice(seconds, RATE)
    step = int(RATE * block)
    room.speaking(True, T0, turn)
    for offset in range(0, audio.size, step):
        room.played(audio[offset : offset + step], RATE, T0 + offset / RATE, turn)


def heard(room: LiveRoom, start: float, seconds: float) -> np.ndarray:
    samples, complete = room.samples(start, int(seconds * ASR_SAMPLE_RATE))
    assert complete
    return to_float32(samples).astype(np.float64)


def level_db(samples: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.sqrt(np.mean(samples**2))), 1e-12))


def test_the_echo_follows_what_was_played_at_the_paths_delay_and_level(room):
    play(room, 1.0)
    room.speaking(False, T0 + 1.0, "t1", "finished")
    before = heard(room, T0 - 0.5, 0.5 + 0.045)  # until just before the direct sound
    echo = heard(room, T0 + 0.1, 0.8)
    assert level_db(echo) - level_db(before) > 25  # the echo, far above the room's noise
    target = 20 * np.log10(room.person_level) - 6.0  # gain_db relative to the person
    assert abs(20 * np.log10(active_rms(echo)) - target) < 2.0
    after = heard(room, T0 + 1.0 + 0.05 + 0.25, 0.5)  # delay and RT60 later: gone
    assert level_db(after) - level_db(before) < 3


def test_a_stop_cuts_the_echo_even_when_it_is_reported_before_the_blocks(room):
    audio = voice(1.0, RATE)
    room.speaking(True, T0, "t1")
    room.played(audio[: RATE // 2], RATE, T0, "t1")
    room.speaking(False, T0 + 0.3, "t1", "barge_in")  # arrives before the later blocks
    room.played(audio[RATE // 2 :], RATE, T0 + 0.5, "t1")  # reported ahead, never played
    noise = heard(room, T0 - 0.5, 0.5)
    tail = heard(room, T0 + 0.3 + 0.05 + 0.25, 0.6)
    assert level_db(tail) - level_db(noise) < 3, "the echo of what never played was heard"
    assert level_db(heard(room, T0 + 0.1, 0.2)) - level_db(noise) > 25


def test_the_persons_words_land_where_they_were_put(room):
    words = np.concatenate([np.zeros(8000, np.int16), voice(1.0, ASR_SAMPLE_RATE, seed=4)])
    onset, end = room.say(words, at=T0 + 2.0)
    assert onset == T0 + 2.0 and end == pytest.approx(T0 + 3.0, abs=0.01)  # silence skipped
    before = heard(room, T0 + 1.5, 0.45)
    during = heard(room, onset, 0.9)
    assert level_db(during) - level_db(before) > 25
    assert abs(20 * np.log10(active_rms(during)) - 20 * np.log10(room.person_level)) < 2.0


def test_a_chunk_knows_the_speakers_report_is_missing(room):
    room.speaking(True, T0, "t1")
    _, complete = room.samples(T0 + 0.1, 640)
    assert not complete
    play(room, 0.5)
    _, complete = room.samples(T0 + 0.1, 640)
    assert complete


def test_a_silent_robot_voice_cannot_set_the_echo_level():
    with pytest.raises(ValueError, match="robot_voice"):
        LiveRoom(EchoPath(0.05, -6.0, 0.2), np.zeros(16000, np.int16))
