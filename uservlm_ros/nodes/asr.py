"""asr_node: speech to text, as the service ``uservlm/transcribe`` and as a stream.

Lifecycle node around :class:`uservlm_ros.engines.asr.ASREngine` (faster-whisper; Whisper base
from PyPI offline, large-v3 as in the paper when available). With ``listen`` on, it cuts the
``audio`` stream into utterances (Silero VAD), transcribes each and publishes it on ``speech``
(uservlm_ros/msg/Utterance) with its capture-time start and end.

While the robot speaks, the echo gate (:class:`uservlm_ros.engines.echo.EchoGate`, parameters
``barge_in.*``) stands in front of the segmenter: it cancels the robot's voice from the
microphone with what the speaker reports it played (``speech_played``, stamped with when each
block went out) and the speaker's stamped ``robot_speaking`` changes, withholds the robot's own
voice, and when a person talks over it publishes ``barge_in`` (stamped with the speech's onset)
and hands their words on, from before the onset, to be transcribed as the next utterance.
``barge_in.enabled: false`` is the deaf gate: nothing heard while the robot speaks.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from uservlm_ros.engines.asr.listening import StreamListener
from uservlm_ros.engines.asr.vad import VadConfig, VoiceActivitySegmenter
from uservlm_ros.engines.asr.whisper import ASRConfig, ASREngine
from uservlm_ros.engines.echo import BargeIn as GateBargeIn
from uservlm_ros.engines.echo import EchoGate, EchoGateConfig
from uservlm_ros.msg import AudioChunk, BargeIn, SpeakingState, Utterance
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
#: The echo gate's parameters are ``barge_in.<field of EchoGateConfig>``.
BARGE_IN = "barge_in."


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
    BARGE_IN_DESCRIPTIONS = {
        "enabled": "Echo-aware listening: cancel the robot's voice (what speech_played says it "
        "played) and let a person interrupt it (barge_in). false = the deaf gate: audio "
        "captured while the robot speaks (and tail_ms after) is not heard",
        "echo_delay_ms": "Expected delay from the speaker's stamp to the echo at the microphone "
        "on this robot, ms (a hint for the canceller)",
        "echo_delay_min_ms": "Shortest echo delay on this robot, ms (the reference is shifted "
        "by it)",
        "echo_delay_max_ms": "Longest echo delay on this robot, ms (at most 500 above the "
        "shortest)",
        "echo_level_db": "Loudest echo expected at the microphone relative to the person's "
        "voice, dB (Pepper: loud and close, 6)",
        "guard_margin_db": "Extra margin under the echo before audio can count as the person, dB",
        "speech_threshold": "Silero speech probability of the echo-cancelled audio that counts "
        "as speech",
        "min_snr_db": "Speech must be this far above the noise floor heard while the robot is "
        "silent, dB",
        "min_level_dbfs": "Quieter audio never counts as speech, dBFS",
        "min_speech_ms": "Speech over the robot needed for a barge-in, ms (whole 32 ms windows)",
        "pre_roll_ms": "Audio handed on from before the barge-in's onset (the first word), ms",
        "release_ms": "After a barge-in, silence that ends it while the robot still speaks, ms",
        "warmup_ms": "No barge-in until the canceller has heard this much of the robot's "
        "answer (it learns the echo path afresh for each answer), ms",
        "keep_echo_path": "Keep the learnt echo path from one answer to the next (a robot that "
        "never moves in a fixed room: warmup_ms applies once)",
        "tail_ms": "Echo outlives the speaker's last sample by this (room, buffers), ms",
        "max_reference_wait_ms": "Longest wait for what the speaker played (speech_played), in "
        "microphone time; audio that waited longer cannot trigger a barge-in, ms",
        "jitter_ms": "Capture stamps within this of the sample count are jitter, not gaps, ms",
        "history_s": "What the speaker played is kept this long, seconds",
    }
    EXTRA_PARAMETERS = {
        **dataclass_parameters(VadConfig, VAD_DESCRIPTIONS),
        **dataclass_parameters(EchoGateConfig, BARGE_IN_DESCRIPTIONS, prefix=BARGE_IN),
        "listen": (True, "Transcribe the `audio` stream and publish utterances on `speech`"),
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
        self._barge_in_pub = None
        self.utterances = 0
        self.speculative_hits = 0
        self.barge_ins_published = 0
        self.barge_ins_after_speech = 0  # heard in the echo's tail once the robot had finished
        self.unstamped_speaking = 0
        self.references = 0
        self._speaking_turn = ""  # turn_id of the robot's latest speech
        self._new_gate: EchoGateConfig | None = None  # barge_in.* changed: applied between chunks
        self._warned_rate = False
        self._speculation: Future | None = None  # transcribing the utterance about to end
        self._speculator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr_speculative")
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, parameters):
        """window_seconds applies to the loaded engine at once (no reload); barge_in.* to the
        stream from its next chunk (a new echo gate: its canceller learns the echo path again);
        both are validated first."""
        from rcl_interfaces.msg import SetParametersResult

        gate_changes = {}
        for parameter in parameters:
            if parameter.name.startswith(BARGE_IN):
                gate_changes[parameter.name[len(BARGE_IN) :]] = parameter.value
        if gate_changes:
            try:
                names = self.BARGE_IN_DESCRIPTIONS
                config = config_from(self, EchoGateConfig, names, BARGE_IN, **gate_changes)
            except (TypeError, ValueError) as error:
                return SetParametersResult(successful=False, reason=str(error))
        for parameter in parameters:
            if parameter.name == "window_seconds" and self.engine is not None:
                try:
                    dataclasses.replace(self.engine.config, window_seconds=float(parameter.value))
                except (TypeError, ValueError) as error:
                    return SetParametersResult(successful=False, reason=str(error))
                self.engine.config.window_seconds = float(parameter.value)
        if gate_changes and self._listener is not None:
            self._new_gate = config
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
            gate_config = config_from(self, EchoGateConfig, self.BARGE_IN_DESCRIPTIONS, BARGE_IN)
            self._listener = StreamListener(
                segmenter, EchoGate(gate_config).load(), on_barge_in=self.on_barge_in
            )
            # audio chunks, what the speaker played and robot_speaking: short, in the executor's
            # spin thread (no pool hand-off), one at a time
            stream = InlineCallbackGroup()
            self._speech_pub = self.create_publisher(Utterance, "speech", qos.EVENTS)
            self._barge_in_pub = self.create_publisher(BargeIn, "barge_in", qos.EVENTS)
            self._stream_entities = [
                self.create_subscription(
                    AudioChunk, "audio", self.on_audio, qos.AUDIO, callback_group=stream
                ),
                self.create_subscription(
                    SpeakingState,
                    "robot_speaking",
                    self.on_robot_speaking,
                    qos.LATCHED,
                    callback_group=stream,
                ),
                self.create_subscription(
                    AudioChunk,
                    "speech_played",
                    self.on_speech_played,
                    qos.PLAYED,
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
        for publisher in (self._speech_pub, self._barge_in_pub):
            if publisher is not None:
                self.destroy_publisher(publisher)
        self._speech_pub = self._barge_in_pub = None

    # -- the stream ---------------------------------------------------------------------------
    def on_robot_speaking(self, msg: SpeakingState) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        if not stamp:  # an unstamped state is dated on arrival (the speaker's clock is ours)
            self.unstamped_speaking += 1
            stamp = time.time()
        if msg.speaking:
            self._speaking_turn = msg.turn_id
        self._listener.gate.set_speaking(bool(msg.speaking), stamp)

    def on_speech_played(self, msg: AudioChunk) -> None:
        """A block the speaker played, stamped with when its first sample went out."""
        try:
            stamp = stamp_to_seconds(msg.header.stamp)
            if not stamp:
                raise ValueError("it has no stamp (when it was played)")
            samples = to_mono(audio_to_array(msg).reshape(-1), int(msg.channels))
            self._listener.gate.add_reference(samples, int(msg.sample_rate), stamp)
            self.references += 1
        except ValueError as error:
            self.count_request(f"bad speech_played block: {error}")
            self.get_logger().warning(f"speech_played block dropped: {error}")

    def on_barge_in(self, event: GateBargeIn) -> None:
        """The gate heard a person over the robot: tell the speaker at once. Speech that began
        once the robot had finished (in the echo's tail) is the next utterance, not a barge-in."""
        if not self._listener.gate.timeline.speaking_between(event.onset, event.detected):
            self.barge_ins_after_speech += 1
            return
        msg = BargeIn(probability=float(event.probability), level_dbfs=float(event.level_dbfs))
        msg.header.stamp = seconds_to_stamp(event.onset)
        msg.header.frame_id = self._speaking_turn
        msg.detected = seconds_to_stamp(event.detected)
        self._barge_in_pub.publish(msg)
        self.barge_ins_published += 1
        self.get_logger().info(
            f"barge-in over turn {self._speaking_turn!r}: speech from "
            f"{event.onset:.3f}, decided at {event.detected:.3f} "
            f"(p={event.probability:.2f}, {event.level_dbfs:.0f} dBFS)"
        )

    def on_audio(self, msg: AudioChunk) -> None:
        if self._new_gate is not None:  # barge_in.* changed: a new gate, same timeline
            config, self._new_gate = self._new_gate, None
            gate = EchoGate(config, timeline=self._listener.gate.timeline).load()
            for heard in self._listener.replace_gate(gate):
                self._heard.put((heard, None, 0.0))
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
        try:
            finished = self._listener.feed(samples, stamp)
        except ValueError as error:
            self.count_request(f"bad audio chunk: {error}")
            self.get_logger().warning(f"bad audio chunk dropped: {error}")
            return
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
        gate = self._listener.gate.stats()
        heard_s = max(gate.passed_s + gate.withheld_s, 1e-9)  # microphone audio gated
        gate_cpu = 100.0 * (gate.cancel_seconds + gate.vad_seconds) / heard_s
        return {
            "utterances": str(self.utterances),
            "speculative_hits": str(self.speculative_hits),
            "chunks_heard": str(self._listener.chunks_heard),
            "chunks_ignored_self_speech": str(self._listener.chunks_ignored),
            "barge_in_enabled": str(gate.enabled).lower(),
            "barge_ins": str(self.barge_ins_published),
            "barge_ins_after_speech": str(self.barge_ins_after_speech),
            "robot_speaking": str(gate.speaking).lower(),
            "robot_speaking_stuck": str(gate.stuck).lower(),
            "unstamped_speaking": str(self.unstamped_speaking),
            "reference_blocks": str(self.references),
            "echo_cancelled_s": f"{gate.cancelled_s:.1f}",
            "echo_withheld_s": f"{gate.withheld_s:.1f}",
            "unreferenced_blocks": str(gate.unreferenced_blocks),
            "audio_gaps": str(gate.gaps),
            "audio_overlaps": str(gate.overlaps),
            "echo_gate_cpu_percent": f"{gate_cpu:.2f}",
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
