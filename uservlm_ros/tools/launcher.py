"""Bring nodes of the graph up as separate processes (what ``ros2 launch`` does on a ROS install).

Used by ``uservlm up``, ``uservlm demo`` and the ROS tests; the node list and the parameter files
come from :mod:`uservlm_ros.bringup.graph`, exactly as in launch/*.launch.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from uservlm_ros.bringup.graph import NodeSpec, config_path, dds_environment


def node_command(
    spec: NodeSpec,
    params_file: Path | None = None,
    namespace: str = "",
    overrides: dict | None = None,
) -> list[str]:
    """The command line of one node: its own config file, then ``params_file`` (overrides).
    A composed process (``spec.members``) takes ``overrides`` per member node:
    ``--set node.parameter:=value`` before ``--ros-args``."""
    if spec.members:
        command = [sys.executable, "-m", spec.python_module, "--members", ",".join(spec.members)]
        for node, values in (overrides or {}).items():
            command += [
                item
                for name, value in values.items()
                for item in ("--set", f"{node}.{name}:={yaml_value(value)}")
            ]
        command += ["--ros-args"]
        for name in (spec.params_file, *spec.more_params_files):
            command += ["--params-file", str(config_path(name))]
        overrides = None
    else:
        command = [
            sys.executable,
            "-m",
            spec.python_module,
            "--ros-args",
            "-r",
            f"__node:={spec.name}",
            "--params-file",
            str(config_path(spec.params_file)),
        ]
    if params_file:
        command += ["--params-file", str(params_file)]
    if namespace:
        command += ["-r", f"__ns:=/{namespace.strip('/')}"]
    for source, target in spec.remaps:
        command += ["-r", f"{source}:={target}"]
    for name, value in (overrides or {}).items():
        command += ["-p", f"{name}:={yaml_value(value)}"]
    return command


def yaml_value(value) -> str:
    """A `-p name:=value` value: rcl parses it as YAML, so "7" would become an integer."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


class GraphProcesses:
    """Start nodes, watch them, stop them (SIGINT, then SIGKILL after a grace period)."""

    def __init__(
        self,
        specs: list[NodeSpec],
        params_file: Path | None = None,
        namespace: str = "",
        env: dict | None = None,
        log_dir: Path | None = None,
        overrides: dict[str, dict] | None = None,
        command_prefix: tuple[str, ...] = (),
    ):
        self.specs = specs
        self.params_file = params_file
        self.namespace = namespace
        self.env = dds_environment(env)
        self.log_dir = Path(log_dir) if log_dir else None
        self.overrides = overrides or {}
        # Prepended to every node's command line, e.g. ("ip", "netns", "exec", "robot-ns").
        self.command_prefix = tuple(command_prefix)
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs = []

    def start(self) -> GraphProcesses:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            self.restart(spec)
        return self

    def restart(self, spec: NodeSpec) -> None:
        """Start (or start again, after stop(name)) one node of the graph."""
        output = None
        if self.log_dir:
            output = open(self.log_dir / f"{spec.name}.log", "a")
            self._logs.append(output)
        command = [
            *self.command_prefix,
            *node_command(
                spec,
                self.params_file,
                self.namespace,
                {member: self.overrides.get(member, {}) for member in spec.members}
                if spec.members
                else self.overrides.get(spec.name),
            ),
        ]
        self.processes[spec.name] = subprocess.Popen(
            command,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def exited(self) -> dict[str, int]:
        """Nodes that have exited, with their return codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self, name: str | None = None, grace: float = 10.0) -> None:
        targets = {name: self.processes[name]} if name else dict(self.processes)
        for process in targets.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        deadline = time.monotonic() + grace
        for process in targets.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if name is None:
            for log in self._logs:
                log.close()
            self._logs = []

    def wait(self) -> int:
        """Block until every node exits (or Ctrl-C, which stops them all)."""
        try:
            while len(self.exited()) < len(self.processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return max([abs(code) for code in self.exited().values()] or [0])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
