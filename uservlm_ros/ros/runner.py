"""``main()`` for every node executable: init, autostart, spin, clean exit on Ctrl-C / shutdown."""
from __future__ import annotations

import gc

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor


def run_node(node_factory, args=None, threads: int = 8) -> int:
    """Run one node in its own process. ``threads``: executor threads, enough for a service
    callback to wait on another service (or the engine lock) without starving the executor;
    1 = a single-threaded executor (no thread-pool hand-off per callback) for nodes whose
    callbacks never wait."""
    return run_nodes([node_factory], args, threads)


def run_nodes(node_factories, args=None, threads: int = 8) -> int:
    """Run several nodes in one process on one executor (a composed process)."""
    rclpy.init(args=args)
    nodes = []
    try:
        for factory in node_factories:
            nodes.append(factory())
        for node in nodes:
            if hasattr(node, "autostart"):
                node.autostart()
        # Everything loaded so far (modules, models) lives as long as the process: move it out of
        # the collector's reach, so a full collection scans only what turns allocate (with
        # transformers loaded, a full collection over everything stalls a node for 100+ ms).
        gc.collect()
        gc.freeze()
        executor = SingleThreadedExecutor() if threads == 1 else MultiThreadedExecutor(num_threads=threads)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(nodes):
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
