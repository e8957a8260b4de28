"""StreamListener behind the EchoGate: what the segmenter and Whisper hear of a person who talks
over the robot (pre-roll: their first word kept), and the deaf gate dropping what it half heard."""

from __future__ import annotations

import numpy as np
import pytest

from echo_fixtures import corpus
from uservlm_ros.engines.asr.listening import StreamListener
from uservlm_ros.engines.asr.vad import VoiceActivitySegmenter
from uservlm_ros.engines.echo.gate import EchoGate, EchoGateConfig
from uservlm_ros.engines.echo.replay import replay
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, word_error_rate


def listen(recording, config: EchoGateConfig, stop_at: float | None):
    """Feed ``recording`` (the speaker stopped at ``stop_at``) through a StreamListener as
    asr_node does: references and speaking changes as they arrive, microphone chunks of 40 ms."""
    barge_ins = []
    listener = StreamListener(VoiceActivitySegmenter(), EchoGate(config), barge_ins.append)
    played = recording.played(stop_at)
    rate = recording.reference_rate
    step = rate // 20
    end = recording.reference_start + played.size / rate
    events = [(recording.reference_start, "speaking", True), (end, "speaking", False)]
    events += [
        (recording.reference_start + i / rate, "piece", played[i : i + step])
        for i in range(0, played.size, step)
    ]
    events.sort(key=lambda e: (e[0], e[1] != "speaking"))
    heard = []
    for samples, stamp in recording.chunks(40, stop_at):
        arrival = stamp + samples.size / ASR_SAMPLE_RATE
        while events and events[0][0] <= arrival:
            at, kind, payload = events.pop(0)
            if kind == "piece":
                listener.gate.add_reference(payload, rate, at)
            else:
                listener.gate.set_speaking(payload, at)
        heard += listener.feed(samples, stamp)
    heard += listener.flush()
    return listener, heard, barge_ins


@pytest.fixture(scope="module")
def whisper():
    from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine

    engine = ASREngine(ASRConfig(model="base", beam_size=1, language="en"))
    engine.load()
    return engine


def test_the_person_over_the_robot_is_one_whole_utterance(whisper):
    for recording in corpus()[:3]:
        stop_at = replay(recording, EchoGate(), stop_after_s=0.15).stopped_at
        assert stop_at is not None
        listener, heard, barge_ins = listen(recording, EchoGateConfig(), stop_at)
        assert len(barge_ins) == 1 and listener.barge_ins == 1
        assert barge_ins[0].onset >= recording.person_onset - 0.3
        assert len(heard) == 1, [(h.start, h.end) for h in heard]
        utterance = heard[0]
        assert utterance.start <= recording.person_onset  # nothing cut at its start
        assert utterance.end >= recording.person_end - 0.3
        text = whisper.transcribe(utterance.samples, ASR_SAMPLE_RATE).text
        assert word_error_rate(recording.person_text, text) <= 0.25, (recording.person_text, text)


def test_the_robots_echo_alone_is_never_an_utterance():
    recording = corpus()[3].without_person()
    listener, heard, barge_ins = listen(recording, EchoGateConfig(), None)
    assert heard == [] and barge_ins == []
    assert listener.chunks_ignored > 0


def test_the_deaf_gate_hears_nothing_while_the_robot_speaks():
    recording = corpus()[4]
    listener, heard, barge_ins = listen(recording, EchoGateConfig(enabled=False), None)
    assert barge_ins == []
    tail = EchoGateConfig().tail_ms / 1000.0
    for utterance in heard:  # only what the person said after the robot and its tail
        assert utterance.start >= recording.reference_end + tail - 0.05


def test_without_a_gate_everything_is_heard():
    rng = np.random.default_rng(0)
    listener = StreamListener(VoiceActivitySegmenter())
    for index in range(10):
        listener.feed(rng.integers(-100, 100, 640).astype(np.int16), 5.0 + 0.04 * index)
    assert listener.chunks_heard == 10 and listener.chunks_ignored == 0
    assert listener.time_of(640) == pytest.approx(5.04)


def test_a_bad_chunk_is_refused_and_changes_nothing():
    listener = StreamListener(VoiceActivitySegmenter(), EchoGate(EchoGateConfig()))
    with pytest.raises(ValueError, match="NaN"):
        listener.feed(np.array([0.0, np.nan], np.float32), 1.0)
    assert listener.chunks_heard == 0 and listener.gate.stats().chunks == 0
