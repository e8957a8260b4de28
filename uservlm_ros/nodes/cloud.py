"""cloud_node: the cloud side's nodes — asr_node, tts_node, vlm_node, ethics_node — composed
into one process (``uservlm up --compose``, ``uservlm bench --compose``), and with them the
turn-taking dialogue_node when it runs on the same host.

What a component container is to rclcpp nodes: one process, every node keeping its name,
parameters (cloud.yaml and robot.yaml are keyed by node name), services and topics, so the graph
looks the same from outside. What changes is inside: calls between members go straight to the
serving callback (:mod:`uservlm_ros.ros.local_services`) instead of through DDS — vlm_node's
``uservlm/review`` and ``uservlm/synthesize`` (the answer's 180 KB of audio are not serialised
twice) and, with dialogue_node, its ``uservlm/ask`` (the question and the camera's JPEG); and
asr_node's utterances reach dialogue_node in-process too (:mod:`uservlm_ros.ros.local_topics`).
With dialogue_node, the process subscribes to the camera once: vlm_node keeps the frames
dialogue_node's subscriptions receive (:meth:`uservlm_ros.nodes.vlm.VLMNode.share_camera`), so
its thread-pool executor is not woken 30 times a second, and ``ros2 topic info`` lists
dialogue_node alone as the camera topics' subscriber in this process. Each member spins its own
executor on its own thread (:func:`uservlm_ros.ros.runner.run_nodes`).

The price: one Python interpreter for the engines (they release the GIL in their C++ and Torch
kernels, the Python glue shares it) and one crash takes every member down together; separate
processes (the default) isolate them.

Per-node parameter overrides are given before ``--ros-args`` as ``--set node.parameter:=value``
(a ``-p`` after ``--ros-args`` would reach every node of the process).
"""
from __future__ import annotations

import sys

import yaml

from uservlm_ros.ros import local_services, local_topics
from uservlm_ros.ros.runner import DEFAULT_THREADS, run_nodes

CLOUD_MEMBERS = ("asr_node", "tts_node", "vlm_node", "ethics_node")
MEMBERS = (*CLOUD_MEMBERS, "dialogue_node")


def parse_arguments(argv: list[str]) -> tuple[tuple[str, ...], dict[str, dict]]:
    """(members, overrides) from the arguments before ``--ros-args``: ``--members a,b`` (default:
    the four cloud nodes) and ``--set node.parameter:=value`` (values are YAML, as with ``-p``); ValueError
    for a malformed one or an unknown node."""
    from rclpy.utilities import remove_ros_args

    arguments = remove_ros_args(argv)[1:]
    members = CLOUD_MEMBERS
    if "--members" in arguments:
        position = arguments.index("--members")
        members = tuple(n for n in (arguments[position + 1] if position + 1 < len(arguments) else "").split(",") if n)
        unknown = [n for n in members if n not in MEMBERS]
        if not members or unknown:
            raise ValueError(f"--members: choose from {', '.join(MEMBERS)}" + (f" (not {', '.join(unknown)})" if unknown else ""))
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
            raise ValueError(f"--set {arguments[position + 1]!r}: {node!r} is not one of {', '.join(MEMBERS)}")
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
    kinds = {"asr_node": ASRNode, "tts_node": TTSNode, "ethics_node": EthicsNode, "vlm_node": VLMNode,
             "dialogue_node": DialogueNode}

    def make(name):
        parameters = [Parameter(k, value=v) for k, v in overrides.get(name, {}).items()]
        return lambda: kinds[name](parameter_overrides=parameters)

    local_services.enable()
    local_topics.enable()
    # The servers first: vlm_node finds ethics and TTS ready when it takes its first ask, and
    # dialogue_node finds vlm_node.
    # Each member's executor as in its own process: run_node's default, or the node's EXECUTOR_THREADS.
    threads = lambda name: getattr(kinds[name], "EXECUTOR_THREADS", DEFAULT_THREADS)  # noqa: E731
    return run_nodes([(make(name), threads(name)) for name in kinds if name in members], args=argv,
                     connect=share_camera)


def share_camera(nodes) -> None:
    """vlm_node takes its frames from dialogue_node's camera subscriptions when both are members."""
    named = {node.get_name(): node for node in nodes}
    if "vlm_node" in named and "dialogue_node" in named:
        named["vlm_node"].share_camera("dialogue_node", named["dialogue_node"].frames)


if __name__ == "__main__":
    raise SystemExit(main())
