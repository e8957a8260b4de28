#!/usr/bin/env python3
"""Soak: spoken turns, one after another, through the whole graph by bag replay, while each node's
memory, threads and open file descriptors are sampled.

    .venv/bin/python scripts/soak_turns.py --minutes 30 [--max-turns 5000] [--warmup-turns 20]
        [--sample-every 10] [--out out/soak]

Starts the cloud side, speaker_node and dialogue_node as `uservlm bench` does (the bundled bag
replaces camera and microphone; a pre-consented user, so every turn takes the personalised
path: review, the face to the VLM, synthesis, the speaker), then replays the bag again and again:
each replay is one spoken turn, question to spoken answer. It stops after --minutes or
--max-turns, whichever comes first; every wait is bounded by --turn-timeout. For each node it
prints and writes to <out>/soak.json: resident memory (with the node's child processes) after
the warm-up and at the end, the growth per 100 turns after the warm-up (least-squares slope over
the samples), and threads and file descriptors (first, last, min, max after the warm-up). Exit
status 0 when every turn ended (answered, or with an error record) and no node exited; 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

USER = "soak-user"
CONSENT_REPLY = "Yes, please go ahead."


def children_of(pid: int) -> list[int]:
    """The process's children and theirs (person_node's detector processes), from /proc."""
    found = []
    for task in (Path("/proc") / str(pid) / "task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found + [grandchild for child in found for grandchild in children_of(child)]


def rss_pages(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1])
    except OSError:  # it ended meanwhile
        return 0


def process_resources(pid: int) -> dict:
    """Resident memory (bytes, the node's own and with its child processes), threads (and their
    names) and open file descriptors of a running process, from /proc."""
    proc = Path("/proc") / str(pid)
    own_pages = rss_pages(pid)
    children = children_of(pid)
    names: dict[str, int] = {}
    for task in os.listdir(proc / "task"):
        try:
            name = (proc / "task" / task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        names[name] = names.get(name, 0) + 1
    return {
        "rss": (own_pages + sum(rss_pages(c) for c in children)) * os.sysconf("SC_PAGE_SIZE"),
        "rss_own": own_pages * os.sysconf("SC_PAGE_SIZE"),
        "children": len(children),
        "threads": sum(names.values()),
        "thread_names": names,
        "fds": len(os.listdir(proc / "fd")),
    }


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (turn, value), per 100 turns; 0 for fewer than 2 points."""
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return 100.0 * num / den


def steady(rows: list[tuple[int, dict]]) -> list[tuple[int, float]]:
    """(turn, rss) from the last change of the thread count on (all rows if it never changed,
    the last two if it changed at the end)."""
    first = 0
    for index in range(1, len(rows)):
        if rows[index][1]["threads"] != rows[index - 1][1]["threads"]:
            first = index
    first = min(first, max(len(rows) - 2, 0))
    return [(turn, r["rss"]) for turn, r in rows[first:]]


def summarise(samples: list[dict], warmup_turns: int) -> dict[str, dict]:
    """Per node: memory after warm-up and at the end, growth per 100 turns, threads and fds."""
    after = [s for s in samples if s["turn"] >= warmup_turns] or samples[-1:]
    summary = {}
    for node in samples[-1]["nodes"]:
        rows = [(s["turn"], s["nodes"][node]) for s in after if node in s["nodes"]]
        if not rows:
            continue
        rss = [(turn, r["rss"]) for turn, r in rows]
        summary[node] = {
            "rss_mib_after_warmup": rows[0][1]["rss"] / 2**20,
            "rss_mib_end": rows[-1][1]["rss"] / 2**20,
            "rss_growth_mib_per_100_turns": slope_per_100(rss) / 2**20,
            # once the thread count has stopped changing: a thread a pool starts on demand brings
            # its own malloc arena (a step of several MiB), which is not a leak
            "rss_growth_mib_per_100_turns_steady": slope_per_100(steady(rows)) / 2**20,
            "threads": [
                rows[0][1]["threads"],
                rows[-1][1]["threads"],
                min(r["threads"] for _, r in rows),
                max(r["threads"] for _, r in rows),
            ],
            "fds": [
                rows[0][1]["fds"],
                rows[-1][1]["fds"],
                min(r["fds"] for _, r in rows),
                max(r["fds"] for _, r in rows),
            ],
            "thread_names_after_warmup": rows[0][1]["thread_names"],
            "thread_names_end": rows[-1][1]["thread_names"],
        }
    return summary


class Soak:
    def __init__(self, args):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        from uservlm_ros.msg import Interaction, SpeakingState
        from uservlm_ros.ros import qos
        from uservlm_ros.srv import Review
        from uservlm_ros.tools import bags

        self.args = args
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("uservlm_soak", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.records: list = []
        self.speaking, self.speaking_changed, self.spoke = False, time.monotonic(), 0
        self.node.create_subscription(Interaction, "interactions", self.records.append, qos.EVENTS)
        self.node.create_subscription(
            SpeakingState, "robot_speaking", self._on_speaking, qos.LATCHED
        )
        self.review = self.node.create_client(Review, "uservlm/review", qos_profile=qos.SERVICES)
        self.bag = bags.read_bag(args.bag)
        self.replayer = bags.Replayer(
            self.node, self.bag, messages=bags.camera_uplink(self.bag, "jpeg")
        )

    def _on_speaking(self, msg) -> None:
        if bool(msg.speaking) != self.speaking:
            self.speaking, self.speaking_changed = bool(msg.speaking), time.monotonic()
            self.spoke += self.speaking

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def consent(self) -> None:
        """The soak user agrees once, so every turn takes the personalised path."""
        from uservlm_ros.srv import Review

        if not self.spin_until(self.review.service_is_ready, self.args.startup_timeout):
            raise RuntimeError("/uservlm/review did not come up")
        for question in ("What should I wear to a business meeting?", CONSENT_REPLY):
            future = self.review.call_async(Review.Request(question=question, user_id=USER))
            self.executor.spin_until_future_complete(future, timeout_sec=60)

    def turn(self) -> str:
        """One replay of the bag: 'ok', 'error: ...' or 'no record'."""
        # silent, past asr_node's echo tail: or the question is taken for the robot's own voice
        self.spin_until(
            lambda: not self.speaking and time.monotonic() - self.speaking_changed > 0.8,
            self.args.turn_timeout,
        )
        count, spoke = len(self.records), self.spoke
        self.replayer.play(self.executor)
        if not self.spin_until(lambda: len(self.records) > count, self.args.turn_timeout):
            return "no record"
        record = self.records[-1]
        if record.speech_end_to_audio_out > 0:  # robot_speaking is another topic: see it go by
            self.spin_until(
                lambda: self.spoke > spoke and not self.speaking, self.args.turn_timeout
            )
        del self.records[:-1]  # keep memory of this process flat too
        return "ok" if record.success else f"error: {record.error}"

    def close(self) -> None:
        import rclpy

        self.replayer.destroy()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def main(argv=None) -> int:
    from uservlm_ros.tools.bags.storage import default_bag
    from uservlm_ros.tools.bench.config import BenchOptions
    from uservlm_ros.tools.bench.graph import bench_specs, graph_overrides
    from uservlm_ros.tools.launcher import GraphProcesses, interrupt_on

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="stop after this long")
    parser.add_argument("--max-turns", type=int, default=5000, help="stop after this many turns")
    parser.add_argument(
        "--warmup-turns",
        type=int,
        default=20,
        help="turns before the growth is measured (caches, allocator pools fill)",
    )
    parser.add_argument(
        "--sample-every", type=int, default=10, help="sample the nodes every N turns"
    )
    parser.add_argument("--max-new-tokens", type=int, default=16, help="vlm_node's answer length")
    parser.add_argument(
        "--turn-timeout", type=float, default=120.0, help="longest wait in a turn, seconds"
    )
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument("--bag", default=str(default_bag()))
    parser.add_argument("--out", default="out/soak")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.max_turns < 1 or args.sample_every < 1 or args.warmup_turns < 0:
        parser.error(
            "--minutes, --max-turns and --sample-every must be positive, --warmup-turns >= 0"
        )
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    options = BenchOptions(
        bag=Path(args.bag),
        user_id=USER,
        overrides={"vlm_node": {"max_new_tokens": args.max_new_tokens}},
    )
    graph = GraphProcesses(
        bench_specs("cloud") + bench_specs("robot"),
        log_dir=out / "logs",
        overrides=graph_overrides(options, out),
    )
    outcomes: dict[str, int] = {}
    samples: list[dict] = []
    started = time.monotonic()
    turns = 0
    with interrupt_on():
        graph.start()
        soak = Soak(args)
        try:
            soak.consent()
            soak.replayer.wait_for_subscribers(soak.executor, args.startup_timeout, settle=1.0)
            print(
                f"[soak] graph up after {time.monotonic() - started:.0f} s; turns for "
                f"{args.minutes:g} min or {args.max_turns} turns",
                flush=True,
            )
            soak_started = time.monotonic()
            while turns < args.max_turns and time.monotonic() - soak_started < args.minutes * 60:
                outcome = soak.turn()
                turns += 1
                key = outcome if outcome in ("ok", "no record") else "error"
                outcomes[key] = outcomes.get(key, 0) + 1
                if outcome != "ok":
                    print(f"[soak] turn {turns}: {outcome}", flush=True)
                if graph.exited():
                    print(f"[soak] a node exited: {graph.exited()}", flush=True)
                    break
                if turns % args.sample_every == 0 or turns == args.warmup_turns:
                    samples.append(
                        {
                            "turn": turns,
                            "seconds": time.monotonic() - soak_started,
                            "nodes": {
                                name: process_resources(process.pid)
                                for name, process in graph.processes.items()
                            },
                        }
                    )
                    print(
                        f"[soak] {turns} turns, {time.monotonic() - soak_started:.0f} s: "
                        + ", ".join(
                            f"{n} {r['rss'] / 2**20:.0f} MiB"
                            for n, r in samples[-1]["nodes"].items()
                        ),
                        flush=True,
                    )
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: stop, and still report what was measured
            print(f"[soak] interrupted after {turns} turns", flush=True)
        finally:
            soak.close()
            exited = graph.exited()
            graph.stop()
    summary = summarise(samples, args.warmup_turns) if samples else {}
    result = {
        "turns": turns,
        "outcomes": outcomes,
        "minutes": (time.monotonic() - started) / 60,
        "warmup_turns": args.warmup_turns,
        "exited": exited,
        "nodes": summary,
        "samples": samples,
    }
    (out / "soak.json").write_text(json.dumps(result, indent=1))
    print(f"\n[soak] {turns} turns: {outcomes}; nodes that exited: {exited or 'none'}")
    print(
        f"{'node':<14}{'RSS MiB (after warm-up -> end)':>32}{'MiB / 100 turns':>17}"
        f"{'(steady)':>10}"
        f"{'threads (first last min max)':>30}{'fds (first last min max)':>26}"
    )
    for name, node in summary.items():
        print(
            f"{name:<14}{node['rss_mib_after_warmup']:>17.1f} -> {node['rss_mib_end']:<11.1f}"
            f"{node['rss_growth_mib_per_100_turns']:>17.2f}"
            f"{node['rss_growth_mib_per_100_turns_steady']:>10.2f}"
            f"{' '.join(map(str, node['threads'])):>30}{' '.join(map(str, node['fds'])):>26}"
        )
    print(f"(written to {out / 'soak.json'})")
    ended = outcomes.get("no record", 0) == 0
    return 0 if ended and not exited and turns > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
