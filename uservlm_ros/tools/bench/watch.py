"""The bench's view of the graph: its own node on the robot side and what it hears and calls."""

from __future__ import annotations

import os
import time

from uservlm_ros.tools import bags
from uservlm_ros.tools.bench.config import CLOUD_NODES, DIAG_COUNTERS, BenchError, SessionConfig


class GraphWatch:
    """The bench's own node on the robot side: what the graph says (utterances, interaction
    records, spoken audio, robot_speaking, /diagnostics), its services and its nodes'
    parameters, with deadline-bound waits that fail with a BenchError naming what did not come."""

    def __init__(self, config: SessionConfig, alive=None, log=print):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        from uservlm_ros.msg import AudioChunk, Interaction, SpeakingState, Utterance
        from uservlm_ros.ros import qos
        from uservlm_ros.srv import Ask, Forget, Identify, Review, Synthesize, Transcribe

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
        # after the robot stops: how long asr_node's echo gate may still hold the microphone
        # back (its tail plus the longest echo delay), read in wait_ready()
        self.echo_tail = 0.55
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
        node.create_subscription(SpeakingState, "robot_speaking", self._on_speaking, qos.LATCHED)
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
                ("identify", Identify),
            )
        }
        self.get_parameters = {
            name: node.create_client(GetParameters, f"{name}/get_parameters")
            for name in (*CLOUD_NODES, "dialogue_node")
        }
        self.set_parameters_clients = {
            name: node.create_client(SetParameters, f"{name}/set_parameters")
            for name in ("asr_node", "dialogue_node", "vlm_node")
        }
        # {(node, parameter): value before the run} (attach mode, --compare)
        self._restore: dict = {}
        self.streaming = False
        self.pipeline = ""

    # -- plumbing ---------------------------------------------------------------------------
    def _on_speaking(self, msg) -> None:
        if bool(msg.speaking) != self.speaking:
            self.speaking = bool(msg.speaking)
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

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
