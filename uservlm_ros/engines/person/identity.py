"""Who a face belongs to: the in-memory gallery of session and remembered persons.

A new frontal face that matches nobody becomes a *session person* with a random id
(``p`` + 16 hex digits from :mod:`secrets`: nothing about the face goes into it, and it is a
valid ROS name token for REP-155 topics). Its embeddings stay in this process's memory; it is
forgotten ``ttl_s`` after it was last seen. A *remembered person* (the person agreed) has the same
kind of id and never expires here; writing its template is :mod:`store`'s job. Non-frontal faces
may match a known person but never create one: a profile embedding is too unreliable to enrol.

All methods are atomic (one lock), so a tracker thread and a turn thread never enrol the same
face twice.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

ID_PATTERN = re.compile(r"^p[0-9a-f]{16}$")
KNOWN, REMEMBERED, NEW, UNKNOWN = "known", "remembered", "new", "unknown"
# a matched face adds an exemplar when it is this close to its person (surer than a bare match)
# and at least NOVELTY from every exemplar the person already has (it adds a pose or a light)
_EXEMPLAR_MATCH = 0.8
_NOVELTY = 0.1


def new_person_id() -> str:
    return "p" + secrets.token_hex(8)


def valid_person_id(person_id) -> bool:
    return isinstance(person_id, str) and bool(ID_PATTERN.match(person_id))


@dataclass(frozen=True)
class Match:
    """``person_id`` "" when nobody matched and nobody was enrolled (``status`` "unknown").
    ``distance`` is to the closest person, None when the gallery was empty."""

    person_id: str
    status: str  # known | remembered | new | unknown
    distance: float | None


class _Person:
    __slots__ = ("exemplars", "last_seen", "remembered")

    def __init__(self, exemplars: list[np.ndarray], last_seen: float, remembered: bool):
        self.exemplars = exemplars
        self.last_seen = last_seen
        self.remembered = remembered


class Gallery:
    def __init__(
        self,
        threshold: float,
        max_exemplars: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = threshold
        self.max_exemplars = max_exemplars
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.RLock()
        self._people: dict[str, _Person] = {}

    # --- matching ---------------------------------------------------------------------------

    def _closest(self, embedding: np.ndarray) -> tuple[str, float] | None:
        best = None
        for person_id, person in self._people.items():
            d = float(np.min(np.linalg.norm(np.stack(person.exemplars) - embedding, axis=1)))
            if best is None or d < best[1]:
                best = (person_id, d)
        return best

    def identify(self, embedding: np.ndarray, frontal: bool) -> Match:
        """The closest person within the threshold (seen now); else a new session person when
        ``frontal``; else nobody."""
        embedding = np.asarray(embedding, np.float32)
        with self._lock:
            best = self._closest(embedding)
            if best is not None and best[1] <= self.threshold:
                person_id, d = best
                self._observe(person_id, embedding, d)
                status = REMEMBERED if self._people[person_id].remembered else KNOWN
                return Match(person_id, status, d)
            if not frontal:
                return Match("", UNKNOWN, None if best is None else best[1])
            person_id = new_person_id()
            while person_id in self._people:  # 2^64 ids: never in practice
                person_id = new_person_id()
            self._people[person_id] = _Person([embedding], self._clock(), remembered=False)
            return Match(person_id, NEW, None if best is None else best[1])

    def distance_to(self, person_id: str, embedding: np.ndarray) -> float | None:
        """Distance from ``embedding`` to ``person_id``'s closest exemplar; None if unknown."""
        with self._lock:
            person = self._people.get(person_id)
            if person is None:
                return None
            return float(np.min(np.linalg.norm(np.stack(person.exemplars) - embedding, axis=1)))

    def confirm(self, person_id: str, embedding: np.ndarray) -> float | None:
        """Distance as :meth:`distance_to`; when within the threshold the person is also
        marked seen and may gain the embedding as an exemplar."""
        embedding = np.asarray(embedding, np.float32)
        with self._lock:
            d = self.distance_to(person_id, embedding)
            if d is not None and d <= self.threshold:
                self._observe(person_id, embedding, d)
            return d

    def _observe(self, person_id: str, embedding: np.ndarray, d: float) -> None:
        person = self._people[person_id]
        person.last_seen = self._clock()
        if d > _EXEMPLAR_MATCH * self.threshold:
            return
        nearest = float(np.min(np.linalg.norm(np.stack(person.exemplars) - embedding, axis=1)))
        if nearest < _NOVELTY:
            return
        if len(person.exemplars) >= self.max_exemplars:
            del person.exemplars[1]  # the enrolment exemplar stays; the oldest other one goes
        person.exemplars.append(embedding)

    def touch(self, person_ids: Iterable[str]) -> None:
        """Mark persons seen now (their face is still being tracked)."""
        with self._lock:
            now = self._clock()
            for person_id in person_ids:
                if person_id in self._people:
                    self._people[person_id].last_seen = now

    # --- lifetime ---------------------------------------------------------------------------

    def expire(self) -> list[str]:
        """Forget session persons not seen for ``ttl_s``; their ids."""
        with self._lock:
            limit = self._clock() - self.ttl_s
            gone = [
                pid for pid, p in self._people.items() if not p.remembered and p.last_seen <= limit
            ]
            for person_id in gone:
                del self._people[person_id]
            return gone

    def add_remembered(self, person_id: str, exemplars: list[np.ndarray]) -> None:
        """A remembered person loaded from the store."""
        if not valid_person_id(person_id) or not exemplars:
            raise ValueError(f"invalid remembered person {person_id!r}")
        with self._lock:
            self._people[person_id] = _Person(
                [np.asarray(e, np.float32) for e in exemplars][-self.max_exemplars :],
                self._clock(),
                remembered=True,
            )

    def remember(self, person_id: str) -> list[np.ndarray] | None:
        """Mark a known person remembered; their exemplars (copies), or None if unknown."""
        with self._lock:
            person = self._people.get(person_id)
            if person is None:
                return None
            person.remembered = True
            return [e.copy() for e in person.exemplars]

    def unremember(self, person_id: str) -> None:
        """Back to a session person (a failed template write must not leave a false flag)."""
        with self._lock:
            person = self._people.get(person_id)
            if person is not None:
                person.remembered = False
                person.last_seen = self._clock()

    def forget(self, person_id: str) -> bool:
        with self._lock:
            return self._people.pop(person_id, None) is not None

    # --- queries ----------------------------------------------------------------------------

    def __contains__(self, person_id: str) -> bool:
        with self._lock:
            return person_id in self._people

    def is_remembered(self, person_id: str) -> bool:
        with self._lock:
            person = self._people.get(person_id)
            return person is not None and person.remembered

    def counts(self) -> tuple[int, int]:
        """(session persons, remembered persons) held now."""
        with self._lock:
            remembered = sum(p.remembered for p in self._people.values())
            return len(self._people) - remembered, remembered
