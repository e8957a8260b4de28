"""Echo-aware listening while the robot speaks: cancel its own voice, hear a person cut in.

``gate`` (EchoGate, its config and results), ``reference`` (what the speaker played, by time),
``canceller`` (WebRTC AEC3), and for tests and benchmarks ``room`` / ``recordings`` / ``replay``
(synthetic echo recordings and playing them through a gate).
"""

from uservlm_ros.engines.echo.gate import (
    BargeIn,
    EchoGate,
    EchoGateConfig,
    EchoGateStats,
    GatedAudio,
    GateResult,
)
from uservlm_ros.engines.echo.reference import ReferenceTimeline

__all__ = [
    "BargeIn",
    "EchoGate",
    "EchoGateConfig",
    "EchoGateStats",
    "GateResult",
    "GatedAudio",
    "ReferenceTimeline",
]
