"""Barge-in through the whole spoken loop: a person talks to the robot, and over its answers.

:class:`LoopRig` is the robot's microphone and camera for a running graph of asr_node,
dialogue_node, vlm_node, tts_node, ethics_node and speaker_node (file mode, real time;
:func:`start_loop_graph`). The microphone (``audio``: 40 ms chunks stamped with their capture
time on the robot's clock, ``time.time``, each sent once captured) hears a
:class:`~uservlm_ros.engines.echo.live.LiveRoom`: the echo of what speaker_node reports playing
on ``speech_played`` (the real turn's audio, written by the model and synthesised as it came),
cut where ``robot_speaking`` says it stopped, and the person's words where :meth:`LoopRig.say`
puts them. The camera (``camera/image_raw/compressed``, 5 Hz) shows the bundled photo while
:meth:`LoopRig.camera` is on. What the graph says back is kept in arrival order: robot_speaking,
barge_in, speech, interactions, stop_speaking and /diagnostics.

Used by test/ros/test_barge_in_loop.py and scripts/bench_barge_in_loop.py.
"""

from __future__ import annotations

import itertools
import threading
import time
from importlib import resources
from pathlib import Path

from uservlm_ros.engines.echo.live import LiveRoom
from uservlm_ros.engines.echo.room import EchoPath
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, read_wav

#: The loop's nodes, each in its own process.
LOOP_NODES = (
    "asr_node",
    "tts_node",
    "vlm_node",
    "ethics_node",
    "speaker_node",
    "dialogue_node",
)
#: Camera frames per second while the camera is on.
CAMERA_HZ = 5.0
#: The longest a microphone chunk waits for the speaker's report of what it played, seconds.
MAX_REFERENCE_WAIT = 0.1


def loop_overrides(log_dir: Path, max_new_tokens: int = 150) -> dict[str, dict]:
    """Parameters of the loop's nodes for tests and benches: answers long enough to be
    interrupted (``max_new_tokens``), the speaker writing files in real time, a consent store of
    the run's own."""
    return {
        "vlm_node": {"max_new_tokens": max_new_tokens, "busy_timeout": 60.0},
        "ethics_node": {"store_dir": str(log_dir / "consent")},
        "speaker_node": {"mode": "file", "output_dir": str(log_dir / "speech"), "realtime": True},
    }


def start_loop_graph(log_dir: Path, namespace: str, overrides: dict | None = None):
    """The loop's nodes (LOOP_NODES) as processes; returns the started :class:`GraphProcesses`
    (stop it when done)."""
    from uservlm_ros.bringup.graph import GRAPH
    from uservlm_ros.tools.launcher import GraphProcesses

    specs = [spec for spec in GRAPH if spec.name in LOOP_NODES]
    values = loop_overrides(log_dir)
    for node, more in (overrides or {}).items():
        values.setdefault(node, {}).update(more)
    return GraphProcesses(specs, log_dir=log_dir, namespace=namespace, overrides=values).start()


def robot_voice():
    """A sample of the robot's voice at 16 kHz (the bundled question: Piper's voice, as
    tts_node's), which sets the echo's level."""
    from uservlm_ros.tools.demo import demo_file

    samples, rate, _ = read_wav(demo_file("question.wav"))
    if rate != ASR_SAMPLE_RATE:
        raise ValueError(f"question.wav is {rate} Hz, expected {ASR_SAMPLE_RATE}")
    return samples


def default_room(gain_db: float = -6.0, seed: int = 0) -> LiveRoom:
    """A room in the gate's design range: echo 50 ms late, ``gain_db`` relative to the person,
    RT60 0.3 s."""
    return LiveRoom(EchoPath(delay_s=0.05, gain_db=gain_db, rt60_s=0.3), robot_voice(), seed)


class LoopRig:
    """See the module docstring. ``context``: the rclpy context to create the rig's node in;
    ``room``: what the microphone hears (:func:`default_room` when None)."""

    def __init__(
        self, context, namespace: str = "", room: LiveRoom | None = None, chunk_ms: int = 40
    ):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CompressedImage
        from std_msgs.msg import Header

        from uservlm_ros.msg import AudioChunk, BargeIn, Interaction, SpeakingState, Utterance
        from uservlm_ros.ros import qos

        self.room = room or default_room()
        self.chunk = ASR_SAMPLE_RATE * chunk_ms // 1000
        self.namespace = "/" + namespace.strip("/")
        self.node = rclpy.create_node(
            "barge_in_loop_rig", namespace=self.namespace, context=context
        )
        node = self.node
        self._lock = threading.Lock()
        self._audio = node.create_publisher(AudioChunk, "audio", qos.AUDIO)
        self._camera = node.create_publisher(
            CompressedImage, "camera/image_raw/compressed", qos.CAMERA
        )
        self._speech = node.create_publisher(Utterance, "speech", qos.EVENTS)
        self._stop = node.create_publisher(Header, "stop_speaking", qos.EVENTS)
        self.states: list = []  # (SpeakingState, received), every one in arrival order
        self.barge_ins: list = []  # (BargeIn, received)
        self.utterances: list = []  # (Utterance, received)
        self.records: list = []  # (Interaction, received)
        self.stops: list = []  # (Header, received): stop_speaking requests seen
        self.diagnostics: dict[str, dict[str, str]] = {}  # node name -> latest values
        self.chunks_sent = self.chunks_late = self.chunks_dropped = 0
        node.create_subscription(SpeakingState, "robot_speaking", self._on_state, qos.LATCHED)
        node.create_subscription(AudioChunk, "speech_played", self._on_played, qos.PLAYED)
        node.create_subscription(BargeIn, "barge_in", self._keep(self.barge_ins), qos.EVENTS)
        node.create_subscription(Utterance, "speech", self._keep(self.utterances), qos.EVENTS)
        node.create_subscription(Interaction, "interactions", self._keep(self.records), qos.EVENTS)
        node.create_subscription(Header, "stop_speaking", self._keep(self.stops), qos.EVENTS)
        node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.DIAGNOSTICS
        )
        self._photo = (resources.files("uservlm_ros") / "data" / "person.jpg").read_bytes()
        self._camera_on = False
        self._ask = None  # an action client, to see the ask server come and go
        self._drop_every = 0
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self._running = True
        self._threads = [
            threading.Thread(target=target, name=name, daemon=True)
            for target, name in (
                (self._spin, "loop_rig_spin"),
                (self._microphone, "loop_rig_mic"),
                (self._camera_loop, "loop_rig_camera"),
            )
        ]
        for thread in self._threads:
            thread.start()

    # -- plumbing -------------------------------------------------------------------------------
    def _spin(self) -> None:
        while self._running:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._running = False
        for thread in self._threads:
            thread.join(5)
        self.executor.remove_node(self.node)
        self.node.destroy_node()

    def until(self, predicate, timeout: float, step: float = 0.02):
        """Wait for ``predicate`` to return something true (the rig keeps receiving meanwhile);
        returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(step)

    def ready(self) -> bool:
        """Every node of the loop is matched on the topics the rig uses."""
        node = self.node
        return (
            self._audio.get_subscription_count() >= 1
            and self._camera.get_subscription_count() >= 2  # dialogue_node, vlm_node
            and self._speech.get_subscription_count() >= 1
            and self._stop.get_subscription_count() >= 1
            and node.count_publishers("robot_speaking") >= 1
            and node.count_publishers("speech_played") >= 1
            and node.count_publishers("barge_in") >= 1
            and node.count_publishers("speech") >= 1
            and node.count_publishers("interactions") >= 1
        )

    def _keep(self, into: list):
        def keep(msg) -> None:
            with self._lock:
                into.append((msg, time.time()))

        return keep

    def _on_state(self, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.room.speaking(msg.speaking, stamp, msg.turn_id, msg.reason)
        with self._lock:
            self.states.append((msg, time.time()))

    def _on_played(self, msg) -> None:
        from uservlm_ros.ros.conversions import audio_to_array

        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        samples = audio_to_array(msg)[:, 0]
        self.room.played(samples, int(msg.sample_rate), stamp, msg.header.frame_id)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            name = status.name.rsplit("/", 1)[-1]
            with self._lock:
                self.diagnostics[name] = {value.key: value.value for value in status.values}

    def diagnostic(self, node: str, key: str) -> str | None:
        with self._lock:
            return self.diagnostics.get(node, {}).get(key)

    # -- the microphone and the camera ----------------------------------------------------------
    def _microphone(self) -> None:
        from uservlm_ros.ros.conversions import array_to_audio, seconds_to_stamp

        seconds = self.chunk / ASR_SAMPLE_RATE
        start = time.time()
        for index in itertools.count():
            if not self._running:
                return
            stamp = start + index * seconds
            wait = stamp + seconds - time.time()  # a chunk is sent once captured
            if wait > 0:
                time.sleep(wait)
            samples, complete = self.room.samples(stamp, self.chunk)
            if not complete:  # the speaker's report of what it played is still on its way
                deadline = stamp + seconds + MAX_REFERENCE_WAIT
                while not complete and time.time() < deadline:
                    time.sleep(0.005)
                    samples, complete = self.room.samples(stamp, self.chunk)
                if not complete:
                    self.chunks_late += 1
            if self._drop_every and index % self._drop_every == 0:
                self.chunks_dropped += 1
                continue  # lost on the way
            self._audio.publish(array_to_audio(samples, ASR_SAMPLE_RATE, seconds_to_stamp(stamp)))
            self.chunks_sent += 1

    def use_room(self, room: LiveRoom) -> None:
        """Hear another room from the next microphone chunk on (while the robot is silent)."""
        self.room = room

    def drop_chunks(self, every: int) -> None:
        """Lose one microphone chunk in ``every`` from now on (0: none)."""
        self._drop_every = max(0, int(every))

    def _camera_loop(self) -> None:
        from sensor_msgs.msg import CompressedImage

        from uservlm_ros.ros.conversions import seconds_to_stamp

        while self._running:
            if self._camera_on:
                frame = CompressedImage(format="jpeg", data=self._photo)
                frame.header.stamp = seconds_to_stamp(time.time())
                frame.header.frame_id = "camera"
                self._camera.publish(frame)
            time.sleep(1.0 / CAMERA_HZ)

    def camera(self, on: bool) -> None:
        """Show the bundled photo (a person) to the camera, or nothing."""
        self._camera_on = bool(on)

    # -- the person -----------------------------------------------------------------------------
    def say(self, words, at: float | None = None, lead: float = 0.3) -> tuple[float, float]:
        """The person says ``words`` (16 kHz), starting at capture time ``at`` (default: ``lead``
        seconds from now). Returns their speech's (onset, end) capture times."""
        return self.room.say(words, time.time() + lead if at is None else at)

    def voice(self, text: str, timeout: float = 30.0):
        """``text`` spoken by tts_node (uservlm/synthesize), int16 at 16 kHz: words for
        :meth:`say`."""
        from uservlm_ros.ros.conversions import audio_to_array
        from uservlm_ros.ros.service_client import call_with_timeout
        from uservlm_ros.speech.audio import float_to_int16, resample
        from uservlm_ros.srv import Synthesize

        client = self.node.create_client(Synthesize, "uservlm/synthesize")
        try:
            response = call_with_timeout(client, Synthesize.Request(text=text), timeout)
        finally:
            self.node.destroy_client(client)
        if not response.success:
            raise RuntimeError(f"uservlm/synthesize failed: {response.error}")
        samples = audio_to_array(response.audio)[:, 0]
        return float_to_int16(resample(samples, int(response.audio.sample_rate)))

    def publish_utterance(self, text: str, seconds: float = 2.0) -> None:
        """An utterance on ``speech`` as asr_node would publish it, ending now."""
        from uservlm_ros.msg import Utterance
        from uservlm_ros.ros.conversions import seconds_to_stamp

        now = time.time()
        msg = Utterance(
            text=text,
            language="en",
            confidence=0.9,
            start=seconds_to_stamp(now - seconds),
            end=seconds_to_stamp(now),
        )
        msg.header.stamp = seconds_to_stamp(now)
        self._speech.publish(msg)

    def stop_speaking(self, turn: str = "") -> None:
        """Ask the speaker to stop ``turn`` (everything when empty)."""
        from std_msgs.msg import Header

        from uservlm_ros.ros.conversions import seconds_to_stamp

        self._stop.publish(Header(stamp=seconds_to_stamp(time.time()), frame_id=turn))

    # -- what the graph said --------------------------------------------------------------------
    def mark(self) -> dict[str, int]:
        """Where each record list ends now (for :meth:`since`)."""
        with self._lock:
            return {
                "states": len(self.states),
                "barge_ins": len(self.barge_ins),
                "utterances": len(self.utterances),
                "records": len(self.records),
                "stops": len(self.stops),
            }

    def since(self, mark: dict[str, int], what: str) -> list:
        """The messages of ``what`` ("states", "records", ...) received after ``mark``."""
        with self._lock:
            return [msg for msg, _ in getattr(self, what)[mark[what] :]]

    def started(self, mark: dict[str, int], skip: tuple[str, ...] = ()):
        """The first SpeakingState since ``mark`` that started a turn (not one of ``skip``), or
        None."""
        return next(
            (
                s
                for s in self.since(mark, "states")
                if s.speaking and s.turn_id and s.turn_id not in skip
            ),
            None,
        )

    def ended(self, mark: dict[str, int], turn: str):
        """The SpeakingState since ``mark`` that ended ``turn``, or None."""
        return next(
            (s for s in self.since(mark, "states") if not s.speaking and s.turn_id == turn), None
        )

    def record(self, mark: dict[str, int], turn: str | None = None, index: int = 0):
        """The interaction record of ``turn`` since ``mark`` (or the ``index``-th one), or
        None."""
        records = self.since(mark, "records")
        if turn is not None:
            records = [r for r in records if r.turn_id == turn]
            index = 0
        return records[index] if len(records) > index else None

    def ask_server_ready(self) -> bool:
        """vlm_node's /uservlm/ask action is served (as DDS discovery knows it)."""
        if self._ask is None:
            from rclpy.action import ActionClient

            from uservlm_ros.action import Ask

            self._ask = ActionClient(self.node, Ask, "uservlm/ask")
        return self._ask.server_is_ready()

    def set_parameter(self, node_name: str, name: str, value, timeout: float = 10.0) -> None:
        """Set a parameter of one of the loop's nodes (RuntimeError if it is refused)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"{node_name}/set_parameters")
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError(f"{node_name}/set_parameters is not available")
            request = SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()]
            )
            future = client.call_async(request)
            if not self.until(future.done, timeout):
                raise RuntimeError(f"{node_name} did not answer setting {name}")
            result = future.result().results[0]
            if not result.successful:
                raise RuntimeError(f"{node_name} refused {name}={value!r}: {result.reason}")
        finally:
            self.node.destroy_client(client)


def stamp_of(msg) -> float:
    """A message's header stamp, seconds."""
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


__all__ = [
    "CAMERA_HZ",
    "LOOP_NODES",
    "LoopRig",
    "default_room",
    "loop_overrides",
    "robot_voice",
    "start_loop_graph",
    "stamp_of",
]
