"""asr_node: speech to text, as the service ``uservlm/transcribe`` and as a stream.

Lifecycle node around :class:`uservlm_ros.engines.asr.ASREngine` (faster-whisper; Whisper base
from PyPI offline, large-v3 as in the paper when available). With ``listen`` on, it cuts the
``audio`` stream into utterances (Silero VAD), ignores audio captured while ``robot_speaking`` is
true (plus a tail for room echo: the robot never answers itself), transcribes each utterance and
publishes it on ``speech`` (uservlm_ros/msg/Utterance) with its capture-time start and end.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from std_msgs.msg import Bool

from uservlm_ros.engines.asr.listening import StreamListener
from uservlm_ros.engines.asr.vad import VadConfig, VoiceActivitySegmenter
from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine
from uservlm_ros.msg import AudioChunk, Utterance
from uservlm_ros.robot.self_speech import SelfSpeechGate
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import audio_to_array, seconds_to_stamp, stamp_to_seconds
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.executors import InlineCallbackGroup
from uservlm_ros.ros.parameters import config_from, dataclass_parameters
from uservlm_ros.ros.runner import run_node
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, resample, to_mono
from uservlm_ros.srv import Transcribe

# The "heard" line is logged this long after the utterance went out, not before or at once: an
# rclpy log call holds the GIL (it inspects the caller's frame and publishes on /rosout), which
# would delay the turn the utterance starts.
HEARD_LOG_DELAY = 0.1


class ASRNode(EngineNode):
    CONFIG = ASRConfig
    DESCRIPTIONS = {
        "model": "Whisper model: base (offline default, from PyPI, checksum-verified), tiny.en, "
        "large-v3 (the paper's; needs the hub or a local copy) or a CTranslate2 model directory",
        "device": "cpu | cuda | auto",
        "compute_type": "CTranslate2 compute type; empty = int8 on CPU, float16 on a GPU",
        "cpu_threads": "CPU threads for CTranslate2 (0 = all cores, at most 4)",
        "cache_dir": "Where the offline Whisper base is assembled (empty = ~/.cache/uservlm_ros)",
        "beam_size": "Beam width for decoding (1 = greedy)",
        "vad": "Drop non-speech with the Silero VAD bundled with faster-whisper",
        "language": "ISO 639-1 code to force, or empty to detect per request",
        "max_seconds": "Longest audio accepted in one request (seconds)",
        "window_seconds": "Shortest Whisper encoder window, seconds, grown to cover each request "
        "(0 = the standard 30 s; shorter is faster on a CPU)",
    }

    VAD_DESCRIPTIONS = {
        "vad_threshold": "Silero speech probability above which audio counts as speech",
        "min_silence_ms": "Silence that ends an utterance, milliseconds",
        "min_speech_ms": "Speech shorter than this is dropped, milliseconds",
        "speech_pad_ms": "Audio kept before and after the detected speech, milliseconds",
        "max_utterance_seconds": "An utterance is cut after this long, seconds",
    }
    EXTRA_PARAMETERS = {
        **dataclass_parameters(VadConfig, VAD_DESCRIPTIONS),
        "listen": (True, "Transcribe the `audio` stream and publish utterances on `speech`"),
        "self_speech_tail": (
            0.3,
            "Audio captured this long after the robot stops speaking is ignored too (room echo), "
            "seconds",
        ),
        "speculative": (
            False,
            "Experimental: start transcribing an utterance as soon as the silence after it "
            "begins, while its end is being confirmed (same result, earlier)",
        ),
    }

    def __init__(self, **kwargs):
        super().__init__("asr_node", **kwargs)
        self._stream_entities = []
        self._listener: StreamListener | None = None
        self._heard: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._speech_pub = None
        self.utterances = 0
        self.speculative_hits = 0
        self._warned_rate = False
        self._speculation: Future | None = None  # transcribing the utterance about to end
        self._speculator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr_speculative")
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, parameters):
        """window_seconds applies to the loaded engine at once (no reload); it is validated
        first."""
        from rcl_interfaces.msg import SetParametersResult

        for parameter in parameters:
            if parameter.name == "window_seconds" and self.engine is not None:
                try:
                    dataclasses.replace(self.engine.config, window_seconds=float(parameter.value))
                except (TypeError, ValueError) as error:
                    return SetParametersResult(successful=False, reason=str(error))
                self.engine.config.window_seconds = float(parameter.value)
        return SetParametersResult(successful=True)

    def load_engine(self, config: ASRConfig) -> ASREngine:
        engine = ASREngine(config)
        engine.load()
        return engine

    def describe_engine(self) -> str:
        return f"whisper {self.param('model')}" if self.engine is not None else "no engine"

    def create_interfaces(self) -> None:
        self.serve(Transcribe, "uservlm/transcribe", self.on_transcribe)
        if self.param("listen"):
            segmenter = VoiceActivitySegmenter(config_from(self, VadConfig, self.VAD_DESCRIPTIONS))
            self._listener = StreamListener(
                segmenter, SelfSpeechGate(tail_seconds=self.param("self_speech_tail"))
            )
            # audio chunks and robot_speaking: short, in the executor's spin thread (no pool
            # hand-off)
            stream = InlineCallbackGroup()
            self._speech_pub = self.create_publisher(Utterance, "speech", qos.EVENTS)
            self._stream_entities = [
                self.create_subscription(
                    AudioChunk, "audio", self.on_audio, qos.AUDIO, callback_group=stream
                ),
                self.create_subscription(
                    Bool,
                    "robot_speaking",
                    self.on_robot_speaking,
                    qos.LATCHED,
                    callback_group=stream,
                ),
            ]
            self._worker = threading.Thread(
                target=self._transcribe_stream, name="asr_stream", daemon=True
            )
            self._worker.start()

    def destroy_interfaces(self) -> None:
        super().destroy_interfaces()
        for entity in self._stream_entities:
            self.destroy_subscription(entity)
        self._stream_entities = []
        if self._worker is not None:
            self._heard.put(None)
            self._worker.join(timeout=30)
            self._worker = None
        if self._speech_pub is not None:
            self.destroy_publisher(self._speech_pub)
            self._speech_pub = None

    # -- the stream ---------------------------------------------------------------------------
    def on_robot_speaking(self, msg: Bool) -> None:
        # std_msgs/Bool has no stamp: the change is dated on arrival (same host clock as the
        # audio stamps on a robot; the tail covers the DDS delay).
        self._listener.gate.set_speaking(bool(msg.data), time.time())

    def on_audio(self, msg: AudioChunk) -> None:
        try:
            samples = to_mono(audio_to_array(msg).reshape(-1), int(msg.channels))
            if msg.sample_rate != ASR_SAMPLE_RATE:
                if not self._warned_rate:
                    self.get_logger().warning(
                        f"audio at {msg.sample_rate} Hz: resampling each chunk to "
                        f"{ASR_SAMPLE_RATE} Hz (publish 16 kHz to avoid it)"
                    )
                    self._warned_rate = True
                samples = resample(samples, int(msg.sample_rate), ASR_SAMPLE_RATE)
        except ValueError as error:
            self.count_request(f"bad audio chunk: {error}")
            self.get_logger().warning(f"bad audio chunk dropped: {error}")
            return
        stamp = stamp_to_seconds(msg.header.stamp) or time.time()
        started = time.perf_counter()
        finished = self._listener.feed(samples, stamp)
        vad_seconds = time.perf_counter() - started
        for heard in finished:
            early = self._speculation if self._listener.settle(heard) else None
            self._heard.put((heard, early, vad_seconds))
            self._speculation = None
        if self.param("speculative"):
            candidate = self._listener.speculate()
            if candidate is not None:
                self._speculation = self._speculator.submit(
                    self.engine.transcribe, candidate.samples, ASR_SAMPLE_RATE
                )

    def _transcribe_stream(self) -> None:
        heard_line = ""  # the last utterance's log line, until the turn it starts is under way
        while True:
            try:
                item = self._heard.get(timeout=HEARD_LOG_DELAY if heard_line else None)
            except queue.Empty:
                item = ()
            if heard_line:  # HEARD_LOG_DELAY has passed, or the next utterance came first
                self.get_logger().info(heard_line)
                heard_line = ""
            if item is None:
                return
            if not item:
                continue
            heard, speculation, vad_seconds = item
            try:
                if (
                    speculation is not None
                ):  # already transcribed (or being) while the end was confirmed
                    transcript = speculation.result()
                    self.speculative_hits += 1
                else:
                    transcript = self.engine.transcribe(heard.samples, ASR_SAMPLE_RATE)
            except Exception as error:  # one bad utterance must not stop the stream
                self.count_request(f"stream transcription failed: {error}")
                self.get_logger().error(
                    f"stream transcription failed: {type(error).__name__}: {error}"
                )
                continue
            if not transcript.text.strip():
                continue
            msg = Utterance(
                text=transcript.text.strip(),
                language=transcript.language,
                confidence=float(transcript.confidence),
                asr_seconds=float(transcript.asr_seconds),
                vad_seconds=float(vad_seconds),
                start=seconds_to_stamp(heard.start),
                end=seconds_to_stamp(heard.end),
            )
            self.utterances += 1
            self.stage_times.add(asr=transcript.asr_seconds)
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = "microphone"
            self._speech_pub.publish(msg)
            how = ", speculative" if speculation else ""
            heard_line = f"heard ({heard.end - heard.start:.1f} s{how}): {msg.text!r}"

    def diagnostic_values(self) -> dict[str, str]:
        if self._listener is None:
            return {}
        return {
            "utterances": str(self.utterances),
            "speculative_hits": str(self.speculative_hits),
            "chunks_heard": str(self._listener.chunks_heard),
            "chunks_ignored_self_speech": str(self._listener.chunks_ignored),
        }

    def on_transcribe(self, request: Transcribe.Request, response: Transcribe.Response):
        with self.answering(response, "ASR"):
            audio = request.audio
            if len(request.float_samples):
                samples = np.asarray(request.float_samples, dtype=np.float32)
                channels = max(int(audio.channels), 1)
                if samples.size % channels:
                    raise ValueError(
                        f"float_samples has {samples.size} values, not a multiple of "
                        f"{channels} channels"
                    )
            else:
                samples = audio_to_array(audio)
                channels = int(audio.channels)
            transcript = self.engine.transcribe(
                samples.reshape(-1),
                int(audio.sample_rate),
                channels=channels,
                language=request.language or None,
            )
            response.text = transcript.text
            response.language = transcript.language
            response.confidence = float(transcript.confidence)
            response.audio_seconds = float(transcript.audio_seconds)
            response.asr_seconds = float(transcript.asr_seconds)
            self.stage_times.add(asr=transcript.asr_seconds)
        return response


def main(args=None) -> int:
    return run_node(lambda: ASRNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
