"""Whisper's encoder window cut to the utterance, and the faster-whisper patch that makes it so.

Whisper pads every request to 30 s and its encoder's cost follows the window, not the speech: a
window as long as the utterance plus a margin gives the same text sooner on a CPU.
"""

from __future__ import annotations

import math

#: Whisper's standard window: features are padded to 30 s (3000 mel frames) before the encoder.
WHISPER_WINDOW_SECONDS = 30
#: Padding kept after the audio inside a shortened window, seconds (see :func:`encoder_window`).
WINDOW_MARGIN_SECONDS = 3.0
#: Default shortest encoder window, seconds: shorter windows gain almost nothing more (the decoder
#: and the VAD dominate), and 10 s keeps the window fixed for questions up to 7 s.
#: ``scripts/bench_asr.py`` measures latency and word errors per window.
WINDOW_SECONDS_DEFAULT = 10.0


def encoder_window(audio_seconds: float, window_seconds: float) -> int:
    """Seconds of (padded) audio the Whisper encoder sees for a request of ``audio_seconds``.

    The window is ``max(window_seconds, ceil(audio_seconds + WINDOW_MARGIN_SECONDS))``, capped at
    30: audio is never cut (longer requests are decoded in standard 30 s windows). The margin
    matters: with little padding after the speech, Whisper sometimes transcribes the utterance
    again into the padding, and the repetition triggers faster-whisper's slow temperature
    fallback. ``window_seconds == 0`` keeps the standard 30 s window.
    """
    if window_seconds <= 0:
        return WHISPER_WINDOW_SECONDS
    needed = math.ceil(audio_seconds + WINDOW_MARGIN_SECONDS)
    return int(min(WHISPER_WINDOW_SECONDS, max(math.ceil(window_seconds), needed)))


_WINDOWED_MODEL = None


def windowed_model_class():
    """faster-whisper's WhisperModel, with an encoder input as long as the current window.

    ``WhisperModel.transcribe(chunk_length=n)`` sets the window
    (``feature_extractor.nb_max_frames``,
    how much audio one decoding step covers), but faster-whisper 1.2 still pads each window's
    features to 3000 frames (``pad_or_trim`` in ``generate_segments`` and ``detect_language``)
    before ``encode``: the frames past the window are that zero padding, and are dropped here.
    It also remembers the first encoder output of a request, so that the language the decoder
    detected on it (``multilingual=True``) can be reported without encoding the audio twice.
    """
    global _WINDOWED_MODEL
    if _WINDOWED_MODEL is None:
        from faster_whisper import WhisperModel

        class WindowedWhisperModel(WhisperModel):
            first_encoder_output = None

            def encode(self, features):
                frames = self.feature_extractor.nb_max_frames
                if features.shape[-1] > frames:
                    features = features[..., :frames]
                output = super().encode(features)
                if self.first_encoder_output is None:
                    self.first_encoder_output = output
                return output

        _WINDOWED_MODEL = WindowedWhisperModel
    return _WINDOWED_MODEL


def repeats_its_tail(text: str, min_words: int = 3) -> bool:
    """True when ``text`` ends with a run of at least ``min_words`` words said twice in a row
    ("... keep it general. I will keep it general.")."""
    words = ["".join(ch for ch in word.lower() if ch.isalnum()) for word in text.split()]
    words = [word for word in words if word]
    return any(words[-k:] == words[-2 * k : -k] for k in range(min_words, len(words) // 2 + 1))
