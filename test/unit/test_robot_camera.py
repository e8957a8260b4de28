"""uservlm_ros.robot.camera_source: files, pacing, missing / lost sources, backoff and recovery.

Time is a fake clock throughout: pacing, video playback and the retry schedule never sleep.
"""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from uservlm_ros.robot.camera_source import (
    CameraConfig,
    CameraOpenError,
    CameraSource,
    classify_source,
    opencv_has_gstreamer,
    to_rgb_frame,
)

REPO = Path(__file__).resolve().parents[2]
PERSON_JPG = REPO / "uservlm_ros" / "data" / "person.jpg"


class FakeClock:
    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def write_video(path, frames=10, fps=10.0, size=(320, 240)):
    """MJPG AVI whose frames get brighter (grey level 10 + i * step), with a blue square."""
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 10 + i * (200 // frames), np.uint8)
        frame[:40, :40] = (255, 0, 0)  # pure blue in BGR
        writer.write(frame)
    writer.release()
    return path


def grey_level(rgb):
    return float(rgb[100:, 100:].mean())


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "clip.avi")


# --------------------------------------------------------------------------- files


def test_video_file_frames_are_640x480_rgb_in_order_and_loop(video):
    clock = FakeClock()
    camera = CameraSource(CameraConfig(source=str(video), rate_hz=10.0), clock=clock)
    frames = []
    for _ in range(12):
        frame = camera.read()
        assert frame is not None, camera.last_error
        frames.append(frame)
        clock.advance(0.1)
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    levels = [grey_level(f) for f in frames]
    assert levels[:10] == sorted(levels[:10]) and levels[9] - levels[0] > 150, levels
    # looped: frames 10 and 11 are the video's frames 0 and 1 again
    assert abs(levels[10] - levels[0]) < 3 and abs(levels[11] - levels[1]) < 3
    # BGR from OpenCV became RGB: the blue square is in channel 2
    corner = frames[0][10:60, 10:60].reshape(-1, 3).mean(axis=0)
    assert corner[2] > 200 and corner[0] < 50, corner
    stats = camera.stats()
    assert stats.status == "ok" and stats.kind == "video"
    assert stats.frames_delivered == 12 and stats.failed_reads == 0
    assert (stats.source_width, stats.source_height, stats.source_fps) == (320, 240, 10.0)
    assert stats.achieved_rate_hz == pytest.approx(10.0, rel=0.05)


def test_video_plays_in_real_time_whatever_the_read_rate(video):
    clock = FakeClock()
    camera = CameraSource(CameraConfig(source=str(video), rate_hz=30.0), clock=clock)
    levels = []
    for _ in range(9):  # 0.3 s read at 30 Hz from a 10 fps video
        levels.append(round(grey_level(camera.read())))
        clock.advance(1 / 30)
    # each read shows the video frame nearest its time: 0,0,1,1,1,2,2,2,3
    runs = [levels[0:2], levels[2:5], levels[5:8], levels[8:]]
    assert all(len(set(run)) == 1 for run in runs), levels
    assert [run[0] for run in runs] == sorted({run[0] for run in runs}), levels
    assert camera.stats().frames_repeated == 5
    # a slow reader skips frames instead of falling behind the video
    slow = CameraSource(CameraConfig(source=str(video), rate_hz=2.0), clock=clock)
    slow.read()
    clock.advance(0.5)
    slow.read()
    assert slow.stats().frames_dropped == 4  # frames 1-4 skipped, frame 5 shown


def test_reads_faster_than_the_rate_return_none(video):
    clock = FakeClock()
    camera = CameraSource(CameraConfig(source=str(video), rate_hz=10.0), clock=clock)
    delivered = 0
    for _ in range(40):  # 1 s polled at 40 Hz
        delivered += camera.read() is not None
        clock.advance(0.025)
    assert delivered == 10
    assert camera.stats().failed_reads == 0  # "not due" is not a failure


def test_image_file_repeats_at_640x480():
    clock = FakeClock()
    camera = CameraSource(CameraConfig(source=str(PERSON_JPG)), clock=clock)
    first = camera.read()
    clock.advance(1 / 30)
    second = camera.read()
    assert first.shape == (480, 640, 3) and first.dtype == np.uint8
    assert np.array_equal(first, second) and first is not second  # the caller may keep or edit it
    assert camera.stats().kind == "image" and camera.stats().source_width == 512


def test_image_stretch_keeps_the_whole_picture():
    camera = CameraSource(CameraConfig(source=str(PERSON_JPG), fit="stretch"), clock=FakeClock())
    frame = camera.read()
    assert frame.shape == (480, 640, 3)
    original = cv2.cvtColor(cv2.imread(str(PERSON_JPG)), cv2.COLOR_BGR2RGB)
    # stretched, the top rows of the original (cropped away by "crop") are still there
    assert np.abs(frame[:4].mean(axis=(0, 1)) - original[:3].mean(axis=(0, 1))).max() < 12


def test_crop_removes_the_sides_of_a_wide_frame():
    wide = np.zeros((720, 1280, 3), np.uint8)
    wide[:, :, 1] = 255  # green (BGR)
    wide[:, :160] = (0, 0, 255)  # red bars outside the central 4:3 area
    wide[:, -160:] = (0, 0, 255)
    rgb = to_rgb_frame(wide, 640, 480, "crop")
    assert rgb.shape == (480, 640, 3)
    assert rgb[:, :, 0].max() < 10 and rgb[:, :, 1].min() > 245  # no red left, all green
    stretched = to_rgb_frame(wide, 640, 480, "stretch")
    assert stretched[:, :40, 0].mean() > 200  # the bars survive a stretch


def test_grey_and_bgra_frames_become_rgb():
    assert to_rgb_frame(np.full((480, 640), 7, np.uint8), 640, 480).shape == (480, 640, 3)
    bgra = np.zeros((480, 640, 4), np.uint8)
    bgra[..., 0] = 255
    assert to_rgb_frame(bgra, 640, 480)[0, 0].tolist() == [0, 0, 255]


def test_video_without_loop_ends(video):
    clock = FakeClock()
    camera = CameraSource(CameraConfig(source=str(video), rate_hz=10.0, loop=False), clock=clock)
    frames = 0
    for _ in range(15):
        frames += camera.read() is not None
        clock.advance(0.1)
    assert frames == 10
    assert camera.status == "ended" and camera.stats().failed_reads == 0


# --------------------------------------------------------------------------- faults


def test_truncated_video_is_played_to_its_end_then_looped(tmp_path):
    full = write_video(tmp_path / "full.avi", frames=20)
    data = full.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    clock = FakeClock()
    camera = CameraSource(CameraConfig(source=str(truncated), rate_hz=10.0), clock=clock)
    delivered = []
    for _ in range(40):
        frame = camera.read()  # must never raise
        delivered.append(frame is not None)
        clock.advance(0.1)
    stats = camera.stats()
    assert all(delivered), "a truncated file must not leave gaps"
    assert stats.truncations >= 2 and stats.status == "ok"
    assert "truncated" in stats.last_error and "of 20 declared" in stats.last_error
    # without loop the truncated end is the end
    once = CameraSource(CameraConfig(source=str(truncated), rate_hz=10.0, loop=False), clock=clock)
    count = 0
    for _ in range(30):
        count += once.read() is not None
        clock.advance(0.1)
    assert 0 < count < 20 and once.status == "ended" and once.stats().truncations == 1


def test_missing_device_path_is_an_error_not_an_exception():
    camera = CameraSource(CameraConfig(source="/dev/video99"), clock=FakeClock())
    assert camera.read() is None
    assert camera.status == "error"
    assert camera.last_error == "camera device /dev/video99 does not exist"


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="this machine has a camera 0")
def test_missing_device_index_gives_a_clear_error():
    camera = CameraSource(CameraConfig(source="0"), clock=FakeClock())
    assert camera.read() is None
    assert camera.status == "error"
    assert camera.last_error == "camera device 0 could not be opened"
    assert camera.stats().retry_in_s == pytest.approx(0.5)


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_pipeline_without_gstreamer_support_says_so():
    pipeline = (
        "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=640,height=480 ! nvvidconv ! appsink"
    )
    camera = CameraSource(CameraConfig(source=pipeline), clock=FakeClock())
    assert camera.kind == "gstreamer"
    assert camera.read() is None and camera.status == "error"
    assert "no GStreamer support" in camera.last_error


def test_backoff_schedule_doubles_to_the_maximum_and_only_retries_when_due():
    clock = FakeClock(0.0)
    attempts = []

    def never_opens(kind, spec, config):
        attempts.append(clock.now)
        raise CameraOpenError(f"camera device {spec} could not be opened")

    config = CameraConfig(source="3", retry_initial_s=0.5, retry_max_s=4.0)
    camera = CameraSource(config, clock=clock, open_capture=never_opens)
    while clock.now < 20.0:  # a 30 Hz timer for 20 s
        assert camera.read() is None
        clock.advance(1 / 30)
    # each delay counts from the failed attempt, which the 30 Hz timer makes at most 1/30 s late
    delays = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert attempts[0] == 0.0 and len(attempts) == len(delays) + 1, attempts
    for i, delay in enumerate(delays):
        gap = attempts[i + 1] - attempts[i]
        assert delay - 1e-9 <= gap < delay + 1 / 30 + 1e-9, (attempts, delays)
    stats = camera.stats()
    assert stats.status == "error" and stats.last_error == "camera device 3 could not be opened"
    assert 0 < stats.retry_in_s <= 4.0 and stats.frames_delivered == 0


def test_a_file_that_appears_later_is_picked_up(tmp_path, video):
    clock = FakeClock()
    later = tmp_path / "later.avi"
    camera = CameraSource(
        CameraConfig(source=str(later), rate_hz=10.0, retry_initial_s=1.0), clock=clock
    )
    assert camera.read() is None
    assert camera.status == "error" and camera.last_error == f"video file {later} does not exist"
    shutil.copy(video, later)
    clock.advance(0.5)
    assert camera.read() is None  # the retry is not due yet
    clock.advance(0.6)
    frame = camera.read()
    assert frame is not None and frame.shape == (480, 640, 3)
    assert camera.status == "ok" and camera.stats().opens == 1


class FakeDevice:
    """A live camera that fails after ``good`` frames (unplugged)."""

    def __init__(self, good):
        self.good = good
        self.released = False

    def read(self):
        if self.good <= 0:
            return False, None
        self.good -= 1
        return True, np.full((480, 640, 3), 128, np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True


def test_device_lost_mid_stream_is_reopened_with_backoff():
    clock = FakeClock(0.0)
    plugged = {"value": True}
    devices = []

    def open_device(kind, spec, config):
        if not plugged["value"]:
            raise CameraOpenError(f"camera device {spec} could not be opened")
        devices.append(FakeDevice(good=5))
        return devices[-1]

    config = CameraConfig(source="0", max_failed_reads=3, retry_initial_s=0.5, retry_max_s=8.0)
    camera = CameraSource(config, clock=clock, open_capture=open_device)
    results = []
    for _ in range(5):
        results.append(camera.read() is not None)
        clock.advance(1 / 30)
    assert all(results) and camera.status == "ok"
    plugged["value"] = False  # unplugged: reads fail from now on
    for _ in range(3):
        assert camera.read() is None
        clock.advance(1 / 30)
    assert camera.status == "error"
    assert (
        camera.last_error == "camera device 0 stopped delivering frames (3 failed reads in a row)"
    )
    assert devices[0].released
    # unplugged for a while: reopen attempts fail with growing delays
    for _ in range(60):
        camera.read()
        clock.advance(1 / 30)
    assert camera.status == "error" and camera.last_error == "camera device 0 could not be opened"
    plugged["value"] = True
    for _ in range(300):  # at most the maximum backoff
        if camera.read() is not None:
            break
        clock.advance(1 / 30)
    stats = camera.stats()
    assert stats.status == "ok" and stats.reconnects == 1 and stats.failed_reads == 3
    assert stats.frames_delivered == 6


def test_an_exception_inside_the_capture_never_reaches_the_caller():
    class Exploding(FakeDevice):
        def read(self):
            raise cv2.error("device vanished")

    camera = CameraSource(
        CameraConfig(source="0"),
        clock=FakeClock(),
        open_capture=lambda kind, spec, config: Exploding(0),
    )
    assert camera.read() is None
    assert camera.status == "error" and "device vanished" in camera.last_error
    assert camera.stats().failed_reads == 1


# --------------------------------------------------------------------------- config


def test_source_kinds():
    assert classify_source("0") == ("device", 0)
    assert classify_source("/dev/video2") == ("device", "/dev/video2")
    assert classify_source("v4l2src ! videoconvert ! appsink")[0] == "gstreamer"
    assert classify_source("face.PNG")[0] == "image"
    assert classify_source("clip.mp4")[0] == "video"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": " "}, "empty"),
        ({"width": 0}, "width"),
        ({"rate_hz": 0}, "rate_hz"),
        ({"fit": "pad"}, "fit"),
        ({"retry_initial_s": 5, "retry_max_s": 1}, "maximum backoff"),
        ({"max_failed_reads": 0}, "max_failed_reads"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CameraConfig(**kwargs)


def test_stats_are_diagnostics_ready(video):
    camera = CameraSource(CameraConfig(source=str(video)), clock=FakeClock())
    camera.read()
    pairs = dict(camera.stats().key_values())
    assert pairs["status"] == "ok" and pairs["frames_delivered"] == "1"
    assert all(isinstance(v, str) for v in pairs.values())
    camera.close()
    assert camera.read() is None and camera.status == "closed"
