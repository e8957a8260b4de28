"""asr_node: speech to text as the service ``uservlm/transcribe`` (uservlm_ros/srv/Transcribe).

Lifecycle node around :class:`uservlm_ros.engines.asr.ASREngine` (faster-whisper; Whisper base
from PyPI offline, large-v3 as in the paper when available).
"""
from __future__ import annotations

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup

from uservlm_ros.engines.asr import ASRConfig, ASREngine
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import audio_to_array
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.runner import run_node
from uservlm_ros.srv import Transcribe


class ASRNode(EngineNode):
    CONFIG = ASRConfig
    DESCRIPTIONS = {
        "model": "Whisper model: base (offline default, from PyPI, checksum-verified), tiny.en, large-v3 (the paper's; needs the hub or a local copy) or a CTranslate2 model directory",
        "device": "cpu | cuda | auto",
        "compute_type": "CTranslate2 compute type; empty = int8 on CPU, float16 on a GPU",
        "cpu_threads": "CPU threads for CTranslate2 (0 = all cores, at most 4)",
        "cache_dir": "Where the offline Whisper base is assembled (empty = ~/.cache/uservlm_ros)",
        "beam_size": "Beam width for decoding (1 = greedy)",
        "vad": "Drop non-speech with the Silero VAD bundled with faster-whisper",
        "language": "ISO 639-1 code to force, or empty to detect per request",
        "max_seconds": "Longest audio accepted in one request (seconds)",
    }

    def __init__(self, **kwargs):
        super().__init__("asr_node", **kwargs)
        self._service = None

    def load_engine(self, config: ASRConfig) -> ASREngine:
        engine = ASREngine(config)
        engine.load()
        return engine

    def describe_engine(self) -> str:
        return f"whisper {self.param('model')}" if self.engine is not None else "no engine"

    def create_interfaces(self) -> None:
        self._service = self.create_service(
            Transcribe, "uservlm/transcribe", self.on_transcribe,
            qos_profile=qos.SERVICES, callback_group=ReentrantCallbackGroup())

    def destroy_interfaces(self) -> None:
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None

    def on_transcribe(self, request: Transcribe.Request, response: Transcribe.Response):
        try:
            audio = request.audio
            if len(request.float_samples):
                samples = np.asarray(request.float_samples, dtype=np.float32)
                channels = max(int(audio.channels), 1)
                if samples.size % channels:
                    raise ValueError(f"float_samples has {samples.size} values, not a multiple of "
                                     f"{channels} channels")
            else:
                samples = audio_to_array(audio)
                channels = int(audio.channels)
            transcript = self.engine.transcribe(samples.reshape(-1), int(audio.sample_rate),
                                                channels=channels,
                                                language=request.language or None)
            response.text = transcript.text
            response.language = transcript.language
            response.confidence = float(transcript.confidence)
            response.audio_seconds = float(transcript.audio_seconds)
            response.asr_seconds = float(transcript.asr_seconds)
            response.success = True
            self.stage_times.add(asr=transcript.asr_seconds)
        except ValueError as error:
            response.success, response.error = False, f"bad request: {error}"
        except Exception as error:  # engine fault: report it, keep serving
            response.success, response.error = False, f"ASR engine failed: {type(error).__name__}: {error}"
            self.get_logger().error(response.error)
        self.count_request(response.error)
        return response


def main(args=None) -> int:
    return run_node(lambda: ASRNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
