"""Play spoken answers (int16 mono) through the sound card, or write them to WAV files.

    sink = SpeakerSink(SpeakerConfig(), on_start=..., on_end=...)
    sink.start()
    sink.play(speech.samples, speech.sample_rate)     # returns at once; a worker thread plays

Utterances play one after another from a bounded queue (``max_queue``) in a worker thread, so a
long answer never blocks the caller. Pieces given the same ``key`` (the turn: the cloud sends a
spoken answer in growing pieces, or sentence by sentence) join the utterance of that key that is
still queued or playing, gaplessly: one stream, one WAV, one on_start / on_end. A piece that comes
after its utterance has ended (the sender fell behind real time) or was cancelled starts a new
one. Each utterance fires ``on_start(playback)`` when its first sample goes out and
``on_end(playback)`` when its last sample has been played (or it was cancelled), from the worker
thread, always in that order and in queue order. The node publishes ``robot_speaking``
true / false from them, and ``playback.started_at`` is the "first audio sample out" time.

Outputs (``SpeakerConfig.mode``):

- ``"device"``: a ``sounddevice.OutputStream`` per utterance (at the audio's rate, or resampled to
  the device's default rate if it refuses that one), written with blocking writes of 50 ms so that
  :meth:`SpeakerSink.cancel` (barge-in) takes effect within one block. ``started_at`` is the clock
  at the first write plus the stream's output latency (the estimate of when the first sample
  leaves the speaker); ``on_start`` fires just before that write. ``on_end`` fires after
  ``stream.stop()``, which returns once the device has played every buffered sample. A device
  error during an utterance writes it to a WAV file instead (``playback.error`` says why), so
  nothing is silently lost.
- ``"file"``: each utterance is written to ``<output_dir>/<YYYYmmdd-HHMMSS-mmm>_<n>.wav``. With
  ``realtime=True`` (default) ``on_end`` fires once the audio's duration has elapsed after
  ``on_start``, as it would on a speaker, so ``robot_speaking`` and the self-speech gate behave as
  on the robot; with ``realtime=False`` it fires right after the file is written (tests, batch
  runs).
- ``"auto"`` (default): ``"device"`` if PortAudio finds the output device at :meth:`start`, else
  ``"file"`` (the reason is kept in ``stats().last_error``).

Timestamps are on the injected ``clock`` (``time.monotonic`` by default; pass the ROS clock for
header-ready times). Waiting in file mode uses real time.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uservlm_ros.speech.audio import float_to_int16, resample, validate_audio

_LOG = logging.getLogger(__name__)

MODES = ("auto", "device", "file")
_BLOCK_SECONDS = 0.05
_STOP = object()


@dataclass
class SpeakerConfig:
    """Validated on construction (ValueError)."""

    #: "auto" (device if one is found, else files), "device" or "file".
    mode: str = "auto"
    #: PortAudio output device: "default", an index or a name substring.
    device: str = "default"
    #: where WAV files go in file mode (and when the device fails).
    output_dir: str = "out/speech"
    #: file mode: on_end after the audio's duration (True) or at once (False).
    realtime: bool = True
    #: utterances waiting to play; play() refuses more.
    max_queue: int = 8
    #: longest utterance accepted, seconds.
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"speaker mode must be one of {MODES}, got {self.mode!r}")
        if not self.output_dir:
            raise ValueError("speaker output_dir is empty")
        if not 1 <= self.max_queue <= 1000:
            raise ValueError(f"max_queue must be in [1, 1000], got {self.max_queue}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


@dataclass
class Playback:
    """One utterance; handed to on_start and on_end."""

    id: int  # 1, 2, 3, ... per sink
    sample_rate: int
    samples: int
    seconds: float
    queued_at: float
    output: str = ""  # "device" or "file"
    started_at: float | None = None  # first sample out (estimated for a device)
    ended_at: float | None = None
    path: str = ""  # the WAV written, if any
    completed: bool = False  # False: cancelled or failed
    error: str = ""
    audio: np.ndarray | None = field(default=None, repr=False)
    key: str = ""  # pieces with the same key join this utterance while it is open
    closed: bool = False  # set by the worker once it takes no more pieces


@dataclass
class SpeakerStats:
    mode: str
    status: str  # "ok" or "error" (the last utterance hit a device error)
    last_error: str
    speaking: bool
    queued: int
    played: int
    cancelled: int
    refused: int
    callback_errors: int
    seconds_played: float
    last_path: str

    def key_values(self) -> list[tuple[str, str]]:
        return [
            (key, f"{v:.3f}" if isinstance(v, float) else str(v))
            for key, v in asdict(self).items()
        ]


def _import_sounddevice():
    try:
        import sounddevice
    except OSError as exc:
        raise RuntimeError(f"{exc} (install libportaudio2)") from exc
    except ImportError as exc:
        raise RuntimeError(f"sounddevice is not installed: {exc}") from exc
    return sounddevice


class SpeakerSink:
    def __init__(
        self,
        config: SpeakerConfig | None = None,
        on_start: Callable[[Playback], None] | None = None,
        on_end: Callable[[Playback], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sounddevice: Any = None,
    ):
        self.config = config or SpeakerConfig()
        self.on_start = on_start
        self.on_end = on_end
        self._clock = clock
        self._sd = sounddevice
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_id = 1
        self._pending = 0  # queued + playing
        self._current: Playback | None = None
        self._open: Playback | None = None  # the newest keyed utterance, queued or playing
        self.mode = self.config.mode if self.config.mode != "auto" else ""
        self._status = "ok"
        self._last_error = ""
        self.played = 0
        self.cancelled = 0
        self.refused = 0
        self.callback_errors = 0
        self.seconds_played = 0.0
        self.last_path = ""
        self._files = 0

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Pick the output (auto mode) and start the worker. Never raises for a missing device."""
        with self._lock:
            if self._thread is not None:
                return
            if self.config.mode == "auto":
                reason = self._probe_device()
                self.mode = "file" if reason else "device"
                if reason:
                    folder = self.config.output_dir
                    self._last_error = f"no output device, writing WAV files to {folder}: {reason}"
                    _LOG.info("%s", self._last_error)
            self._thread = threading.Thread(target=self._run, name="speaker_sink", daemon=True)
            self._thread.start()

    def play(self, samples: np.ndarray, sample_rate: int, key: str = "") -> int:
        """Queue one utterance, or with ``key`` append to the open utterance of that key (same
        rate); returns its id. ValueError for invalid audio or a full queue."""
        samples = np.asarray(samples)
        validate_audio(samples, sample_rate, self.config.max_seconds, channels=1)
        pcm = samples if samples.dtype == np.int16 else float_to_int16(samples)
        with self._lock:
            if self._thread is None:
                raise RuntimeError("SpeakerSink.start() has not been called")
            joined = self._open
            if (
                key
                and joined is not None
                and joined.key == key
                and not joined.closed
                and joined.sample_rate == int(sample_rate)
            ):
                if joined.seconds + pcm.size / float(sample_rate) > self.config.max_seconds:
                    self.refused += 1
                    raise ValueError(
                        f"utterance {key!r} would be longer than {self.config.max_seconds} s"
                    )
                joined.audio = np.concatenate([joined.audio, pcm])
                joined.samples = int(joined.audio.size)
                joined.seconds = joined.samples / float(joined.sample_rate)
                return joined.id
            waiting = self._pending - (1 if self._current is not None else 0)
            if waiting >= self.config.max_queue:
                self.refused += 1
                raise ValueError(
                    f"speaker queue is full ({self.config.max_queue} utterances waiting)"
                )
            playback = Playback(
                id=self._next_id,
                sample_rate=int(sample_rate),
                samples=int(pcm.size),
                seconds=pcm.size / float(sample_rate),
                queued_at=self._clock(),
                audio=pcm.copy(),
                key=key,
            )
            self._open = playback if key else None
            self._next_id += 1
            self._pending += 1
        self._queue.put(playback)
        return playback.id

    def _take(self, item: Playback, offset: int, close: bool = True) -> np.ndarray:
        """The item's samples from ``offset`` on. With ``close``, none left closes the item: later
        pieces of its key start a new utterance."""
        with self._lock:
            piece = item.audio[offset:]
            if piece.size == 0 and close:
                item.closed = True
            return piece

    def cancel(self) -> int:
        """Stop the current utterance and drop the queued ones (barge-in); returns how many."""
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            dropped += 1
        with self._lock:
            self._pending -= dropped
            self.cancelled += dropped
            self._open = None  # pieces still coming for a cancelled utterance start a new one
            if self._current is not None:
                self._current.closed = True
                self._cancel.set()
                dropped += 1
            self._idle.notify_all()
        return dropped

    @property
    def speaking(self) -> bool:
        with self._lock:
            return self._current is not None and self._current.started_at is not None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or playing; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker."""
        self.cancel()
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
        with self._lock:
            self._thread = None

    def stats(self) -> SpeakerStats:
        with self._lock:
            return SpeakerStats(
                mode=self.mode or self.config.mode,
                status=self._status,
                last_error=self._last_error,
                speaking=self._current is not None and self._current.started_at is not None,
                queued=self._pending - (1 if self._current is not None else 0),
                played=self.played,
                cancelled=self.cancelled,
                refused=self.refused,
                callback_errors=self.callback_errors,
                seconds_played=self.seconds_played,
                last_path=self.last_path,
            )

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            with self._lock:
                self._current = item
                self._cancel.clear()
            try:
                self._play_one(item)
            except Exception as exc:  # keep the worker alive whatever happens
                item.error = item.error or f"{type(exc).__name__}: {exc}"
                _LOG.error("speaker: utterance %d failed: %s", item.id, item.error)
                with self._lock:
                    self._status = "error"
                    self._last_error = f"utterance {item.id} failed: {item.error}"
                if item.started_at is not None and item.ended_at is None:
                    self._finish(item, completed=False)
            finally:
                with self._lock:
                    item.closed = True
                    self._current = None
                    self._pending -= 1
                    item.audio = None
                    self._idle.notify_all()

    def _play_one(self, item: Playback) -> None:
        if self.mode == "device":
            try:
                self._play_device(item)
                with self._lock:
                    self._status = "ok"
                return
            except _DeviceError as exc:
                with self._lock:
                    self._status = "error"
                    self._last_error = str(exc)
                item.error = str(exc)
                _LOG.warning("%s; writing utterance %d to a WAV file instead", exc, item.id)
                if item.started_at is not None:  # it failed mid-utterance
                    self._finish(item, completed=False)
                    return
        self._play_file(item)

    def _play_file(self, item: Playback) -> None:
        item.output = "file"
        folder = Path(os.path.expanduser(self.config.output_dir))
        folder.mkdir(parents=True, exist_ok=True)
        wall = time.time()
        stamp = (
            time.strftime("%Y%m%d-%H%M%S", time.localtime(wall))
            + f"-{int(wall * 1000) % 1000:03d}"
        )
        path = folder / f"{stamp}_{item.id}.wav"
        item.path = str(path)
        with self._lock:
            self.last_path = item.path
        completed = True
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(item.sample_rate)
            written = 0
            while True:
                # Realtime: the utterance lasts its duration, as on a speaker, and takes pieces
                # until then; otherwise it ends with the samples it has.
                piece = self._take(item, written, close=not self.config.realtime)
                if piece.size:
                    out.writeframes(piece.astype("<i2", copy=False).tobytes())
                    written += piece.size
                    if item.started_at is None:  # the first samples are out
                        item.started_at = self._clock()
                        self._emit(self.on_start, item)
                    continue
                if not self.config.realtime:
                    break
                left = item.started_at + written / item.sample_rate - self._clock()
                if left <= 0:
                    with self._lock:
                        if item.audio.size == written:
                            item.closed = True
                            break
                    continue
                if self._cancel.wait(min(left, _BLOCK_SECONDS)):
                    completed = False
                    break
        self._finish(item, completed)

    def _play_device(self, item: Playback) -> None:
        item.output = "device"
        try:
            sd = self._sd or _import_sounddevice()
            device = self._device()
            rate = item.sample_rate
            try:
                sd.check_output_settings(device=device, channels=1, dtype="int16", samplerate=rate)
            except Exception:
                info = sd.query_devices(device, "output")
                rate = int(round(float(info["default_samplerate"])))
            stream = sd.OutputStream(samplerate=rate, device=device, channels=1, dtype="int16")
            stream.start()
        except Exception as exc:
            raise _DeviceError(
                f"speaker output device {self.config.device!r} unavailable: {exc}"
            ) from exc
        block = max(1, int(rate * _BLOCK_SECONDS))
        completed = True
        try:
            taken = 0
            while completed:
                piece = self._take(item, taken)  # what has arrived: the first piece, then joiners
                if piece.size == 0:
                    break
                taken += piece.size
                if rate != item.sample_rate:  # the device refused the audio's rate
                    piece = float_to_int16(
                        np.clip(resample(piece, item.sample_rate, rate), -1.0, 1.0)
                    )
                for offset in range(0, piece.size, block):
                    if self._cancel.is_set():
                        completed = False
                        break
                    if item.started_at is None:
                        item.started_at = self._clock() + float(
                            getattr(stream, "latency", 0.0) or 0.0
                        )
                        self._emit(self.on_start, item)
                    stream.write(piece[offset : offset + block].reshape(-1, 1))
            if completed:
                stream.stop()  # returns once every buffered sample has been played
            else:
                stream.abort()
        except Exception as exc:
            raise _DeviceError(
                f"speaker output device {self.config.device!r} failed: {exc}"
            ) from exc
        finally:
            try:
                stream.close()
            except Exception:
                pass
        self._finish(item, completed)

    def _finish(self, item: Playback, completed: bool) -> None:
        item.ended_at = self._clock()
        item.completed = completed
        with self._lock:
            if completed:
                self.played += 1
                self.seconds_played += item.seconds
            else:
                self.cancelled += 1
        self._emit(self.on_end, item)

    def _emit(self, callback, item: Playback) -> None:
        if callback is None:
            return
        try:
            callback(item)
        except Exception:  # a bad callback must not stop playback
            with self._lock:
                self.callback_errors += 1
            _LOG.exception("speaker callback failed for utterance %d", item.id)

    def _device(self):
        text = self.config.device.strip()
        return None if text in ("", "default") else int(text) if text.isdigit() else text

    def _probe_device(self) -> str:
        """'' if the output device is usable, else why not."""
        try:
            sd = self._sd or _import_sounddevice()
            sd.query_devices(self._device(), "output")
        except Exception as exc:
            return str(exc)
        return ""


class _DeviceError(RuntimeError):
    pass


__all__ = ["MODES", "Playback", "SpeakerConfig", "SpeakerSink", "SpeakerStats"]
