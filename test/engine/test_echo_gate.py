"""EchoGate on synthetic echo recordings: no false barge-in on the robot's own voice, the person
heard over it, and the stream's faults (gaps, late or missing reference, off switch)."""

from __future__ import annotations

import statistics
import threading

import numpy as np
import pytest

from echo_fixtures import corpus
from uservlm_ros.engines.echo.gate import EchoGate, EchoGateConfig
from uservlm_ros.engines.echo.replay import replay
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE

EARLY_S = 0.3


def first_true(run, recording):
    return [
        (b, at)
        for b, at in zip(run.barge_ins, run.detected_in_chunk)
        if b.onset >= recording.person_onset - EARLY_S
    ]


def test_echo_alone_over_twenty_answers_is_never_a_barge_in():
    recordings = corpus()
    assert len(recordings) >= 20
    false = {r.name: len(replay(r.without_person(), EchoGate()).barge_ins) for r in recordings}
    assert sum(false.values()) == 0, false


def test_a_person_over_the_echo_is_detected_soon_after_the_onset():
    reactions, onset_errors = [], []
    for recording in corpus():
        run = replay(recording, EchoGate())
        early = [b for b in run.barge_ins if b.onset < recording.person_onset - EARLY_S]
        assert not early, f"{recording.name}: barge-in before the person spoke: {early}"
        hits = first_true(run, recording)
        assert hits, f"{recording.name}: the person was not detected"
        barge_in, reported = hits[0]
        reactions.append(reported - recording.person_onset)
        onset_errors.append(barge_in.onset - recording.person_onset)
        assert barge_in.onset <= barge_in.detected <= reported + 1e-6
    assert statistics.median(reactions) <= 0.15, reactions
    assert max(reactions) <= 1.0, reactions
    assert all(-EARLY_S <= e <= 0.9 for e in onset_errors), onset_errors


def test_the_pre_roll_hands_on_the_start_of_the_persons_speech():
    recording = corpus()[0]
    config = EchoGateConfig()
    run = replay(recording, EchoGate(config))
    barge_in = first_true(run, recording)[0][0]
    cancelled = [piece for piece in run.audio if piece.cancelled]
    assert cancelled, "nothing was handed on while the robot spoke"
    assert cancelled[0].stamp <= barge_in.onset - config.pre_roll_ms / 1000.0 + 0.011
    assert cancelled[0].stamp <= recording.person_onset
    # Handed-on audio never overlaps and keeps capture order.
    for before, after in zip(run.audio, run.audio[1:]):
        assert after.stamp >= before.end - 1e-6


def test_robot_silent_passes_the_microphone_through_unchanged():
    rng = np.random.default_rng(1)
    gate = EchoGate()
    chunks = [
        (rng.integers(-3000, 3000, 640).astype(np.int16), 50.0 + 0.04 * i) for i in range(25)
    ]
    out = [gate.feed(samples, stamp) for samples, stamp in chunks]
    audio = [piece for result in out for piece in result.audio]
    assert not any(result.barge_ins for result in out)
    assert all(not piece.cancelled for piece in audio)
    joined = np.concatenate([piece.samples for piece in audio])
    expected = np.concatenate([samples for samples, _ in chunks]).astype(np.float32) / 32768.0
    assert audio[0].stamp == pytest.approx(50.0)
    np.testing.assert_array_equal(joined, expected)


def test_off_switch_is_the_deaf_gate():
    recording = corpus()[1]
    gate = EchoGate(EchoGateConfig(enabled=False))
    run = replay(recording, gate)
    assert run.barge_ins == []
    speech_from = recording.reference_start
    speech_to = recording.reference_end + gate.config.tail_ms / 1000.0
    for piece in run.audio:
        assert not piece.cancelled
        assert piece.end <= speech_from + 0.011 or piece.stamp >= speech_to - 0.011
    assert gate.stats().withheld_s == pytest.approx(speech_to - speech_from, abs=0.35)
    assert gate.stats().cancel_seconds == 0.0


def test_gaps_in_the_microphone_stream():
    recording = corpus()[2]
    lost = frozenset(range(5, 400, 30))  # one 40 ms chunk in thirty never arrives
    gate = EchoGate()
    echo = replay(recording.without_person(), gate, drop_chunks=lost)
    assert echo.barge_ins == []
    assert gate.stats().gaps >= 4
    run = replay(recording, EchoGate(), drop_chunks=lost)
    assert first_true(run, recording)
    for before, after in zip(run.audio, run.audio[1:]):
        assert after.stamp >= before.end - 1e-6


def test_jittered_stamps_are_not_gaps():
    recording = corpus()[3]
    rng = np.random.default_rng(2)
    gate = EchoGate()
    found = []
    for samples, stamp in recording.chunks(40):
        found += gate.feed(samples, stamp + float(rng.uniform(-0.003, 0.003))).barge_ins
    assert gate.stats().gaps == 0 and gate.stats().overlaps == 0


def test_a_stamp_jumping_back_drops_the_overlap():
    gate = EchoGate()
    chunk = np.zeros(640, dtype=np.int16)
    gate.feed(chunk, 10.0)
    result = gate.feed(chunk, 10.02)  # 20 ms overlap with the previous chunk
    stats = gate.stats()
    assert stats.overlaps == 1
    assert stats.dropped_overlap_s == pytest.approx(0.02, abs=1e-4)
    assert result.audio[0].stamp == pytest.approx(10.04, abs=1e-4)


@pytest.mark.parametrize("lag", [0.1, -1.0])
def test_reference_late_or_early(lag):
    recording = corpus()[4]
    echo_gate = EchoGate()
    echo = replay(recording.without_person(), echo_gate, reference_lag_s=lag)
    assert echo.barge_ins == []
    assert echo_gate.stats().unreferenced_blocks == 0
    run = replay(recording, EchoGate(), reference_lag_s=lag)
    assert first_true(run, recording)


def test_reference_too_late_or_missing_never_triggers_a_barge_in():
    recording = corpus()[5]
    for kwargs in ({"reference_lag_s": 0.6}, {"send_reference": False}):
        gate = EchoGate()
        run = replay(recording, gate, **kwargs)
        assert run.barge_ins == [], kwargs
        assert gate.stats().unreferenced_blocks > 0


def test_references_from_another_thread():
    recording = corpus()[6]
    gate = EchoGate()
    rate = recording.reference_rate
    step = rate // 20
    pieces = [
        (recording.reference[i : i + step], recording.reference_start + i / rate)
        for i in range(0, recording.reference.size, step)
    ]
    fed = threading.Event()

    def speaker():
        gate.set_speaking(True, recording.reference_start)
        for samples, start in pieces:
            gate.add_reference(samples, rate, start)
        gate.set_speaking(False, recording.reference_end)
        fed.set()

    thread = threading.Thread(target=speaker)
    barge_ins = []
    chunks = list(recording.chunks(40))
    thread.start()
    for index, (samples, stamp) in enumerate(chunks):
        if index == 10:
            assert fed.wait(30)
        barge_ins += gate.feed(samples, stamp).barge_ins
    thread.join(30)
    barge_ins += gate.flush().barge_ins
    assert barge_ins and barge_ins[0].onset >= recording.person_onset - EARLY_S


@pytest.mark.parametrize(
    "field,value",
    [
        ("echo_delay_ms", -1.0),
        ("echo_delay_max_ms", 900.0),
        ("speech_threshold", 1.5),
        ("pre_roll_ms", float("nan")),
        ("enabled", 1),
        ("min_speech_ms", 10.0),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EchoGateConfig(**{field: value})


def test_bad_input_is_refused_clearly():
    gate = EchoGate()
    with pytest.raises(ValueError, match="NaN"):
        gate.feed(np.array([0.0, np.nan], dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="1-D"):
        gate.feed(np.zeros((2, 160), dtype=np.int16), 1.0)
    with pytest.raises(ValueError, match="stamp"):
        gate.feed(np.zeros(160, dtype=np.int16), float("inf"))
    with pytest.raises(ValueError, match="sample_rate"):
        gate.add_reference(np.zeros(100, dtype=np.int16), 4000, 1.0)
    with pytest.raises(ValueError, match="dtype"):
        gate.add_reference(np.zeros(100, dtype=np.int32), 16000, 1.0)
    assert gate.stats().chunks == 0


def test_whisper_hears_the_person_in_full_after_the_gate():
    from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine
    from uservlm_ros.speech.audio import word_error_rate

    engine = ASREngine(ASRConfig(model="base", beam_size=1, language="en"))
    engine.load()
    for recording in corpus()[:2]:
        run = replay(recording, EchoGate(), stop_after_s=0.15)
        assert run.stopped_at is not None
        heard = run.heard(recording.person_onset - 0.3, recording.person_end + 0.3)
        text = engine.transcribe(heard, ASR_SAMPLE_RATE).text
        assert word_error_rate(recording.person_text, text) <= 0.2, (recording.person_text, text)
