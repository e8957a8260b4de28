"""Pepper's microphone stream (naoqi_driver2 ``naoqi_bridge_msgs/AudioBuffer``) -> 16 kHz mono
int16.

No message import here: the node passes the fields, ``converter.convert(msg.frequency,
msg.channel_map, msg.data)``, so this module is testable without naoqi_bridge_msgs (which no
reachable registry ships).

What naoqi_driver2 publishes (checked in ros-naoqi/naoqi_driver2 ``src/event/audio.cpp`` and
naoqi_bridge_msgs2 ``msg/AudioBuffer.msg``): ``frequency`` is always 48000, ``data`` holds 4
interleaved int16 channels in ALAudioDevice's order (left, right, front, rear microphone), and
``channel_map`` labels each position with the message's constants: ``CHANNEL_FRONT_LEFT=0,
FRONT_CENTER=1, FRONT_RIGHT=2, REAR_LEFT=3, REAR_CENTER=4, REAR_RIGHT=5`` (6-9: surround,
subwoofer, LFE). The map depends on the head's microphone configuration: ``[0, 2, 1, 4]``
(front-left, front-right, front-center, rear-center) on older heads, ``[3, 5, 0, 2]`` (rear-left,
rear-right, front-left, front-right) on heads whose ``RobotConfig/Head/Device/Micro/Version`` is
non-zero. Selecting a microphone by name therefore goes through ``channel_map``, never a fixed
position.

Channel selection (``PepperAudioConfig.channel``):

- ``"front"`` (default): the mean of the channels labelled FRONT_* -- on either head, the
  microphones facing the person; summing them in phase favours sound from straight ahead.
- ``"mean"``: all channels.
- a name such as ``"front_left"`` or ``"CHANNEL_REAR_CENTER"``: that channel (looked up in the
  buffer's ``channel_map``).
- ``"0"`` ... ``"3"``: that position in the interleaved frame, whatever its label.

Resampling is stateful (:class:`~uservlm_ros.robot.resampler.StreamingResampler`, 109-tap
Kaiser FIR, >= 70 dB above 9 kHz): filter history is carried from one buffer to the next, so the
16 kHz stream is identical to converting one long recording, whatever the buffer sizes (a
naoqi buffer of 4096 frames is not a multiple of 3 input samples per output sample, and
resampling each buffer on its own would click at every boundary). The output lags by
:attr:`PepperAudioConverter.delay_seconds` (1.125 ms). A change of rate or channel layout, or
:meth:`PepperAudioConverter.reset` (e.g. after a gap in the stream), restarts the filter.

Malformed buffers raise ``ValueError`` with the reason (the node logs it and counts it); the
converter's state is untouched by a rejected buffer.
"""

from __future__ import annotations

import array
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uservlm_ros.robot.resampler import StreamingResampler
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, float_to_int16, to_mono, validate_audio

#: naoqi_bridge_msgs/AudioBuffer channel constants.
NAOQI_CHANNELS: dict[int, str] = {
    0: "FRONT_LEFT",
    1: "FRONT_CENTER",
    2: "FRONT_RIGHT",
    3: "REAR_LEFT",
    4: "REAR_CENTER",
    5: "REAR_RIGHT",
    6: "SURROUND_LEFT",
    7: "SURROUND_RIGHT",
    8: "SUBWOOFER",
    9: "LFE",
}
_CODES = {name: code for code, name in NAOQI_CHANNELS.items()}
PEPPER_RATE = 48000
PEPPER_CHANNELS = 4
#: Longest buffer accepted (naoqi sends about 85-170 ms per buffer).
MAX_BUFFER_SECONDS = 5.0


def channel_names(channel_map: Sequence[int]) -> list[str]:
    return [NAOQI_CHANNELS.get(int(code), f"UNKNOWN({int(code)})") for code in channel_map]


def _parse_channel(spec: str):
    """'front' / 'mean' / an index / a naoqi name -> ('front'|'mean', None) | ('index', i) |
    ('code', c)."""
    text = str(spec).strip()
    lowered = text.lower()
    if lowered in ("front", "mean"):
        return lowered, None
    if text.isdigit():
        return "index", int(text)
    name = text.upper()
    if name.startswith("CHANNEL_"):
        name = name[len("CHANNEL_") :]
    if name not in _CODES:
        raise ValueError(
            f"unknown channel {spec!r}: expected 'front', 'mean', an index, or one of "
            f"{', '.join(n.lower() for n in _CODES)}"
        )
    return "code", _CODES[name]


@dataclass
class PepperAudioConfig:
    """Validated on construction (ValueError)."""

    #: "front" (mean of FRONT_* channels), "mean", a naoqi channel name, or an index.
    channel: str = "front"
    #: the only accepted ``frequency``; 0 accepts any rate in 8-192 kHz.
    input_rate: int = PEPPER_RATE
    #: the required ``len(channel_map)``; 0 accepts any.
    channels: int = PEPPER_CHANNELS

    def __post_init__(self) -> None:
        _parse_channel(self.channel)
        if self.input_rate and not 8000 <= self.input_rate <= 192000:
            raise ValueError(
                f"input_rate must be 0 or in [8000, 192000] Hz, got {self.input_rate}"
            )
        if not 0 <= self.channels <= 64:
            raise ValueError(f"channels must be in [0, 64], got {self.channels}")


def _as_int16(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        arr = data.reshape(-1) if data.ndim > 1 else data
    elif isinstance(data, array.array):
        if data.typecode != "h":
            raise ValueError(f"data must be int16 samples, got array of type {data.typecode!r}")
        arr = np.frombuffer(data, dtype=np.int16) if len(data) else np.zeros(0, dtype=np.int16)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("data must be a sequence of int16 samples, not raw bytes")
    else:
        arr = np.asarray(list(data) if not isinstance(data, (list, tuple)) else data)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int16)
        if arr.dtype.kind in "iu" and arr.min() >= -32768 and arr.max() <= 32767:
            arr = arr.astype(np.int16)
    if arr.dtype != np.int16:
        raise ValueError(f"data must be int16 samples, got {arr.dtype}")
    return arr


def _as_codes(channel_map) -> tuple[int, ...]:
    if isinstance(channel_map, (bytes, bytearray)):
        return tuple(channel_map)
    return tuple(int(code) for code in channel_map)


class PepperAudioConverter:
    """Stateful converter for one audio stream (one per subscription). Thread-safe."""

    def __init__(self, config: PepperAudioConfig | None = None):
        self.config = config or PepperAudioConfig()
        self._mode, self._arg = _parse_channel(self.config.channel)
        self._lock = threading.Lock()
        self._resampler: StreamingResampler | None = None
        self._layout: tuple[int, tuple[int, ...]] | None = None  # (rate, channel_map)
        self._positions: list[int] | None = None
        self.buffers = 0
        self.rejected = 0
        self.restarts = 0  # filter restarts caused by a rate or layout change
        self.samples_in = 0  # frames (per channel) accepted
        self.samples_out = 0
        self.last_reject_reason = ""

    @property
    def delay_seconds(self) -> float:
        """Output lag behind the input (the filter's group delay); 0 before the first buffer."""
        return self._resampler.delay_seconds if self._resampler else 0.0

    def convert(self, frequency: int, channel_map, data) -> np.ndarray:
        """One AudioBuffer -> 16 kHz mono int16 (possibly a few samples shorter or longer than
        ``frames / 3``: the filter emits each output once all its inputs have arrived).

        Raises ValueError, with the reason, for a malformed buffer; the stream state is kept.
        """
        with self._lock:
            try:
                samples, codes, positions = self._validate(frequency, channel_map, data)
            except ValueError as exc:
                self.rejected += 1
                self.last_reject_reason = str(exc)
                raise
            layout = (int(frequency), codes)
            if layout != self._layout:
                if self._layout is not None:
                    self.restarts += 1
                self._layout = layout
                self._resampler = StreamingResampler(int(frequency), ASR_SAMPLE_RATE)
            mono = self._select(samples, len(codes), positions)
            out = float_to_int16(np.clip(self._resampler.process(mono), -1.0, 1.0))
            self.buffers += 1
            self.samples_in += mono.size
            self.samples_out += out.size
            return out

    def first_sample_time(self, buffer_end: float, output_samples: int) -> float:
        """Capture time of the first sample returned by a convert() call, given the capture time
        of the end of that input buffer (naoqi_driver2 stamps a buffer when it receives it)."""
        return buffer_end - self.delay_seconds - output_samples / ASR_SAMPLE_RATE

    def reset(self) -> None:
        """Forget the filter history (call after a gap in the stream)."""
        with self._lock:
            if self._resampler is not None:
                self._resampler.reset()

    def _validate(self, frequency, channel_map, data):
        samples = _as_int16(data)
        if samples.size == 0:
            raise ValueError("empty audio buffer (no samples)")
        codes = _as_codes(channel_map)
        if not codes:
            raise ValueError("channel_map is empty: the number of interleaved channels is unknown")
        expected = self.config.channels
        if expected and len(codes) != expected:
            raise ValueError(
                f"channel_map has {len(codes)} entries {list(codes)}; expected {expected} channels"
            )
        if isinstance(frequency, bool) or not isinstance(frequency, (int, np.integer)):
            raise ValueError(f"frequency must be an integer (Hz), got {frequency!r}")
        if self.config.input_rate and frequency != self.config.input_rate:
            raise ValueError(
                f"unexpected sample rate {frequency} Hz; this stream must be "
                f"{self.config.input_rate} Hz"
            )
        # dtype, whole frames, rate range and length, with the shared wording of
        # uservlm_ros.speech.audio
        validate_audio(samples, int(frequency), MAX_BUFFER_SECONDS, channels=len(codes))
        return samples, codes, self._positions_for(codes)

    def _positions_for(self, codes: tuple[int, ...]) -> list[int] | None:
        """Frame positions to average (None = all channels)."""
        if self._mode == "mean":
            return None
        if self._mode == "index":
            if self._arg >= len(codes):
                raise ValueError(
                    f"channel index {self._arg} out of range for {len(codes)} channels"
                )
            return [self._arg]
        if self._mode == "front":
            positions = [
                i
                for i, code in enumerate(codes)
                if NAOQI_CHANNELS.get(code, "").startswith("FRONT_")
            ]
            if not positions:
                raise ValueError(
                    f"no FRONT_* channel in channel_map {list(codes)} "
                    f"({', '.join(channel_names(codes))})"
                )
            return positions
        positions = [i for i, code in enumerate(codes) if code == self._arg]
        if not positions:
            raise ValueError(
                f"channel {NAOQI_CHANNELS[self._arg]} is not in this buffer's channel_map "
                f"{list(codes)} ({', '.join(channel_names(codes))})"
            )
        return positions[:1]

    @staticmethod
    def _select(samples: np.ndarray, channels: int, positions: list[int] | None) -> np.ndarray:
        audio = samples.astype(np.float32) / 32768.0
        if positions is None:
            return to_mono(audio, channels)
        if len(positions) == 1:
            return to_mono(audio, channels, channel=positions[0])
        return audio.reshape(-1, channels)[:, positions].mean(axis=1)


__all__ = [
    "MAX_BUFFER_SECONDS",
    "NAOQI_CHANNELS",
    "PEPPER_CHANNELS",
    "PEPPER_RATE",
    "PepperAudioConfig",
    "PepperAudioConverter",
    "channel_names",
]
