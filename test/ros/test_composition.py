"""The composed cloud (``--compose``): the four cloud nodes (and dialogue_node, on one host) in one
process, vlm_node's review and synthesis calls and dialogue_node's ask made in-process. The
registry and its semantics (exclusion, timeout, fall back to
DDS), the command line of the composed process, and the composed process answering a spoken ask."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from uservlm_ros.bringup.graph import compose_cloud, nodes
from uservlm_ros.srv import Forget, Review
from uservlm_ros.tools.launcher import node_command


@pytest.fixture
def composed(rclpy_context):
    """A Composition installed for this process, and a factory of member nodes with an executor
    each (spun on its own thread, as in cloud_node)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from uservlm_ros.ros.composition import Composition

    composition = Composition().install()
    made, spinners = [], []

    def member(name: str):
        node = rclpy.create_node(name, namespace="unit", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        made.append((node, executor))
        spinners.append(thread)
        return node

    yield composition, member
    composition.uninstall()
    for node, executor in made:
        executor.shutdown(timeout_sec=2)
        node.destroy_node()


def serve_forget(node, handler, group=None):
    return node.create_service(Forget, "uservlm/forget", handler, callback_group=group)


def test_a_member_calls_a_member_service_in_process_and_the_service_stays_on_dds(composed):
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

    from uservlm_ros.ros.service_client import call_with_timeout

    composition, member = composed
    server, caller = member("server"), member("caller")
    threads = []

    def forget(request, response):
        threads.append(threading.current_thread().name)
        response.success, response.existed = True, request.user_id == "alice"
        return response

    service = serve_forget(server, forget, MutuallyExclusiveCallbackGroup())
    client = caller.create_client(Forget, "uservlm/forget")
    assert client.service_is_ready()  # at once: no discovery needed in-process
    response = call_with_timeout(client, Forget.Request(user_id="alice"), 5.0)
    assert response.success and response.existed
    assert threads == [threads[0]] and threads[0].startswith("composition")
    assert composition.calls == {"/unit/uservlm/forget": 1}
    assert composition.status()["calls /unit/uservlm/forget"] == "1"
    # The service is a real DDS service too (other processes reach it): its server is listed.
    names = [name for name, _ in caller.get_service_names_and_types()]
    assert "/unit/uservlm/forget" in names
    server.destroy_service(service)  # no longer served in-process: a call would go to DDS
    assert ("/unit/uservlm/forget", Forget) not in composition._servers


def test_a_call_that_does_not_answer_in_time_fails_instead_of_hanging(composed):
    from uservlm_ros.ros.service_client import call_with_timeout

    _, member = composed
    server, caller = member("stuck_server"), member("stuck_caller")
    release = threading.Event()

    def stuck(request, response):
        release.wait(10)
        return response

    serve_forget(server, stuck)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer within 0.2 s"):
        call_with_timeout(caller.create_client(Forget, "uservlm/forget"), Forget.Request(), 0.2)
    assert time.monotonic() - started < 5
    release.set()


def test_a_served_callback_calling_another_service_runs_it_in_its_own_thread(composed):
    from rclpy.callback_groups import ReentrantCallbackGroup

    from uservlm_ros.ros.service_client import call_with_timeout

    _, member = composed
    inner_node, outer_node, caller = member("inner"), member("outer"), member("outer_caller")
    threads = {}

    def inner(request, response):
        threads["inner"] = threading.current_thread().name
        return response

    inner_node.create_service(Review, "uservlm/review", inner)
    to_inner = outer_node.create_client(
        Review, "uservlm/review", callback_group=ReentrantCallbackGroup()
    )

    def outer(request, response):
        threads["outer"] = threading.current_thread().name
        call_with_timeout(to_inner, Review.Request(question="q"), 1.0)
        response.success = True
        return response

    serve_forget(outer_node, outer)
    assert call_with_timeout(
        caller.create_client(Forget, "uservlm/forget"), Forget.Request(), 5
    ).success
    # nested calls never wait for a free worker (a full pool cannot deadlock them)
    assert threads["outer"] == threads["inner"] and threads["outer"].startswith("composition")


def test_calls_to_a_mutually_exclusive_service_never_overlap(composed):
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

    from uservlm_ros.ros.service_client import call_with_timeout

    _, member = composed
    server, caller = member("exclusive_server"), member("exclusive_caller")
    running, overlaps = [], []

    def serve(request, response):
        running.append(1)
        overlaps.append(len(running) > 1)
        time.sleep(0.01)
        running.pop()
        response.existed = True
        return response

    serve_forget(server, serve, MutuallyExclusiveCallbackGroup())
    client = caller.create_client(Forget, "uservlm/forget")
    threads = [
        threading.Thread(target=call_with_timeout, args=(client, Forget.Request(), 5))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 6 and not any(overlaps)


def test_a_handed_over_message_reaches_a_member_once(composed):
    from uservlm_ros.msg import Utterance
    from uservlm_ros.ros import qos
    from uservlm_ros.ros.conversions import seconds_to_stamp

    composition, member = composed
    asr, dialogue = member("asr"), member("dialogue")
    got = []
    dialogue.create_subscription(
        Utterance,
        "speech",
        lambda msg: got.append((msg.text, threading.current_thread().name)),
        qos.EVENTS,
    )
    speech = asr.create_publisher(Utterance, "speech", qos.EVENTS)
    deadline = time.monotonic() + 10
    while speech.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for index in range(3):
        msg = Utterance(text=f"question {index}")
        msg.header.stamp = seconds_to_stamp(100.0 + index)
        speech.publish(msg)
        # delivered in-process, synchronously, from the publishing thread
        assert got[-1] == (f"question {index}", threading.current_thread().name)
    key = "dds copies dropped /unit/speech -> dialogue"
    deadline = time.monotonic() + 10
    while composition.status()[key] != "3" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert composition.status()[key] == "3"
    assert composition.status()["handed over /unit/speech -> dialogue"] == "3"
    assert [text for text, _ in got] == ["question 0", "question 1", "question 2"]


def test_a_shared_topic_is_received_once_and_passes_to_the_next_member_when_the_first_leaves(
    composed,
):
    from sensor_msgs.msg import Image

    from uservlm_ros.ros import qos

    composition, member = composed
    first, second, camera = member("first_reader"), member("second_reader"), member("camera")
    seen = {"first": [], "second": []}
    own = first.create_subscription(
        Image, "camera/image_raw", lambda data: seen["first"].append(data), qos.CAMERA, raw=True
    )
    fed = second.create_subscription(
        Image, "camera/image_raw", lambda data: seen["second"].append(data), qos.CAMERA, raw=True
    )

    def readers():
        infos = camera.get_subscriptions_info_by_topic("/unit/camera/image_raw")
        return sorted(info.node_name for info in infos)

    assert readers() == ["first_reader"]
    assert (
        composition.status()["subscribers /unit/camera/image_raw"]
        == "first_reader (on DDS), second_reader (fed in-process)"
    )
    publisher = camera.create_publisher(Image, "camera/image_raw", qos.CAMERA)

    def publish_until(who: str, count: int) -> bool:
        deadline = time.monotonic() + 10
        while len(seen[who]) < count and time.monotonic() < deadline:
            publisher.publish(Image(height=1, width=1, encoding="mono8", step=1, data=[7]))
            time.sleep(0.05)
        return len(seen[who]) >= count

    assert publish_until("second", 2) and seen["first"][:2] == seen["second"][:2]
    first.destroy_subscription(own)
    deadline = time.monotonic() + 10
    while readers() != ["second_reader"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readers() == ["second_reader"]
    before = len(seen["first"])
    assert publish_until("second", len(seen["second"]) + 2) and len(seen["first"]) == before
    assert second.destroy_subscription(fed)
    assert "subscribers /unit/camera/image_raw" not in composition.status()


def test_uninstall_restores_plain_nodes(rclpy_context):
    import rclpy
    from rclpy.node import Node

    from uservlm_ros.ros.composition import Composition

    original = Node.create_client
    composition = Composition().install()
    assert Node.create_client is not original
    composition.uninstall()
    assert Node.create_client is original
    node = rclpy.create_node("plain", context=rclpy_context)
    client = node.create_client(Forget, "uservlm/forget")
    assert "call_async" not in vars(client)
    node.destroy_node()


def test_composed_command_line_keeps_overrides_per_node_and_remaps_node_specific():
    specs = compose_cloud(nodes("all", naoqi=True, naoqi_prefix="/naoqi_driver"))
    container = specs[0]
    # Both sides on one host: dialogue_node joins the cloud process (its ask becomes in-process).
    assert container.name == "cloud_node" and set(container.members) == {
        "asr_node",
        "tts_node",
        "vlm_node",
        "ethics_node",
        "dialogue_node",
    }
    assert not any(spec.side == "cloud" or spec.name == "dialogue_node" for spec in specs[1:])
    assert {spec.name for spec in specs[1:]} == {"pepper_audio_node", "speaker_node"}
    assert (
        "vlm_node:camera/image_raw",
        "/naoqi_driver/camera/front/image_raw",
    ) in container.remaps
    assert (
        "dialogue_node:camera/image_raw",
        "/naoqi_driver/camera/front/image_raw",
    ) in container.remaps
    command = node_command(
        container,
        namespace="pepper1",
        overrides={"vlm_node": {"device": "cpu", "max_new_tokens": 12}, "asr_node": {}},
    )
    ros_args = command.index("--ros-args")
    assert command[3:ros_args] == [
        "--members",
        ",".join(container.members),
        "--set",
        "vlm_node.device:='cpu'",
        "--set",
        "vlm_node.max_new_tokens:=12",
    ]
    # dialogue_node's parameters live in robot.yaml: the composed process reads both files.
    params = [command[i + 1] for i, item in enumerate(command) if item == "--params-file"]
    assert [p.rsplit("/", 1)[-1] for p in params] == ["cloud.yaml", "robot.yaml"]
    # The cloud side alone (two hosts): dialogue_node stays with the robot.
    cloud_only = compose_cloud(nodes("cloud"))
    assert "dialogue_node" not in cloud_only[0].members and not cloud_only[0].more_params_files
    assert "__node:=" not in " ".join(command)  # one remap of the node name would rename all four
    assert "-p" not in command  # a -p would reach every node of the process
    assert "__ns:=/pepper1" in command


@pytest.mark.parametrize(
    "arguments, error",
    [
        (["--members", "moon_node"], "--members"),
        (["--set", "vlm_node.device"], "expected node.parameter:=value"),
        (["--set", "camera_node.device:=cpu"], "is not one of"),
    ],
)
def test_composed_process_refuses_bad_arguments(arguments, error):
    result = subprocess.run(
        [sys.executable, "-m", "uservlm_ros.nodes.cloud", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and error in result.stderr, result.stderr


def test_composed_cloud_answers_a_spoken_ask_with_review_and_synthesis_in_process(
    tmp_path, rclpy_context
):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_helpers import spin_until, start_cloud, test_overrides
    from uservlm_ros.msg import Interaction, Utterance
    from uservlm_ros.ros import qos
    from uservlm_ros.ros.conversions import seconds_to_stamp
    from uservlm_ros.tools.client import UserVLMClient

    dialogue = [spec for spec in nodes("robot") if spec.name == "dialogue_node"]
    overrides = test_overrides(tmp_path)
    overrides["dialogue_node"] = {"speak": False, "user_id": ""}
    graph = start_cloud(
        tmp_path,
        specs=compose_cloud(nodes("cloud") + dialogue),
        namespace="composed",
        overrides=overrides,
    )
    try:
        assert list(graph.processes) == ["cloud_node"]
        with UserVLMClient(node_name="composed_client", namespace="composed") as client:
            reply = client.ask("Recommend me a movie", speak=True, timeout=180)
            response = reply.response
            assert response.success, response.error
            assert response.review_decision == "allow" and response.review_seconds > 0
            assert 0 < response.generated_tokens <= 12  # vlm_node's override reached vlm_node
            assert response.synthesis_seconds > 0 and len(response.audio.data) > 0
        log = (tmp_path / "cloud_node.log").read_text()
        for service in ("review", "synthesize"):
            assert f"composed: /composed/uservlm/{service} is called in-process (no DDS)" in log, (
                log[-2000:]
            )
        assert (tmp_path / "consent").is_dir()  # ethics_node's override reached ethics_node

        # The composed dialogue_node takes a turn from a transcript: its ask is an in-process call.
        probe = rclpy.create_node("composed_probe", namespace="composed", context=rclpy_context)
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(probe)
        records = []
        probe.create_subscription(Interaction, "interactions", records.append, qos.EVENTS)
        speech = probe.create_publisher(Utterance, "speech", qos.EVENTS)
        assert spin_until(executor, lambda: speech.get_subscription_count() > 0, 60)
        now = time.time()
        utterance = Utterance(
            text="What is a good book?",
            language="en",
            confidence=0.9,
            asr_seconds=0.1,
            start=seconds_to_stamp(now - 2.0),
            end=seconds_to_stamp(now),
        )
        utterance.header.stamp = seconds_to_stamp(now)
        speech.publish(utterance)
        assert spin_until(executor, lambda: records, 120), (
            tmp_path / "cloud_node.log"
        ).read_text()[-3000:]
        assert records[0].success, records[0].error
        assert records[0].transcript == "What is a good book?" and records[0].answer
        assert records[0].speech_end_to_answer > 0
        log = (tmp_path / "cloud_node.log").read_text()
        assert "composed: /composed/uservlm/ask is called in-process (no DDS)" in log, log[-2000:]

        # Spoken: asr_node hands the utterance to dialogue_node in-process, and the DDS copy of it
        # is dropped — one turn, not two.
        from diagnostic_msgs.msg import DiagnosticArray

        from uservlm_ros.tools import bags

        dialogue_values, vlm_values, container = {}, {}, {}

        def on_diagnostics(msg):
            for status in msg.status:
                for name, values in (
                    ("dialogue_node", dialogue_values),
                    ("vlm_node", vlm_values),
                    ("cloud_node", container),
                ):
                    if status.name.endswith(name):
                        values.update({kv.key: kv.value for kv in status.values})

        probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DIAGNOSTICS)
        bags.replay(bags.default_bag(), namespace="composed", wait_for_subscribers=30)
        spoken = lambda: [r for r in records if r.transcript != "What is a good book?"]  # noqa: E731
        assert spin_until(executor, lambda: spoken(), 120), (
            tmp_path / "cloud_node.log"
        ).read_text()[-3000:]
        assert spoken()[0].success, spoken()[0].error
        dropped = "dds copies dropped /composed/speech -> dialogue_node"
        assert spin_until(executor, lambda: int(container.get(dropped, 0)) >= 1, 30), container
        assert int(container["handed over /composed/speech -> dialogue_node"]) == 1
        # One camera subscription for the process: vlm_node keeps the frames dialogue_node
        # receives.
        for topic in ("/composed/camera/image_raw", "/composed/camera/image_raw/compressed"):
            assert [i.node_name for i in probe.get_subscriptions_info_by_topic(topic)] == [
                "dialogue_node"
            ]
        frames = lambda values: int(values.get("frames_received", 0))  # noqa: E731
        assert spin_until(
            executor,
            lambda: frames(vlm_values) > 0 and frames(vlm_values) == frames(dialogue_values),
            30,
        ), (vlm_values, dialogue_values)
        for topic in ("/composed/camera/image_raw", "/composed/camera/image_raw/compressed"):
            assert (
                container[f"subscribers {topic}"]
                == "dialogue_node (on DDS), vlm_node (fed in-process)"
            )
        spin_until(
            executor, lambda: False, 2.0
        )  # a second turn for the same utterance would come now
        assert len(spoken()) == 1, [r.transcript for r in spoken()]
        probe.destroy_node()
    finally:
        graph.stop()
