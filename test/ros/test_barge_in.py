"""Barge-in through the real nodes: asr_node and speaker_node in their own processes, a test
recording as the microphone (its echo follows what the speaker really played and when), the echo
canceller's reference from the speaker's own speech_played. Echo alone is never a barge-in nor an
utterance; a person over the echo stops the speaker and is heard in full; a microphone stream
with gaps; a stop request; the off switch. The nodes are started once for the module."""

from __future__ import annotations

import time

import pytest

from echo_fixtures import corpus
from uservlm_ros.speech.audio import word_error_rate
from uservlm_ros.tools.barge_in import BargeInRig, start_nodes

NAMESPACE = "bargein"
ANSWERS = 4


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    import rclpy
    from rclpy.context import Context

    logs = tmp_path_factory.mktemp("barge_in_logs")
    nodes = start_nodes(logs, NAMESPACE, logs / "speech")
    context = Context()
    rclpy.init(context=context)
    rig = BargeInRig(context, NAMESPACE)
    try:
        rig.idle(corpus(ANSWERS)[0])
        assert rig.until(rig.ready, 120), (nodes.exited(), (logs / "asr_node.log").read_text())
        rig.until(lambda: rig.diagnostic("asr_node", "state") == "active", 60)
        yield rig
    finally:
        rig.close()
        rclpy.try_shutdown(context=context)
        nodes.stop()


def test_echo_alone_is_never_a_barge_in_nor_an_utterance(rig):
    for recording in corpus(ANSWERS)[:3]:
        run = rig.play(recording, with_person=False, settle=1.0)
        assert run.reason == "finished", run
        assert run.barge_ins == [], run
        assert run.utterances == [], f"the robot heard itself: {run.utterances}"


def test_a_person_over_the_echo_stops_the_speaker_and_is_heard_in_full(rig):
    recording = corpus(ANSWERS)[0]
    run = rig.play(recording)
    assert run.reason == "barge_in", run
    assert len(run.barge_ins) == 1 and run.false_barge_ins == 0, run
    assert 0.0 < run.reaction <= 0.6, run  # the benchmark measures the median
    start, end, text = run.heard_person()
    assert start <= run.person_onset, "the start of the person's words was cut"
    assert end >= run.person_end - 0.3
    assert word_error_rate(recording.person_text, text) <= 0.25, (recording.person_text, text)
    # The interrupted turn's pieces still on their way are dropped, and counted.
    before = len(rig.states)
    rig.send_answer(recording, run.turn)
    assert rig.until(lambda: int(rig.diagnostic("speaker_node", "dropped_pieces") or 0) > 0, 5)
    assert not any(s.speaking for s in rig.states[before:]), "a stopped turn spoke again"


def test_gaps_in_the_microphone_stream(rig):
    recording = corpus(ANSWERS)[1]
    run = rig.play(recording, drop_every=30)  # one 40 ms chunk in 30 lost
    assert run.dropped_chunks > 0
    assert run.reason == "barge_in" and run.false_barge_ins == 0, run
    assert run.heard_person() is not None
    assert rig.until(lambda: int(rig.diagnostic("asr_node", "audio_gaps") or 0) > 0, 5)


def test_stop_speaking_stops_the_turn_at_once(rig):
    recording = corpus(ANSWERS)[2]
    turn = "stop-request"
    rig.idle(recording)
    first = len(rig.states)
    rig.send_answer(recording, turn)
    assert rig.until(lambda: any(s.speaking for s in rig.states[first:]), 10)
    time.sleep(0.5)
    sent = rig.stop_speaking(turn)

    def stopped():
        return [s for s in rig.states[first:] if not s.speaking and s.turn_id == turn]

    assert rig.until(stopped, 5)
    state = stopped()[0]
    assert state.reason == "stopped"
    stamp = state.header.stamp.sec + state.header.stamp.nanosec * 1e-9
    assert 0.0 <= stamp - sent <= 0.1, stamp - sent  # stopped within 100 ms of the request
    dropped = int(rig.diagnostic("speaker_node", "dropped_pieces") or 0)
    rig.send_answer(recording, turn)
    assert rig.until(
        lambda: int(rig.diagnostic("speaker_node", "dropped_pieces") or 0) > dropped, 5
    )


def test_off_switch_is_the_deaf_gate(rig):
    recording = corpus(ANSWERS)[3]
    rig.set_asr_parameter("barge_in.enabled", False)
    try:
        assert rig.until(lambda: rig.diagnostic("asr_node", "barge_in_enabled") == "false", 5)
        run = rig.play(recording, settle=1.0)
    finally:
        rig.set_asr_parameter("barge_in.enabled", True)
    assert run.reason == "finished" and run.barge_ins == [], run
    speaking_until = run.stopped + 0.3  # tail_ms
    assert all(start >= speaking_until for start, _, _ in run.utterances), run.utterances
    with pytest.raises(RuntimeError, match="echo_delay"):
        rig.set_asr_parameter("barge_in.echo_delay_ms", 5000.0)
