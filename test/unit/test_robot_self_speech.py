"""uservlm_ros.robot.self_speech: which microphone chunks overlap the robot's own speech."""

import pytest

from uservlm_ros.robot.self_speech import SelfSpeechGate

CHUNK = 0.04


def chunk_ignored(gate, start, length=CHUNK):
    return gate.should_ignore(start, start + length)


def test_nothing_is_ignored_before_the_robot_speaks():
    gate = SelfSpeechGate()
    assert not any(chunk_ignored(gate, t / 10) for t in range(100))
    assert gate.stats().passed == 100 and gate.stats().ignored == 0


def test_speech_plus_tail_is_ignored_and_the_rest_passes():
    gate = SelfSpeechGate(tail_seconds=0.3)
    gate.set_speaking(True, 10.0)
    gate.set_speaking(False, 12.0)
    assert not chunk_ignored(gate, 9.90)  # [9.90, 9.94]: before
    assert chunk_ignored(gate, 9.98)  # straddles the start
    assert chunk_ignored(gate, 11.0)
    assert chunk_ignored(gate, 12.20)  # in the echo tail
    assert chunk_ignored(gate, 12.29)  # starts inside the tail
    assert not chunk_ignored(gate, 12.31)  # after speech + tail
    assert gate.stats().ignored == 4 and gate.stats().passed == 2


def test_lead_widens_the_interval_before_speech():
    gate = SelfSpeechGate(tail_seconds=0.0, lead_seconds=0.1)
    gate.set_speaking(True, 5.0)
    gate.set_speaking(False, 6.0)
    assert chunk_ignored(gate, 4.88)  # ends at 4.92, inside the lead
    assert not chunk_ignored(gate, 4.80)
    assert not chunk_ignored(gate, 6.01)


def test_while_speaking_everything_after_the_start_is_ignored():
    gate = SelfSpeechGate()
    gate.set_speaking(True, 3.0)
    assert gate.speaking
    assert not chunk_ignored(gate, 2.5)
    assert chunk_ignored(gate, 3.0) and chunk_ignored(gate, 60.0)


def test_a_stuck_speaking_state_expires():
    gate = SelfSpeechGate(tail_seconds=0.3, max_speaking_seconds=20.0)
    gate.set_speaking(True, 0.0)
    assert chunk_ignored(gate, 19.0)
    assert not chunk_ignored(gate, 20.5)  # past start + max + tail
    assert gate.stats().stuck and gate.stats().speaking
    gate.set_speaking(False, 100.0)  # the late false closes it at the cap
    assert not chunk_ignored(gate, 50.0)
    assert not gate.stats().stuck


def test_repeated_and_unmatched_changes_are_harmless():
    gate = SelfSpeechGate(tail_seconds=0.0)
    gate.set_speaking(False, 1.0)  # false without true
    assert not chunk_ignored(gate, 1.0)
    gate.set_speaking(True, 2.0)
    gate.set_speaking(True, 2.5)  # repeat: the earliest start stays
    gate.set_speaking(False, 3.0)
    gate.set_speaking(False, 3.5)  # repeat: no new interval
    assert chunk_ignored(gate, 2.1)
    assert not chunk_ignored(gate, 3.2)
    assert gate.stats().intervals == 1


def test_an_end_stamped_before_the_start_gives_an_empty_interval_plus_tail():
    gate = SelfSpeechGate(tail_seconds=0.3)
    gate.set_speaking(True, 5.0)
    gate.set_speaking(False, 4.0)  # clocks disagree: treated as ending at the start
    assert chunk_ignored(gate, 5.1)
    assert not chunk_ignored(gate, 5.4)
    assert not chunk_ignored(gate, 4.5)


def test_late_chunks_are_judged_by_capture_time_within_the_history():
    gate = SelfSpeechGate(tail_seconds=0.3, history_seconds=30.0)
    gate.set_speaking(True, 10.0)
    gate.set_speaking(False, 11.0)
    gate.set_speaking(True, 20.0)
    gate.set_speaking(False, 21.0)
    assert chunk_ignored(gate, 10.5)  # arrives after later intervals: still ignored
    assert not chunk_ignored(gate, 15.0)
    assert chunk_ignored(gate, 25.0, length=0.0) is False
    gate.should_ignore(100.0)  # time moves on: the old intervals are pruned
    assert gate.stats().intervals == 0


def test_chunk_without_an_end_is_a_point():
    gate = SelfSpeechGate(tail_seconds=0.0)
    gate.set_speaking(True, 1.0)
    gate.set_speaking(False, 2.0)
    assert gate.should_ignore(1.5)
    assert not gate.should_ignore(2.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tail_seconds": -0.1},
        {"lead_seconds": 11},
        {"max_speaking_seconds": 0},
        {"history_seconds": 0},
    ],
)
def test_parameters_are_validated(kwargs):
    with pytest.raises(ValueError):
        SelfSpeechGate(**kwargs)
