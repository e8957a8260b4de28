"""The graph the bench starts: the cloud side and the robot side without camera and microphone
(the bag replaces them), with the bench's overrides."""

from __future__ import annotations

from pathlib import Path

from uservlm_ros.tools.bench.config import (
    PIPELINES,
    ROBOT_NODES,
    BenchError,
    BenchOptions,
    SessionConfig,
)


def graph_overrides(options: BenchOptions, out_dir: Path) -> dict:
    overrides = {
        "speaker_node": {"mode": "file", "output_dir": str(out_dir / "speech"), "realtime": True},
        "dialogue_node": {
            "user_id": "" if options.consent == "anonymous" else options.user_id,
            "stream_audio": options.stream_audio,
        },
        "ethics_node": {"store_dir": str(out_dir / "consent")},
    }
    for node, values in options.overrides.items():
        overrides.setdefault(node, {}).update(values)
    return overrides


def bench_specs(side: str, compose: bool = False):
    """The nodes the bench starts: the cloud side and the robot side minus camera/microphone.
    ``compose``: the cloud side as one process, with dialogue_node in it (the turn is taken on
    the cloud side of the link)."""
    from uservlm_ros.bringup.graph import JOINS_CLOUD, compose_cloud, nodes

    robot = [spec for spec in nodes("robot") if spec.name in ROBOT_NODES]
    if not compose:
        return nodes("cloud") if side == "cloud" else robot
    if side == "cloud":
        return compose_cloud(nodes("cloud") + [spec for spec in robot if spec.name in JOINS_CLOUD])
    return [spec for spec in robot if spec.name not in JOINS_CLOUD]


def session_config(options: BenchOptions, link=None) -> SessionConfig:
    return SessionConfig(
        bag=str(Path(options.bag).resolve()),
        turns=options.turns,
        warmup=options.warmup,
        uplinks=list(options.uplinks),
        speed=options.speed,
        namespace=options.namespace,
        user_id=options.user_id,
        consent=options.consent,
        attach=options.attach,
        startup_timeout=options.startup_timeout,
        turn_timeout=options.turn_timeout,
        min_camera_subscribers=1 if options.attach or options.compose else 2,
        stream_audio=options.stream_audio,
        pipelines=list(PIPELINES) if options.compare else [""],
        link={"token": link.token, "rate": link.rate} if link is not None else None,
    )


def watch(graphs):
    def alive() -> None:
        for graph in graphs:
            if graph.exited():
                raise BenchError(f"a node exited: {graph.exited()} (logs in {graph.log_dir})")

    return alive
