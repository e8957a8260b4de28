"""``/uservlm/ask`` as an action beside the service: the same turn, with feedback and cancel.

:class:`AskProgress` is what a running turn reports to and checks: each stage it reaches (the
action's feedback; nothing for the service) and whether it was cancelled (never, for the
service). :class:`AskActionServer` serves the action with one goal running at a time: with the
``preempt`` policy a new goal cancels the running one, with ``queue`` it waits its turn. A cancel
acts at once: the turn's cancel hooks run in the thread that received it (e.g. the speaker is told
to stop this turn's audio), and the turn itself stops at its next check (the next token, the next
sentence).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse

from uservlm_ros.engines.turn import TurnCancelled

POLICIES = ("preempt", "queue")
STAGES = ("transcribed", "reviewed", "first_sentence", "sentence", "first_audio", "answered")


class AskProgress:
    """One running ask's stages and cancel. ``publish(stage, text, elapsed)``: where feedback
    goes (None: nowhere, as for the service)."""

    def __init__(self, publish: Callable[[str, str, float], None] | None = None):
        self.started = time.monotonic()
        self.stages: list[str] = []
        self.text = ""
        self.reason = ""
        self._publish = publish
        self._cancelled = threading.Event()
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def stage(self, name: str, text: str | None = None) -> None:
        """The turn reached ``name`` (one of STAGES); ``text``: the answer so far."""
        if text is not None:
            self.text = text
        self.stages.append(name)
        if self._publish is not None:
            self._publish(name, self.text, time.monotonic() - self.started)

    def check(self) -> None:
        """Raise TurnCancelled when the ask was cancelled (called between stages and tokens)."""
        if self.cancelled:
            raise TurnCancelled(self.reason)

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the ask is cancelled (at once if it already was)."""
        with self._lock:
            if not self.cancelled:
                self._hooks.append(hook)
                return
        hook()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.reason = reason
            self._cancelled.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()


class AskActionServer:
    """Serves ``action_type`` at ``name`` on ``node``: ``run(goal, progress)`` runs one goal and
    returns its result message (with ``cancelled`` and ``error`` set when it was cancelled).
    ``policy()`` says what a new goal does to a running one (POLICIES)."""

    def __init__(
        self,
        node,
        action_type,
        name: str,
        run: Callable,
        policy: Callable[[], str],
        callback_group=None,
    ):
        self._node, self._type, self._run, self._policy = node, action_type, run, policy
        self._lock = threading.Condition()
        self._running: AskProgress | None = None
        self._waiting: deque[AskProgress] = deque()  # queue policy: goals in arrival order
        self.goals = self.cancelled = self.preempted = 0
        self._server = ActionServer(
            node,
            action_type,
            name,
            execute_callback=self._execute,
            goal_callback=lambda goal: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel,
            callback_group=callback_group,
        )
        self._progress: dict[bytes, AskProgress] = {}

    def destroy(self) -> None:
        with self._lock:
            running = self._running
        if running is not None:
            running.cancel("the ask server is shutting down")
        self._server.destroy()

    def _on_cancel(self, goal_handle) -> CancelResponse:
        progress = self._progress.get(bytes(goal_handle.goal_id.uuid))
        if progress is not None:
            progress.cancel("cancel requested")
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle):
        key = bytes(goal_handle.goal_id.uuid)

        def feedback(stage: str, text: str, elapsed: float) -> None:
            goal_handle.publish_feedback(
                self._type.Feedback(stage=stage, text=text, elapsed_seconds=elapsed)
            )

        progress = AskProgress(feedback)
        self._progress[key] = progress
        self.goals += 1
        try:
            if goal_handle.is_cancel_requested:
                progress.cancel("cancel requested")
            if self._take_turn(progress):
                try:
                    result = self._run(goal_handle.request, progress)
                finally:
                    self._leave(progress)
            else:  # cancelled while it waited for its turn
                result = self._type.Result()
            if progress.cancelled:
                self.cancelled += 1
                result.cancelled, result.success = True, False
                result.error = result.error or f"cancelled: {progress.reason}"
                if goal_handle.is_cancel_requested:
                    goal_handle.canceled()
                else:  # preempted by a newer goal: not a cancel the client asked for
                    goal_handle.abort()
            elif result.success:
                goal_handle.succeed()
            else:
                goal_handle.abort()
            return result
        finally:
            del self._progress[key]

    def _take_turn(self, progress: AskProgress) -> bool:
        """Cancel the running goal (preempt) or wait behind the earlier ones (queue), then be the
        running one. False when the goal was cancelled while it waited."""
        with self._lock:
            if self._policy() == "preempt":
                if self._running is not None:
                    self.preempted += 1
                    self._running.cancel("preempted by a newer goal")
                while self._running is not None:
                    self._lock.wait()
            else:
                self._waiting.append(progress)
                while self._running is not None or self._waiting[0] is not progress:
                    if progress.cancelled:
                        self._waiting.remove(progress)
                        self._lock.notify_all()
                        return False
                    self._lock.wait(0.1)
                self._waiting.popleft()
            self._running = progress
            return True

    def _leave(self, progress: AskProgress) -> None:
        with self._lock:
            if self._running is progress:
                self._running = None
            self._lock.notify_all()
