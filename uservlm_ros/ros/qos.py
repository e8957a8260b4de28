"""Every QoS profile of the package, chosen in one place (both ends of a topic import the same
one).

A reliable subscriber never matches a best-effort publisher, so publisher and subscriber of each
stream use the same profile from here.
"""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Camera frames: best effort, keep the newest few; a late frame is worth nothing.
CAMERA = qos_profile_sensor_data


# Microphone audio: every chunk matters to ASR. Depth = 5 s of 20 ms chunks, so a stalled
# subscriber loses nothing for a while (the microphone node sizes it from its chunk length).
def audio_qos(chunk_seconds: float = 0.1, buffer_seconds: float = 5.0) -> QoSProfile:
    depth = max(10, int(round(buffer_seconds / max(chunk_seconds, 1e-3))))
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


AUDIO = audio_qos()

# Latched state (robot_speaking): a late joiner gets the current value at once.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Events (utterances, interaction records, synthesized speech): reliable, a modest backlog.
EVENTS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=20,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Spoken answers (speech_audio): a turn goes out as several pieces (and sentences), ahead of its
# playback; keep every piece until it is taken (KEEP_LAST could drop the oldest of a long answer).
SPEECH_AUDIO = QoSProfile(
    history=HistoryPolicy.KEEP_ALL,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Services (/uservlm/ask, transcribe, synthesize, review): reliable, volatile. A request that
# arrives while the server is busy waits in this queue, then is answered or refused as "busy".
SERVICES = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# /diagnostics, as diagnostic_aggregator expects it.
DIAGNOSTICS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
