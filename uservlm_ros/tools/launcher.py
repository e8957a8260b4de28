"""Bring nodes of the graph up as separate processes (what ``ros2 launch`` does on a ROS install).

Used by ``uservlm up``, ``uservlm demo`` and the ROS tests; the node list and the parameter files
come from :mod:`uservlm_ros.bringup.graph`, exactly as in launch/*.launch.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
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


PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PRCTL = None
if sys.platform.startswith("linux"):
    # Resolved here, in the parent: between fork and exec the child should only call it.
    try:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _PRCTL = None


def die_with_parent(signum: int = signal.SIGTERM):
    """A ``preexec_fn`` for ``subprocess.Popen``: the kernel sends ``signum`` to the child when
    the thread that started it exits (Linux ``PR_SET_PDEATHSIG``), so nodes do not outlive a
    ``uservlm up`` that was killed with SIGKILL. Start children from a thread that lives as long
    as they should (the main thread). Elsewhere than on Linux: None (no such guarantee)."""
    if _PRCTL is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _PRCTL(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will send it
            os.kill(os.getpid(), signum)

    return preexec


@contextmanager
def interrupt_on(signals=(signal.SIGTERM, signal.SIGHUP)):
    """Inside, ``signals`` (SIGTERM from systemctl / docker stop, SIGHUP from a closed terminal)
    raise KeyboardInterrupt in the main thread, as Ctrl-C does, so a command stops its graph the
    way it does on Ctrl-C. The previous handlers are restored on leaving. Main thread only."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, interrupt) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class GraphProcesses:
    """Start nodes, watch them, stop them (SIGINT, then SIGKILL after a grace period).

    Every node dies with this process, even on SIGKILL (:func:`die_with_parent`). ``respawn``:
    names of nodes that :meth:`wait` starts again when they exit (launch_ros's ``respawn=True``),
    after ``respawn_delay`` seconds, doubled while a node keeps exiting within ``STABLE_SECONDS``
    of its start (a crash loop), up to ``RESPAWN_MAX_DELAY``."""

    STABLE_SECONDS = 10.0
    RESPAWN_MAX_DELAY = 30.0

    def __init__(
        self,
        specs: list[NodeSpec],
        params_file: Path | None = None,
        namespace: str = "",
        env: dict | None = None,
        log_dir: Path | None = None,
        overrides: dict[str, dict] | None = None,
        command_prefix: tuple[str, ...] = (),
        respawn: tuple[str, ...] = (),
        respawn_delay: float = 2.0,
        log=None,
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
        if respawn_delay < 0:
            raise ValueError(f"respawn_delay must be >= 0, got {respawn_delay}")
        unknown = set(respawn) - {spec.name for spec in specs}
        if unknown:
            raise ValueError(f"respawn names nodes that are not in the graph: {sorted(unknown)}")
        self.respawn = tuple(respawn)
        self.respawn_delay = respawn_delay
        self.respawns: dict[str, int] = {}
        self._started_at: dict[str, float] = {}
        self._delays: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))

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
            preexec_fn=die_with_parent(),
        )
        if output is not None:
            output.close()  # the child has its own copy; one kept per (re)start would pile up
        self._started_at[spec.name] = time.monotonic()

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

    def respawn_exited(self, now: float | None = None) -> list[str]:
        """Start again the ``respawn`` nodes that have exited and whose delay is over; the names
        started. Call it from the thread that started the graph (see :func:`die_with_parent`)."""
        now = time.monotonic() if now is None else now
        started = []
        by_name = {spec.name: spec for spec in self.specs}
        for name, code in self.exited().items():
            if name not in self.respawn:
                continue
            if name not in self._due:
                lived = now - self._started_at.get(name, now)
                delay = self._delays.get(name, self.respawn_delay)
                if lived < self.STABLE_SECONDS and name in self.respawns:  # a crash loop
                    delay = min(max(delay * 2, 0.5), self.RESPAWN_MAX_DELAY)
                else:
                    delay = self.respawn_delay
                self._delays[name] = delay
                self._due[name] = now + delay
                self._log(f"{name} exited with code {code}; respawning in {delay:.1f} s")
            if now >= self._due[name]:
                del self._due[name]
                self.respawns[name] = self.respawns.get(name, 0) + 1
                self.restart(by_name[name])
                started.append(name)
        return started

    def wait(self) -> int:
        """Block until every node exits (or Ctrl-C, which stops them all); nodes in ``respawn``
        are started again instead, so then only Ctrl-C (or SIGTERM/SIGHUP under
        :func:`interrupt_on`) ends it. Returns the largest exit code (absolute) of the nodes
        that ended on their own: how a node ends because it was stopped does not count."""
        interrupted = False
        try:
            while len(self.exited()) < len(self.processes) or self.respawn:
                self.respawn_exited()
                time.sleep(0.5)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            ended = self.exited()
            self.stop()
        codes = ended if interrupted else self.exited()
        return max([abs(code) for code in codes.values()] or [0])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
