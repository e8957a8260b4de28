"""Person perception for a turn and for the camera stream, with identity kept private.

::

    engine = PersonEngine(PersonConfig(store_dir="~/.ros/uservlm_faces")).load()
    turn = engine.resolve(rgb, stamp)     # the turn's own frame, synchronously
    turn.person_id                        # "" when there is no (identifiable) face
    turn.crop, turn.crop_kind             # the user image for the VLM, e.g. "upper_body"
    stream = engine.track(rgb, stamp)     # timer, e.g. 5 Hz: REP-155 faces and persons
    engine.remember(turn.person_id)       # the person agreed: template to disk (0600)
    engine.forget(turn.person_id)         # template and everything in memory gone

Persons and faces, as in REP-155: a *face id* names one track (``f`` + hex, new each time a face
enters the view); a *person id* names the human behind it (``p`` + hex, random, stable while the
process knows them, across restarts once remembered). ``resolve`` and ``track`` share the person
gallery, so the person a turn resolves is the person the topics show.

Privacy: ids are random (:mod:`secrets`), never derived from a face. Embeddings are held in
memory; session persons are forgotten ``session_ttl_s`` after last seen (``on_forgotten`` is
called with their id, so consent kept for them can go too). Only ``remember`` writes anything to
disk: the embeddings and id of that person, nothing else. No image is ever written.

Thread-safety: ``track`` calls are serialised among themselves; ``resolve`` may run at the same
time from another thread (the models and the gallery have their own locks).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from uservlm_ros.engines.person import addressee, crop
from uservlm_ros.engines.person.config import PersonConfig
from uservlm_ros.engines.person.detection import Face, FaceDetector
from uservlm_ros.engines.person.embedding import FaceEmbedder
from uservlm_ros.engines.person.geometry import Box
from uservlm_ros.engines.person.identity import KNOWN, REMEMBERED, Gallery, Match, valid_person_id
from uservlm_ros.engines.person.image import as_rgb
from uservlm_ros.engines.person.store import TemplateStore
from uservlm_ros.engines.person.tracking import FaceTracker, TrackState

LOG = logging.getLogger(__name__)

NO_FACE, UNIDENTIFIED = "no_face", "unidentified"
#: overlap at which a turn's addressee is the face of a live track, and at which the turn may
#: take that track's verified person without an embedding
_SAME_FACE_IOU = 0.3
_REUSE_IOU = 0.5


@dataclass(frozen=True)
class Resolution:
    """Who the turn on one frame is for, and the user image to use.

    ``status``: ``no_face`` (person_id ""), ``unidentified`` (a face, but turned away and
    matching nobody: person_id ""), ``known`` (a session person seen before), ``remembered``
    (a person who agreed to be remembered) or ``new`` (a new session person).
    ``face_id`` is the addressee's live track ("" if none, or if the track at that place
    belongs to someone else); ``reused_track``: the person came from that track (verified
    recently, same place, same look) instead of an embedding of this frame. ``faces`` counts
    the faces used (at most ``max_faces``, largest first); ``too_small`` those under
    ``min_face_px``, ``dropped`` those beyond ``max_faces``. ``roi`` is REP-155's normalised
    (xmin, ymin, xmax, ymax). ``distance``: to the matched person (None if new, unidentified
    or reused). ``timings`` in seconds: detect (with landmarks), embed (absent when reused or
    no face), identify, crop, total.
    """

    person_id: str
    status: str
    remembered: bool
    face_id: str
    reused_track: bool
    box: Box | None
    roi: tuple[float, float, float, float] | None
    frontal: bool
    distance: float | None
    faces: int
    too_small: int
    dropped: int
    crop: np.ndarray = field(repr=False)
    crop_kind: str
    crop_box: Box
    stamp: float | None
    timings: dict[str, float]


@dataclass(frozen=True)
class TrackedFace:
    """A face in the latest ``track`` frame. ``crop`` is the face box's pixels (for REP-155
    ``/humans/faces/<face_id>/cropped``)."""

    face_id: str
    person_id: str
    remembered: bool
    box: Box
    roi: tuple[float, float, float, float]
    frontal: bool
    score: float
    crop: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class TrackResult:
    """``faces``: visible now. ``tracked``: all live face ids (a face missed for a few frames
    stays tracked) for ``/humans/faces/tracked``. ``persons``: person id -> face id of the live
    tracks with a person (the largest face when one person has two), for
    ``/humans/persons/tracked`` and ``/humans/persons/<id>/face_id``. ``ended``: face ids whose
    track ended in this call. ``timings`` in seconds: detect, associate (with embeddings),
    total."""

    faces: tuple[TrackedFace, ...]
    tracked: tuple[str, ...]
    persons: dict[str, str]
    ended: tuple[str, ...]
    too_small: int
    dropped: int
    embeddings: int
    width: int
    height: int
    stamp: float | None
    timings: dict[str, float]


def _stamp(stamp) -> float | None:
    """None (or 0, a ROS header left empty) = no timestamp; else a finite number >= 0."""
    if stamp is None:
        return None
    if (
        isinstance(stamp, bool)
        or not isinstance(stamp, (int, float))
        or not math.isfinite(stamp)
        or stamp < 0
    ):
        raise ValueError(f"stamp must be None or a finite number of seconds >= 0, got {stamp!r}")
    return float(stamp) or None


class PersonEngine:
    def __init__(
        self,
        config: PersonConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_forgotten: Callable[[str], None] | None = None,
    ):
        self.config = config or PersonConfig()
        self._clock = clock
        self._on_forgotten = on_forgotten
        self.gallery = Gallery(
            self.config.match_threshold,
            self.config.max_exemplars,
            self.config.session_ttl_s,
            clock,
        )
        self.tracker = FaceTracker(self.config, self.gallery, clock)
        self.store = TemplateStore(self.config.store_dir) if self.config.store_dir else None
        self._track_lock = threading.Lock()
        self._detector: FaceDetector | None = None
        self._embedder: FaceEmbedder | None = None
        self.load_seconds = 0.0

    # --- life cycle -------------------------------------------------------------------------

    def load(self) -> PersonEngine:
        """Verify and load the models, open the template store, load remembered persons.
        Raises models.ModelError or store.StoreError with the reason."""
        start = time.perf_counter()
        self._detector = FaceDetector(self.config)
        self._embedder = FaceEmbedder()
        if self.store is not None:
            for person_id, exemplars in self.store.open().items():
                self.gallery.add_remembered(person_id, exemplars)
        self.load_seconds = time.perf_counter() - start
        return self

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def _ready(self) -> tuple[FaceDetector, FaceEmbedder]:
        if self._detector is None or self._embedder is None:
            raise RuntimeError("PersonEngine.load() has not been called")
        return self._detector, self._embedder

    def expire(self) -> list[str]:
        """Forget session persons unseen for ``session_ttl_s``; their ids (also passed to
        ``on_forgotten``)."""
        gone = self.gallery.expire()
        if gone:
            with self._track_lock:
                for person_id in gone:
                    self.tracker.clear_person(person_id)
        for person_id in gone:
            LOG.info(
                "session person %s forgotten (not seen for %.0f s)",
                person_id,
                self.config.session_ttl_s,
            )
            if self._on_forgotten is not None:
                try:
                    self._on_forgotten(person_id)
                except Exception:  # the caller's bug must not break perception
                    LOG.exception("on_forgotten(%s) failed", person_id)
        return gone

    # --- the turn ---------------------------------------------------------------------------

    def resolve(self, image: np.ndarray, stamp: float | None = None) -> Resolution:
        """Detect, pick the addressee, identify them and crop the user image, all on this
        frame (RGB order; grey, RGBA and 16-bit mono are accepted). ValueError for an unusable
        image or stamp. With ``user_crop="full"`` or no face, ``crop`` is the frame itself
        (not a copy)."""
        detector, embedder = self._ready()
        start = time.perf_counter()
        stamp = _stamp(stamp)
        rgb = as_rgb(image)
        height, width = rgb.shape[:2]
        self.expire()
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        found = detector.detect(rgb)
        timings["detect"] = time.perf_counter() - mark
        cfg = self.config
        index = addressee.choose(found.faces, cfg.addressee, width, height)
        if index is None:
            whole = Box(0, 0, width, height)
            timings["total"] = time.perf_counter() - start
            return Resolution(
                "",
                NO_FACE,
                False,
                "",
                False,
                None,
                None,
                False,
                None,
                0,
                found.too_small,
                found.dropped,
                rgb,
                "full",
                whole,
                stamp,
                timings,
            )
        face = found.faces[index]
        track = self._track_of(face)
        if self._reusable(track, face):
            mark = time.perf_counter()
            self.gallery.touch([track.person_id])
            remembered = self.gallery.is_remembered(track.person_id)
            match = Match(track.person_id, REMEMBERED if remembered else KNOWN, None)
        else:
            mark = time.perf_counter()
            vector = embedder.embed(rgb, face)
            timings["embed"] = time.perf_counter() - mark
            mark = time.perf_counter()
            match = self.gallery.identify(vector, face.frontal)
        status = match.status if match.person_id else UNIDENTIFIED
        timings["identify"] = time.perf_counter() - mark
        mark = time.perf_counter()
        region = crop.region(
            face.box, cfg.user_crop, width, height, cfg.face_margin, cfg.upper_body_scale
        )
        user_image = rgb if cfg.user_crop == "full" else crop.cut(rgb, region)
        timings["crop"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - start
        # a track at the same place showing someone else is not this face's track
        same = track is not None and track.person_id in ("", match.person_id)
        return Resolution(
            match.person_id,
            status,
            match.status == REMEMBERED,
            track.face_id if same else "",
            "embed" not in timings,
            face.box,
            face.box.normalized(width, height),
            face.frontal,
            match.distance,
            len(found.faces),
            found.too_small,
            found.dropped,
            user_image,
            cfg.user_crop,
            region,
            stamp,
            timings,
        )

    def _track_of(self, face: Face) -> TrackState | None:
        """The live track whose last box overlaps ``face`` most (at least _SAME_FACE_IOU)."""
        best, found = _SAME_FACE_IOU, None
        for state in self.tracker.snapshot():
            overlap = state.box.iou(face.box)
            if overlap >= best:
                best, found = overlap, state
        return found

    def _reusable(self, track: TrackState | None, face: Face) -> bool:
        """Whether the turn may take ``track``'s person without embedding: the track saw this
        face in its latest frame, checked the person by embedding within track_reverify_s, and
        the face still sits there and looks the same."""
        cfg = self.config
        return (
            cfg.reuse_track_identity
            and track is not None
            and track.visible
            and bool(track.person_id)
            and track.verified_at is not None
            and self._clock() - track.verified_at <= cfg.track_reverify_s
            and track.box.iou(face.box) >= _REUSE_IOU
            and float(track.signature @ face.signature) >= cfg.track_signature_min
            and track.person_id in self.gallery
        )

    # --- the stream -------------------------------------------------------------------------

    def track(self, image: np.ndarray, stamp: float | None = None) -> TrackResult:
        """Detect and associate the faces of one stream frame with the live tracks."""
        detector, embedder = self._ready()
        start = time.perf_counter()
        stamp = _stamp(stamp)
        rgb = as_rgb(image)
        height, width = rgb.shape[:2]
        self.expire()
        with self._track_lock:
            mark = time.perf_counter()
            found = detector.detect(rgb)
            detected = time.perf_counter() - mark
            mark = time.perf_counter()
            update = self.tracker.update(found.faces, lambda f: embedder.embed(rgb, f))
            associated = time.perf_counter() - mark
        faces, persons, sizes = [], {}, {}
        for state, _ in update.visible:
            remembered = bool(state.person_id) and self.gallery.is_remembered(state.person_id)
            faces.append(
                TrackedFace(
                    state.face_id,
                    state.person_id,
                    remembered,
                    state.box,
                    state.box.normalized(width, height),
                    state.frontal,
                    state.score,
                    crop.cut(rgb, state.box),
                )
            )
        for state in [s for s, _ in update.visible] + list(update.coasting):
            if state.person_id and state.box.area > sizes.get(state.person_id, -1.0):
                persons[state.person_id], sizes[state.person_id] = state.face_id, state.box.area
        tracked = tuple(s.face_id for s, _ in update.visible) + tuple(
            s.face_id for s in update.coasting
        )
        timings = {
            "detect": detected,
            "associate": associated,
            "total": time.perf_counter() - start,
        }
        return TrackResult(
            tuple(faces),
            tracked,
            persons,
            update.ended,
            found.too_small,
            found.dropped,
            update.embeddings,
            width,
            height,
            stamp,
            timings,
        )

    # --- consent ----------------------------------------------------------------------------

    def remember(self, person_id: str) -> bool:
        """The person agreed to be remembered: write their template (to ``store_dir``; with no
        store they are only kept from expiring). False for an unknown or invalid id. Raises
        store.StoreError if the write fails (the person then stays a session person)."""
        if not valid_person_id(person_id):
            return False
        exemplars = self.gallery.remember(person_id)
        if exemplars is None:
            return False
        if self.store is not None:
            try:
                self.store.save(person_id, exemplars)
            except Exception:
                self.gallery.unremember(person_id)
                raise
        else:
            LOG.warning("no store_dir: %s is remembered until this process exits", person_id)
        LOG.info("person %s remembered (%d exemplar(s))", person_id, len(exemplars))
        return True

    def forget(self, person_id: str) -> bool:
        """Delete the person's template (and moved-aside copies) and every trace in memory;
        their live tracks lose the person id. False when nothing was known about them."""
        if not valid_person_id(person_id):
            return False
        in_memory = self.gallery.forget(person_id)
        on_disk = self.store.delete(person_id) if self.store is not None else False
        with self._track_lock:
            self.tracker.clear_person(person_id)
        if in_memory or on_disk:
            LOG.info("person %s forgotten on request", person_id)
        return in_memory or on_disk

    def knows(self, person_id: str) -> bool:
        return valid_person_id(person_id) and person_id in self.gallery

    def is_remembered(self, person_id: str) -> bool:
        return valid_person_id(person_id) and self.gallery.is_remembered(person_id)

    def counts(self) -> dict[str, int]:
        """Sizes for diagnostics: session persons, remembered persons, live tracks."""
        session, remembered = self.gallery.counts()
        return {
            "session_persons": session,
            "remembered_persons": remembered,
            "tracks": len(self.tracker.snapshot()),
        }
