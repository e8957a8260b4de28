"""``main()`` for every node executable: init, autostart, spin, clean exit on Ctrl-C / shutdown."""

from __future__ import annotations

import gc
import threading
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException

from uservlm_ros.ros.executors import EventsSpinner, StreamExecutor

SHUTDOWN_SECONDS = 5.0
DEFAULT_THREADS = 8
EVENTS = 0  # threads=EVENTS: rclpy's events executor, one thread (see executors.EventsSpinner)


def run_node(node_factory, args=None, threads: int = DEFAULT_THREADS) -> int:
    """Run one node in its own process. ``threads``: executor threads, enough for a service
    callback to wait on another service (or the engine lock) without starving the executor;
    ``EVENTS`` = rclpy's events executor for a node whose callbacks never wait: one thread, no
    thread-pool hand-off and no wait set rebuilt in Python per message."""
    return run_nodes([(node_factory, threads)], args)


def _executor(threads: int):
    return EventsSpinner() if threads == EVENTS else StreamExecutor(num_threads=threads)


def run_nodes(members, args=None) -> int:
    """Run several nodes in one process (a composed process). ``members``: ``(node_factory,
    threads)`` pairs.

    Each node gets an executor of its own, spun on a thread of its own: rclpy (Jazzy) rebuilds
    its wait set in Python from every entity of its nodes before each callback, so one executor
    over every member would pay that per camera frame, holding the GIL, and a message for one
    node would wait behind another node's frames. If one executor stops (shutdown or an escaped
    error) they all stop."""
    rclpy.init(args=args)
    nodes, executors, spinners, failures = [], [], [], []
    stopped = threading.Event()

    def spin(executor) -> None:
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except BaseException as error:  # reported below; the process exits non-zero
            failures.append(error)
        finally:
            stopped.set()

    try:
        for factory, _ in members:
            nodes.append(factory())
        for node in nodes:
            if hasattr(node, "autostart"):
                node.autostart()
        # Everything loaded so far (modules, models) lives as long as the process: move it out of
        # the collector's reach, so a full collection scans only what turns allocate (with
        # transformers loaded, a full collection over everything stalls a node for 100+ ms).
        gc.collect()
        gc.freeze()
        for node, (_, threads) in zip(nodes, members):
            executor = _executor(threads)
            executor.add_node(node)
            executors.append(executor)
        if len(executors) == 1:
            spin(executors[0])
        else:
            for node, executor in zip(nodes, executors):
                spinner = threading.Thread(
                    target=spin, args=(executor,), name=f"spin_{node.get_name()}", daemon=True
                )
                spinner.start()
                spinners.append(spinner)
            while not stopped.wait(0.5):  # Ctrl-C lands here, in the main thread
                pass
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for executor in executors:
            executor.shutdown(timeout_sec=SHUTDOWN_SECONDS)
        for spinner in spinners:
            spinner.join(timeout=SHUTDOWN_SECONDS)
        for node in reversed(nodes):
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    for error in failures:
        traceback.print_exception(error)
    return 1 if failures else 0
