"""The node graph, in one place: read by launch/*.launch.py and by ``uservlm up`` / ``demo``.

Each entry names the executable (``<module>_node``, generated from uservlm_ros/nodes/<module>.py
by CMakeLists.txt and setup.py alike), the side it runs on and its parameter file in config/.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "uservlm_ros"


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name
    module: str  # uservlm_ros/nodes/<module>.py
    side: str  # "cloud" (GPU server) or "robot" (the Jetson on Pepper)
    params_file: str  # file name in config/

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
)
SIDES = ("cloud", "robot")


def nodes(side: str = "all") -> list[NodeSpec]:
    if side not in (*SIDES, "all"):
        raise ValueError(f"side must be one of {SIDES} or 'all', got {side!r}")
    return [spec for spec in GRAPH if side in ("all", spec.side)]


def share_dir() -> Path:
    """Where launch/ and config/ live: the source tree when running from it, else the install."""
    source = Path(__file__).resolve().parents[1]
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
    return env
