"""Executors with fewer thread hand-offs per message than rclpy's defaults.

:class:`StreamExecutor`, a multi-threaded executor that runs the short callbacks of a stream in
its own spin thread, and :class:`EventsSpinner`, rclpy's events executor for nodes whose callbacks
never wait.

rclpy's MultiThreadedExecutor hands every callback to a thread pool: the spin thread takes the
message, wakes a pool thread, and that thread must get the GIL before the callback starts — one
more thread wake-up per message on a path like the microphone's audio chunks, 25 per second,
where the end of speech is detected. A callback in an
:class:`InlineCallbackGroup` runs in the spin thread itself, as in a SingleThreadedExecutor,
while the node's other callbacks (services that wait on an engine for seconds) still go to the
pool. Inline callbacks must be short and never wait: while one runs, the node's other callbacks
are not dispatched.
"""

from __future__ import annotations

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor, TimeoutException


class InlineCallbackGroup(MutuallyExclusiveCallbackGroup):
    """Mutually exclusive callbacks that :class:`StreamExecutor` runs in its spin thread."""


class StreamExecutor(MultiThreadedExecutor):
    """MultiThreadedExecutor; callbacks of an :class:`InlineCallbackGroup` run in the spin
    thread."""

    def wait_for_ready_callbacks(self, *args, **kwargs):
        handler, entity, node = super().wait_for_ready_callbacks(*args, **kwargs)
        if not isinstance(getattr(entity, "callback_group", None), InlineCallbackGroup):
            return handler, entity, node  # to the thread pool
        handler()
        handler.result()  # an exception escapes spin(), as from a pool thread
        # Nothing left for the pool this time: spin() simply waits again; spin_once() returns.
        raise TimeoutException()


def events_executor_class():
    """rclpy's ``EventsExecutor``, or None where this rclpy has none: ROS 2 Humble (rclpy 3.3)
    and Jazzy before rclpy 7.1.4, where it was backported."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return None
    return EventsExecutor


def single_thread_executor(context=None):
    """The executor for a node whose callbacks are short and never wait: :class:`EventsSpinner`
    where rclpy has the events executor, else rclpy's ``SingleThreadedExecutor`` (the same
    callbacks on one thread; it rebuilds its wait set in Python before each one)."""
    if events_executor_class() is None:
        import rclpy.logging

        rclpy.logging.get_logger("uservlm_ros.executors").info(
            "this rclpy has no events executor (ROS 2 Humble?): using SingleThreadedExecutor"
        )
        return SingleThreadedExecutor(context=context)
    return EventsSpinner(context=context)


class EventsSpinner:
    """rclpy's experimental ``EventsExecutor`` (C++ event queue), for a node whose callbacks are
    all short and never wait: a message wakes the spin thread straight into its callback, with no
    wait set rebuilt in Python, GIL held, from every entity of the node before each one.

    Its own ``spin()`` holds the GIL while it waits in the Jazzy rclpy wheel (no other thread of
    the process runs), so :meth:`spin` loops ``spin_once()``, which releases it while waiting.
    Coroutine callbacks are not supported by it (a service answering ``async`` fails). Same
    ``add_node`` / ``spin`` / ``spin_once`` / ``shutdown`` as rclpy's executors; ``spin`` returns
    once the context is shut down."""

    WAIT_SECONDS = 0.2  # longest wait between two checks of the context (and of shutdown())

    def __init__(self, context=None):
        import rclpy

        events_executor = events_executor_class()
        if events_executor is None:
            raise ImportError(
                "rclpy.experimental.EventsExecutor is not available in this rclpy "
                "(use single_thread_executor())"
            )
        self.context = context or rclpy.get_default_context()
        self._executor = events_executor(context=self.context)
        self._stopped = False

    def add_node(self, node) -> None:
        self._executor.add_node(node)

    def spin_once(self, timeout_sec: float | None = None) -> None:
        self._executor.spin_once(timeout_sec=timeout_sec)

    def spin(self) -> None:
        while not self._stopped and self.context.ok():
            self._executor.spin_once(timeout_sec=self.WAIT_SECONDS)

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        self._stopped = True
        return self._executor.shutdown(timeout_sec=timeout_sec)
