"""cloud_node: the cloud side's nodes (asr_node, tts_node, vlm_node, ethics_node) composed into one
process (``uservlm up --compose``, ``uservlm bench --compose``), joined by dialogue_node when it
runs on the same host.

What a component container is to rclcpp nodes: one process, every member keeping its name,
parameters (cloud.yaml and robot.yaml are keyed by node name), services and topics, so the graph
looks the same from outside. Inside, :class:`uservlm_ros.ros.composition.Composition` makes the
members' calls and messages to each other in-process. The process also runs a node of its own,
``cloud_node``, whose /diagnostics report what went in-process. Each member spins its own
executor on its own thread (:func:`uservlm_ros.ros.runner.run_nodes`).

The price: one Python interpreter for the engines, and one crash takes every member down
together; separate processes (the default) isolate them.

Per-node parameter overrides are given before ``--ros-args`` as ``--set node.parameter:=value``
(a ``-p`` after ``--ros-args`` would reach every node of the process).
"""

from __future__ import annotations

import sys

import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from uservlm_ros.ros import qos
from uservlm_ros.ros.composition import Composition
from uservlm_ros.ros.diagnostics import OK, publish_status
from uservlm_ros.ros.runner import DEFAULT_THREADS, EVENTS, run_nodes

CLOUD_MEMBERS = ("asr_node", "tts_node", "vlm_node", "ethics_node")
MEMBERS = (*CLOUD_MEMBERS, "dialogue_node")


def parse_arguments(argv: list[str]) -> tuple[tuple[str, ...], dict[str, dict]]:
    """(members, overrides) from the arguments before ``--ros-args``: ``--members a,b`` (default:
    the four cloud nodes) and ``--set node.parameter:=value`` (values are YAML, as with ``-p``);
    ValueError
    for a malformed one or an unknown node."""
    from rclpy.utilities import remove_ros_args

    arguments = remove_ros_args(argv)[1:]
    members = CLOUD_MEMBERS
    if "--members" in arguments:
        position = arguments.index("--members")
        members = tuple(
            n
            for n in (arguments[position + 1] if position + 1 < len(arguments) else "").split(",")
            if n
        )
        unknown = [n for n in members if n not in MEMBERS]
        if not members or unknown:
            raise ValueError(
                f"--members: choose from {', '.join(MEMBERS)}"
                + (f" (not {', '.join(unknown)})" if unknown else "")
            )
    overrides: dict[str, dict] = {}
    for position, argument in enumerate(arguments):
        if argument != "--set":
            continue
        if position + 1 >= len(arguments):
            raise ValueError("--set needs node.parameter:=value")
        target, separator, value = arguments[position + 1].partition(":=")
        node, dot, parameter = target.partition(".")
        if not separator or not dot or not parameter:
            raise ValueError(f"--set {arguments[position + 1]!r}: expected node.parameter:=value")
        if node not in MEMBERS:
            raise ValueError(
                f"--set {arguments[position + 1]!r}: {node!r} is not one of {', '.join(MEMBERS)}"
            )
        overrides.setdefault(node, {})[parameter] = yaml.safe_load(value)
    return members, overrides


def main(args=None) -> int:
    from rclpy.parameter import Parameter

    from uservlm_ros.nodes.asr import ASRNode
    from uservlm_ros.nodes.dialogue import DialogueNode
    from uservlm_ros.nodes.ethics import EthicsNode
    from uservlm_ros.nodes.tts import TTSNode
    from uservlm_ros.nodes.vlm import VLMNode

    argv = sys.argv if args is None else args
    try:
        members, overrides = parse_arguments(argv)
    except ValueError as error:
        print(f"cloud_node: {error}", file=sys.stderr)
        return 2
    kinds = {
        "asr_node": ASRNode,
        "tts_node": TTSNode,
        "ethics_node": EthicsNode,
        "vlm_node": VLMNode,
        "dialogue_node": DialogueNode,
    }

    def make(name):
        parameters = [Parameter(k, value=v) for k, v in overrides.get(name, {}).items()]
        return lambda: kinds[name](parameter_overrides=parameters)

    composition = Composition().install()
    # The servers first: vlm_node finds ethics and TTS ready when it takes its first ask, and
    # dialogue_node finds vlm_node. Each member's executor as in its own process.
    threads = lambda name: getattr(kinds[name], "EXECUTOR_THREADS", DEFAULT_THREADS)  # noqa: E731
    members = [(make(name), threads(name)) for name in kinds if name in members]
    return run_nodes([*members, (lambda: ContainerNode(composition), EVENTS)], args=argv)


class ContainerNode(Node):
    """The composed process's own node: /diagnostics about what its members do in-process."""

    def __init__(self, composition: Composition):
        super().__init__("cloud_node")
        self.composition = composition
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_timer(1.0, self.report)

    def report(self) -> None:
        publish_status(
            self,
            self._diagnostics,
            OK,
            "composed: calls and messages between members in-process",
            self.composition.status(),
        )


if __name__ == "__main__":
    raise SystemExit(main())
