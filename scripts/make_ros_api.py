"""Write README.md's "ROS API" section: per node, its parameters (read from the node itself:
name, type, default, description), the topics it subscribes to and publishes (type and QoS) and
its services.

    .venv/bin/python scripts/make_ros_api.py            # rewrite the section in README.md
    .venv/bin/python scripts/make_ros_api.py --check    # exit 1 if README.md is out of date

The parameters come from the nodes' declarations (the dataclass defaults and descriptions), so
they cannot drift; the topics and services are listed in INTERFACES below, and the launch tests
check them against a running graph (test/ros/test_launch_real.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")  # rclpy's, not ours
BEGIN, END = "<!-- ros-api:begin (scripts/make_ros_api.py) -->", "<!-- ros-api:end -->"

# node -> what it does, (topic, type, QoS) it subscribes to / publishes, services it serves /
# calls.
INTERFACES = {
    "camera_node": {
        "about": "Robot side. 640x480 frames from OpenCV (a device, a GStreamer pipeline, or a "
        "video or image file).",
        "publishes": [
            ("camera/image_raw", "sensor_msgs/Image", "CAMERA"),
            ("camera/image_raw/compressed", "sensor_msgs/CompressedImage", "CAMERA"),
        ],
    },
    "microphone_node": {
        "about": "Robot side. 16 kHz mono int16 chunks from sounddevice or a WAV file.",
        "publishes": [
            ("audio", "uservlm_ros/AudioChunk", "AUDIO (depth sized to the chunk rate)")
        ],
    },
    "pepper_audio_node": {
        "about": "Robot side, on a Pepper with naoqi_driver2: its 48 kHz 4-channel AudioBuffer "
        "turned into the same 16 kHz mono stream. Needs naoqi_bridge_msgs.",
        "subscribes": [("naoqi_audio", "naoqi_bridge_msgs/AudioBuffer", "AUDIO")],
        "publishes": [("audio", "uservlm_ros/AudioChunk", "AUDIO")],
    },
    "speaker_node": {
        "about": "Robot side. Plays the spoken answers (or writes WAV files), joining a turn's "
        "pieces into one utterance; reports each start and stop (stamped when it happened at "
        "the loudspeaker) and every block it plays (asr_node's echo reference); stops on a "
        "barge-in or a stop request within one output block, and drops the stopped turn's "
        "later pieces.",
        "subscribes": [
            ("speech_audio", "uservlm_ros/AudioChunk", "SPEECH_AUDIO"),
            ("barge_in", "uservlm_ros/BargeIn", "EVENTS"),
            ("stop_speaking", "std_msgs/Header", "EVENTS"),
        ],
        "publishes": [
            ("robot_speaking", "uservlm_ros/SpeakingState", "LATCHED"),
            ("speech_played", "uservlm_ros/AudioChunk", "PLAYED"),
            ("speech_started", "std_msgs/Header", "EVENTS"),
        ],
    },
    "dialogue_node": {
        "about": "Robot side. The spoken loop: each utterance with the camera frame nearest its "
        "end goes to the /uservlm/ask action; a turn lasts until its answer has been spoken, "
        "and a barge-in cancels the turn being spoken; one interaction record per turn.",
        "subscribes": [
            ("speech", "uservlm_ros/Utterance", "EVENTS"),
            ("speech_started", "std_msgs/Header", "EVENTS"),
            ("robot_speaking", "uservlm_ros/SpeakingState", "LATCHED"),
            ("barge_in", "uservlm_ros/BargeIn", "EVENTS"),
            ("camera/image_raw", "sensor_msgs/Image", "CAMERA"),
            ("camera/image_raw/compressed", "sensor_msgs/CompressedImage", "CAMERA"),
        ],
        "publishes": [
            ("interactions", "uservlm_ros/Interaction", "EVENTS"),
            ("speech_audio", "uservlm_ros/AudioChunk", "SPEECH_AUDIO"),
            ("stop_speaking", "std_msgs/Header", "EVENTS"),
        ],
        "action_clients": [("uservlm/ask", "uservlm_ros/action/Ask")],
    },
    "asr_node": {
        "about": "Cloud side, lifecycle. Whisper (faster-whisper) speech to text, as a service "
        "and on the audio stream (Silero VAD cuts it into utterances). While the robot speaks, "
        "the echo gate cancels its voice against what the speaker played and reports a person "
        "talking over it on `barge_in` (see Barge-in).",
        "subscribes": [
            ("audio", "uservlm_ros/AudioChunk", "AUDIO"),
            ("robot_speaking", "uservlm_ros/SpeakingState", "LATCHED"),
            ("speech_played", "uservlm_ros/AudioChunk", "PLAYED"),
        ],
        "publishes": [
            ("speech", "uservlm_ros/Utterance", "EVENTS"),
            ("barge_in", "uservlm_ros/BargeIn", "EVENTS"),
        ],
        "serves": [("uservlm/transcribe", "uservlm_ros/srv/Transcribe")],
    },
    "person_node": {
        "about": "Cloud side, lifecycle. Who the robot is talking to: faces detected, tracked "
        "and identified (session persons in memory, remembered persons' templates on disk), the "
        "addressee and the crop of each turn's image, REP-155 faces and persons (these topics "
        "only when hri_msgs can be imported; `<id>` topics come and go with the people).",
        "subscribes": [
            ("camera/image_raw", "sensor_msgs/Image", "CAMERA"),
            ("camera/image_raw/compressed", "sensor_msgs/CompressedImage", "CAMERA"),
        ],
        "publishes": [
            ("persons/forgotten", "std_msgs/String", "EVENTS"),
            ("humans/faces/tracked", "hri_msgs/IdsList", "HUMANS"),
            ("humans/faces/<id>/roi", "hri_msgs/NormalizedRegionOfInterest2D", "HUMANS"),
            ("humans/faces/<id>/cropped", "sensor_msgs/Image", "HUMANS"),
            ("humans/persons/tracked", "hri_msgs/IdsList", "HUMANS"),
            ("humans/persons/<id>/face_id", "std_msgs/String", "LATCHED"),
        ],
        "serves": [
            ("uservlm/identify", "uservlm_ros/srv/Identify"),
            ("uservlm/remember_person", "uservlm_ros/srv/RememberPerson"),
            ("uservlm/forget_person", "uservlm_ros/srv/Forget"),
        ],
    },
    "vlm_node": {
        "about": "Cloud side, lifecycle. User-VLM (PaliGemma 2 + LoRA/MoLE adapter) answers for "
        "the person person_node resolves from the face (or the request's user_id), on the crop "
        "around them, reviewed by the ethics node first, spoken through the TTS node when asked.",
        "subscribes": [
            ("camera/image_raw", "sensor_msgs/Image", "CAMERA"),
            ("camera/image_raw/compressed", "sensor_msgs/CompressedImage", "CAMERA"),
            ("persons/forgotten", "std_msgs/String", "EVENTS"),
        ],
        "publishes": [
            ("speech_audio", "uservlm_ros/AudioChunk", "SPEECH_AUDIO"),
            ("stop_speaking", "std_msgs/Header", "EVENTS"),
        ],
        "serves": [("uservlm/ask", "uservlm_ros/srv/Ask")],
        "action_servers": [("uservlm/ask", "uservlm_ros/action/Ask")],
        "calls": [
            ("uservlm/identify", "uservlm_ros/srv/Identify"),
            ("uservlm/review", "uservlm_ros/srv/Review"),
            ("uservlm/synthesize", "uservlm_ros/srv/Synthesize"),
        ],
    },
    "tts_node": {
        "about": "Cloud side, lifecycle. Text to speech (Piper offline; Coqui Tacotron 2 when "
        "installed with its model).",
        "serves": [("uservlm/synthesize", "uservlm_ros/srv/Synthesize")],
    },
    "ethics_node": {
        "about": "Cloud side, lifecycle. The clarifying-question review (paper §8) and the "
        "per-person consent store (session persons in memory only); remembering and forgetting "
        "a person.",
        "subscribes": [("persons/forgotten", "std_msgs/String", "EVENTS")],
        "publishes": [("persons/forgotten", "std_msgs/String", "EVENTS")],
        "serves": [
            ("uservlm/review", "uservlm_ros/srv/Review"),
            ("uservlm/forget", "uservlm_ros/srv/Forget"),
        ],
        "calls": [
            ("uservlm/remember_person", "uservlm_ros/srv/RememberPerson"),
            ("uservlm/forget_person", "uservlm_ros/srv/Forget"),
        ],
    },
}
EVERY_NODE = (
    "Every node also publishes `/diagnostics` (diagnostic_msgs/DiagnosticArray, "
    "DIAGNOSTICS) once a second."
)
QOS = """QoS profiles (`uservlm_ros/ros/qos.py`; both ends of a topic use the same one):

| name | reliability | durability | history |
|---|---|---|---|
| CAMERA | best effort | volatile | keep last 5 (sensor data) |
| AUDIO | reliable | volatile | keep last 5 s of chunks |
| PLAYED | reliable | volatile | keep last 250 (5 s of 20 ms blocks) |
| EVENTS | reliable | volatile | keep last 20 |
| LATCHED | reliable | transient local | keep last 1 |
| SPEECH_AUDIO | reliable | volatile | keep all |
| HUMANS | reliable | volatile | keep last 1 (REP-155; best-effort subscribers match too) |
| DIAGNOSTICS | reliable | volatile | keep last 10 |
| services | reliable | volatile | keep last 10 |
"""


def declared(spec, context) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) of every parameter ``spec``'s node declares."""
    from rclpy.parameter import Parameter

    module = importlib.import_module(spec.python_module)
    cls = next(
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and obj.__module__ == module.__name__
        and obj.__name__.endswith("Node")
    )
    kwargs = {"context": context}
    if spec.name == "pepper_audio_node":
        from uservlm_ros.msg import AudioChunk  # stand-in type: naoqi_bridge_msgs is not here

        node = cls(AudioChunk, **kwargs)
    else:
        if spec.name == "camera_node":
            kwargs["parameter_overrides"] = [
                Parameter("source", value=str(REPO / "uservlm_ros/data/person.jpg"))
            ]
        node = cls(**kwargs)
    try:
        rows = []
        for name in sorted(node._parameters):
            if name in RCLPY_PARAMETERS:
                continue
            parameter = node.get_parameter(name)
            value = parameter.value
            if spec.name == "camera_node" and name == "source":
                value = _camera_default()  # overridden above: the node would open a device
            kind = type(value).__name__ if value is not None else "string"
            shown = (
                f"`{value!r}`"
                if isinstance(value, str)
                else f"`{str(value).lower()}`"
                if isinstance(value, bool)
                else f"`{value}`"
            )
            rows.append(
                (
                    name,
                    kind,
                    shown.replace("|", "\\|"),
                    node.describe_parameter(name).description.replace("|", "\\|"),
                )
            )
        return rows
    finally:
        node.destroy_node()


def _camera_default() -> str:
    from uservlm_ros.robot.camera_source import CameraConfig

    return CameraConfig().source


def render() -> str:
    import rclpy
    from rclpy.context import Context

    from uservlm_ros.bringup.graph import GRAPH

    context = Context()
    rclpy.init(context=context)
    out = [
        BEGIN,
        "",
        "Topic and service names are relative: `namespace:=pepper1` moves them all. " + EVERY_NODE,
        "",
        QOS,
    ]
    try:
        for spec in GRAPH:
            api = INTERFACES[spec.name]
            out += [
                f"### {spec.name}",
                "",
                api["about"]
                + f" Executable `{spec.executable}`; parameters in `config/{spec.params_file}`.",
                "",
            ]
            for key, title in (("subscribes", "Subscribes"), ("publishes", "Publishes")):
                if api.get(key):
                    out.append(
                        f"- {title}: "
                        + "; ".join(f"`{topic}` ({kind}, {qos})" for topic, kind, qos in api[key])
                    )
            for key, title in (
                ("serves", "Serves"),
                ("calls", "Calls"),
                ("action_servers", "Action server"),
                ("action_clients", "Action client"),
            ):
                if api.get(key):
                    out.append(
                        f"- {title}: " + "; ".join(f"`{name}` ({kind})" for name, kind in api[key])
                    )
            out += ["", "| parameter | type | default | description |", "|---|---|---|---|"]
            out += [
                f"| `{name}` | {kind} | {default} | {description} |"
                for name, kind, default, description in declared(spec, context)
            ]
            out.append("")
    finally:
        rclpy.try_shutdown(context=context)
    return "\n".join(out + [END])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.readme}: the markers {BEGIN} ... {END} are missing", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = head + render() + tail
    if args.check:
        if updated != text:
            print(
                f"{args.readme}: the ROS API section is out of date; run scripts/make_ros_api.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.readme.write_text(updated)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
