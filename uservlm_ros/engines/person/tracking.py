"""Face tracks on a camera stream: stable face ids while a person stays in view.

Association per call, cheapest evidence first:

1. Each live track is paired with at most one face by box overlap (Hungarian assignment on IoU,
   pairs under ``track_iou_min`` are not pairs).
2. A pair is taken as is when the aligned grey chips still correlate (``track_signature_min``)
   and the track's identity was checked by embedding within ``track_reverify_s``. Otherwise the
   face is embedded and compared with the track's person: a mismatch (two people swapped places
   between frames) breaks the pair. Suspicious pairs are checked first, then unidentified
   tracks, then (one per call) stale ones; when the call's embedding budget is spent, the
   pair is kept and checked first next time.
3. A face left without a track is embedded (budget permitting) and identified; if a live track
   that lost its face belongs to the same person, that track continues (so swapped people keep
   their face ids), else a new track starts (with person "" until identified).
4. A track without a face for more than ``track_max_missed`` calls ends.

Face ids are ``f`` + 8 random hex digits, never reused while live; a track carries the person
id of :mod:`identity` once known. Calls must not overlap (the engine serialises them);
``snapshot`` may be read from any thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from uservlm_ros.engines.person.config import PersonConfig
from uservlm_ros.engines.person.detection import Face
from uservlm_ros.engines.person.geometry import Box
from uservlm_ros.engines.person.identity import Gallery


@dataclass(frozen=True)
class TrackState:
    """A live track as last updated. ``visible``: its face was in the latest frame."""

    face_id: str
    person_id: str
    box: Box
    visible: bool
    frontal: bool
    score: float
    hits: int
    missed: int
    verified_at: float | None  # clock time of the last embedding check of person_id
    signature: np.ndarray = field(repr=False)


class _Track:
    def __init__(self, face_id: str, face: Face, person_id: str, verified_at: float | None):
        self.face_id = face_id
        self.person_id = person_id
        self.verified_at = verified_at
        self.suspect = False
        self.hits = 0
        self.missed = 0
        self.see(face)

    def see(self, face: Face) -> None:
        self.face = face
        self.missed = 0
        self.hits += 1

    def state(self, visible: bool) -> TrackState:
        return TrackState(
            self.face_id,
            self.person_id,
            self.face.box,
            visible,
            self.face.frontal,
            self.face.score,
            self.hits,
            self.missed,
            self.verified_at,
            self.face.signature,
        )


@dataclass(frozen=True)
class TrackUpdate:
    visible: tuple[tuple[TrackState, Face], ...]  # tracks whose face is in this frame
    coasting: tuple[TrackState, ...]  # live tracks whose face was not found this time
    ended: tuple[str, ...]  # face ids of tracks that ended in this call
    embeddings: int  # embeddings computed in this call


class FaceTracker:
    def __init__(
        self, config: PersonConfig, gallery: Gallery, clock: Callable[[], float] = time.monotonic
    ):
        self.config = config
        self.gallery = gallery
        self._clock = clock
        self._tracks: list[_Track] = []
        self._published: tuple[TrackState, ...] = ()

    def snapshot(self) -> tuple[TrackState, ...]:
        """The live tracks after the latest update (an immutable tuple; any thread)."""
        return self._published

    def _new_face_id(self) -> str:
        live = {t.face_id for t in self._tracks}
        face_id = "f" + secrets.token_hex(4)
        while face_id in live:
            face_id = "f" + secrets.token_hex(4)
        return face_id

    def update(self, faces: tuple[Face, ...], embed: Callable[[Face], np.ndarray]) -> TrackUpdate:
        """Associate this frame's ``faces`` (largest first) with the live tracks."""
        cfg = self.config
        now = self._clock()
        budget = cfg.track_max_embeddings
        vectors: dict[int, np.ndarray] = {}

        def embedding(j: int) -> np.ndarray | None:
            nonlocal budget
            if j not in vectors:
                if budget <= 0:
                    return None
                budget -= 1
                vectors[j] = embed(faces[j])
            return vectors[j]

        tracks = self._tracks
        pairs: list[tuple[int, int]] = []
        if tracks and faces:
            overlap = np.array([[t.face.box.iou(f.box) for f in faces] for t in tracks])
            rows, cols = linear_sum_assignment(-overlap)
            pairs = [
                (r, c)
                for r, c in zip(rows, cols, strict=True)
                if overlap[r, c] >= cfg.track_iou_min
            ]

        def urgency(pair: tuple[int, int]) -> int:
            track, face = tracks[pair[0]], faces[pair[1]]
            if (
                track.suspect
                or float(track.face.signature @ face.signature) < cfg.track_signature_min
            ):
                return 0  # maybe not the same person any more
            if not track.person_id:
                return 1 if face.frontal else 3  # a turned face cannot found a person
            if track.verified_at is None or now - track.verified_at >= cfg.track_reverify_s:
                return 2
            return 3

        matched: dict[int, int] = {}
        stale_checks = 1  # re-checks of settled tracks are a safety net: one per call
        for t, f in sorted(pairs, key=lambda p: (urgency(p), p[1])):
            track, level = tracks[t], urgency((t, f))
            if level == 2:
                level, stale_checks = (2, stale_checks - 1) if stale_checks else (3, 0)
            vector = embedding(f) if level < 3 else None
            if vector is None:  # nothing to check, or no budget left: keep, check first later
                track.suspect = track.suspect or level == 0
                matched[t] = f
                continue
            track.suspect = False
            if track.person_id and track.person_id in self.gallery:
                d = self.gallery.confirm(track.person_id, vector)
                if d is not None and d <= cfg.match_threshold:
                    track.verified_at = now
                    matched[t] = f
                continue  # a different person: both go to the unmatched pools
            found = self.gallery.identify(vector, faces[f].frontal)
            track.person_id = found.person_id
            track.verified_at = now if found.person_id else None
            matched[t] = f

        used = set(matched.values())
        lost = [t for t in range(len(tracks)) if t not in matched]
        for f in range(len(faces)):
            if f in used:
                continue
            vector = embedding(f)
            person_id = ""
            if vector is not None:
                person_id = self.gallery.identify(vector, faces[f].frontal).person_id
            heir = next((t for t in lost if person_id and tracks[t].person_id == person_id), None)
            if heir is not None:
                lost.remove(heir)
                tracks[heir].verified_at = now
                tracks[heir].suspect = False
                matched[heir] = f
            else:
                tracks.append(
                    _Track(self._new_face_id(), faces[f], person_id, now if person_id else None)
                )
                matched[len(tracks) - 1] = f

        ended, survivors, visible, coasting = [], [], [], []
        for t, track in enumerate(tracks):
            if t in matched:
                track.see(faces[matched[t]])
                survivors.append(track)
                visible.append((track.state(True), faces[matched[t]]))
                continue
            track.missed += 1
            if track.missed > cfg.track_max_missed:
                ended.append(track.face_id)
            else:
                survivors.append(track)
                coasting.append(track.state(False))
        self._tracks = survivors
        self.gallery.touch({t.person_id for t in survivors if t.person_id and not t.missed})
        self._publish()
        return TrackUpdate(tuple(visible), tuple(coasting), tuple(ended), len(vectors))

    def clear_person(self, person_id: str) -> None:
        """Drop ``person_id`` from its tracks (it was forgotten); they are re-identified."""
        for track in self._tracks:
            if track.person_id == person_id:
                track.person_id, track.verified_at = "", None
        self._publish()

    def _publish(self) -> None:
        self._published = tuple(t.state(t.missed == 0) for t in self._tracks)
