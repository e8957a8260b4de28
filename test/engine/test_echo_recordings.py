"""The synthetic echo recordings: deterministic, levels and timing as documented."""

from __future__ import annotations

import numpy as np
import pytest

from echo_fixtures import corpus
from uservlm_ros.engines.echo.recordings import (
    DELAY_RANGE_S,
    GAIN_RANGE_DB,
    PERSON_DBFS,
    RT60_RANGE_S,
    make_recording,
)
from uservlm_ros.engines.echo.room import EchoPath, active_rms, impulse_response


def test_same_seed_same_samples():
    first = corpus()[0]
    rng = np.random.default_rng(123)
    again = make_recording(
        "x",
        first.answer,
        first.reference,
        first.reference_rate,
        np.random.default_rng(123),
        first.person[first.person != 0],
        first.person_text,
        onset_fraction=0.5,
    )
    twice = make_recording(
        "x",
        first.answer,
        first.reference,
        first.reference_rate,
        rng,
        first.person[first.person != 0],
        first.person_text,
        onset_fraction=0.5,
    )
    np.testing.assert_array_equal(again.mic(), twice.mic())


def test_paths_levels_and_onsets_are_in_the_design_range():
    for recording in corpus():
        path = recording.path
        assert DELAY_RANGE_S[0] <= path.delay_s <= DELAY_RANGE_S[1]
        assert GAIN_RANGE_DB[0] <= path.gain_db <= GAIN_RANGE_DB[1]
        assert RT60_RANGE_S[0] <= path.rt60_s <= RT60_RANGE_S[1]
        person_db = 20 * np.log10(active_rms(recording.person))
        echo_db = 20 * np.log10(active_rms(recording.echo()))
        assert person_db == pytest.approx(PERSON_DBFS, abs=0.5)
        assert echo_db - person_db == pytest.approx(path.gain_db, abs=1.0)
        assert recording.reference_start < recording.person_onset < recording.reference_end
        onset = recording.index_of(recording.person_onset)
        before = recording.person[onset - 800 : onset - 80]  # 50 ms up to 5 ms before the onset
        assert active_rms(before) < 0.1 * active_rms(recording.person)  # -20 dB: the onset's rule


def test_stopping_the_speaker_stops_the_echo():
    recording = corpus()[0]
    stop = recording.reference_start + 1.0
    echo = recording.echo(stop)
    after = recording.index_of(stop + recording.path.delay_s + recording.path.rt60_s + 0.01)
    assert not np.any(np.abs(echo[after:]) > 1e-9)
    assert np.abs(echo[:after]).max() > 0.01


def test_impulse_response_decays_at_rt60():
    response = impulse_response(
        EchoPath(delay_s=0.05, gain_db=0.0, rt60_s=0.4), np.random.default_rng(0)
    )
    start = int(0.05 * 16000)
    assert np.argmax(np.abs(response)) in range(start - 2, start + 4)
    early = np.mean(response[start + 160 : start + 960] ** 2)
    late = np.mean(response[start + 3360 : start + 4160] ** 2)  # 0.2 s later: about -30 dB
    assert 10 * np.log10(early / late) == pytest.approx(30.0, abs=6.0)
