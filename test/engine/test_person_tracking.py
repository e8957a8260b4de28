"""PersonEngine.track on a stream of 640x480 frames: stable ids, swaps, leaving, crowds,
and track() and resolve() from two threads at once (real models)."""

from __future__ import annotations

import threading

import numpy as np

import person_scenes as ps
from person_engines import engine as make_engine


def by_side(result):
    """(left face, right face) of a two-face frame."""
    faces = sorted(result.faces, key=lambda f: f.box.center[0])
    assert len(faces) == 2, [f.face_id for f in result.faces]
    return faces


def test_ids_stay_while_people_move_and_persons_map_to_faces():
    engine = make_engine()
    first = None
    for step, stamp in enumerate(np.arange(10) * 0.2):
        result = engine.track(ps.pair(shift=step * 6), stamp=float(stamp))
        left, right = by_side(result)
        if first is None:
            first = (left.face_id, right.face_id)
        assert (left.face_id, right.face_id) == first, step
        assert result.stamp == (float(stamp) or None)
    assert left.person_id and right.person_id and left.person_id != right.person_id
    assert result.persons == {left.person_id: left.face_id, right.person_id: right.face_id}
    assert set(result.tracked) == set(first) and result.ended == ()
    assert left.crop.shape[2] == 3 and 0 < left.roi[0] < left.roi[2] < right.roi[0]
    assert result.embeddings == 0  # nothing suspicious and verified recently: no embedding


def test_two_people_swapping_places_keep_their_ids():
    engine = make_engine()
    for _ in range(3):
        before = engine.track(ps.pair("astronaut", "hopper"))
    astronaut, hopper = by_side(before)
    swapped = engine.track(ps.pair("hopper", "astronaut"))
    left, right = by_side(swapped)
    assert (left.person_id, left.face_id) == (hopper.person_id, hopper.face_id)
    assert (right.person_id, right.face_id) == (astronaut.person_id, astronaut.face_id)
    assert swapped.embeddings == 2 and swapped.ended == ()
    # and a resolve on the swapped frame names the same person as the tracks do
    turn = engine.resolve(ps.pair("hopper", "astronaut"))
    assert turn.person_id in (hopper.person_id, astronaut.person_id)
    assert (
        turn.face_id
        == {hopper.person_id: hopper.face_id, astronaut.person_id: astronaut.face_id}[
            turn.person_id
        ]
    )


def test_a_person_who_leaves_ends_their_track_and_is_known_on_return():
    engine = make_engine(track_max_missed=2)
    astronaut, hopper = by_side(engine.track(ps.pair()))
    only_hopper, _ = ps.at("hopper", (460, 200), 100)
    ended = []
    for _ in range(3):
        result = engine.track(ps.scene(only_hopper))
        ended += result.ended
        assert [f.face_id for f in result.faces] == [hopper.face_id]
    assert ended == [astronaut.face_id]
    assert astronaut.face_id not in result.tracked
    assert astronaut.person_id not in result.persons
    back = by_side(engine.track(ps.pair()))[0]
    assert back.face_id != astronaut.face_id and back.person_id == astronaut.person_id


def test_a_face_missed_for_a_frame_stays_tracked():
    engine = make_engine(track_max_missed=2)
    astronaut, hopper = by_side(engine.track(ps.pair()))
    only_hopper, _ = ps.at("hopper", (460, 200), 100)
    gap = engine.track(ps.scene(only_hopper))
    assert set(gap.tracked) == {astronaut.face_id, hopper.face_id}
    assert gap.persons[astronaut.person_id] == astronaut.face_id
    assert by_side(engine.track(ps.pair()))[0].face_id == astronaut.face_id


def test_eight_faces_are_tracked_and_identified_within_the_embedding_budget():
    engine = make_engine(track_max_embeddings=2)
    frame = ps.crowd(4, 2)
    result = engine.track(frame)
    assert len(result.faces) == 8 and len(set(result.tracked)) == 8
    assert result.embeddings == 2
    for _ in range(3):
        result = engine.track(frame)
        assert result.embeddings <= 2
    assert all(f.person_id for f in result.faces)
    assert len(result.persons) == 2  # four variants each of two people
    assert engine.counts()["session_persons"] == 2


def test_no_face_and_no_timestamp():
    engine = make_engine()
    result = engine.track(ps.scene())
    assert result.faces == () and result.tracked == () and result.stamp is None
    assert set(result.timings) == {"detect", "associate", "total"}


def test_track_and_resolve_from_two_threads():
    engine = make_engine()
    errors, stop = [], threading.Event()
    frame = ps.pair()

    def stream():
        try:
            while not stop.is_set():
                engine.track(frame)
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        turns = [engine.resolve(frame) for _ in range(4)]
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    assert {t.person_id for t in turns} == {turns[0].person_id}
    final = engine.track(frame)
    assert turns[0].person_id in final.persons
    assert engine.counts()["session_persons"] == 2


def test_a_turn_on_a_tracked_face_reuses_the_verified_person():
    engine = make_engine()
    astronaut, hopper = by_side(engine.track(ps.pair()))
    turn = engine.resolve(ps.pair())
    assert turn.reused_track and "embed" not in turn.timings and turn.distance is None
    assert (turn.person_id, turn.face_id) in {
        (astronaut.person_id, astronaut.face_id),
        (hopper.person_id, hopper.face_id),
    }
    strict = make_engine(reuse_track_identity=False)
    strict.track(ps.pair())
    cold = strict.resolve(ps.pair())
    assert not cold.reused_track and "embed" in cold.timings and cold.face_id


def test_a_turn_on_a_swap_the_tracker_has_not_seen_is_not_fooled():
    engine = make_engine()
    astronaut, hopper = by_side(engine.track(ps.pair("astronaut", "hopper")))
    big_hopper, _ = ps.at("hopper", (180, 200), 115)  # where the astronaut's track is
    right, _ = ps.at("astronaut", (460, 200), 100)
    turn = engine.resolve(ps.scene(big_hopper, right))
    assert not turn.reused_track and "embed" in turn.timings
    assert turn.person_id == hopper.person_id
    assert turn.face_id == ""  # the track at that place is the astronaut's
