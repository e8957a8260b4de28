"""Camera frames for the robot side: a device, a GStreamer pipeline, or a looped video / image
file.

Built to be driven by a ROS timer at ``1 / rate_hz`` (see :attr:`CameraSource.period`)::

    camera = CameraSource(CameraConfig(source="0"))
    frame = camera.read()          # 640x480 RGB uint8, or None (not due yet, retrying, ended)
    stats = camera.stats()         # for /diagnostics

Source kinds (``CameraConfig.source``):

- ``"0"``, ``"1"``, ... or ``/dev/videoN``: a V4L2 device (USB camera).
- a string containing ``"!"``: a GStreamer pipeline ending in ``appsink``, opened with
  ``cv2.CAP_GSTREAMER`` (the Jetson CSI camera through ``nvarguscamerasrc``). This needs an OpenCV
  built with GStreamer (JetPack's); the PyPI wheels have none and say so in ``last_error``. End the
  pipeline with ``appsink drop=true max-buffers=1`` so a read returns the newest frame.
- a file with an image extension: the same picture at every read.
- any other file: a video, played in real time at its own frame rate and looped (or ended,
  ``loop=False``). Frames are picked by elapsed time: a reader faster than the video repeats
  frames, a slower one skips them (counted in ``frames_dropped``).

Frames come out as ``height x width x 3`` RGB uint8 (640x480 by default). A source of another
size is centre-cropped to the target aspect ratio and resized (``fit="crop"``; ``"stretch"``
resizes only), so a 16:9 camera does not squash faces.

Faults never raise into the caller's loop. A source that cannot be opened, or stops delivering
frames (``max_failed_reads`` failed reads in a row on a live source; any failed read right after a
video is opened), puts the source in status ``"error"`` with a reason in ``last_error``; reopening
is retried with exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``), reset by
the first good frame after a reopen. A video whose data ends before its declared frame count
(truncated file) is played up to where it ends and then looped; ``truncations`` counts those
events and ``last_error`` names the file.

Reads on a live source block until the device's next frame (at most one frame interval when the
device runs at ``rate_hz``); run the timer in its own callback group. The clock is injectable so
pacing, file playback and backoff are testable without sleeping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.robot.backoff import Backoff
from uservlm_ros.robot.rate_meter import RateMeter

_LOG = logging.getLogger(__name__)

KIND_DEVICE = "device"
KIND_GSTREAMER = "gstreamer"
KIND_VIDEO = "video"
KIND_IMAGE = "image"

STATUS_STARTING = "starting"  # not opened yet
STATUS_OK = "ok"
STATUS_ERROR = "error"  # not delivering; a reopen is booked (see retry_in_s)
STATUS_ENDED = "ended"  # a video file reached its end with loop=False
STATUS_CLOSED = "closed"

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
_FITS = ("crop", "stretch")
# A reader may call a little early (timer jitter) and still get the frame it is due.
_EARLY_TOLERANCE = 0.25


class CameraOpenError(RuntimeError):
    """The source could not be opened; the message is what ``last_error`` shows."""


@dataclass
class CameraConfig:
    """Camera source settings. Validated on construction (ValueError)."""

    # : device index ("0"), /dev/videoN, a GStreamer pipeline (contains "!"), a video or image
    # file.
    source: str = "0"
    width: int = 640
    height: int = 480
    #: frames delivered per second at most (the node's timer rate).
    rate_hz: float = 30.0
    #: video files: start again at the end (False: status "ended").
    loop: bool = True
    #: "crop": centre-crop to the target aspect ratio, then resize; "stretch": resize only.
    fit: str = "crop"
    #: seconds before the first reopen attempt; doubles per failure up to retry_max_s.
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    #: consecutive failed reads after which a live source is declared lost and reopened.
    max_failed_reads: int = 5

    def __post_init__(self) -> None:
        self.source = str(self.source).strip()
        if not self.source:
            raise ValueError("camera source is empty")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 8192:
                raise ValueError(f"camera {name} must be an integer in [16, 8192], got {value!r}")
        if not 0 < self.rate_hz <= 240:
            raise ValueError(f"camera rate_hz must be in (0, 240], got {self.rate_hz}")
        if self.fit not in _FITS:
            raise ValueError(f"camera fit must be one of {_FITS}, got {self.fit!r}")
        if self.max_failed_reads < 1:
            raise ValueError(f"max_failed_reads must be >= 1, got {self.max_failed_reads}")
        Backoff(self.retry_initial_s, self.retry_max_s)  # validates the pair


@dataclass
class CameraStats:
    status: str
    #: the most recent problem; kept after a recovery (status "ok") as a record of it.
    last_error: str
    source: str  # human-readable: "device 0", "video file /x.avi", ...
    kind: str
    frames_delivered: int
    #: video frames skipped because the reader was slower than the video.
    frames_dropped: int
    #: video frames delivered again because the reader was faster than the video.
    frames_repeated: int
    failed_reads: int
    opens: int
    #: successful opens after the first one (recoveries and video loops excluded).
    reconnects: int
    truncations: int
    achieved_rate_hz: float
    retry_in_s: float
    #: mean time inside read() for delivered frames (decode + colour + resize), milliseconds.
    read_ms_mean: float
    source_width: int
    source_height: int
    source_fps: float

    def key_values(self) -> list[tuple[str, str]]:
        """(key, value) strings, ready for diagnostic_msgs/KeyValue."""
        out = []
        for key, value in asdict(self).items():
            out.append((key, f"{value:.3f}" if isinstance(value, float) else str(value)))
        return out


def classify_source(source: str) -> tuple[str, Any]:
    """(kind, spec): the kind of a source string and what to open (an int index or a string)."""
    source = str(source).strip()
    if "!" in source:
        return KIND_GSTREAMER, source
    if source.isdigit():
        return KIND_DEVICE, int(source)
    if source.startswith("/dev/"):
        return KIND_DEVICE, source
    if Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        return KIND_IMAGE, os.path.expanduser(source)
    return KIND_VIDEO, os.path.expanduser(source)


def describe_source(kind: str, spec: Any) -> str:
    if kind == KIND_DEVICE:
        return f"device {spec}"
    if kind == KIND_GSTREAMER:
        return "GStreamer pipeline"
    return f"{kind} file {spec}"


class _StillImage:
    """An image file behind the capture interface: every read returns the same picture."""

    def __init__(self, bgr: np.ndarray):
        self._bgr = bgr

    def read(self):
        return True, self._bgr

    def grab(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def opencv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def open_opencv_capture(kind: str, spec: Any, config: CameraConfig):
    """Open a source with OpenCV; raise :class:`CameraOpenError` with a reason on failure.

    Returns an object with ``read() -> (ok, bgr)``, ``grab() -> ok``, ``get(prop)`` and
    ``release()`` (a ``cv2.VideoCapture`` or an image wrapper). The default ``open_capture`` of
    :class:`CameraSource`; tests pass their own.
    """
    import cv2

    if kind == KIND_IMAGE:
        if not os.path.isfile(spec):
            raise CameraOpenError(f"image file {spec} does not exist")
        bgr = cv2.imread(spec, cv2.IMREAD_COLOR)
        if bgr is None:
            raise CameraOpenError(f"image file {spec} could not be decoded")
        return _StillImage(bgr)
    if kind == KIND_VIDEO:
        if not os.path.isfile(spec):
            raise CameraOpenError(f"video file {spec} does not exist")
        cap = cv2.VideoCapture(spec)
        if not cap.isOpened():
            cap.release()
            raise CameraOpenError(
                f"video file {spec} could not be opened (unsupported or corrupt)"
            )
        return cap
    if kind == KIND_GSTREAMER:
        if not opencv_has_gstreamer():
            raise CameraOpenError(
                "this OpenCV build has no GStreamer support (the PyPI wheels have none; use "
                "JetPack's OpenCV on the Jetson, or a device index)"
            )
        cap = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise CameraOpenError(f"GStreamer pipeline could not be opened: {spec}")
        return cap
    if kind == KIND_DEVICE:
        if isinstance(spec, str) and not os.path.exists(spec):
            raise CameraOpenError(f"camera device {spec} does not exist")
        cap = (
            cv2.VideoCapture(spec, cv2.CAP_V4L2)
            if isinstance(spec, str)
            else cv2.VideoCapture(spec)
        )
        if not cap.isOpened():
            cap.release()
            raise CameraOpenError(f"camera device {spec} could not be opened")
        # Best effort: a driver that cannot do these keeps its own mode and frames are resized.
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        cap.set(cv2.CAP_PROP_FPS, config.rate_hz)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of stale ones
        return cap
    raise CameraOpenError(f"unknown camera source kind {kind!r}")


def to_rgb_frame(frame: np.ndarray, width: int, height: int, fit: str = "crop") -> np.ndarray:
    """A decoded OpenCV frame (BGR, BGRA or gray) -> ``height x width x 3`` RGB uint8."""
    import cv2

    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        raise ValueError(f"unsupported frame shape {frame.shape}")
    src_h, src_w = rgb.shape[:2]
    if (src_w, src_h) == (width, height):
        return rgb
    if fit == "crop" and src_w * height != src_h * width:
        if src_w * height > src_h * width:  # wider than the target: trim the sides
            new_w = max(1, round(src_h * width / height))
            x0 = (src_w - new_w) // 2
            rgb = rgb[:, x0 : x0 + new_w]
        else:  # taller: trim top and bottom
            new_h = max(1, round(src_w * height / width))
            y0 = (src_h - new_h) // 2
            rgb = rgb[y0 : y0 + new_h]
    shrinking = rgb.shape[1] > width or rgb.shape[0] > height
    return cv2.resize(
        rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


class CameraSource:
    """Frames from one source at a target rate, with error state and backoff reopening.

    ``clock`` (seconds, monotonic) drives pacing, video playback and the retry schedule.
    ``open_capture(kind, spec, config)`` opens a source or raises :class:`CameraOpenError`
    (default: :func:`open_opencv_capture`). Thread-safe: ``read`` and ``stats`` may be called from
    different threads.
    """

    def __init__(
        self,
        config: CameraConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_capture: Callable[[str, Any, CameraConfig], Any] | None = None,
    ):
        self.config = config or CameraConfig()
        self._clock = clock
        self._open_capture = open_capture or open_opencv_capture
        self.kind, self._spec = classify_source(self.config.source)
        self.name = describe_source(self.kind, self._spec)
        self._lock = threading.Lock()
        self._backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        self._rate = RateMeter(window=2.0)
        self._cap = None
        self._status = STATUS_STARTING
        self._last_error = ""
        self._next_due: float | None = None
        # video playback
        self._t0 = 0.0
        self._fps = 0.0
        self._declared_frames = 0
        self._pos = 0  # index of the next frame the capture will return
        self._last_rgb: np.ndarray | None = None
        self._image_rgb: np.ndarray | None = None
        self._consecutive_failures = 0
        self._awaiting_first_frame = False
        self._source_size = (0, 0)
        # counters
        self.frames_delivered = 0
        self.frames_dropped = 0
        self.frames_repeated = 0
        self.failed_reads = 0
        self.opens = 0
        self._fresh_opens = 0  # opens that were not video loops
        self.truncations = 0
        self._read_seconds = 0.0
        self.last_frame_time: float | None = None  # clock time of the newest delivered frame

    # ------------------------------------------------------------------ public

    @property
    def period(self) -> float:
        """Seconds between frames: the period for the node's timer."""
        return 1.0 / self.config.rate_hz

    @property
    def status(self) -> str:
        return self._status

    @property
    def last_error(self) -> str:
        return self._last_error

    def read(self) -> np.ndarray | None:
        """The next frame (``height x width x 3`` RGB uint8, the caller's to keep) or None.

        None means: not due yet (called faster than ``rate_hz``), waiting for a reopen, the read
        failed (counted, see :meth:`stats`), or the video ended. Never raises.
        """
        with self._lock:
            now = self._clock()
            try:
                return self._read(now)
            except Exception as exc:  # a capture backend raising (cv2.error, OSError, ...)
                self.failed_reads += 1
                self._lost(now, f"camera {self.name} failed: {type(exc).__name__}: {exc}")
                return None

    def stats(self) -> CameraStats:
        with self._lock:
            now = self._clock()
            return CameraStats(
                status=self._status,
                last_error=self._last_error,
                source=self.name,
                kind=self.kind,
                frames_delivered=self.frames_delivered,
                frames_dropped=self.frames_dropped,
                frames_repeated=self.frames_repeated,
                failed_reads=self.failed_reads,
                opens=self.opens,
                reconnects=max(0, self._fresh_opens - 1),
                truncations=self.truncations,
                achieved_rate_hz=self._rate.rate(now),
                retry_in_s=self._backoff.remaining(now) if self._status == STATUS_ERROR else 0.0,
                read_ms_mean=1000.0 * self._read_seconds / max(1, self.frames_delivered),
                source_width=self._source_size[0],
                source_height=self._source_size[1],
                source_fps=self._fps,
            )

    def close(self) -> None:
        with self._lock:
            self._release()
            self._status = STATUS_CLOSED

    # ------------------------------------------------------------------ internals

    def _read(self, now: float) -> np.ndarray | None:
        if self._status in (STATUS_ENDED, STATUS_CLOSED):
            return None
        if self._cap is None:
            if not self._backoff.due(now) or not self._open(now, reconnect=True):
                return None
        if not self._is_due(now):
            return None
        started = time.perf_counter()
        frame = self._next_frame(now)
        if frame is None:
            return None
        self._read_seconds += time.perf_counter() - started
        self.frames_delivered += 1
        self.last_frame_time = now
        self._rate.tick(now)
        self._book_next(now)
        if self._awaiting_first_frame:
            self._awaiting_first_frame = False
            self._backoff.success()
            if self._status != STATUS_OK:
                _LOG.info("camera %s delivering frames again", self.name)
            self._status = STATUS_OK
        return frame

    def _is_due(self, now: float) -> bool:
        return self._next_due is None or now >= self._next_due - _EARLY_TOLERANCE * self.period

    def _book_next(self, now: float) -> None:
        if self._next_due is None or self._next_due + self.period < now:
            self._next_due = now + self.period  # first frame, or the reader stalled: restart
        else:
            self._next_due += self.period

    def _open(self, now: float, reconnect: bool) -> bool:
        try:
            cap = self._open_capture(self.kind, self._spec, self.config)
        except CameraOpenError as exc:
            self._fail_open(now, str(exc))
            return False
        except Exception as exc:
            self._fail_open(
                now, f"camera {self.name} could not be opened: {type(exc).__name__}: {exc}"
            )
            return False
        self._cap = cap
        self.opens += 1
        if reconnect:
            self._fresh_opens += 1
        self._awaiting_first_frame = True
        self._consecutive_failures = 0
        self._t0 = now
        self._pos = 0
        self._last_rgb = None
        self._image_rgb = None
        if self.kind == KIND_VIDEO:
            import cv2

            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            # Containers without a usable rate: play one video frame per delivered frame.
            self._fps = fps if 1.0 <= fps <= 240.0 else self.config.rate_hz
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self._declared_frames = int(count) if count and count > 0 else 0
        return True

    def _fail_open(self, now: float, reason: str) -> None:
        delay = self._backoff.failure(now)
        if reason != self._last_error or self._status != STATUS_ERROR:
            _LOG.warning("%s; retrying in %.1f s", reason, delay)
        self._status = STATUS_ERROR
        self._last_error = reason

    def _lost(self, now: float, reason: str) -> None:
        """The open source stopped working: release it and book a reopen."""
        self._release()
        self._next_due = None
        self._fail_open(now, reason)

    def _release(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            except Exception:  # releasing a dead device may fail; nothing more to do with it
                pass
        self._cap = None

    def _next_frame(self, now: float) -> np.ndarray | None:
        if self.kind == KIND_IMAGE:
            if self._image_rgb is None:
                ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    self.failed_reads += 1
                    self._lost(now, f"image file {self._spec} could not be read")
                    return None
                self._image_rgb = self._convert(bgr)
            return self._image_rgb.copy()
        if self.kind == KIND_VIDEO:
            return self._next_video_frame(now)
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self.failed_reads += 1
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.config.max_failed_reads:
                self._lost(
                    now,
                    f"camera {self.name} stopped delivering frames "
                    f"({self._consecutive_failures} failed reads in a row)",
                )
            return None
        self._consecutive_failures = 0
        return self._convert(bgr)

    def _next_video_frame(self, now: float) -> np.ndarray | None:
        # Nearest frame, so a reader running at the video's own rate tolerates timer jitter.
        target = int((now - self._t0) * self._fps + 0.5)
        if self._last_rgb is not None and target < self._pos:
            self.frames_repeated += 1
            return self._last_rgb.copy()
        target = max(target, self._pos)
        while True:
            ok, bgr = self._advance_to(target)
            if ok:
                self._last_rgb = self._convert(bgr)
                return self._last_rgb.copy()
            if self._pos == 0:
                self.failed_reads += 1
                self._lost(now, f"video file {self._spec} has no readable frames")
                return None
            # End of the data: the real end, or a truncated file.
            if self._declared_frames and self._pos < self._declared_frames:
                self.truncations += 1
                self._last_error = (
                    f"video file {self._spec} ended at frame {self._pos} of "
                    f"{self._declared_frames} declared (truncated or corrupt); looping"
                    if self.config.loop
                    else f"video file {self._spec} ended at frame {self._pos} of "
                    f"{self._declared_frames} declared (truncated or corrupt)"
                )
                # Once per source at warning level: a truncated file loops for ever.
                _LOG.log(
                    logging.WARNING if self.truncations == 1 else logging.DEBUG,
                    "%s",
                    self._last_error,
                )
            if not self.config.loop:
                self._release()
                self._status = STATUS_ENDED
                return None
            self._release()
            if not self._open(now, reconnect=False):
                return None
            self._awaiting_first_frame = False  # a loop is not a recovery
            target = 0

    def _advance_to(self, target: int):
        """Skip to frame ``target`` and decode it: (ok, bgr)."""
        while self._pos < target:
            if not self._cap.grab():
                return False, None
            self._pos += 1
            self.frames_dropped += 1
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return False, None
        self._pos += 1
        return True, bgr

    def _convert(self, bgr: np.ndarray) -> np.ndarray:
        self._source_size = (int(bgr.shape[1]), int(bgr.shape[0]))
        return to_rgb_frame(bgr, self.config.width, self.config.height, self.config.fit)


__all__ = [
    "CameraConfig",
    "CameraOpenError",
    "CameraSource",
    "CameraStats",
    "IMAGE_EXTENSIONS",
    "classify_source",
    "open_opencv_capture",
    "opencv_has_gstreamer",
    "to_rgb_frame",
]
