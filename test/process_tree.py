"""Processes seen through /proc (Linux): a command's children, whether one is still running, and
what one holds (resident memory, threads, open file descriptors) for the fault and soak tests."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not reaped yet, counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def command_line(pid: int) -> list[str]:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def resources(pid: int) -> dict[str, int]:
    """Resident memory (bytes), threads and open file descriptors of a running process."""
    rss_pages = int((PROC / str(pid) / "statm").read_text().split()[1])
    threads = len(os.listdir(PROC / str(pid) / "task"))
    fds = len(os.listdir(PROC / str(pid) / "fd"))
    return {"rss": rss_pages * os.sysconf("SC_PAGE_SIZE"), "threads": threads, "fds": fds}
