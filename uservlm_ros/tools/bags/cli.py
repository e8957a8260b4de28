"""The ``uservlm record`` and ``uservlm play`` verbs."""

from __future__ import annotations

import argparse
import sys

from uservlm_ros.tools.bags.record import record
from uservlm_ros.tools.bags.replay import replay
from uservlm_ros.tools.bags.storage import DEFAULT_TOPICS, Bag, BagError, read_bag


def describe(bag: Bag) -> str:
    lines = [
        f"bag {bag.path}: {bag.storage}, version {bag.version}, {len(bag.messages)} messages, "
        f"{bag.duration:.2f} s"
    ]
    for topic in bag.topics.values():
        lines.append(f"  {topic.name}  {topic.msgtype}  {topic.count} msgs")
    return "\n".join(lines)


def cmd_record(args) -> int:
    if args.duration is not None and args.duration <= 0:
        print("error: --duration must be positive", file=sys.stderr)
        return 64
    try:
        summary = record(
            args.out,
            topics=args.topics,
            duration=args.duration,
            namespace=args.namespace,
            discovery_timeout=args.discovery_timeout,
            log=lambda text: print(text, flush=True),
            on_ready=lambda: print(
                "recording (Ctrl-C stops)"
                if args.duration is None
                else f"recording for {args.duration:g} s",
                flush=True,
            ),
        )
    except BagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {summary.path}: "
        + ", ".join(f"{t} {n}" for t, n in summary.counts.items())
        + f" in {summary.seconds:.1f} s"
    )
    for topic in summary.missing:
        print(f"warning: never saw a publisher on {topic}", file=sys.stderr)
    return 0


def cmd_play(args) -> int:
    try:
        bag = read_bag(args.bag)
        print(describe(bag), flush=True)
        reports = replay(
            bag,
            rate=args.rate,
            topics=args.topics or None,
            namespace=args.namespace,
            loops=args.loop,
            restamp=not args.keep_stamps,
            wait_for_subscribers=args.wait,
            log=lambda text: print(text, flush=True),
        )
    except BagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if reports else 1


def add_record_parser(subparsers) -> argparse.ArgumentParser:
    """``uservlm record``: add it to the CLI with ``add_record_parser(sub)``."""
    parser = subparsers.add_parser(
        "record", help="record the robot's camera/audio topics into a rosbag2 (mcap) bag"
    )
    parser.add_argument("out", help="new bag directory to write")
    parser.add_argument(
        "--topics",
        nargs="+",
        default=list(DEFAULT_TOPICS),
        help=f"topics, relative to --namespace (default: {' '.join(DEFAULT_TOPICS)})",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to record (default: until Ctrl-C)"
    )
    parser.add_argument("--namespace", default="", help="robot namespace of the topics")
    parser.add_argument(
        "--discovery-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for publishers of topics whose type is not known in advance",
    )
    parser.set_defaults(func=cmd_record)
    return parser


def add_play_parser(subparsers) -> argparse.ArgumentParser:
    """``uservlm play``: add it to the CLI with ``add_play_parser(sub)``."""
    parser = subparsers.add_parser(
        "play", help="replay a bag with its original timing (pip-only `ros2 bag play`)"
    )
    parser.add_argument("bag", help="rosbag2 directory")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", type=int, default=1, help="times to play it")
    parser.add_argument("--topics", nargs="+", help="only these topics")
    parser.add_argument("--namespace", default="", help="robot namespace to publish into")
    parser.add_argument(
        "--keep-stamps",
        action="store_true",
        help="publish header stamps as recorded (default: shifted to now, like a live sensor)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for a subscriber on every topic first (0 = do not wait)",
    )
    parser.set_defaults(func=cmd_play)
    return parser
