"""The benchmark's settings: what the run does (:class:`BenchOptions`, from the command line) and
what the robot-side session needs (:class:`SessionConfig`, JSON-able: it crosses into a network
namespace with ``--link netns``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uservlm_ros.engines.asr.window import WINDOW_SECONDS_DEFAULT


class BenchError(RuntimeError):
    """The benchmark could not run; the message says which step failed."""


DEFAULT_USER = "bench-visitor"


CONSENT_REPLY = "Yes, please."


CLOUD_NODES = ("asr_node", "tts_node", "vlm_node", "ethics_node")


ROBOT_NODES = ("speaker_node", "dialogue_node")


PAPER_MIDDLEWARE = "320 ± 45 ms"


PIPELINES = {
    # The paper's pipeline: Whisper on its standard 30 s window once the end of speech is
    # confirmed, the whole answer, the whole synthesis, then play.
    "sequential": {
        "dialogue_node": {"stream_audio": False},
        "asr_node": {"speculative": False, "window_seconds": 0.0},
    },
    # The same, with Whisper's encoder window cut to the utterance (asr_node's default).
    "short-window": {
        "dialogue_node": {"stream_audio": False},
        "asr_node": {"speculative": False, "window_seconds": WINDOW_SECONDS_DEFAULT},
    },
    # Ours: short window, transcription from the moment the silence begins (speculative), each
    # sentence synthesized and played while the model writes the rest (stream_audio).
    "streamed": {
        "dialogue_node": {"stream_audio": True},
        "asr_node": {"speculative": True, "window_seconds": WINDOW_SECONDS_DEFAULT},
    },
}


TTFA_TARGET = 1.5  # time to first audio: at least 1.5x better than the sequential pipeline


DIAG_COUNTERS = {
    "asr_node": ("chunks_heard", "chunks_ignored_self_speech"),
    "vlm_node": ("frames_received",),
    "dialogue_node": ("frames_received",),
}


# -- configuration -----------------------------------------------------------------------------
@dataclass
class SessionConfig:
    """What the robot-side session needs (JSON-able: it crosses into the robot namespace)."""

    bag: str
    turns: int = 10
    warmup: int = 1
    uplinks: list = field(default_factory=lambda: ["jpeg"])
    speed: float = 1.0
    namespace: str = ""
    user_id: str = DEFAULT_USER
    consent: str = "grant"  # grant | anonymous
    attach: bool = False
    startup_timeout: float = 600.0
    turn_timeout: float = 180.0
    probes: int = 5
    min_camera_subscribers: int = (
        2  # dialogue_node + vlm_node (composed: one, vlm_node shares dialogue_node's)
    )
    link: dict | None = None  # netns link (token, rate) for the shaper counters
    stream_audio: bool = (
        False  # dialogue_node's stream_audio for the run (see the module docstring)
    )
    pipelines: list = field(
        default_factory=lambda: [""]
    )  # "" = as configured; else keys of PIPELINES


# -- the whole run -------------------------------------------------------------------------------
@dataclass
class BenchOptions:
    bag: Path
    turns: int = 10
    warmup: int = 1
    uplinks: tuple = ("jpeg",)
    speed: float = 1.0
    attach: bool = False
    namespace: str = ""
    out: Path = Path("out/bench")
    link: str = "loopback"  # loopback | netns
    link_rate: str = "100mbit"
    params_file: Path | None = None
    overrides: dict = field(default_factory=dict)  # {node: {parameter: value}}
    consent: str = "grant"
    user_id: str = DEFAULT_USER
    startup_timeout: float = 600.0
    turn_timeout: float = 180.0
    label: str = ""
    stream_audio: bool = False
    compare: bool = False  # one phase per PIPELINES entry
    compose: bool = False  # the cloud nodes in one process (uservlm_ros/nodes/cloud.py)
    low_latency: bool = (
        False  # hold /dev/cpu_dma_latency at 0 µs for the run (uservlm_ros/tools/cpu_latency.py)
    )
