"""Streaming (stateful) polyphase resampling: successive blocks give the same samples as one block.

:func:`uservlm_ros.speech.audio.resample` (scipy ``resample_poly``) resamples one whole signal; fed
block
by block it pads every block edge with zeros, which clicks at each boundary. This resampler keeps
the tail of the input as filter history, so the output of any split of the input equals the output
of the whole (up to float rounding). The price is latency: the output lags the input by the
filter's group delay, :attr:`StreamingResampler.delay_seconds` (about 1.1 ms for 48 -> 16 kHz).

Filter: a linear-phase Kaiser-window low-pass (``scipy.signal.firwin``) at half the lower rate,
with
the pass band up to 43.75 % of the lower rate (7 kHz for 16 kHz output) and at least
``stopband_db`` (70 dB) of attenuation from 56.25 % (9 kHz) up. Content between 8 and 9 kHz may
alias into 7-8 kHz, above the pass band, which is the usual trade for a short filter. For
48 -> 16 kHz that is 109 taps (a delay of 18 output samples), applied with
``scipy.signal.upfirdn`` (only the kept outputs are computed).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import firwin, kaiserord, upfirdn

PASSBAND_FRACTION = 0.4375  # of the lower rate
STOPBAND_FRACTION = 0.5625


def design_lowpass(from_rate: int, to_rate: int, stopband_db: float = 70.0) -> np.ndarray:
    """Anti-aliasing / anti-imaging filter at the up-sampled rate ``from_rate * up``, gain
    ``up``."""
    ratio = Fraction(int(to_rate), int(from_rate))
    up = ratio.numerator
    base = min(from_rate, to_rate)
    fs_up = from_rate * up
    width = (STOPBAND_FRACTION - PASSBAND_FRACTION) * base
    numtaps, beta = kaiserord(stopband_db, width / (fs_up / 2.0))
    # Round up so that the group delay, (numtaps - 1) / 2 at the up-sampled rate, is a whole number
    # of output samples: the stream is then the one-shot signal shifted by an integer.
    step = 2 * ratio.denominator
    numtaps = -(-(numtaps - 1) // step) * step + 1
    taps = firwin(numtaps, base / 2.0, window=("kaiser", beta), fs=fs_up)
    return taps * up


class StreamingResampler:
    """Rational-ratio resampler with state; float input (any scale), float32 output.

    ``process(block)`` returns every output sample whose inputs have all arrived (the stream is
    causal: output lags input by :attr:`delay_seconds`). ``flush()`` returns the tail (the last
    ``delay``), as if the stream were followed by silence, and resets the state.
    """

    def __init__(self, from_rate: int, to_rate: int, stopband_db: float = 70.0):
        for name, rate in (("from_rate", from_rate), ("to_rate", to_rate)):
            if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
                raise ValueError(f"{name} must be a positive integer, got {rate!r}")
        self.from_rate = int(from_rate)
        self.to_rate = int(to_rate)
        ratio = Fraction(self.to_rate, self.from_rate)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.passthrough = self.up == self.down == 1
        self.taps = (
            np.ones(1) if self.passthrough else design_lowpass(from_rate, to_rate, stopband_db)
        )
        self.reset()

    @property
    def delay_samples(self) -> int:
        """Group delay in output samples: stream output ``n + delay_samples`` is input time n."""
        return (len(self.taps) - 1) // (2 * self.down)

    @property
    def delay_seconds(self) -> float:
        return self.delay_samples / self.to_rate

    def reset(self) -> None:
        self._history = np.zeros(0)  # inputs from index _history_start on
        self._history_start = 0
        self._inputs = 0  # total input samples seen
        self._outputs = 0  # total output samples returned

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float64).reshape(-1)
        if self.passthrough:
            self._inputs += block.size
            self._outputs += block.size
            return block.astype(np.float32)
        up, down, taps = self.up, self.down, self.taps
        self._inputs += block.size
        # Output m uses inputs k with 0 <= m*down - up*k < len(taps); it is complete once input
        # floor(m*down/up) has arrived.
        complete = (up * self._inputs - 1) // down + 1 if self._inputs else 0
        if complete <= self._outputs:
            self._append(block)
            self._trim()
            return np.zeros(0, dtype=np.float32)
        buffer = np.concatenate([self._history, block]) if self._history.size else block
        start = (
            self._history_start
        )  # a multiple of `down`, so buffer outputs align with global ones
        offset = up * start // down
        full = upfirdn(taps, buffer, up, down)
        out = full[self._outputs - offset : complete - offset].astype(np.float32)
        self._outputs = complete
        self._history = buffer
        self._trim()
        return out

    def flush(self) -> np.ndarray:
        """The remaining outputs (the input followed by silence), then a fresh state."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        total = -(-(self._inputs * self.up) // self.down)  # ceil: the whole signal's length
        pad = -(-len(self.taps) // self.up) + self.down
        tail = self.process(np.zeros(pad))
        keep = max(0, total + self.delay_samples - (self._outputs - tail.size))
        self.reset()
        return tail[:keep]

    def _append(self, block: np.ndarray) -> None:
        self._history = (
            np.concatenate([self._history, block]) if self._history.size else block.copy()
        )

    def _trim(self) -> None:
        # Keep inputs from the oldest one the next output needs, rounded down to a multiple of
        # `down` so that the next buffer starts on an output boundary.
        need = (self._outputs * self.down - (len(self.taps) - 1)) // self.up
        need = max(0, need // self.down * self.down)
        if need > self._history_start:
            drop = need - self._history_start
            self._history = self._history[drop:]
            self._history_start = need


__all__ = ["StreamingResampler", "design_lowpass"]
