"""The node graph, in one place: read by launch/*.launch.py and by ``uservlm up`` / ``demo``.

Each entry names the node, its module (the executable is ``<module>_node``, generated from
uservlm_ros/nodes/<module>.py by CMakeLists.txt and setup.py alike), the side it runs on and its
parameter file in config/. ``nodes()`` resolves the variant: a plain robot (OpenCV camera,
sounddevice microphone) or a Pepper whose camera and microphones come from naoqi_driver2.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

PACKAGE = "uservlm_ros"
SIDES = ("cloud", "robot")


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name
    module: str  # uservlm_ros/nodes/<module>.py
    side: str  # "cloud" (GPU server) or "robot" (the Jetson on Pepper)
    params_file: str  # file name in config/
    when: str = "always"  # "always", "own_sensors" (not on a naoqi Pepper) or "naoqi"
    remaps: tuple[tuple[str, str], ...] = ()
    members: tuple[str, ...] = ()  # a composed process: the nodes it runs (see compose_cloud)
    more_params_files: tuple[
        str, ...
    ] = ()  # a composed process: its members' other files in config/

    @property
    def executable(self) -> str:
        return f"{self.module}_node"

    @property
    def python_module(self) -> str:
        return f"{PACKAGE}.nodes.{self.module}"


GRAPH: tuple[NodeSpec, ...] = (
    NodeSpec("asr_node", "asr", "cloud", "cloud.yaml"),
    NodeSpec("tts_node", "tts", "cloud", "cloud.yaml"),
    NodeSpec("vlm_node", "vlm", "cloud", "cloud.yaml"),
    NodeSpec("ethics_node", "ethics", "cloud", "cloud.yaml"),
    NodeSpec("camera_node", "camera", "robot", "robot.yaml", when="own_sensors"),
    NodeSpec("microphone_node", "microphone", "robot", "robot.yaml", when="own_sensors"),
    NodeSpec("pepper_audio_node", "pepper_audio", "robot", "robot.yaml", when="naoqi"),
    NodeSpec("speaker_node", "speaker", "robot", "robot.yaml"),
    NodeSpec("dialogue_node", "dialogue", "robot", "robot.yaml"),
)

# Launch arguments / `uservlm up` options that choose models: argument -> (node, parameter, help).
MODEL_ARGUMENTS = {
    "base_model": ("vlm_node", "base_model", "PaliGemma 2 base model: hub id or local directory"),
    "adapter": (
        "vlm_node",
        "adapter",
        "User-VLM adapter (LoRA or MoLE): hub id or local directory",
    ),
    "vlm_device": ("vlm_node", "device", "Device of the VLM: cpu, cuda, cuda:N, auto"),
    "asr_model": ("asr_node", "model", "Whisper model: base, tiny.en, large-v3 or a directory"),
    "tts_backend": ("tts_node", "backend", "TTS backend: auto, piper, coqui, espeak"),
}

CAMERA_TOPICS = ("camera/image_raw", "camera/image_raw/compressed")


def naoqi_remaps(spec: NodeSpec, naoqi_prefix: str) -> tuple[tuple[str, str], ...]:
    """On a Pepper, naoqi_driver2's front camera and microphones feed the same graph."""
    prefix = "/" + naoqi_prefix.strip("/") if naoqi_prefix.strip("/") else ""
    if spec.name in ("dialogue_node", "vlm_node"):
        return tuple(
            (topic, f"{prefix}/camera/front/{topic.split('/', 1)[1]}") for topic in CAMERA_TOPICS
        )
    if spec.name == "pepper_audio_node":
        return (("naoqi_audio", f"{prefix}/audio"),)
    return ()


def nodes(
    side: str = "all", naoqi: bool = False, naoqi_prefix: str = "/naoqi_driver"
) -> list[NodeSpec]:
    """The nodes to start for ``side`` ("cloud", "robot" or "all"); ``naoqi``: a Pepper running
    naoqi_driver2 supplies camera and microphones."""
    if side not in (*SIDES, "all"):
        raise ValueError(f"side must be one of {SIDES} or 'all', got {side!r}")
    chosen = []
    for spec in GRAPH:
        if side not in ("all", spec.side):
            continue
        if spec.when == ("own_sensors" if naoqi else "naoqi"):
            continue
        chosen.append(replace(spec, remaps=naoqi_remaps(spec, naoqi_prefix)) if naoqi else spec)
    return chosen


# Robot-side nodes that join the composed cloud process when they are started with it (one host):
# dialogue_node takes the turn where the engines are, so its ask is an in-process call.
JOINS_CLOUD = ("dialogue_node",)


def compose_cloud(specs: list[NodeSpec]) -> list[NodeSpec]:
    """``specs`` with their cloud nodes run as one composed process (uservlm_ros/nodes/cloud.py,
    calls between them in-process), joined by dialogue_node when it is among ``specs``; their
    remaps become node-specific (``node:from:=to``)."""
    cloud = [spec for spec in specs if spec.side == "cloud" and not spec.members]
    if not cloud:
        return list(specs)
    cloud += [spec for spec in specs if spec.name in JOINS_CLOUD]
    remaps = tuple(
        (f"{spec.name}:{source}", target) for spec in cloud for source, target in spec.remaps
    )
    more = tuple(
        dict.fromkeys(spec.params_file for spec in cloud if spec.params_file != "cloud.yaml")
    )
    container = NodeSpec(
        "cloud_node",
        "cloud",
        "cloud",
        "cloud.yaml",
        remaps=remaps,
        members=tuple(spec.name for spec in cloud),
        more_params_files=more,
    )
    return [container, *(spec for spec in specs if spec not in cloud)]


def model_overrides(choices: dict[str, str]) -> dict[str, dict[str, str]]:
    """{node: {parameter: value}} for the model arguments given (empty values are ignored)."""
    overrides: dict[str, dict[str, str]] = {}
    for argument, value in choices.items():
        if value not in (None, "") and argument in MODEL_ARGUMENTS:
            node, parameter, _ = MODEL_ARGUMENTS[argument]
            overrides.setdefault(node, {})[parameter] = value
    return overrides


def share_dir() -> Path:
    """Where launch/ and config/ live: the source tree when running from it, else the install."""
    source = Path(__file__).resolve().parents[2]
    if (source / "config").is_dir() and (source / "package.xml").is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:
        return Path(sys.prefix) / "share" / PACKAGE


def config_path(name: str) -> Path:
    return share_dir() / "config" / name


def dds_environment(env: dict | None = None) -> dict:
    """Environment for a node process: the Fast DDS profile that lets 640x480 frames through
    (unless the caller already chose one)."""
    env = dict(os.environ if env is None else env)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_path("fastdds.xml")))
    # Fast DDS 2.x (ROS 2 Jazzy's) reads only FASTRTPS_DEFAULT_PROFILES_FILE; 3.x (Kilted) the name
    # above.
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", env["FASTDDS_DEFAULT_PROFILES_FILE"])
    return env
