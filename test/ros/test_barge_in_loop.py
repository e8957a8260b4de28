"""Barge-in through the whole spoken loop: asr_node, dialogue_node, vlm_node, tts_node,
ethics_node and speaker_node (file mode, real time) in their own processes, the microphone a
room whose echo is what speaker_node really played of each turn (uservlm_ros/tools/
barge_in_loop.py), the person's words spoken into it.

- A person asks, the robot answers at length, the person asks something else over the answer:
  the speaker stops, the interrupted turn's record ends cancelled, and the new question (as
  Whisper heard it) is answered.
- The ethics review answers with a clarifying question and the person says yes over it: the
  robot stops, and their words are the reply (the original question is answered, personalised;
  the review now allows it).
- vlm_node killed while dialogue_node's goal runs: the turn ends with "server went away" well
  within ask_timeout, and once vlm_node is back the next turn works.

One graph for the module; each test ends with the robot silent.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from uservlm_ros.speech.audio import read_wav
from uservlm_ros.tools.barge_in_loop import LoopRig, default_room, stamp_of, start_loop_graph
from uservlm_ros.tools.demo import demo_file

NAMESPACE = "bargeloop"
SECOND_QUESTION = "How far is the train station from here?"
ASK_TIMEOUT = 60.0  # dialogue_node's default
#: The person starts talking this long after the robot's first sample out (past the gate's
#: warmup_ms, in which no barge-in is taken).
CUT_IN = 1.5


def wav(name: str):
    samples, _, _ = read_wav(demo_file(name))
    return samples


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    import rclpy
    from rclpy.context import Context

    logs = tmp_path_factory.mktemp("barge_in_loop")
    graph = start_loop_graph(logs, NAMESPACE)
    context = Context()
    rclpy.init(context=context)
    # The person speaks in the robot's own voice (the bundled recordings, tts_node): the hardest
    # case for the gate. With the echo 0 to -4 dB under them the bench sees the onset found late
    # now and then (scripts/bench_barge_in_loop.py --voice robot); here it is 9 dB under.
    rig = LoopRig(context, NAMESPACE, room=default_room(gain_db=-9.0))
    try:
        assert rig.until(rig.ready, 240), (graph.exited(), sorted(p.name for p in logs.iterdir()))
        assert rig.until(lambda: rig.diagnostic("asr_node", "state") == "active", 120)
        rig.graph, rig.logs = graph, logs
        yield rig
    finally:
        rig.close()
        rclpy.try_shutdown(context=context)
        graph.stop()


def logs_of(rig, *names: str) -> str:
    return "\n".join(
        f"--- {name}\n{(rig.logs / f'{name}.log').read_text()[-3000:]}" for name in names
    )


def silence(rig) -> None:
    """Stop whatever the robot says and wait until it is silent."""
    rig.stop_speaking("")
    assert rig.until(lambda: not (rig.states and rig.states[-1][0].speaking), 10)


def answer_of_next_turn(rig, mark, skip: tuple[str, ...] = (), timeout: float = 120.0):
    """The next turn after ``mark`` (not one of ``skip``) once it speaks: its record, with its
    speech cut short."""
    started = rig.until(lambda: rig.started(mark, skip), timeout)
    assert started, logs_of(rig, "dialogue_node", "vlm_node", "asr_node")
    rig.stop_speaking(started.turn_id)  # its whole answer would take long to hear
    record = rig.until(lambda: rig.record(mark, started.turn_id), 30)
    assert record, logs_of(rig, "dialogue_node")
    return record


# Under the whole suite's load on 2 cores Whisper once heard the question from its second word
# ('or is the train station...'): one rerun; a second miss is a failure.
@pytest.mark.flaky(reruns=1)
def test_a_person_asking_over_the_answer_stops_it_and_is_answered(loop):
    rig = loop
    rig.set_parameter("dialogue_node", "user_id", "")  # anonymous: a general answer
    rig.camera(True)
    question = rig.voice(SECOND_QUESTION)
    mark = rig.mark()
    rig.say(wav("question.wav"))
    first = rig.until(lambda: rig.started(mark), 120)
    assert first, logs_of(rig, "asr_node", "dialogue_node", "vlm_node")
    turn = first.turn_id
    onset, end = rig.say(question, at=stamp_of(first) + CUT_IN)

    stopped = rig.until(lambda: rig.ended(mark, turn), end - time.time() + 10)
    assert stopped and stopped.reason == "barge_in", (stopped, logs_of(rig, "asr_node"))
    reaction = stamp_of(stopped) - onset
    assert 0.0 < reaction <= 1.0, reaction  # scripts/bench_barge_in_loop.py measures it
    barge_ins = rig.since(mark, "barge_ins")
    assert [b.header.frame_id for b in barge_ins] == [turn], barge_ins
    assert stamp_of(barge_ins[0]) >= onset - 0.3, "a barge-in before the person spoke"

    interrupted = rig.until(lambda: rig.record(mark, turn), 30)
    assert interrupted, logs_of(rig, "dialogue_node")
    assert "business meeting" in interrupted.transcript.lower()
    assert not interrupted.success and interrupted.error == "cancelled: barge-in", interrupted
    assert interrupted.speech_end_to_audio_out > 0

    answered = answer_of_next_turn(rig, mark, skip=(turn,))
    assert answered.success, answered.error
    heard = answered.transcript.lower()
    assert "far" in heard and "train station from here" in heard, heard  # Whisper's WER: bench
    assert answered.answer and not answered.clarification
    assert stamp_of_time(answered.speech_start) <= onset, "the start of the question was cut"
    silence(rig)


def stamp_of_time(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


# Once, under the whole suite's load, the review afterwards still asked (the consent recorded for
# the question as Whisper heard it then): one rerun; a second miss is a failure.
@pytest.mark.flaky(reruns=1)
def test_a_barge_in_over_the_clarifying_question_is_the_reply(loop):
    from uservlm_ros.ros.service_client import call_with_timeout
    from uservlm_ros.srv import Forget, Review

    rig = loop
    user = "visitor"
    forget = rig.node.create_client(Forget, "uservlm/forget")
    assert call_with_timeout(forget, Forget.Request(user_id=user), 30).success
    rig.set_parameter("dialogue_node", "user_id", user)
    rig.camera(True)  # a stranger's face: the review asks before personalising
    try:
        mark = rig.mark()
        rig.say(wav("question.wav"))
        asked = rig.until(lambda: rig.started(mark), 120)
        assert asked, logs_of(rig, "asr_node", "dialogue_node", "vlm_node")
        onset, end = rig.say(wav("reply.wav"), at=stamp_of(asked) + CUT_IN)

        stopped = rig.until(lambda: rig.ended(mark, asked.turn_id), end - time.time() + 10)
        assert stopped and stopped.reason == "barge_in", stopped
        clarifying = rig.until(lambda: rig.record(mark, asked.turn_id), 30)
        assert clarifying and clarifying.clarification, clarifying
        assert clarifying.error == "cancelled: barge-in"

        answered = answer_of_next_turn(rig, mark, skip=(asked.turn_id,))
        assert answered.success, answered.error
        assert "go ahead" in answered.transcript.lower(), answered.transcript
        assert not answered.clarification and answered.answer
        assert answered.user_id == user and answered.image_source.startswith("camera")
        # The yes was taken as the reply: the review now allows a personal answer.
        review = rig.node.create_client(Review, "uservlm/review")
        decided = call_with_timeout(
            review,
            Review.Request(question="What should I wear to a business meeting?", user_id=user),
            30,
        )
        assert decided.success and decided.decision == "allow", decided
    finally:
        rig.set_parameter("dialogue_node", "user_id", "")
        silence(rig)


def test_the_ask_server_killed_mid_goal_ends_the_turn_and_its_restart_serves_the_next(loop):
    from action_msgs.msg import GoalStatus, GoalStatusArray
    from rclpy.qos import qos_profile_action_status_default

    from uservlm_ros.bringup.graph import GRAPH

    rig = loop
    rig.camera(False)
    executing: list[bytes] = []

    def on_status(msg) -> None:
        for status in msg.status_list:
            if status.status == GoalStatus.STATUS_EXECUTING:
                executing.append(bytes(status.goal_info.goal_id.uuid))

    rig.node.create_subscription(
        GoalStatusArray,
        "uservlm/ask/_action/status",
        on_status,
        qos_profile_action_status_default,
    )
    time.sleep(0.5)  # the latched status of earlier goals arrives first
    seen = set(executing)
    mark = rig.mark()
    rig.publish_utterance("Tell me a long story about a friendly robot.")
    assert rig.until(lambda: set(executing) - seen, 60), logs_of(rig, "dialogue_node")
    vlm = rig.graph.processes["vlm_node"]
    os.killpg(vlm.pid, signal.SIGKILL)  # a crash: no goodbye on DDS
    killed = time.time()
    vlm.wait(10)

    record = rig.until(lambda: rig.record(mark), ASK_TIMEOUT)
    ended = time.time()
    assert record, logs_of(rig, "dialogue_node")
    assert not record.success and "server went away" in record.error, record.error
    assert ended - killed < ASK_TIMEOUT / 4, ended - killed  # DDS lease 5 s + 1 s seen gone

    rig.graph.restart(next(spec for spec in GRAPH if spec.name == "vlm_node"))
    assert rig.until(rig.ask_server_ready, 120), logs_of(rig, "vlm_node")
    mark = rig.mark()
    rig.publish_utterance("Hello there")
    record = answer_of_next_turn(rig, mark)
    assert record.success, (record.error, logs_of(rig, "vlm_node", "dialogue_node"))
    silence(rig)
