"""The client side of the ``/uservlm/ask`` action: one goal at a time, with a deadline, feedback
and cancel (dialogue_node's turns).

:meth:`AskActionClient.run` sends a goal and waits for its result, at most ``timeout`` seconds in
all; a server that goes away while the goal runs (it crashed or is restarting) ends the wait with
an error as soon as that is seen, not at the deadline. :meth:`AskActionClient.cancel` cancels the
goal that runs (a barge-in), from any thread; a goal cancelled while it is still being sent is
cancelled as soon as it is accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.action import ActionClient

from uservlm_ros.action import Ask as AskAction
from uservlm_ros.ros.service_client import ServiceUnavailable

GONE_SECONDS = 1.0  # a server not seen for this long while a goal runs has gone away
POLL_SECONDS = 0.05


class AskActionClient:
    def __init__(self, node, name: str = "uservlm/ask", callback_group=None):
        self._client = ActionClient(node, AskAction, name, callback_group=callback_group)
        self._lock = threading.Lock()
        self._running = None  # the goal handle of the goal that runs
        self._sending = False  # a goal is sent, not accepted yet
        self._cancel_wanted = False  # cancelled while it was being sent
        self.cancels = 0

    def server_is_ready(self) -> bool:
        return self._client.server_is_ready()

    def run(
        self,
        goal: AskAction.Goal,
        timeout: float,
        on_feedback: Callable[[AskAction.Feedback], None] | None = None,
    ) -> AskAction.Result:
        """``goal``'s result. ServiceUnavailable when no server is there, TimeoutError after
        ``timeout`` seconds (the goal is then cancelled), RuntimeError when the goal is refused or
        its server goes away."""
        deadline = time.monotonic() + timeout
        if not self._wait_for_server(min(timeout, 2.0)):
            raise ServiceUnavailable("action /uservlm/ask is not available")
        with self._lock:
            self._sending, self._cancel_wanted = True, False
        try:
            sent = self._client.send_goal_async(
                goal,
                feedback_callback=(lambda m: on_feedback(m.feedback)) if on_feedback else None,
            )
            self._wait(sent, deadline, "the goal to be accepted")
            handle = sent.result()
            if not handle.accepted:
                raise RuntimeError("the goal was refused")
            with self._lock:
                self._running, cancel = handle, self._cancel_wanted
        finally:
            with self._lock:
                self._sending = False
        if cancel:
            handle.cancel_goal_async()
            self.cancels += 1
        try:
            got = handle.get_result_async()
            self._wait(got, deadline, "the result", on_timeout=handle.cancel_goal_async)
            return got.result().result
        finally:
            with self._lock:
                self._running = None

    def cancel(self) -> bool:
        """Cancel the goal that runs, if any (True when a cancel was sent, or will be once the
        goal being sent is accepted)."""
        with self._lock:
            handle = self._running
            if handle is None:
                if self._sending:
                    self._cancel_wanted = True
                return self._sending
        handle.cancel_goal_async()
        self.cancels += 1
        return True

    def _wait_for_server(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._client.server_is_ready():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def _wait(self, future, deadline: float, what: str, on_timeout=None) -> None:
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        last_seen = time.monotonic()
        while not done.wait(POLL_SECONDS):
            now = time.monotonic()
            if now >= deadline:
                if on_timeout is not None:
                    on_timeout()
                raise TimeoutError(f"action /uservlm/ask: no {what} in time")
            if self._client.server_is_ready():
                last_seen = now
            elif now - last_seen > GONE_SECONDS:
                raise RuntimeError(
                    f"action /uservlm/ask: its server went away while waiting for {what}"
                )
        if future.exception() is not None:
            raise RuntimeError(f"action /uservlm/ask failed: {future.exception()}")
