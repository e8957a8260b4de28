"""``main()`` for every node executable: init, autostart, spin, clean exit on Ctrl-C / shutdown."""

from __future__ import annotations

import gc
import signal
import threading
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException

from uservlm_ros.ros.executors import StreamExecutor, single_thread_executor

SHUTDOWN_SECONDS = 5.0
DEFAULT_THREADS = 8
# threads=EVENTS: rclpy's events executor, one thread (executors.EventsSpinner; where rclpy has
# none, as on Humble, its SingleThreadedExecutor: see executors.single_thread_executor)
EVENTS = 0


def run_node(node_factory, args=None, threads: int = DEFAULT_THREADS) -> int:
    """Run one node in its own process. ``threads``: executor threads, enough for a service
    callback to wait on another service (or the engine lock) without starving the executor;
    ``EVENTS`` = rclpy's events executor for a node whose callbacks never wait: one thread, no
    thread-pool hand-off and no wait set rebuilt in Python per message."""
    return run_nodes([(node_factory, threads)], args)


def _interrupt_on_sigterm() -> None:
    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _no_interrupt_while_stopping() -> None:
    """A terminal's Ctrl-C reaches every process of its group, and ``ros2 launch`` then sends each
    node SIGINT again: that second interrupt must not cut the clean-up short (a traceback and
    "process has died"); the clean-up is bounded (SHUTDOWN_SECONDS). SIGTERM, what launch and
    ``uservlm up`` escalate to when a node does not end, ends it at once."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _executor(threads: int):
    return single_thread_executor() if threads == EVENTS else StreamExecutor(num_threads=threads)


def run_nodes(members, args=None) -> int:
    """Run several nodes in one process (a composed process). ``members``: ``(node_factory,
    threads)`` pairs.

    Each node gets an executor of its own, spun on a thread of its own: rclpy (Jazzy) rebuilds
    its wait set in Python from every entity of its nodes before each callback, so one executor
    over every member would pay that per camera frame, holding the GIL, and a message for one
    node would wait behind another node's frames. If one executor stops (shutdown or an escaped
    error) they all stop.

    SIGTERM (``systemctl stop``, a dying ``uservlm up``) stops the process as Ctrl-C does, even
    while a model loads: rclpy shuts its context down on SIGTERM and then calls the handler set
    here, which raises KeyboardInterrupt in the main thread."""
    _interrupt_on_sigterm()
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
        _no_interrupt_while_stopping()
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
