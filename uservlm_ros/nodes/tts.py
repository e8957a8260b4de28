"""tts_node: text to speech as the service ``uservlm/synthesize`` (uservlm_ros/srv/Synthesize).

Lifecycle node around :class:`uservlm_ros.engines.tts.TTSEngine`: Piper offline by default, the
Coqui Tacotron 2 backend when installed with its model (``backend`` parameter).
"""

from __future__ import annotations

import time

from uservlm_ros.engines.tts import TTSConfig, TTSEngine
from uservlm_ros.ros.conversions import array_to_audio
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.runner import run_node
from uservlm_ros.srv import Synthesize


class TTSNode(EngineNode):
    CONFIG = TTSConfig
    DESCRIPTIONS = {
        "backend": "auto | piper | coqui | espeak; auto = Coqui Tacotron 2 when installed with "
        "its model, else Piper",
        "piper_voice": "Piper voice: empty = the bundled en_US-joe-medium (checksum-verified), or "
        "a path to a .onnx",
        "coqui_model": "Coqui TTS model name or path (the paper's Tacotron-style choice)",
        "coqui_vocoder": "Coqui vocoder directory; empty = the model's default vocoder",
        "sample_rate": "Output rate in Hz, every voice resampled to it; 0 = the voice's own rate",
        "max_chars": "Longest text accepted in one request (characters)",
        "espeak_voice": "espeak-ng voice for the espeak backend (a light fallback when installed)",
        "length_scale": "Speaking-rate factor relative to the voice's default (>1 slower)",
        "sentence_silence": "Seconds of silence between sentences",
        "use_cuda": "Run the Coqui model on the GPU (Piper runs on onnxruntime CPU)",
        "piper_release_memory": "Give each Piper synthesis' memory back to the system "
        "(false: keep the memory of the longest sentence so far)",
    }

    def __init__(self, **kwargs):
        super().__init__("tts_node", **kwargs)

    def load_engine(self, config: TTSConfig) -> TTSEngine:
        engine = TTSEngine(config)
        engine.load()
        return engine

    def describe_engine(self) -> str:
        return getattr(self.engine, "voice", "no engine")

    def create_interfaces(self) -> None:
        self.serve(Synthesize, "uservlm/synthesize", self.on_synthesize)

    def on_synthesize(self, request: Synthesize.Request, response: Synthesize.Response):
        started = time.perf_counter()
        response.voice = self.describe_engine()
        with self.answering(response, "TTS"):
            if "\ufffd" in request.text:
                raise ValueError("text is not valid UTF-8 (undecodable bytes were received)")
            speech = self.engine.synthesize(request.text)
            response.audio = array_to_audio(
                speech.samples,
                speech.sample_rate,
                stamp=self.get_clock().now().to_msg(),
                frame_id="tts",
            )
            response.synthesis_seconds = speech.synthesis_seconds
            self.stage_times.add(synthesis=speech.synthesis_seconds)
        self.get_logger().debug(f"synthesize: {time.perf_counter() - started:.3f} s")
        return response


def main(args=None) -> int:
    return run_node(lambda: TTSNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
