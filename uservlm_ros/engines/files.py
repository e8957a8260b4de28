"""Files the engines keep (plain Python): model files checked against pinned SHA-256 digests,
and private records (consent, face templates) written so that a crash never leaves half a file.

A private record is written to a hidden temporary sibling (mode 0600), synced, renamed into place
and its directory synced; a temporary left by an interrupted write is removed at the next start
(:func:`remove_leftovers`). A record that fails to parse is not deleted but moved aside as
``<name>.corrupt-<UTC time>`` (:func:`move_aside`), so nothing is lost and the others still load.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path

TMP_SUFFIX = ".tmp"
_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600. OSError when it cannot; the
    temporary is then gone too (as far as the file system lets it be removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError:
        # the clean-up must not hide the cause: with the directory gone, replaced by a file or
        # read-only, removing the temporary fails too
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def move_aside(path: Path, when: float) -> Path:
    """Rename a bad ``path`` to ``<name>.corrupt-<UTC time of when>[-n]``; the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def remove_leftovers(directory: Path) -> list[Path]:
    """Remove the temporaries interrupted writes left in ``directory``; which ones."""
    leftovers = sorted(directory.glob(f".*{TMP_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def record_files(path: Path) -> list[Path]:
    """Everything on disk that belongs to the record at ``path``: the record, its moved-aside
    copies and temporaries."""
    return [
        path,
        *path.parent.glob(f"{path.name}.corrupt-*"),
        *path.parent.glob(f".{path.name}.*"),
    ]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
