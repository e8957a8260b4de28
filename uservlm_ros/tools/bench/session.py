"""The bench's robot-side session: one node that replays the bag, watches the graph through its
topics, services and /diagnostics, and collects one row per turn (:mod:`.replay`)."""

from __future__ import annotations

import dataclasses
import math
import os
import time

from uservlm_ros.engines.asr.vad import VadConfig
from uservlm_ros.tools import bags
from uservlm_ros.tools.bench.config import (
    CLOUD_NODES,
    CONSENT_REPLY,
    DIAG_COUNTERS,
    PIPELINES,
    BenchError,
    SessionConfig,
)
from uservlm_ros.tools.bench.replay import replay_turn
from uservlm_ros.tools.bench.report import pipeline_label
from uservlm_ros.tools.bench.vad_track import VadTrack, bag_audio


class Session:
    """The bench's own node on the robot side: replays the bag, watches the graph, collects
    rows."""

    def __init__(self, config: SessionConfig, alive=None, log=print):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Bool

        from uservlm_ros.msg import AudioChunk, Interaction, Utterance
        from uservlm_ros.ros import qos
        from uservlm_ros.srv import Ask, Forget, Review, Synthesize, Transcribe

        self.config = config
        self.alive = alive or (lambda: None)
        self.log = log
        self.bag = bags.read_bag(config.bag)
        bags.use_package_dds_profile()
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(
            f"uservlm_bench_{os.getpid()}",
            namespace="/" + config.namespace.strip("/"),
            context=self.context,
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.interactions: list = []
        self.utterances: list = []
        self.spoken: list = []
        self.speaking = False
        self.speaking_changed = time.monotonic()
        self.spoke = 0  # times robot_speaking went true
        self.echo_tail = 0.3  # asr_node's self_speech_tail, read in wait_ready()
        self.diagnostics: dict[str, tuple[float, int, str, dict]] = {}
        node = self.node
        node.create_subscription(
            Interaction,
            "interactions",
            lambda m: self.interactions.append((time.time(), m)),
            qos.EVENTS,
        )
        node.create_subscription(
            Utterance, "speech", lambda m: self.utterances.append((time.time(), m)), qos.EVENTS
        )
        node.create_subscription(
            AudioChunk,
            "speech_audio",
            lambda m: self.spoken.append((time.time(), m.header.stamp, m.header.frame_id)),
            qos.SPEECH_AUDIO,
        )
        node.create_subscription(Bool, "robot_speaking", self._on_speaking, qos.LATCHED)
        node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.DIAGNOSTICS
        )
        self.services = {
            name: node.create_client(kind, f"uservlm/{name}", qos_profile=qos.SERVICES)
            for name, kind in (
                ("ask", Ask),
                ("transcribe", Transcribe),
                ("synthesize", Synthesize),
                ("review", Review),
                ("forget", Forget),
            )
        }
        self.get_parameters = {
            name: node.create_client(GetParameters, f"{name}/get_parameters")
            for name in (*CLOUD_NODES, "dialogue_node")
        }
        self.set_parameters_clients = {
            name: node.create_client(SetParameters, f"{name}/set_parameters")
            for name in ("asr_node", "dialogue_node")
        }
        # {(node, parameter): value before the run} (attach mode, --compare)
        self._restore: dict = {}
        self.streaming = False
        self.pipeline = ""

    # -- plumbing ---------------------------------------------------------------------------
    def _on_speaking(self, msg) -> None:
        if bool(msg.data) != self.speaking:
            self.speaking = bool(msg.data)
            self.spoke += int(self.speaking)
            self.speaking_changed = time.monotonic()

    def _fq(self, node_name: str) -> str:
        """Fully qualified name of a graph node (diagnostics are keyed by it: /diagnostics is
        global)."""
        return "/" + "/".join(p for p in (self.config.namespace.strip("/"), node_name) if p)

    def diag(self, node_name: str, default=None):
        return self.diagnostics.get(self._fq(node_name), default)

    def _on_diagnostics(self, msg) -> None:
        now = time.time()
        for status in msg.status:
            name = status.name.split(": ", 1)[-1]
            self.diagnostics[name] = (
                now,
                int.from_bytes(status.level, "little")
                if isinstance(status.level, bytes)
                else int(status.level),
                status.message,
                {kv.key: kv.value for kv in status.values},
            )

    def spin_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.alive()
            if time.monotonic() >= deadline:
                raise BenchError(f"{what}: not within {timeout:.0f} s")
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client, request, timeout: float = 60.0):
        self.spin_until(client.service_is_ready, timeout, f"service {client.srv_name} up")
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f"service {client.srv_name} answers")
        if future.exception() is not None:
            raise BenchError(f"service {client.srv_name} failed: {future.exception()}")
        return future.result()

    def parameters(self, node_name: str, names: list[str]) -> dict:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(
            self.get_parameters[node_name], GetParameters.Request(names=names), 30.0
        )
        return {
            name: parameter_value_to_python(value) for name, value in zip(names, response.values)
        }

    def set_parameter(self, node_name: str, name: str, value) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg()]
        )
        response = self.call(self.set_parameters_clients[node_name], request, 30.0)
        if not response.results or not response.results[0].successful:
            raise BenchError(
                f"could not set {node_name} {name}: "
                f"{response.results[0].reason if response.results else 'no answer'}"
            )

    def override(self, node_name: str, name: str, value) -> None:
        """Set a node's parameter for the run and remember the old value (restored at the end);
        a parameter the node does not declare is left alone."""
        current = self.parameters(node_name, [name])[name]
        if current is None or current == value:
            return
        self._restore.setdefault((node_name, name), current)
        self.set_parameter(node_name, name, value)

    def probe(self) -> float:
        """One idle service round trip to vlm_node (get_parameters: no engine work), seconds."""
        from rcl_interfaces.srv import GetParameters

        started = time.perf_counter()
        self.call(self.get_parameters["vlm_node"], GetParameters.Request(names=["device"]), 10.0)
        return time.perf_counter() - started

    def fresh_counters(self, since: float) -> dict[str, dict[str, int]]:
        """Wait for a /diagnostics status newer than ``since`` from each counting node; their
        counters."""
        nodes = [n for n in DIAG_COUNTERS if self.diag(n) is not None or not self.config.attach]
        self.spin_until(
            lambda: all(self.diag(n, (0,))[0] > since for n in nodes),
            15.0,
            "fresh /diagnostics from " + ", ".join(nodes),
        )
        return {
            n: {key: int(float(self.diag(n)[3].get(key, 0) or 0)) for key in DIAG_COUNTERS[n]}
            for n in nodes
        }

    def link_stats(self):
        if not self.config.link:
            return None
        from uservlm_ros.tools.netlink import Link

        try:
            return Link(
                rate=self.config.link["rate"], token=self.config.link["token"]
            ).qdisc_stats()
        except Exception as error:  # counters are a bonus: report why they are missing
            return {"error": str(error)}

    # -- the run ----------------------------------------------------------------------------
    def wait_ready(self) -> dict:
        started = time.monotonic()
        timeout = self.config.startup_timeout
        for name, client in self.services.items():
            self.spin_until(
                client.service_is_ready, timeout, f"/uservlm/{name} up (see the node logs)"
            )
        for name, client in self.get_parameters.items():
            self.spin_until(client.service_is_ready, timeout, f"{name} up")
        self.spin_until(
            lambda: self.diag("dialogue_node", (0, 1))[1] == 0,
            timeout,
            "dialogue_node reporting the cloud side reachable (/diagnostics OK)",
        )
        self.spin_until(
            lambda: self.node.count_publishers("speech") >= 1
            and self.node.count_subscribers("speech") >= 2
            and self.node.count_subscribers("speech_audio") >= 2
            and self.node.count_publishers("speech_started") >= 1,
            timeout,
            "asr_node -> dialogue_node -> speaker_node topics matched",
        )
        self.log(f"[bench] graph ready after {time.monotonic() - started:.1f} s")
        params = {
            "asr_node": self.parameters(
                "asr_node",
                [
                    "model",
                    "device",
                    "compute_type",
                    "beam_size",
                    *(f.name for f in dataclasses.fields(VadConfig)),
                    "self_speech_tail",
                    "speculative",
                ],
            ),
            "vlm_node": self.parameters(
                "vlm_node",
                ["base_model", "adapter", "device", "dtype", "max_new_tokens", "offline_fallback"],
            ),
            "tts_node": self.parameters("tts_node", ["backend", "piper_voice", "coqui_model"]),
            "ethics_node": self.parameters("ethics_node", ["use_embeddings"]),
            "dialogue_node": self.parameters(
                "dialogue_node", ["user_id", "speak", "stream_audio", "max_frame_skew"]
            ),
        }
        self.echo_tail = float(params["asr_node"].get("self_speech_tail") or 0.0)
        # What each engine node says it loaded (e.g. "active: piper:en_US-joe-medium").
        params["engines"] = {
            name: self.diag(name)[2] for name in CLOUD_NODES if self.diag(name) is not None
        }
        return params

    def prepare_user(self) -> tuple[str, str, str]:
        """(question, user id, review decision the measured turns will get)."""
        from uservlm_ros.ros.conversions import array_to_audio
        from uservlm_ros.srv import Forget, Review, Transcribe

        samples, rate, channels = bag_audio(self.bag)
        request = Transcribe.Request()
        request.audio = array_to_audio(
            samples.reshape(-1, channels) if channels > 1 else samples, rate
        )
        response = self.call(self.services["transcribe"], request, 120.0)
        if not response.success or not response.text.strip():
            raise BenchError(
                f"the bag's audio did not transcribe: {response.error or 'no speech'}"
            )
        question = response.text.strip()
        user = "" if self.config.consent == "anonymous" else self.config.user_id
        if self.config.attach:
            self.override("dialogue_node", "user_id", user)
            self.override("dialogue_node", "stream_audio", self.config.stream_audio)
        if not user:
            return question, user, "anonymous (no consent memory)"
        self.call(self.services["forget"], Forget.Request(user_id=user))
        review = self.call(
            self.services["review"], Review.Request(question=question, user_id=user)
        )
        if review.success and review.decision == "clarify":
            reply = self.call(
                self.services["review"], Review.Request(question=CONSENT_REPLY, user_id=user)
            )
            if not (reply.success and reply.resolved_reply and reply.decision == "allow"):
                raise BenchError(
                    f"pre-consent failed: the review read {CONSENT_REPLY!r} as {reply.decision!r} "
                    f"({reply.error or reply.reason})"
                )
        elif not review.success:
            raise BenchError(f"/uservlm/review failed: {review.error}")
        check = self.call(self.services["review"], Review.Request(question=question, user_id=user))
        return question, user, check.decision

    def cleanup_user(self, user: str) -> None:
        from uservlm_ros.srv import Forget

        try:
            if user:
                self.call(self.services["forget"], Forget.Request(user_id=user), 10.0)
            for (node_name, name), value in self._restore.items():
                self.set_parameter(node_name, name, value)
        except BenchError as error:
            self.log(f"[bench] warning: clean-up: {error}")

    def run(self) -> dict:
        params = self.wait_ready()
        user = "" if self.config.consent == "anonymous" else self.config.user_id
        try:
            question, user, decision = self.prepare_user()
            # Does dialogue_node stream the answer sentence by sentence (a parameter newer graphs
            # have)?
            self.streaming = bool(
                self.parameters("dialogue_node", ["stream_audio"])["stream_audio"]
            )
            params["dialogue_node"]["stream_audio"] = self.streaming
            self.log(
                f"[bench] question (transcribed from the bag): {question!r}; user "
                f"{user or '(anonymous)'}: review says {decision}"
            )
            utterances = VadTrack(self.bag, params["asr_node"]).next_replay()
            if not utterances:
                raise BenchError(
                    "the VAD (asr_node's parameters) finds no complete utterance in "
                    f"{self.bag.path}: "
                    "it needs speech followed by at least min_silence_ms of silence"
                )
            self.vad = VadTrack(self.bag, params["asr_node"])
            phases = [
                self.run_phase(uplink, utterances, pipeline)
                for uplink in self.config.uplinks
                for pipeline in self.config.pipelines
            ]
        finally:
            self.cleanup_user(user)  # forget the bench user; restore dialogue_node's parameters
        return {
            "params": params,
            "question": question,
            "user_id": user,
            "review_decision": decision,
            "utterances_per_replay": len(utterances),
            "phases": phases,
            "bag": {
                "path": str(self.bag.path),
                "messages": len(self.bag.messages),
                "duration": self.bag.duration,
                "topics": {
                    t.name: {"type": t.msgtype, "count": t.count} for t in self.bag.topics.values()
                },
            },
        }

    def set_pipeline(self, pipeline: str) -> dict:
        """Set the nodes' parameters of a PIPELINES entry ("" = leave them); what the phase runs
        with."""
        for node_name, values in PIPELINES.get(pipeline, {}).items():
            for name, value in values.items():
                self.override(node_name, name, value)
        asr = self.parameters("asr_node", ["speculative", "window_seconds"])
        state = {
            "stream_audio": bool(
                self.parameters("dialogue_node", ["stream_audio"])["stream_audio"]
            ),
            "speculative": bool(asr["speculative"]),
            "window_seconds": asr["window_seconds"],
        }
        self.streaming = state["stream_audio"]
        self.vad.speculative = state["speculative"]  # asr_start follows asr_node's setting
        self.pipeline = pipeline or pipeline_label(**state)
        return state

    def run_phase(self, uplink: str, utterances: list[dict], pipeline: str = "") -> dict:
        state = self.set_pipeline(pipeline)
        label = " ".join(
            part
            for part in (uplink if len(self.config.uplinks) > 1 or not pipeline else "", pipeline)
            if part
        )
        messages = bags.camera_uplink(self.bag, uplink)
        replayer = bags.Replayer(self.node, self.bag, messages=messages)
        camera = [
            name
            for name in replayer.names.values()
            if name.endswith(bags.CAMERA_RAW) or name.endswith(bags.CAMERA_JPEG)
        ]
        need = {name: 1 for name in replayer.names.values()}
        need.update({name: self.config.min_camera_subscribers for name in camera})
        replayer.wait_for_subscribers(self.executor, self.config.startup_timeout, need, settle=1.0)
        link_before = self.link_stats()
        phase_started = time.monotonic()
        rows = []
        total = self.config.warmup + self.config.turns
        for index in range(total):
            warm = index < self.config.warmup
            rows += replay_turn(
                self, replayer, uplink, index - self.config.warmup + 1, warm, utterances, camera
            )
            row = rows[-1]
            self.log(
                f"[bench] {label} {'warm-up' if warm else 'turn'} "
                f"{index + 1 - (0 if warm else self.config.warmup)}"
                f"/{self.config.warmup if warm else self.config.turns}: "
                + (
                    f"audio out {row['speech_end_to_audio_out']:.2f} s, middleware "
                    + (
                        "n/a (streamed)"
                        if math.isnan(row["middleware"])
                        else f"{row['middleware'] * 1000:.0f} ms"
                    )
                    if row.get("success")
                    else f"FAILED: {row.get('error')}"
                )
            )
        seconds = time.monotonic() - phase_started
        link_after = self.link_stats()
        replayer.destroy()
        return {
            "uplink": uplink,
            "label": label,
            "pipeline": pipeline,
            **state,
            "rows": rows,
            "seconds": seconds,
            "link_before": link_before,
            "link_after": link_after,
        }

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_session(config: SessionConfig, alive=None, log=print) -> dict:
    session = Session(config, alive=alive, log=log)
    try:
        return session.run()
    finally:
        session.close()
