"""``main()`` for every node executable: init, autostart, spin, clean exit on Ctrl-C / shutdown."""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


def run_node(node_factory, args=None, threads: int = 8) -> int:
    """Run one node in its own process. ``threads``: executor threads, enough for a service
    callback to wait on another service (or the engine lock) without starving the executor."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        if hasattr(node, "autostart"):
            node.autostart()
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
