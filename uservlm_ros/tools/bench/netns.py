"""``--link netns``: the robot side (the replay, speaker_node, dialogue_node) and the cloud side in
two network namespaces joined by a veth pair shaped with ``tc tbf``
(:mod:`uservlm_ros.tools.netlink`;
no added propagation delay: netem is not available). The robot-side session runs as a process in
the robot namespace and hands its result back as JSON.

The replaying process publishes in Fast DDS's asynchronous mode there: on the robot, camera and
microphone are separate processes, and a synchronous ``publish()`` of a raw frame into the shaped
link blocks, holding the GIL, which would delay the audio behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from uservlm_ros.tools.bench.config import BenchError, BenchOptions
from uservlm_ros.tools.bench.graph import bench_specs, graph_overrides, session_config, watch


def run_netns(options: BenchOptions, out_dir: Path, meta: dict, log) -> dict:
    from uservlm_ros.tools.launcher import GraphProcesses, die_with_parent
    from uservlm_ros.tools.netlink import shaped_link

    with shaped_link(options.link_rate) as link:
        meta["link_text"] = (
            f"netns: robot side in {link.robot_ns} ({link.robot_address}), cloud side in "
            f"{link.cloud_ns} ({link.cloud_address}), veth shaped by tc tbf to {link.rate} each "
            "way, no added delay (netem unavailable); DDS over UDPv4, discovery to static peers"
        )
        log(f"[bench] link up: {meta['link_text']}")
        overrides = graph_overrides(options, out_dir)
        cloud = GraphProcesses(
            bench_specs("cloud", options.compose),
            params_file=options.params_file,
            namespace=options.namespace,
            log_dir=out_dir / "logs",
            overrides=overrides,
            env=link.environment("cloud"),
            command_prefix=link.exec_prefix("cloud"),
        )
        robot = GraphProcesses(
            bench_specs("robot", options.compose),
            params_file=options.params_file,
            namespace=options.namespace,
            log_dir=out_dir / "logs",
            overrides=overrides,
            env=link.environment("robot"),
            command_prefix=link.exec_prefix("robot"),
        )
        config_path, result_path = out_dir / "session_config.json", out_dir / "session_result.json"
        result_path.unlink(missing_ok=True)
        config_path.write_text(json.dumps(asdict(session_config(options, link))))
        log(
            f"[bench] starting {', '.join(s.name for s in cloud.specs)} in {link.cloud_ns}, "
            f"{', '.join(s.name for s in robot.specs)} and the replay in {link.robot_ns}"
        )
        graphs = [cloud.start(), robot.start()]
        worker = None
        try:
            env = dict(robot.env)
            # Asynchronous publication: see the module docstring.
            env["RMW_FASTRTPS_PUBLICATION_MODE"] = "ASYNCHRONOUS"
            env["PYTHONPATH"] = os.pathsep.join(
                p
                for p in (str(Path(__file__).resolve().parents[3]), env.get("PYTHONPATH", ""))
                if p
            )
            worker = subprocess.Popen(
                [
                    *link.exec_prefix("robot"),
                    sys.executable,
                    "-m",
                    "uservlm_ros.tools.bench",
                    "--session",
                    str(config_path),
                    str(result_path),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
            alive = watch(graphs)
            while worker.poll() is None:
                alive()
                time.sleep(0.2)  # the orchestrator only polls processes; no ROS here
            if worker.returncode != 0 or not result_path.is_file():
                raise BenchError(
                    f"the robot-side session failed (exit {worker.returncode}); see above and "
                    f"{out_dir / 'logs'}"
                )
            return json.loads(result_path.read_text())
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, 2)
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, 9)
            for graph in graphs:
                graph.stop()
