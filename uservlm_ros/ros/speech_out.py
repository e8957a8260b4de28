"""A node's spoken answers: text through ``uservlm/synthesize``, then out on ``speech_audio`` in
paced pieces for the robot's speaker; ``stop_speaking`` stops a turn's audio there.

The pieces of one turn carry its id as ``frame_id``, so the speaker joins them into one utterance
(:class:`uservlm_ros.speech.pacer.SpeechPacer`: the first piece at once, each later one when the
audio before it has half played). :meth:`SpeechOut.stop` drops the turn's pieces not sent yet and
tells the speaker to stop what it has of that turn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from std_msgs.msg import Header

from uservlm_ros.engines import turn
from uservlm_ros.msg import AudioChunk
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import array_to_audio, audio_to_array
from uservlm_ros.ros.service_client import call_with_timeout
from uservlm_ros.speech.pacer import SpeechPacer
from uservlm_ros.srv import Synthesize


class SpeechOut:
    """``timeout()``: seconds to wait for a synthesis; ``first_seconds()``: the first piece's
    length (both read per call, so parameter changes apply)."""

    def __init__(
        self,
        node,
        callback_group,
        timeout: Callable[[], float],
        first_seconds: Callable[[], float],
    ):
        self._node, self._timeout, self._first_seconds = node, timeout, first_seconds
        self._synthesize = node.create_client(
            Synthesize,
            "uservlm/synthesize",
            qos_profile=qos.SERVICES,
            callback_group=callback_group,
        )
        self._audio = node.create_publisher(AudioChunk, "speech_audio", qos.SPEECH_AUDIO)
        self._stop = node.create_publisher(Header, "stop_speaking", qos.EVENTS)
        self.pacer = SpeechPacer(self._send_piece)
        self.stops = 0

    def synthesize(self, text: str) -> turn.Speech:
        response = call_with_timeout(
            self._synthesize, Synthesize.Request(text=text), self._timeout()
        )
        if not response.success:
            raise RuntimeError(response.error)
        return turn.Speech(
            samples=audio_to_array(response.audio)[:, 0],
            sample_rate=int(response.audio.sample_rate),
            seconds=float(response.synthesis_seconds),
        )

    def publish(self, speech: turn.Speech, turn_id: str) -> float | None:
        """Send ``speech`` for the speaker, paced; the perf_counter time its first piece went out
        (None when it waits behind the turn's earlier pieces)."""
        return self.pacer.speak(
            speech.samples, speech.sample_rate, turn_id, first_seconds=float(self._first_seconds())
        )

    def speak(self, text: str, turn_id: str) -> float:
        """Synthesize ``text`` and send it at once; the synthesis seconds."""
        speech = self.synthesize(text)
        self.publish(speech, turn_id)
        return speech.seconds

    def stop(self, turn_id: str) -> int:
        """Stop ``turn_id``'s audio: its pieces not sent are dropped (how many), and the speaker
        is told to stop what it has of the turn."""
        dropped = self.pacer.drop(turn_id)
        self._stop.publish(Header(stamp=self._node.get_clock().now().to_msg(), frame_id=turn_id))
        self.stops += 1
        return dropped

    def close(self) -> None:
        self.pacer.close()  # pieces still waiting go out before the publisher goes

    def _send_piece(self, samples: np.ndarray, sample_rate: int, turn_id: str) -> None:
        stamp = self._node.get_clock().now().to_msg()
        self._audio.publish(array_to_audio(samples, sample_rate, stamp=stamp, frame_id=turn_id))
