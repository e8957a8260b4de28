"""16 kHz mono int16 microphone chunks from a sound card (sounddevice / PortAudio) or a WAV file.

Driven by the node (a timer at the chunk period, or any loop)::

    mic = MicrophoneSource(MicrophoneConfig(source="default"))
    mic.start()                       # never raises; see mic.status / mic.last_error
    for chunk in mic.read_all():      # MicChunk(samples int16, sample_rate=16000, stamp, index,
    final)
        publish(chunk)

Chunk length: 40 ms by default (640 samples, 1280 bytes), configurable 20-100 ms. 40 ms keeps an
AudioChunk message, with its header and the RTPS/UDP/IP headers, inside one 1500-byte Ethernet /
Wi-Fi frame, so on the robot -> cloud link a chunk is never split into IP fragments (losing one
fragment loses the whole datagram and, with reliable QoS, costs a resend of all of it). It adds
20 ms of average latency to the end of an utterance (100 ms chunks: 50 ms) for 25 messages a
second.

Sources (``MicrophoneConfig.source``):

- ``"default"`` (or ""), a PortAudio device index (``"2"``) or a device-name substring
  (``"USB"``): captured with a ``sounddevice.InputStream`` whose callback only copies the block
  into a bounded queue (``queue_seconds``); conversion happens in :meth:`MicrophoneSource.read`.
  The stream is opened at 16 kHz; a device that refuses 16 kHz is opened at its default rate and
  resampled with a streaming filter. ``channels`` > 1 (a microphone array) is downmixed (mean) or
  one ``channel`` is kept. A block that finds the queue full pushes out the oldest
  (``dropped_chunks``); PortAudio's input-overflow flags count as ``overruns``.
- a path ending in ``.wav`` (16-bit PCM, any rate and channel count): loaded, downmixed and
  resampled to 16 kHz with :mod:`uservlm_ros.speech.audio`, then served in chunks, in real time
  (``realtime=True``: chunk i becomes available when its last sample would have been captured) or
  as fast as read. At the end: ``loop=True`` starts again (chunks keep their size across the
  seam); otherwise the last, possibly shorter, chunk has ``final=True``, then status is
  ``"ended"`` and ``ended`` is True.

Faults never raise into the caller: no PortAudio, no matching device, a device that stops
delivering (no callback for ``stall_seconds``) or a missing/unreadable WAV file put the source in
status ``"error"`` with a reason in ``last_error``, and reopening is retried with exponential
backoff (``retry_initial_s`` doubling up to ``retry_max_s``, back to the start once audio flows
again) from :meth:`read`.

Timestamps (``MicChunk.stamp``, the capture time of the chunk's first sample) are on the injected
``clock`` (``time.monotonic`` by default); pass the node's ROS clock to get header-ready stamps.
For a device, it is the clock at the callback minus the block's duration; for a file, the time the
chunk's first sample would have been captured had the file been played from ``start()``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from uservlm_ros.robot.backoff import Backoff
from uservlm_ros.robot.resampler import StreamingResampler
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, float_to_int16, read_wav, resample, to_mono

_LOG = logging.getLogger(__name__)

STATUS_STARTING = "starting"
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_ENDED = "ended"
STATUS_CLOSED = "closed"

MIN_CHUNK_MS = 20
MAX_CHUNK_MS = 100


@dataclass
class MicrophoneConfig:
    """Validated on construction (ValueError)."""

    #: "default", a PortAudio device index or name substring, or a path to a .wav file.
    source: str = "default"
    #: chunk length in milliseconds, 20-100.
    chunk_ms: int = 40
    #: channels to capture from a device (a microphone array may need all of its channels).
    channels: int = 1
    #: the channel to keep (device or WAV); -1 = the mean of all channels.
    channel: int = -1
    #: WAV: deliver chunks in real time (False: as fast as they are read).
    realtime: bool = True
    #: WAV: start again at the end instead of ending.
    loop: bool = False
    #: device: seconds of captured audio held for a slow reader before the oldest is dropped.
    queue_seconds: float = 2.0
    #: device: no audio for this long means the device is lost (and is reopened).
    stall_seconds: float = 1.0
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0

    def __post_init__(self) -> None:
        self.source = str(self.source).strip()
        if (
            isinstance(self.chunk_ms, bool)
            or not isinstance(self.chunk_ms, int)
            or not (MIN_CHUNK_MS <= self.chunk_ms <= MAX_CHUNK_MS)
        ):
            raise ValueError(
                f"chunk_ms must be an integer in [{MIN_CHUNK_MS}, {MAX_CHUNK_MS}], got "
                f"{self.chunk_ms!r}"
            )
        if not 1 <= self.channels <= 64:
            raise ValueError(f"channels must be in [1, 64], got {self.channels}")
        if not -1 <= self.channel < 64:
            raise ValueError(f"channel must be -1 (mean) or a channel index, got {self.channel}")
        if not self.is_file and self.channel >= self.channels:
            raise ValueError(
                f"channel {self.channel} is out of range for {self.channels} captured channel(s)"
            )
        if not 0.1 <= self.queue_seconds <= 60:
            raise ValueError(f"queue_seconds must be in [0.1, 60], got {self.queue_seconds}")
        if not self.stall_seconds > 0:
            raise ValueError(f"stall_seconds must be > 0, got {self.stall_seconds}")
        Backoff(self.retry_initial_s, self.retry_max_s)

    @property
    def is_file(self) -> bool:
        return self.source.lower().endswith(".wav")

    @property
    def chunk_samples(self) -> int:
        return ASR_SAMPLE_RATE * self.chunk_ms // 1000

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_ms / 1000.0


@dataclass
class MicChunk:
    samples: np.ndarray  # int16, mono
    sample_rate: int
    stamp: float  # capture time of the first sample, on the source's clock
    index: int  # 0, 1, 2, ... since start()
    final: bool = False  # the last chunk of a WAV file (loop=False)

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


@dataclass
class MicrophoneStats:
    status: str
    #: the most recent problem; kept after a recovery (status "ok") as a record of it.
    last_error: str
    source: str
    chunks: int
    samples: int
    overruns: int  # PortAudio input overflows (audio lost in the driver)
    dropped_chunks: int  # captured blocks pushed out of a full queue (reader too slow)
    opens: int
    retry_in_s: float
    device_rate: int  # the rate the device (or file) delivers before resampling
    queued: int
    ended: bool

    def key_values(self) -> list[tuple[str, str]]:
        return [
            (key, f"{v:.3f}" if isinstance(v, float) else str(v))
            for key, v in asdict(self).items()
        ]


def _import_sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # the module raises OSError when libportaudio is missing
        raise RuntimeError(f"{exc} (install libportaudio2)") from exc
    except ImportError as exc:
        raise RuntimeError(f"sounddevice is not installed: {exc}") from exc
    return sounddevice


class MicrophoneSource:
    """One microphone stream. ``read`` / ``stats`` may run in different threads than the audio
    callback. ``sounddevice`` may be injected (a module-like object) for tests."""

    def __init__(
        self,
        config: MicrophoneConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        sounddevice: Any = None,
    ):
        self.config = config or MicrophoneConfig()
        self._clock = clock
        self._sd = sounddevice
        self._lock = threading.Lock()
        self._backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        self._status = STATUS_STARTING
        self._last_error = ""
        self._awaiting_audio = False  # opened, no chunk yet: the backoff resets on the first one
        # device
        self._stream = None
        self._device_rate = 0
        self._queue: deque = deque()
        self._queue_max = 1
        self._last_audio = 0.0
        self._resampler: StreamingResampler | None = None
        self._keep: int | None = None if self.config.channel < 0 else self.config.channel
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_stamp = 0.0
        # file
        self._wav: np.ndarray | None = None
        self._wav_pos = 0
        self._t0 = 0.0
        self._served = 0  # samples served since the file was opened
        # counters
        self.chunks = 0
        self.samples = 0
        self.overruns = 0
        self.dropped_chunks = 0
        self.opens = 0

    @property
    def name(self) -> str:
        if self.config.is_file:
            return f"WAV file {self.config.source}"
        return f"microphone input device {self.config.source or 'default'!r}"

    @property
    def status(self) -> str:
        return self._status

    @property
    def last_error(self) -> str:
        return self._last_error

    @property
    def ended(self) -> bool:
        return self._status == STATUS_ENDED

    def start(self) -> None:
        """Open the source now (otherwise the first read() does). Never raises."""
        with self._lock:
            if self._is_open() or self._status in (STATUS_ENDED, STATUS_CLOSED):
                return
            self._open(self._clock())

    def read(self) -> MicChunk | None:
        """The next chunk, or None (none ready yet, reopening, or ended). Never raises."""
        with self._lock:
            now = self._clock()
            try:
                if self._status in (STATUS_ENDED, STATUS_CLOSED):
                    return None
                if not self._is_open():
                    if not self._backoff.due(now) or not self._open(now):
                        return None
                chunk = self._read_file(now) if self.config.is_file else self._read_device(now)
            except Exception as exc:  # a backend failing in an unexpected way
                self._lost(now, f"{self.name} failed: {type(exc).__name__}: {exc}")
                return None
            if chunk is not None:
                self.chunks += 1
                self.samples += chunk.samples.size
                if self._awaiting_audio:
                    # Only audio proves recovery: a device that opens and then stays silent keeps
                    # backing off.
                    self._awaiting_audio = False
                    self._backoff.success()
            return chunk

    def read_all(self, limit: int = 1000) -> list[MicChunk]:
        """Every chunk ready now (at most ``limit``)."""
        out: list[MicChunk] = []
        while len(out) < limit:
            chunk = self.read()
            if chunk is None:
                break
            out.append(chunk)
        return out

    def stats(self) -> MicrophoneStats:
        with self._lock:
            now = self._clock()
            return MicrophoneStats(
                status=self._status,
                last_error=self._last_error,
                source=self.name,
                chunks=self.chunks,
                samples=self.samples,
                overruns=self.overruns,
                dropped_chunks=self.dropped_chunks,
                opens=self.opens,
                retry_in_s=self._backoff.remaining(now) if self._status == STATUS_ERROR else 0.0,
                device_rate=self._device_rate,
                queued=len(self._queue),
                ended=self._status == STATUS_ENDED,
            )

    def close(self) -> None:
        with self._lock:
            self._close_stream()
            self._wav = None
            self._status = STATUS_CLOSED

    # ------------------------------------------------------------------ opening

    def _is_open(self) -> bool:
        return self._wav is not None if self.config.is_file else self._stream is not None

    def _open(self, now: float) -> bool:
        try:
            if self.config.is_file:
                self._open_file(now)
            else:
                self._open_device(now)
        except Exception as exc:
            reason = (
                str(exc)
                if isinstance(exc, _OpenError)
                else f"{self.name}: {type(exc).__name__}: {exc}"
            )
            self._fail(now, reason)
            return False
        self.opens += 1
        self._awaiting_audio = True
        if self._status == STATUS_ERROR:
            _LOG.info("%s is delivering audio again", self.name)
        self._status = STATUS_OK
        return True

    def _fail(self, now: float, reason: str) -> None:
        delay = self._backoff.failure(now)
        if reason != self._last_error or self._status != STATUS_ERROR:
            _LOG.warning("%s; retrying in %.1f s", reason, delay)
        self._status = STATUS_ERROR
        self._last_error = reason

    def _lost(self, now: float, reason: str) -> None:
        self._close_stream()
        self._wav = None
        self._fail(now, reason)

    def _open_file(self, now: float) -> None:
        path = os.path.expanduser(self.config.source)
        if not os.path.isfile(path):
            raise _OpenError(f"WAV file {path} does not exist")
        try:
            samples, rate, channels = read_wav(path)
        except Exception as exc:  # wave.Error, EOFError, ValueError (not 16-bit)
            raise _OpenError(f"WAV file {path} could not be read: {exc}") from exc
        if samples.size == 0 or samples.size % channels:
            raise _OpenError(f"WAV file {path} has no whole audio frames")
        mono = to_mono(samples, channels, self._channel_index(channels))
        if rate != ASR_SAMPLE_RATE:
            mono = float_to_int16(np.clip(resample(mono, rate, ASR_SAMPLE_RATE), -1.0, 1.0))
        self._wav = mono
        self._wav_pos = 0
        self._served = 0
        self._t0 = now
        self._device_rate = rate

    def _open_device(self, now: float) -> None:
        try:
            sd = self._sd or _import_sounddevice()
        except RuntimeError as exc:
            raise _OpenError(f"{self.name} unavailable: {exc}") from exc
        source = self.config.source
        device = None if source in ("", "default") else int(source) if source.isdigit() else source
        try:
            info = sd.query_devices(device, "input")
        except Exception as exc:  # ValueError (no such device), PortAudioError
            raise _OpenError(f"{self.name} unavailable: {exc}") from exc
        available = int(info.get("max_input_channels", 0)) if isinstance(info, dict) else 0
        if available < self.config.channels:
            raise _OpenError(
                f"{self.name} ({info.get('name', '?') if isinstance(info, dict) else '?'}) has "
                f"{available} input channel(s); {self.config.channels} requested"
            )
        rate = ASR_SAMPLE_RATE
        try:
            sd.check_input_settings(
                device=device, channels=self.config.channels, dtype="int16", samplerate=rate
            )
        except Exception:
            rate = int(round(float(info.get("default_samplerate", 0) or 0)))
            if rate < 8000:
                raise _OpenError(f"{self.name} supports neither 16 kHz nor a usable default rate")
        blocksize = max(1, round(rate * self.config.chunk_seconds))
        self._queue_max = max(
            2, int(np.ceil(self.config.queue_seconds / self.config.chunk_seconds))
        )
        self._queue = deque()
        self._pending = np.zeros(0, dtype=np.int16)
        self._resampler = (
            None if rate == ASR_SAMPLE_RATE else StreamingResampler(rate, ASR_SAMPLE_RATE)
        )
        self._device_rate = rate
        try:
            stream = sd.InputStream(
                samplerate=rate,
                blocksize=blocksize,
                device=device,
                channels=self.config.channels,
                dtype="int16",
                callback=self._callback,
            )
            stream.start()
        except Exception as exc:
            raise _OpenError(f"{self.name} could not be opened at {rate} Hz: {exc}") from exc
        self._stream = stream
        self._last_audio = now

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # a vanished device may fail to close; it is dropped either way
                pass

    def _channel_index(self, channels: int) -> int | None:
        if self.config.channel < 0:
            return None
        if self.config.channel >= channels:
            raise _OpenError(
                f"{self.name} has {channels} channel(s); channel {self.config.channel} requested"
            )
        return self.config.channel

    # ------------------------------------------------------------------ reading

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio's thread: copy and queue, nothing else.
        now = self._clock()
        if status and getattr(status, "input_overflow", False):
            self.overruns += 1
        block = np.array(indata, dtype=np.int16, copy=True).reshape(-1)
        stamp = now - frames / float(self._device_rate or ASR_SAMPLE_RATE)
        if len(self._queue) >= self._queue_max:
            self._queue.popleft()
            self.dropped_chunks += 1
        self._queue.append((stamp, block))
        self._last_audio = now

    def _read_device(self, now: float) -> MicChunk | None:
        size = self.config.chunk_samples
        while self._pending.size < size:
            try:
                stamp, block = self._queue.popleft()
            except IndexError:
                break
            mono = to_mono(block, self.config.channels, self._keep)
            if self._resampler is not None:
                resampled = self._resampler.process(mono.astype(np.float32) / 32768.0)
                mono = float_to_int16(np.clip(resampled, -1.0, 1.0))
            if self._pending.size == 0:
                self._pending_stamp = stamp
            self._pending = np.concatenate([self._pending, mono]) if self._pending.size else mono
        if self._pending.size >= size:
            samples, self._pending = self._pending[:size], self._pending[size:]
            chunk = MicChunk(samples, ASR_SAMPLE_RATE, self._pending_stamp, self.chunks)
            self._pending_stamp += size / ASR_SAMPLE_RATE
            return chunk
        stream = self._stream
        if (
            not getattr(stream, "active", True)
            or now - self._last_audio > self.config.stall_seconds
        ):
            self._lost(
                now,
                f"{self.name} stopped delivering audio "
                f"(nothing for {now - self._last_audio:.1f} s)",
            )
        return None

    def _read_file(self, now: float) -> MicChunk | None:
        wav = self._wav
        size = self.config.chunk_samples
        remaining = wav.size - self._wav_pos
        length = size if (self.config.loop or remaining >= size) else remaining
        # (1 us of slack, far below a sample period, absorbs float error in the clock's sums)
        if (
            self.config.realtime
            and now < self._t0 + (self._served + length) / ASR_SAMPLE_RATE - 1e-6
        ):
            return None
        if length <= remaining:
            samples = wav[self._wav_pos : self._wav_pos + length]
            self._wav_pos += length
        else:  # loop: the chunk spans the end and the start
            parts, need = [wav[self._wav_pos :]], length - remaining
            while need > 0:
                take = min(need, wav.size)
                parts.append(wav[:take])
                need -= take
                self._wav_pos = take
            samples = np.concatenate(parts)
        if self.config.loop and self._wav_pos >= wav.size:
            self._wav_pos = 0
        final = not self.config.loop and self._wav_pos >= wav.size
        chunk = MicChunk(
            samples.copy(),
            ASR_SAMPLE_RATE,
            self._t0 + self._served / ASR_SAMPLE_RATE,
            self.chunks,
            final=final,
        )
        self._served += length
        if final:
            self._wav = None
            self._status = STATUS_ENDED
            _LOG.info("%s: end of file after %d chunks", self.name, self.chunks + 1)
        return chunk


class _OpenError(RuntimeError):
    """Opening failed; the message is the whole reason shown in last_error."""


__all__ = ["MicChunk", "MicrophoneConfig", "MicrophoneSource", "MicrophoneStats"]
