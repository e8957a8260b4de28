"""Face templates of the persons who agreed to be remembered, one JSON file each.

``<directory>/<person id>.face.json`` holds the id, the embedding model's digest, the time and the
person's embeddings (numbers only: never an image). Person ids are checked against
:data:`identity.ID_PATTERN` before any path is built from them. The directory is created 0700 and
every file 0600 (modes are tightened at open if someone loosened them). Each write goes to a
temporary file in the same directory, is fsynced and renamed over the old one (then the directory
is fsynced): a crash leaves the old template or the new one. At open, a file that does not parse
or validate is moved aside as ``<name>.corrupt-<UTC time>`` and logged; every other template
loads. ``delete`` removes a person's template, its moved-aside copies and any half-written
temporary. One engine process per directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from uservlm_ros.engines.files import (
    fsync_dir,
    move_aside,
    record_files,
    remove_leftovers,
    write_private,
)
from uservlm_ros.engines.person import models
from uservlm_ros.engines.person.embedding import DIMENSIONS
from uservlm_ros.engines.person.identity import valid_person_id

LOG = logging.getLogger(__name__)

FORMAT = 1
KIND = "uservlm_ros/face-template"
SUFFIX = ".face.json"
_KEYS = {"format", "kind", "person_id", "model_sha256", "saved_at", "exemplars"}


class StoreError(RuntimeError):
    """The template directory cannot be created or written."""


def _problem(record, person_id: str) -> str | None:
    """Why ``record`` is not a valid template of ``person_id``, or None."""
    if not isinstance(record, dict) or set(record) != _KEYS:
        return "not a face template"
    if record["format"] != FORMAT or record["kind"] != KIND:
        return f"unknown format {record['format']!r} / kind {record['kind']!r}"
    if record["person_id"] != person_id:
        return "person id does not match the file name"
    if record["model_sha256"] != models.SHA256[models.EMBEDDING]:
        return "made by another embedding model"
    exemplars = record["exemplars"]
    if not isinstance(exemplars, list) or not 1 <= len(exemplars) <= 64:
        return "needs 1 to 64 exemplars"
    for vector in exemplars:
        if (
            not isinstance(vector, list)
            or len(vector) != DIMENSIONS
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in vector
            )
        ):
            return f"an exemplar is not {DIMENSIONS} finite numbers"
    return None


class TemplateStore:
    def __init__(self, directory: str | Path, clock: Callable[[], float] = time.time):
        self.directory = Path(directory).expanduser()
        self._clock = clock
        self._lock = threading.Lock()
        self.moved_aside: list[Path] = []

    def _path(self, person_id: str) -> Path:
        if not valid_person_id(person_id):
            raise ValueError(f"not a person id: {person_id!r}")
        return self.directory / f"{person_id}{SUFFIX}"

    def open(self) -> dict[str, list[np.ndarray]]:
        """Create/secure the directory, drop temporaries, move corrupt files aside; the valid
        templates as ``{person id: exemplars}``."""
        with self._lock:
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                if not self.directory.is_dir():
                    raise StoreError(f"{self.directory} is not a directory")
                if stat.S_IMODE(self.directory.stat().st_mode) != 0o700:
                    os.chmod(self.directory, 0o700)
            except OSError as exc:
                raise StoreError(f"cannot create template store {self.directory}: {exc}") from exc
            for leftover in remove_leftovers(self.directory):
                LOG.info("removed %s, left by an interrupted write", leftover.name)
            loaded: dict[str, list[np.ndarray]] = {}
            for path in sorted(self.directory.glob(f"*{SUFFIX}")):
                if stat.S_IMODE(path.stat().st_mode) != 0o600:
                    os.chmod(path, 0o600)
                person_id = path.name[: -len(SUFFIX)]
                try:
                    record = json.loads(path.read_bytes().decode("utf-8"))
                    problem = (
                        _problem(record, person_id)
                        if valid_person_id(person_id)
                        else "file name is not a person id"
                    )
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    problem = f"unreadable ({type(exc).__name__}: {exc})"
                if problem:
                    self._move_aside(path, problem)
                    continue
                loaded[person_id] = [np.asarray(v, np.float32) for v in record["exemplars"]]
            LOG.info("template store %s: %d remembered person(s)", self.directory, len(loaded))
            return loaded

    def _move_aside(self, path: Path, problem: str) -> None:
        target = move_aside(path, self._clock())
        self.moved_aside.append(target)
        LOG.warning(
            "face template %s is corrupt (%s); moved aside to %s, others untouched",
            path,
            problem,
            target.name,
        )

    def save(self, person_id: str, exemplars: list[np.ndarray]) -> None:
        """Write (or replace) ``person_id``'s template atomically, mode 0600."""
        path = self._path(person_id)
        record = {
            "format": FORMAT,
            "kind": KIND,
            "person_id": person_id,
            "model_sha256": models.SHA256[models.EMBEDDING],
            "saved_at": self._clock(),
            "exemplars": [[round(float(v), 7) for v in e] for e in exemplars],
        }
        problem = _problem(record, person_id)
        if problem:
            raise ValueError(f"refusing to write an invalid template: {problem}")
        data = json.dumps(record, ensure_ascii=True).encode("ascii")
        with self._lock:
            try:
                write_private(path, data)
            except OSError as exc:
                raise StoreError(f"cannot write face template: {exc}") from exc

    def delete(self, person_id: str) -> bool:
        """Remove everything on disk about ``person_id``; True if anything was there. An
        invalid id names no file: False."""
        if not valid_person_id(person_id):
            return False
        with self._lock:
            removed = False
            for victim in record_files(self._path(person_id)):
                try:
                    victim.unlink()
                    removed = True
                except FileNotFoundError:
                    pass
            if removed:
                fsync_dir(self.directory)
            return removed

    def files(self) -> list[Path]:
        """Every file in the directory (for audits and tests)."""
        return sorted(p for p in self.directory.iterdir() if p.is_file())
