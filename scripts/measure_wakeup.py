#!/usr/bin/env python3
"""How late a sleeping thread wakes up, with the kernel's idle defaults and with --low-latency.

    .venv/bin/python scripts/measure_wakeup.py [--seconds 20]

A thread sleeps 2 ms again and again; the lateness of each wake-up is what every hop of the
spoken loop pays (Fast DDS receive thread, executor, worker). Prints median / p95 / p99 / max
for the kernel default, then while :class:`uservlm_ros.tools.cpu_latency.CpuLatencyHold` holds the
wake-up latency at 0 µs (needs write access to /dev/cpu_dma_latency; skipped with the reason
otherwise). One run, same machine, back to back: compare the two lines, not with other runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from uservlm_ros.tools.cpu_latency import CpuLatencyHold, LatencyError, idle_states

SLEEP = 0.002


def lateness_ms(seconds: float) -> list[float]:
    late, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        time.sleep(SLEEP)
        late.append((time.perf_counter() - started - SLEEP) * 1000.0)
    return sorted(late)


def line(label: str, late: list[float]) -> str:
    pick = lambda q: late[min(len(late) - 1, int(q * len(late)))]  # noqa: E731
    return (
        f"{label:<34} n={len(late):5d}  median {statistics.median(late):6.3f}  p95 "
        f"{pick(0.95):6.3f}  "
        f"p99 {pick(0.99):6.3f}  max {late[-1]:7.3f} ms  (> 5 ms: {sum(x > 5 for x in late)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per setting")
    args = parser.parse_args()
    print(
        f"wake-up lateness of a {SLEEP * 1000:.0f} ms sleep; cpuidle: {idle_states() or 'unknown'}"
    )
    print(line("kernel default", lateness_ms(args.seconds)))
    try:
        with CpuLatencyHold(0):
            print(line("--low-latency (0 µs held)", lateness_ms(args.seconds)))
    except LatencyError as error:
        print(f"--low-latency: not measured: {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
