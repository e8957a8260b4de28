"""``uservlm demo``: the whole spoken loop, offline, across processes.

The robot side plays a bundled recording — a video of a person on camera_node and a spoken
question on microphone_node — through the real graph: asr_node hears the question, dialogue_node
sends it with the camera frame nearest the end of speech to /uservlm/ask, the ethics review asks
a clarifying question first, speaker_node "speaks" it (to a WAV: there is no sound device here),
the visitor's recorded reply is played on the microphone once the robot has finished speaking,
and the original question is answered and spoken. Each turn prints the transcript, the answer,
the stage timings and the WAV.
"""

from __future__ import annotations

import os
import sys
import time
from importlib import resources
from pathlib import Path

from std_msgs.msg import Bool

from uservlm_ros.bringup.graph import nodes
from uservlm_ros.msg import Interaction, Utterance
from uservlm_ros.ros import qos
from uservlm_ros.tools.launcher import GraphProcesses

DEMO_USER = "demo-visitor"
PLACEHOLDER_WARNING = (
    "NOTE: answered by a tiny RANDOMLY INITIALISED PaliGemma 2 stand-in - the text "
    "is meaningless. Point vlm_node at the real User-VLM weights for real answers."
)


def demo_file(name: str) -> Path:
    return Path(str(resources.files("uservlm_ros") / "data" / "demo" / name))


def demo_overrides(out_dir: Path, speech_wav: Path) -> dict[str, dict]:
    return {
        "camera_node": {"source": str(demo_file("person.avi")), "loop": True},
        "microphone_node": {"source": str(speech_wav), "realtime": True, "loop": False},
        "speaker_node": {"mode": "file", "output_dir": str(out_dir / "speech"), "realtime": True},
        "dialogue_node": {"user_id": DEMO_USER},
        "ethics_node": {"store_dir": str(out_dir / "consent")},
    }


class DemoObserver:
    """Listens to what the graph says: utterances, interaction records, robot_speaking."""

    def __init__(self, client):
        self.client = client
        self.utterances: list[Utterance] = []
        self.interactions: list[Interaction] = []
        self.speaking = False
        self.spoke = 0
        self.changed = time.monotonic()
        node = client.node
        node.create_subscription(Utterance, "speech", self.utterances.append, qos.EVENTS)
        node.create_subscription(Interaction, "interactions", self.interactions.append, qos.EVENTS)
        node.create_subscription(Bool, "robot_speaking", self._on_speaking, qos.LATCHED)

    def _on_speaking(self, msg: Bool) -> None:
        if msg.data and not self.speaking:
            self.spoke += 1
        if bool(msg.data) != self.speaking:
            self.changed = time.monotonic()
        self.speaking = bool(msg.data)

    def quiet(self, seconds: float) -> bool:
        """The robot has not spoken for ``seconds`` (a streamed answer pauses between
        sentences)."""
        return not self.speaking and time.monotonic() - self.changed >= seconds

    def spin_until(self, predicate, timeout: float, graph: GraphProcesses | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if graph is not None and graph.exited():
                raise RuntimeError(f"a node exited: {graph.exited()}")
            self.client.executor.spin_once(timeout_sec=0.05)
        return predicate()


def subscribed(client, topic: str, count: int = 1) -> bool:
    return client.node.count_subscribers(topic) >= count


def print_turn(record: Interaction, speech_dir: Path, out=sys.stdout) -> None:
    print(f"  heard:    {record.transcript!r}", file=out)
    if not record.success:
        print(f"  error:    {record.error}", file=out)
        return
    label = "robot asks (ethics review)" if record.clarification else "robot answers"
    print(f"  {label}: {record.answer!r}", file=out)
    if record.placeholder_model and not record.clarification:
        print(f"  {PLACEHOLDER_WARNING}", file=out)
    print(f"  model: {record.model}   user image: {record.image_source}", file=out)
    print(
        f"  timings: ASR {record.asr_seconds:.2f} s | prefill {record.prefill_seconds:.2f} s | "
        f"generation {record.generation_seconds:.2f} s | synthesis {record.synthesis_seconds:.2f} "
        "s",
        file=out,
    )
    print(
        f"  from end of speech: transcript {record.speech_end_to_transcript:.2f} s | answer "
        f"{record.speech_end_to_answer:.2f} s | first audio out "
        f"{record.speech_end_to_audio_out:.2f} s",
        file=out,
    )
    wavs = sorted(speech_dir.glob("*.wav"), key=lambda p: p.stat().st_mtime)
    if wavs:
        print(
            f"  spoken:   {wavs[-1]} (newest of {len(wavs)} WAVs: an answer is spoken sentence by "
            "sentence while the model writes; the sentences join one WAV unless synthesis fell "
            "behind playback)",
            file=out,
        )


def run_demo(out_dir: Path, startup_timeout: float = 600.0, turn_timeout: float = 300.0) -> int:
    from uservlm_ros.tools.client import UserVLMClient

    out_dir = out_dir.resolve()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    everything = nodes("all")
    microphone = next(spec for spec in everything if spec.name == "microphone_node")
    overrides = demo_overrides(out_dir, demo_file("question.wav"))
    graph = GraphProcesses(
        [s for s in everything if s is not microphone],
        log_dir=out_dir / "logs",
        overrides=overrides,
    )
    started = time.monotonic()
    print(
        f"[demo] starting {', '.join(s.name for s in everything)} (logs in {out_dir / 'logs'})",
        flush=True,
    )
    with graph, UserVLMClient(node_name="uservlm_demo") as client:
        observer = DemoObserver(client)
        for service in ("ask", "transcribe", "synthesize", "review"):
            if not observer.spin_until(
                lambda: client.wait_for(service, 0.2), startup_timeout, graph
            ):
                print(
                    f"[demo] /uservlm/{service} did not come up; see {out_dir / 'logs'}",
                    file=sys.stderr,
                )
                return 2
        # The microphone starts last, once ASR listens, or the start of the question is lost.
        if not observer.spin_until(
            lambda: subscribed(client, "audio") and subscribed(client, "speech", 2),
            startup_timeout,
            graph,
        ):
            print("[demo] asr_node/dialogue_node did not subscribe", file=sys.stderr)
            return 2
        client.forget(DEMO_USER)  # every demo run starts with a stranger
        print(
            f"[demo] graph up after {time.monotonic() - started:.1f} s; playing the recording: "
            f"{demo_file('person.avi').name} on the camera, {demo_file('question.wav').name} on "
            "the microphone",
            flush=True,
        )
        graph.restart(microphone)
        turn = 0
        for reply in (demo_file("reply.wav"), None):
            turn += 1
            if not observer.spin_until(
                lambda: len(observer.interactions) >= turn, turn_timeout, graph
            ):
                print(
                    f"[demo] no turn {turn} within {turn_timeout:.0f} s; see {out_dir / 'logs'}",
                    file=sys.stderr,
                )
                return 2
            record = observer.interactions[turn - 1]
            print(f"\n[demo] turn {turn}", flush=True)
            print_turn(record, out_dir / "speech")
            if not record.success:
                return 1
            if not record.clarification or reply is None:
                break
            # The visitor answers once the robot has finished asking.
            observer.spin_until(
                lambda: observer.spoke >= turn and observer.quiet(1.5), turn_timeout, graph
            )
            print(f"\n[demo] the visitor replies ({reply.name})", flush=True)
            graph.stop("microphone_node")
            graph.overrides["microphone_node"] = dict(
                overrides["microphone_node"], source=str(reply)
            )
            graph.restart(microphone)
        observer.spin_until(lambda: observer.quiet(1.5), turn_timeout, graph)
    print(f"\n[demo] done in {time.monotonic() - started:.1f} s; WAVs in {out_dir / 'speech'}")
    return 0
