"""A multi-threaded executor that runs the short callbacks of a stream in its own spin thread.

rclpy's MultiThreadedExecutor hands every callback to a thread pool: the spin thread takes the
message, wakes a pool thread, and that thread must get the GIL before the callback starts — one
more thread wake-up per message (0.1–1 ms on a 2-core VM, more under load) on a path like the
microphone's audio chunks, 25 per second, where the end of speech is detected. A callback in an
:class:`InlineCallbackGroup` runs in the spin thread itself, as in a SingleThreadedExecutor,
while the node's other callbacks (services that wait on an engine for seconds) still go to the
pool. Inline callbacks must be short and never wait: while one runs, the node's other callbacks
are not dispatched.
"""
from __future__ import annotations

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor, TimeoutException


class InlineCallbackGroup(MutuallyExclusiveCallbackGroup):
    """Mutually exclusive callbacks that :class:`StreamExecutor` runs in its spin thread."""


class StreamExecutor(MultiThreadedExecutor):
    """MultiThreadedExecutor; callbacks of an :class:`InlineCallbackGroup` run in the spin thread."""

    def wait_for_ready_callbacks(self, *args, **kwargs):
        handler, entity, node = super().wait_for_ready_callbacks(*args, **kwargs)
        if not isinstance(getattr(entity, "callback_group", None), InlineCallbackGroup):
            return handler, entity, node  # to the thread pool
        handler()
        handler.result()  # an exception escapes spin(), as from a pool thread
        # Nothing left for the pool this time: spin() simply waits again; spin_once() returns.
        raise TimeoutException()
