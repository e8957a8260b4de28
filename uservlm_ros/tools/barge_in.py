"""Barge-in through the real nodes: asr_node and speaker_node, a test recording as the microphone.

:class:`BargeInRig` drives a running asr_node and speaker_node (file mode, real time) the way a
robot would: it sends an answer's audio to the speaker on ``speech_audio``, and plays the
microphone on ``audio`` in real time, 40 ms chunks stamped with their capture time on the
robot's clock (``time.time``). What the microphone hears is the recording
(:class:`~uservlm_ros.engines.echo.live.LiveRecording`) moved to when the speaker reported it
started and, once the speaker reports a stop, the echo of what it played until then only: the
echo is the recording's, the echo canceller's reference is what speaker_node itself published
on ``speech_played``. Each :meth:`BargeInRig.play` returns an :class:`AnswerRun`: the speaker's
stamped start and stop, the ``barge_in`` events, the utterances published on ``speech``, and
the ground truth of the recording on the same clock.

Used by test/ros/test_barge_in.py and scripts/bench_barge_in_nodes.py; :func:`start_nodes`
brings the two nodes up as processes.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uservlm_ros.engines.echo.live import LiveRecording
from uservlm_ros.engines.echo.recordings import EchoRecording
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE

#: A barge-in dated this long before the person's onset is a false one (the gate's onset
#: estimate may precede the true onset a little).
EARLY_S = 0.3
#: How long an answer's audio pieces are on ``speech_audio``, seconds.
PIECE_SECONDS = 1.0


@dataclass
class AnswerRun:
    """One answer played through the nodes. Times are on the robot's clock (``time.time``)."""

    name: str
    turn: str
    with_person: bool
    person_text: str
    person_onset: float | None = None
    person_end: float | None = None
    started: float | None = None  # the speaker's first sample out (its stamp)
    stopped: float | None = None  # the speaker's stop (its stamp)
    reason: str = ""  # why it stopped: finished, barge_in, stopped, error
    end: float | None = None  # capture time of the recording's last sample
    barge_ins: list[tuple[float, float]] = field(default_factory=list)  # (onset, received)
    utterances: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, text
    dropped_chunks: int = 0

    @property
    def reaction(self) -> float | None:
        """The person's onset -> the speaker stopped, seconds (None if it did not stop for
        them: it went on talking, or a false barge-in had stopped it before)."""
        if self.person_onset is None or self.reason != "barge_in" or self.stopped is None:
            return None
        if self.barge_ins and self.barge_ins[0][0] < self.person_onset - EARLY_S:
            return None
        return self.stopped - self.person_onset

    @property
    def false_barge_ins(self) -> int:
        """Barge-ins with nobody talking, or dated well before the person spoke."""
        if self.person_onset is None:
            return len(self.barge_ins)
        return sum(onset < self.person_onset - EARLY_S for onset, _ in self.barge_ins)

    def heard_person(self) -> tuple[float, float, str] | None:
        """The utterance that holds the person's words (the first ending after their onset)."""
        if self.person_onset is None:
            return None
        for utterance in self.utterances:
            if utterance[1] > self.person_onset:
                return utterance
        return None


def start_nodes(log_dir: Path, namespace: str, output_dir: Path, asr: dict | None = None):
    """asr_node and speaker_node (file mode, real time) as processes, for :class:`BargeInRig`;
    ``asr``: asr_node parameter overrides. Returns the :class:`GraphProcesses`."""
    from uservlm_ros.bringup.graph import GRAPH
    from uservlm_ros.tools.launcher import GraphProcesses

    specs = [spec for spec in GRAPH if spec.name in ("asr_node", "speaker_node")]
    overrides = {
        "asr_node": dict(asr or {}),
        "speaker_node": {"mode": "file", "output_dir": str(output_dir), "realtime": True},
    }
    return GraphProcesses(specs, log_dir=log_dir, namespace=namespace, overrides=overrides).start()


class BargeInRig:
    """See the module docstring. ``context``: the rclpy context to create the rig's node in."""

    def __init__(self, context, namespace: str = "", chunk_ms: int = 40):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Header

        from uservlm_ros.msg import AudioChunk, BargeIn, SpeakingState, Utterance
        from uservlm_ros.ros import qos

        self.chunk = ASR_SAMPLE_RATE * chunk_ms // 1000
        self.node = rclpy.create_node(
            "barge_in_rig", namespace="/" + namespace.strip("/"), context=context
        )
        node = self.node
        self._lock = threading.Lock()
        self._audio = node.create_publisher(AudioChunk, "audio", qos.AUDIO)
        self._answer = node.create_publisher(AudioChunk, "speech_audio", qos.SPEECH_AUDIO)
        self._stop = node.create_publisher(Header, "stop_speaking", qos.EVENTS)
        self.states: list = []  # every SpeakingState, in arrival order
        self.barge_in_events: list = []  # (BargeIn, received)
        self.utterances: list = []  # (Utterance, received)
        self.diagnostics: dict[str, dict[str, str]] = {}  # node name -> latest values
        node.create_subscription(SpeakingState, "robot_speaking", self._on_state, qos.LATCHED)
        node.create_subscription(BargeIn, "barge_in", self._on_barge_in, qos.EVENTS)
        node.create_subscription(Utterance, "speech", self._on_speech, qos.EVENTS)
        node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.DIAGNOSTICS
        )
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self._running = True
        self._spinner = threading.Thread(target=self._spin, name="barge_in_spin", daemon=True)
        self._spinner.start()
        self._run: AnswerRun | None = None
        self._live: LiveRecording | None = None
        self._drop_every = 0
        self._drop_from = math.inf
        self._turns = itertools.count(1)
        self._mic = threading.Thread(target=self._microphone, name="barge_in_mic", daemon=True)
        self._mic.start()

    # -- plumbing -------------------------------------------------------------------------------
    def _spin(self) -> None:
        while self._running:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._running = False
        self._mic.join(5)
        self._spinner.join(5)
        self.executor.remove_node(self.node)
        self.node.destroy_node()

    def until(self, predicate, timeout: float, step: float = 0.02) -> bool:
        """Wait for ``predicate`` (the rig's spinner keeps receiving meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(step)
        return bool(predicate())

    def ready(self) -> bool:
        """asr_node and speaker_node are matched on every topic the rig uses."""
        node = self.node
        return (
            self._audio.get_subscription_count() >= 1
            and self._answer.get_subscription_count() >= 1
            and self._stop.get_subscription_count() >= 1
            and node.count_publishers("robot_speaking") >= 1
            and node.count_publishers("barge_in") >= 1
            and node.count_publishers("speech") >= 1
            and node.count_subscribers("speech_played") >= 1
        )

    def _on_state(self, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            self.states.append(msg)
            run, live = self._run, self._live
        if run is None or msg.turn_id != run.turn:
            return
        if msg.speaking and run.started is None:
            live.started(stamp)  # the microphone hears the answer from now on
            run.started = stamp
        elif not msg.speaking and run.started is not None and run.stopped is None:
            if msg.reason != "finished":
                live.stopped(stamp)  # and its echo stops where the speaker did
            run.stopped, run.reason = stamp, msg.reason

    def _on_barge_in(self, msg) -> None:
        with self._lock:
            self.barge_in_events.append((msg, time.time()))

    def _on_speech(self, msg) -> None:
        with self._lock:
            self.utterances.append((msg, time.time()))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            name = status.name.rsplit("/", 1)[-1]
            with self._lock:
                self.diagnostics[name] = {value.key: value.value for value in status.values}

    def diagnostic(self, node: str, key: str) -> str | None:
        with self._lock:
            return self.diagnostics.get(node, {}).get(key)

    # -- the microphone -------------------------------------------------------------------------
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
            with self._lock:
                live, run = self._live, self._run
                drop_every, drop_from = self._drop_every, self._drop_from
            if live is None:
                continue
            samples = live.samples(stamp, self.chunk)
            if drop_every and stamp >= drop_from and index % drop_every == 0:
                if run is not None:
                    run.dropped_chunks += 1
                continue  # lost on the way
            self._audio.publish(array_to_audio(samples, ASR_SAMPLE_RATE, seconds_to_stamp(stamp)))

    def idle(self, recording: EchoRecording) -> None:
        """Let the microphone hear this recording's room noise (nothing played yet)."""
        with self._lock:
            self._live = LiveRecording(recording)

    # -- answers ---------------------------------------------------------------------------------
    def send_answer(self, recording: EchoRecording, turn: str) -> None:
        """The answer's audio to the speaker, in PIECE_SECONDS pieces of turn ``turn``."""
        from uservlm_ros.ros.conversions import array_to_audio, seconds_to_stamp

        rate = recording.reference_rate
        step = int(rate * PIECE_SECONDS)
        for offset in range(0, recording.reference.size, step):
            piece = recording.reference[offset : offset + step]
            self._answer.publish(
                array_to_audio(piece, rate, seconds_to_stamp(time.time()), frame_id=turn)
            )

    def set_asr_parameter(self, name: str, value, timeout: float = 10.0) -> None:
        """Set one of asr_node's parameters (RuntimeError if it is refused)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, "asr_node/set_parameters")
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError("asr_node/set_parameters is not available")
            request = SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()]
            )
            future = client.call_async(request)
            if not self.until(future.done, timeout):
                raise RuntimeError(f"asr_node did not answer setting {name}")
            result = future.result().results[0]
            if not result.successful:
                raise RuntimeError(f"asr_node refused {name}={value!r}: {result.reason}")
        finally:
            self.node.destroy_client(client)

    def stop_speaking(self, turn: str) -> float:
        """Ask the speaker to stop ``turn``; returns when the request was sent."""
        from std_msgs.msg import Header

        from uservlm_ros.ros.conversions import seconds_to_stamp

        sent = time.time()
        self._stop.publish(Header(stamp=seconds_to_stamp(sent), frame_id=turn))
        return sent

    def play(
        self,
        recording: EchoRecording,
        with_person: bool = True,
        drop_every: int = 0,
        settle: float = 2.0,
        timeout: float = 60.0,
    ) -> AnswerRun:
        """Play one answer with its echo (and the person, ``with_person``) through the nodes;
        ``drop_every``: one microphone chunk in that many is lost while it plays. Returns once
        the recording is over and ``settle`` seconds more (for the last utterance) have passed,
        or its utterance covering the person has arrived."""
        live = LiveRecording(recording, with_person)
        run = AnswerRun(
            name=recording.name + ("" if with_person else "-echo"),
            turn=f"barge-in-{recording.name}-{next(self._turns)}",
            with_person=with_person,
            person_text=live.recording.person_text,
        )
        with self._lock:
            self._live, self._run = live, run
            self._drop_every, self._drop_from = drop_every, time.time()
            first_barge_in, first_utterance = len(self.barge_in_events), len(self.utterances)
        self.send_answer(recording, run.turn)
        try:
            if not self.until(lambda: run.started is not None, 30.0):
                raise RuntimeError(f"{run.turn}: the speaker did not start (is speaker_node up?)")
            run.person_onset, run.person_end, run.end = (
                live.person_onset,
                live.person_end,
                live.end,
            )
            deadline = time.monotonic() + timeout
            self.until(lambda: time.time() > run.end, max(0.0, run.end - time.time()) + timeout)

            def covered() -> bool:
                with self._lock:
                    ends = [m.end for m, _ in self.utterances[first_utterance:]]
                return run.person_end is not None and any(
                    e.sec + e.nanosec * 1e-9 > run.person_onset for e in ends
                )

            self.until(covered, min(settle, max(0.0, deadline - time.monotonic())))
            if run.stopped is None:
                self.until(lambda: run.stopped is not None, 10.0)
        finally:
            with self._lock:
                self._run = None
                self._drop_every = 0
                barge_ins = self.barge_in_events[first_barge_in:]
                utterances = self.utterances[first_utterance:]
        for msg, received in barge_ins:
            run.barge_ins.append((_seconds(msg.header.stamp), received))
        for msg, _ in utterances:
            run.utterances.append((_seconds(msg.start), _seconds(msg.end), msg.text))
        return run


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def summary(runs: list[AnswerRun]) -> dict[str, float]:
    """Reaction time (median / p95 / max), missed and false barge-ins per 100 answers."""
    reactions = [r.reaction for r in runs if r.with_person and r.reaction is not None]
    answers = len({r.name.removesuffix("-echo") for r in runs})
    with_person = [r for r in runs if r.with_person]
    return {
        "answers": answers,
        "reaction_median_s": float(np.median(reactions)) if reactions else math.nan,
        "reaction_p95_s": float(np.percentile(reactions, 95)) if reactions else math.nan,
        "reaction_max_s": max(reactions) if reactions else math.nan,
        "stopped_for_person": len(reactions),
        "missed": sum(r.reaction is None and r.reason != "barge_in" for r in with_person),
        "stopped_before_person": sum(
            r.reaction is None and r.reason == "barge_in" for r in with_person
        ),
        "false_barge_ins": sum(r.false_barge_ins for r in runs),
        "false_per_100_answers": 100.0 * sum(r.false_barge_ins for r in runs) / max(answers, 1),
    }


__all__ = ["AnswerRun", "BargeInRig", "EARLY_S", "start_nodes", "summary"]
