"""/uservlm/ask as an action (vlm_node): the same turn as the service, its feedback in order, a
cancel at each stage (generation stops, unsynthesised sentences are dropped, the speaker is told
to stop the turn), cancels of unknown and finished goals, and a second goal preempting or queueing
behind the first. One graph for the module: vlm_node (a long answer: 400 tokens), tts_node,
ethics_node and speaker_node writing files in real time, in their own processes."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from action_msgs.msg import GoalStatus
from action_msgs.srv import CancelGoal
from std_msgs.msg import Header

import ros_helpers
from ros_helpers import spin_until, start_cloud
from uservlm_ros.action import Ask as AskAction
from uservlm_ros.bringup.graph import nodes
from uservlm_ros.ros import qos
from uservlm_ros.ros.ask_action import STAGES

NAMESPACE = "action"
QUESTION = "Tell me a long story about a friendly robot."


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("action_graph")
    overrides = ros_helpers.test_overrides(log_dir)
    overrides["vlm_node"] = {"max_new_tokens": 400, "busy_timeout": 60.0}
    overrides["speaker_node"] = {
        "mode": "file",
        "realtime": True,
        "output_dir": str(log_dir / "speech"),
    }
    wanted = ("vlm_node", "tts_node", "ethics_node", "speaker_node")
    specs = [spec for spec in nodes("all") if spec.name in wanted]
    processes = start_cloud(
        log_dir,
        overrides=overrides,
        specs=specs,
        namespace=NAMESPACE,
        services=("ask", "synthesize", "review"),
    )
    yield processes
    processes.stop()


@pytest.fixture
def client(graph, rclpy_context):
    """An action client, a stop_speaking listener and an Ask service client, spun here."""
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    from uservlm_ros.srv import Ask

    node = rclpy.create_node("action_test", namespace=NAMESPACE, context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    action = ActionClient(node, AskAction, "uservlm/ask")
    stops: list[Header] = []
    node.create_subscription(Header, "stop_speaking", stops.append, qos.EVENTS)
    service = node.create_client(Ask, "uservlm/ask", qos_profile=qos.SERVICES)
    assert spin_until(executor, action.server_is_ready, 60), "no /action/uservlm/ask action"
    assert spin_until(executor, lambda: node.count_publishers("stop_speaking") > 0, 30)
    yield Harness(node, executor, action, service, stops)
    node.destroy_node()


class Harness:
    def __init__(self, node, executor, action, service, stops):
        self.node, self.executor, self.action = node, executor, action
        self.service, self.stops = service, stops

    def send(self, turn_id: str, cancel_at: str | None = None, **fields):
        """Send a goal; with ``cancel_at``, cancel it when that stage's feedback arrives.
        Returns a Goal whose result and feedback fill in as the executor spins."""
        goal = Goal(turn_id, cancel_at)
        request = AskAction.Goal(
            question=fields.pop("question", QUESTION), turn_id=turn_id, **fields
        )
        sent = self.action.send_goal_async(request, feedback_callback=goal.on_feedback)
        sent.add_done_callback(goal.on_accepted)
        return goal

    def finish(self, goal, timeout: float = 120.0):
        """The goal's result, once it and the answer to a cancel sent for it have arrived (the
        cancel's response and the result come over two services, in either order)."""
        assert spin_until(self.executor, goal.finished, timeout), goal.stages
        return goal.result

    def spin(self, seconds: float) -> None:
        spin_until(self.executor, lambda: False, seconds)


class Goal:
    def __init__(self, turn_id: str, cancel_at: str | None):
        self.turn_id, self.cancel_at = turn_id, cancel_at
        self.stages: list[str] = []
        self.texts: list[str] = []
        self.handle = None
        self.result = None
        self.cancel_response = None
        self.cancel_wanted = False
        self.cancel_sent = False

    def on_feedback(self, message) -> None:
        self.stages.append(message.feedback.stage)
        self.texts.append(message.feedback.text)
        if message.feedback.stage == self.cancel_at:
            self.cancel_wanted = True
            if self.handle is not None:  # feedback may arrive before the goal's acceptance
                self.cancel()

    def finished(self) -> bool:
        return self.result is not None and (
            not self.cancel_sent or self.cancel_response is not None
        )

    def cancel(self) -> None:
        self.cancel_sent = True
        self.handle.cancel_goal_async().add_done_callback(
            lambda f: setattr(self, "cancel_response", f.result())
        )

    def on_accepted(self, future) -> None:
        self.handle = future.result()
        assert self.handle.accepted
        if self.cancel_wanted:
            self.cancel()
        self.handle.get_result_async().add_done_callback(
            lambda f: setattr(self, "result", f.result())
        )


def test_the_action_answers_as_the_service_does_with_feedback_in_order(client):
    from uservlm_ros.srv import Ask

    goal = client.send("turn-order", speak=True, stream_audio=True, publish_audio=True)
    wrapped = client.finish(goal)
    result = wrapped.result
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED and result.success, result.error
    assert not result.cancelled and result.answer and result.first_audio_seconds > 0
    stages = goal.stages
    assert stages[0] == "transcribed" and stages[-1] == "answered", stages
    assert set(stages) <= set(STAGES)
    first = {stage: stages.index(stage) for stage in dict.fromkeys(stages)}
    # the answer's audio may go out while later sentences are being written
    assert first["reviewed"] < first["first_sentence"] < first["first_audio"], stages
    assert first["first_sentence"] < first.get("sentence", len(stages)), stages
    assert stages.count("first_sentence") == 1 and stages.count("first_audio") == 1
    sentences = [t for s, t in zip(stages, goal.texts) if s in ("first_sentence", "sentence")]
    assert all(b.startswith(a) for a, b in zip(sentences, sentences[1:]))  # growing text
    assert goal.texts[-1] == result.answer
    # The service runs the same turn: the same (greedy) answer.
    future = client.service.call_async(Ask.Request(question=QUESTION))
    assert spin_until(client.executor, future.done, 120)
    assert future.result().success and future.result().answer == result.answer


@pytest.mark.parametrize("stage", ["transcribed", "reviewed", "first_sentence", "first_audio"])
def test_a_cancel_at_each_stage_ends_the_goal_cancelled(client, stage):
    turn_id = f"turn-cancel-{stage}"
    goal = client.send(turn_id, cancel_at=stage, speak=True, stream_audio=True, publish_audio=True)
    wrapped = client.finish(goal)
    result = wrapped.result
    assert wrapped.status == GoalStatus.STATUS_CANCELED, (wrapped.status, goal.stages)
    assert result.cancelled and not result.success and result.error.startswith("cancelled")
    assert goal.cancel_response.return_code == CancelGoal.Response.ERROR_NONE
    assert "answered" not in goal.stages
    # The speaker was told to stop this turn's audio.
    assert spin_until(client.executor, lambda: turn_id in [h.frame_id for h in client.stops], 10)


def test_cancels_of_an_unknown_and_of_a_finished_goal_are_refused_clearly(client):
    from rclpy.action.client import ClientGoalHandle
    from unique_identifier_msgs.msg import UUID

    goal = client.send("turn-finished", question="Hello there")
    assert client.finish(goal).status == GoalStatus.STATUS_SUCCEEDED
    goal.cancel()
    assert spin_until(client.executor, lambda: goal.cancel_response is not None, 30)
    assert goal.cancel_response.return_code == CancelGoal.Response.ERROR_GOAL_TERMINATED

    unknown = ClientGoalHandle(client.action, UUID(uuid=list(uuid.uuid4().bytes)), None)
    future = unknown.cancel_goal_async()
    assert spin_until(client.executor, future.done, 30)
    assert future.result().return_code == CancelGoal.Response.ERROR_UNKNOWN_GOAL_ID


def test_a_second_goal_preempts_the_first_and_with_queue_waits_for_it(client):
    first = client.send("turn-first", speak=True, stream_audio=True, publish_audio=True)
    assert spin_until(client.executor, lambda: "reviewed" in first.stages, 60), first.stages
    second = client.send("turn-second", question="Hello there")
    first_result = client.finish(first)
    assert first_result.status == GoalStatus.STATUS_ABORTED
    assert first_result.result.cancelled and "preempted" in first_result.result.error
    assert client.finish(second).result.success

    set_policy(client, "queue")
    try:
        first = client.send("turn-q1", speak=True, stream_audio=True, publish_audio=True)
        assert spin_until(client.executor, lambda: "reviewed" in first.stages, 60)
        second = client.send("turn-q2", question="Hello there")
        assert client.finish(first).result.success
        assert client.finish(second).result.success
        assert second.stages and second.stages[0] == "transcribed"
    finally:
        set_policy(client, "preempt")


def set_policy(client, policy: str) -> None:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    setter = client.node.create_client(SetParameters, "vlm_node/set_parameters")
    assert spin_until(client.executor, setter.service_is_ready, 30)
    request = SetParameters.Request(
        parameters=[Parameter("goal_policy", value=policy).to_parameter_msg()]
    )
    future = setter.call_async(request)
    assert spin_until(client.executor, future.done, 30)
    assert future.result().results[0].successful
    client.node.destroy_client(setter)


def test_the_dialogue_turn_stops_when_cancelled(graph, rclpy_context):
    """dialogue_node's action client: a turn in flight is cancelled from another thread."""
    from rclpy.executors import MultiThreadedExecutor

    from uservlm_ros.msg import Utterance
    from uservlm_ros.nodes.dialogue import DialogueNode
    from uservlm_ros.ros.conversions import seconds_to_stamp

    dialogue = DialogueNode(context=rclpy_context, namespace=NAMESPACE)
    executor = MultiThreadedExecutor(num_threads=2, context=rclpy_context)
    executor.add_node(dialogue)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 30
        while not dialogue._ask.server_is_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        now = time.time()
        utterance = Utterance(
            text=QUESTION,
            language="en",
            start=seconds_to_stamp(now - 2),
            end=seconds_to_stamp(now),
        )
        utterance.header.stamp = seconds_to_stamp(now)
        records = []
        worker = threading.Thread(target=lambda: records.append(dialogue.take_turn(utterance)))
        worker.start()
        deadline = time.monotonic() + 30
        while not dialogue.cancel_turn() and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.join(60)
        assert records and not records[0].success and "cancelled" in records[0].error
    finally:
        executor.shutdown()
        dialogue.destroy_node()
        spinner.join(10)
