"""What each person agreed to, refused or told us, with expiry; and the clarification awaiting
their reply.

Storage: one JSON file per person, ``<directory>/<sha256(user id)>.json``. The user id is data,
never
part of a path: ``../x``, ``a/b`` or ids with NUL bytes all hash to 64 hex characters. Each change
is
written to a temporary file in the same directory, fsynced, and renamed over the old file (then the
directory is fsynced), so a crash mid-write leaves either the old record or the new one. One file
per person also bounds the damage of a corrupted file to that person: at start (and whenever a file
fails to parse later) a bad file is moved aside as ``<name>.corrupt-<UTC time>``, a warning is
logged, and everybody else's record stays as it was.

What is stored: the consent events (scope, status, the person's own words if they stated something,
times) and the pending clarification (the question to answer after the reply). Never an image,
never an inferred attribute value. Expired events stay in the history (an expired "yes" is no
longer a yes, but the record of it is kept) up to ``max_events`` per person, newest kept;
``forget`` removes everything. ``directory=None`` keeps everything in memory (lost at exit).

Two tiers: ids for which ``volatile(user_id)`` is true (persons the camera sees, who have not
agreed to be remembered) are held in memory only, however the store is configured, until
``persist`` moves them to disk (they agreed) or ``drop_volatile`` drops them (they left);
``volatile_ttl_s`` drops such a record unused that long, in case nobody reports the departure.
Every other id is kept on disk as above.

One engine process per directory: writes are serialised by a lock inside the process only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from uservlm_ros.engines.files import (
    fsync_dir,
    move_aside,
    record_files,
    remove_leftovers,
    write_private,
)

LOG = logging.getLogger(__name__)

FORMAT = 1
GRANTED, DECLINED, STATED = "granted", "declined", "stated"
STATUSES = (GRANTED, DECLINED, STATED)
_SCOPE = re.compile(r"^(topic|attribute):[A-Za-z0-9_*-]{1,64}$")


@dataclass(frozen=True)
class Consent:
    """One thing a person said about personalisation. ``scope`` is ``topic:<name>`` or
    ``attribute:<name>``."""

    scope: str
    status: str  # granted | declined | stated
    statement: str  # their own words when they stated a preference, else ""
    recorded_at: float  # unix time
    expires_at: float


@dataclass(frozen=True)
class Pending:
    """A clarifying question asked and not answered yet."""

    question: str
    topic: str
    attributes: tuple[str, ...]
    asked_at: float
    expires_at: float


class StoreError(RuntimeError):
    """The store cannot be created, read or written (permissions, a full disk, a path in the way);
    every OSError of the store reaches callers as this."""


def user_key(user_id: str) -> str:
    """File-name-safe key for any user id (NUL bytes and lone surrogates included)."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid_event(event) -> bool:
    return (
        isinstance(event, dict)
        and set(event) == {"scope", "status", "statement", "recorded_at", "expires_at"}
        and isinstance(event["scope"], str)
        and bool(_SCOPE.match(event["scope"]))
        and event["status"] in STATUSES
        and isinstance(event["statement"], str)
        and _finite(event["recorded_at"])
        and _finite(event["expires_at"])
    )


def _valid_pending(pending) -> bool:
    return pending is None or (
        isinstance(pending, dict)
        and set(pending) == {"question", "topic", "attributes", "asked_at", "expires_at"}
        and isinstance(pending["question"], str)
        and isinstance(pending["topic"], str)
        and isinstance(pending["attributes"], list)
        and all(isinstance(a, str) for a in pending["attributes"])
        and _finite(pending["asked_at"])
        and _finite(pending["expires_at"])
    )


def _validate(record, user_id: str | None) -> str | None:
    """Why ``record`` is not a valid record (for ``user_id`` when given), or None."""
    if not isinstance(record, dict) or set(record) != {"format", "user_id", "events", "pending"}:
        return "not a consent record"
    if record["format"] != FORMAT:
        return f"unknown format {record['format']!r}"
    if not isinstance(record["user_id"], str) or (
        user_id is not None and record["user_id"] != user_id
    ):
        return "user id does not match the file"
    if not isinstance(record["events"], list) or not all(
        _valid_event(e) for e in record["events"]
    ):
        return "malformed consent event"
    if not _valid_pending(record["pending"]):
        return "malformed pending clarification"
    return None


class ConsentStore:
    def __init__(
        self,
        directory: str | Path | None,
        max_events: int = 50,
        clock: Callable[[], float] = time.time,
        volatile: Callable[[str], bool] | None = None,
        volatile_ttl_s: float | None = None,
    ):
        self.directory = Path(directory) if directory is not None else None
        self.max_events = max_events
        self._clock = clock
        self._volatile = volatile or (lambda user_id: False)
        self.volatile_ttl_s = volatile_ttl_s
        self._lock = threading.RLock()
        self._memory: dict[str, dict] = {}
        self._used: dict[str, float] = {}  # memory tier: last read or write, for the TTL
        self._on_disk: set[str] = set()  # ids with a record on disk (read at open, kept since)
        self.moved_aside: list[Path] = []

    # --- start-up ---

    def open(self) -> ConsentStore:
        """Create the directory, drop half-written temporaries, move corrupt records aside."""
        if self.directory is None:
            LOG.info("consent store in memory only: consents are lost when the process exits")
            return self
        try:
            return self._open()
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot open consent store {self.directory}: {exc}") from exc

    def _open(self) -> ConsentStore:
        with self._lock:
            if self.directory.exists() and not self.directory.is_dir():
                self._move_aside(self.directory, "the consent store path is not a directory")
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create consent store {self.directory}: {exc}") from exc
            for leftover in remove_leftovers(self.directory):
                LOG.info("removed %s, left by an interrupted write", leftover.name)
            for path in sorted(self.directory.glob("*.json")):
                problem, user_id = self._problem(path)
                if problem:
                    self._move_aside(path, problem)
                else:
                    self._on_disk.add(user_id)
        return self

    def _problem(self, path: Path) -> tuple[str | None, str]:
        """(why the file is not a valid record or None, the user id inside)."""
        try:
            record = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return f"unreadable ({type(exc).__name__}: {exc})", ""
        problem = _validate(record, None)
        if problem is None and user_key(record["user_id"]) != path.stem:
            problem = "file name does not match the user id inside"
        return problem, "" if problem else record["user_id"]

    def _move_aside(self, path: Path, problem: str) -> None:
        target = move_aside(path, self._clock())
        self.moved_aside.append(target)
        LOG.warning(
            "consent store: %s is corrupt (%s); moved aside to %s, other records untouched",
            path,
            problem,
            target.name,
        )

    # --- tiers ---

    def in_memory(self, user_id: str) -> bool:
        """Whether ``user_id``'s record is held in memory only (no directory, or a volatile id
        that was not persisted)."""
        with self._lock:
            return self.directory is None or (
                bool(self._volatile(user_id)) and user_id not in self._on_disk
            )

    def persist(self, user_id: str) -> bool:
        """Move a volatile id's record to disk (an empty one if nothing was said yet: the record
        marks that they agreed to be kept); from now on it is kept there. False without a
        directory (nothing can be kept) or for an anonymous id; True if already on disk. Raises
        StoreError when the write fails (the record then stays in memory)."""
        if not user_id or self.directory is None:
            return False
        with self._lock:
            if user_id in self._on_disk:
                return True
            record = self._memory.pop(user_id, None) or self._empty(user_id)
            self._used.pop(user_id, None)
            self._on_disk.add(user_id)
            try:
                self._write(user_id, record)
            except StoreError:
                self._on_disk.discard(user_id)
                self._memory[user_id], self._used[user_id] = record, self._clock()
                raise
            return True

    def drop_volatile(self, user_id: str) -> bool:
        """Drop a volatile id's in-memory record (the person left); True if there was one.
        Records on disk are untouched (``forget`` removes those)."""
        with self._lock:
            if not user_id or not self._volatile(user_id) or user_id in self._on_disk:
                return False
            self._used.pop(user_id, None)
            return self._memory.pop(user_id, None) is not None

    def expire_volatile(self) -> list[str]:
        """Drop volatile in-memory records unused for ``volatile_ttl_s``; their ids."""
        if self.volatile_ttl_s is None:
            return []
        with self._lock:
            limit = self._clock() - self.volatile_ttl_s
            gone = [uid for uid, used in self._used.items() if used <= limit]
            for user_id in gone:
                self._used.pop(user_id, None)
                self._memory.pop(user_id, None)
            return gone

    # --- records ---

    def _path(self, user_id: str) -> Path:
        return self.directory / f"{user_key(user_id)}.json"

    def _empty(self, user_id: str) -> dict:
        return {"format": FORMAT, "user_id": user_id, "events": [], "pending": None}

    def _read(self, user_id: str) -> dict:
        if not user_id:
            raise ValueError("anonymous users are never stored")
        if self.in_memory(user_id):
            if user_id in self._memory and self._volatile(user_id):
                self._used[user_id] = self._clock()
            return json.loads(json.dumps(self._memory.get(user_id) or self._empty(user_id)))
        path = self._path(user_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return self._empty(user_id)
        except OSError as exc:  # e.g. the directory was replaced by a file
            raise StoreError(f"cannot read consent record: {exc}") from exc
        try:
            record = json.loads(raw.decode("utf-8"))
            problem = _validate(record, user_id)
        except (UnicodeDecodeError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        if problem:
            try:
                self._move_aside(path, problem)
            except OSError as exc:
                raise StoreError(f"cannot move a corrupt consent record aside: {exc}") from exc
            return self._empty(user_id)
        return record

    def _write(self, user_id: str, record: dict) -> None:
        now = self._clock()
        record["events"] = record["events"][-self.max_events :]
        if record["pending"] and record["pending"]["expires_at"] <= now:
            record["pending"] = None
        if self.in_memory(user_id):
            self._memory[user_id] = record
            if self._volatile(user_id):
                self._used[user_id] = now
            return
        data = json.dumps(record, ensure_ascii=True, indent=1).encode("ascii")
        try:
            write_private(self._path(user_id), data)
        except OSError as exc:
            raise StoreError(f"cannot write consent record: {exc}") from exc
        self._on_disk.add(user_id)

    def update(
        self, user_id: str, events: list[Consent] = (), pending: Pending | None | bool = False
    ) -> None:
        """Append ``events`` and set (a Pending), clear (None) or keep (False) the pending
        question,
        in one atomic write."""
        with self._lock:
            record = self._read(user_id)
            record["events"] += [asdict(e) for e in events]
            if pending is not False:
                record["pending"] = (
                    None
                    if pending is None
                    else {**asdict(pending), "attributes": list(pending.attributes)}
                )
            self._write(user_id, record)

    # --- queries ---

    def history(self, user_id: str) -> tuple[Consent, ...]:
        """Every retained event, oldest first, expired ones included (their ``expires_at`` says
        so):
        several for one scope when the person changed their mind."""
        if not user_id:
            return ()
        with self._lock:
            events = self._read(user_id)["events"]
        return tuple(Consent(**e) for e in events)

    def current(self, user_id: str) -> dict[str, Consent]:
        """Per scope, the latest event, if it has not expired: the latest word wins."""
        latest: dict[str, Consent] = {}
        for event in self.history(user_id):
            if event.scope not in latest or event.recorded_at >= latest[event.scope].recorded_at:
                latest[event.scope] = event
        now = self._clock()
        return {scope: event for scope, event in latest.items() if event.expires_at > now}

    def pending(self, user_id: str) -> Pending | None:
        if not user_id:
            return None
        with self._lock:
            raw = self._read(user_id)["pending"]
        if raw is None or raw["expires_at"] <= self._clock():
            return None
        return Pending(**{**raw, "attributes": tuple(raw["attributes"])})

    def forget(self, user_id: str) -> bool:
        """Remove everything about ``user_id``; True if there was something to remove."""
        if not user_id:
            return False
        with self._lock:
            self._used.pop(user_id, None)
            in_memory = self._memory.pop(user_id, None) is not None
            if self.directory is None:
                return in_memory
            self._on_disk.discard(user_id)
            # the moved-aside copies of a corrupt record are this person's data too
            unlinked = False
            for victim in record_files(self._path(user_id)):
                try:
                    victim.unlink()
                    unlinked = True
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StoreError(f"cannot delete consent record: {exc}") from exc
            if unlinked:
                fsync_dir(self.directory)
            return in_memory or unlinked
