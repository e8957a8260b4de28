"""``--low-latency``: ask the kernel to keep idle CPUs out of sleep states while the graph runs.

Every hop of the spoken loop wakes a thread that was waiting: Fast DDS's receive thread, an
executor, a worker. When the CPU it wakes on is idle in a sleep state, the wake-up waits for that
CPU to come back; in a VM whose idle vCPUs halt, the host must schedule the vCPU again.
``scripts/measure_wakeup.py`` measures the lateness of a thread's wake-up with and without it.

The request is the kernel's PM QoS interface, the one ``tuned``'s ``latency-performance``
profile and the ROS 2 real-time guides use: write a 32-bit latency bound in microseconds to
``/dev/cpu_dma_latency`` and keep the file open; closing it drops the request. 0 leaves only the
polling idle state: an idle CPU spins instead of sleeping, which costs power (a Jetson's battery,
a cloud host's CPU time) and nothing else. Writing it needs root or write access to the device
(a udev rule ``KERNEL=="cpu_dma_latency", GROUP="<group>", MODE="0660"``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

DEVICE = "/dev/cpu_dma_latency"


class LatencyError(RuntimeError):
    """The request could not be made; the message says why and what would allow it."""


def idle_states(sysfs: str = "/sys") -> str:
    """The cpuidle driver and CPU 0's idle states, e.g. ``haltpoll: POLL, haltpoll idle; guest halt
    polling 0 ns`` ('' if unknown). With the ``haltpoll`` driver, how long an idle vCPU polls
    before
    it halts (``haltpoll.guest_halt_poll_ns``; 0 = every idle vCPU halts at once)."""
    root = Path(sysfs)
    try:
        driver = (root / "devices/system/cpu/cpuidle/current_driver").read_text().strip()
    except OSError:
        return ""
    names = []
    for state in sorted((root / "devices/system/cpu/cpu0/cpuidle").glob("state*/name")):
        try:
            names.append(state.read_text().strip())
        except OSError:
            pass
    described = f"{driver}: {', '.join(names)}" if names else driver
    try:
        poll_ns = (root / "module/haltpoll/parameters/guest_halt_poll_ns").read_text().strip()
    except OSError:
        return described
    return f"{described}; guest halt polling {poll_ns} ns"


class CpuLatencyHold:
    """Context manager holding a CPU wake-up latency bound of ``microseconds`` (default 0)."""

    def __init__(self, microseconds: int = 0, device: str | None = None):
        if microseconds < 0:
            raise ValueError(f"latency bound must be >= 0 µs, got {microseconds}")
        self.microseconds, self.device = int(microseconds), device or DEVICE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> CpuLatencyHold:
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.device, os.O_WRONLY)
        except FileNotFoundError:
            raise LatencyError(
                f"{self.device} does not exist: this kernel has no PM QoS CPU latency "
                "interface (--low-latency cannot work here)"
            ) from None
        except PermissionError:
            raise LatencyError(
                f"no write access to {self.device}: run as root, or let your group write "
                f'it (udev rule KERNEL=="cpu_dma_latency", GROUP="<group>", MODE="0660")'
            ) from None
        try:
            os.write(fd, struct.pack("i", self.microseconds))
        except OSError as error:
            os.close(fd)
            raise LatencyError(
                f"writing {self.microseconds} µs to {self.device} failed: {error}"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the kernel drops the request with the file
            self._fd = None

    def describe(self) -> str:
        if not self.held:
            states = idle_states()
            return "CPU idle: kernel default" + (f" ({states})" if states else "")
        return (
            f"CPU idle: wake-up latency held at {self.microseconds} µs via {self.device} "
            "(--low-latency: idle CPUs poll instead of sleeping)"
        )

    def __enter__(self) -> CpuLatencyHold:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
