"""The composed cloud (``--compose``): the four cloud nodes (and dialogue_node, on one host) in one
process, vlm_node's review and synthesis calls and dialogue_node's ask made in-process. The registry and its semantics (exclusion, timeout, fall back to
DDS), the command line of the composed process, and the composed process answering a spoken ask."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from uservlm_ros.graph import compose_cloud, nodes
from uservlm_ros.launcher import node_command
from uservlm_ros.ros import local_services
from uservlm_ros.srv import Forget, Review


@pytest.fixture
def in_process():
    local_services.enable()
    yield
    local_services.disable()


def test_nothing_is_served_in_process_unless_enabled():
    local_services.register("/uservlm/forget", Forget, lambda request, response: response)
    assert local_services.lookup("/uservlm/forget", Forget) is None


def test_lookup_is_by_name_and_type_and_unregister_needs_the_same_callback(in_process):
    def serve(request, response):
        return response

    local_services.register("/uservlm/forget", Forget, serve)
    assert local_services.lookup("/uservlm/forget", Forget) is serve
    assert local_services.lookup("/uservlm/forget", Review) is None  # same name, other type
    assert local_services.lookup("/pepper1/uservlm/forget", Forget) is None
    local_services.unregister("/uservlm/forget", lambda request, response: response)
    assert local_services.lookup("/uservlm/forget", Forget) is serve
    local_services.unregister("/uservlm/forget", serve)
    assert local_services.lookup("/uservlm/forget", Forget) is None


def test_a_call_that_does_not_answer_in_time_fails_instead_of_hanging(in_process):
    release = threading.Event()

    def stuck(request, response):
        release.wait(10)
        return response

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer within 0.2 s"):
        local_services.call(stuck, Forget, Forget.Request(user_id="x"), 0.2, "/uservlm/forget")
    assert time.monotonic() - started < 5
    release.set()
    assert local_services.calls["/uservlm/forget"] == 1


def test_a_served_callback_calling_another_service_runs_it_in_its_own_thread(in_process):
    threads = {}

    def inner(request, response):
        threads["inner"] = threading.current_thread().name
        return response

    def outer(request, response):
        threads["outer"] = threading.current_thread().name
        return local_services.call(inner, Forget, Forget.Request(), 1.0, "/inner")

    local_services.call(outer, Forget, Forget.Request(), 5.0, "/outer")
    # nested calls never wait for a free worker (a full pool cannot deadlock them)
    assert threads["outer"] == threads["inner"] and threads["outer"].startswith("local_service")


def test_exclusive_callbacks_never_overlap(in_process):
    lock, running, overlaps = threading.Lock(), [], []

    def serve(request, response):
        running.append(1)
        overlaps.append(len(running) > 1)
        time.sleep(0.01)
        running.pop()
        response.existed = True
        return response

    guarded = local_services.exclusive(serve, lock)
    threads = [threading.Thread(target=local_services.call, args=(guarded, Forget, Forget.Request(), 5, "f"))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 6 and not any(overlaps)


def test_composed_command_line_keeps_overrides_per_node_and_remaps_node_specific():
    specs = compose_cloud(nodes("all", naoqi=True, naoqi_prefix="/naoqi_driver"))
    container = specs[0]
    # Both sides on one host: dialogue_node joins the cloud process (its ask becomes in-process).
    assert container.name == "cloud_node" and set(container.members) == {"asr_node", "tts_node", "vlm_node",
                                                                         "ethics_node", "dialogue_node"}
    assert not any(spec.side == "cloud" or spec.name == "dialogue_node" for spec in specs[1:])
    assert {spec.name for spec in specs[1:]} == {"pepper_audio_node", "speaker_node"}
    assert ("vlm_node:camera/image_raw", "/naoqi_driver/camera/front/image_raw") in container.remaps
    assert ("dialogue_node:camera/image_raw", "/naoqi_driver/camera/front/image_raw") in container.remaps
    command = node_command(container, namespace="pepper1",
                           overrides={"vlm_node": {"device": "cpu", "max_new_tokens": 12}, "asr_node": {}})
    ros_args = command.index("--ros-args")
    assert command[3:ros_args] == ["--members", ",".join(container.members), "--set", "vlm_node.device:='cpu'",
                                   "--set", "vlm_node.max_new_tokens:=12"]
    # dialogue_node's parameters live in robot.yaml: the composed process reads both files.
    params = [command[i + 1] for i, item in enumerate(command) if item == "--params-file"]
    assert [p.rsplit("/", 1)[-1] for p in params] == ["cloud.yaml", "robot.yaml"]
    # The cloud side alone (two hosts): dialogue_node stays with the robot.
    cloud_only = compose_cloud(nodes("cloud"))
    assert "dialogue_node" not in cloud_only[0].members and not cloud_only[0].more_params_files
    assert "__node:=" not in " ".join(command)  # one remap of the node name would rename all four
    assert "-p" not in command  # a -p would reach every node of the process
    assert "__ns:=/pepper1" in command


@pytest.mark.parametrize("arguments, error", [
    (["--members", "moon_node"], "--members"),
    (["--set", "vlm_node.device"], "expected node.parameter:=value"),
    (["--set", "camera_node.device:=cpu"], "is not one of"),
])
def test_composed_process_refuses_bad_arguments(arguments, error):
    result = subprocess.run([sys.executable, "-m", "uservlm_ros.nodes.cloud", *arguments],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and error in result.stderr, result.stderr


def test_composed_cloud_answers_a_spoken_ask_with_review_and_synthesis_in_process(tmp_path, rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from ros_helpers import spin_until, start_cloud, test_overrides

    from uservlm_ros.client import UserVLMClient
    from uservlm_ros.msg import Interaction, Utterance
    from uservlm_ros.ros import qos
    from uservlm_ros.ros.conversions import seconds_to_stamp

    dialogue = [spec for spec in nodes("robot") if spec.name == "dialogue_node"]
    overrides = test_overrides(tmp_path)
    overrides["dialogue_node"] = {"speak": False, "user_id": ""}
    graph = start_cloud(tmp_path, specs=compose_cloud(nodes("cloud") + dialogue), namespace="composed",
                        overrides=overrides)
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
        assert "composed cloud: called in-process (no DDS): /composed/uservlm/review, " \
               "/composed/uservlm/synthesize" in log, log[-2000:]
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
        utterance = Utterance(text="What is a good book?", language="en", confidence=0.9, asr_seconds=0.1,
                              start=seconds_to_stamp(now - 2.0), end=seconds_to_stamp(now))
        utterance.header.stamp = seconds_to_stamp(now)
        speech.publish(utterance)
        assert spin_until(executor, lambda: records, 120), (tmp_path / "cloud_node.log").read_text()[-3000:]
        assert records[0].success, records[0].error
        assert records[0].transcript == "What is a good book?" and records[0].answer
        assert records[0].speech_end_to_answer > 0
        log = (tmp_path / "cloud_node.log").read_text()
        assert "in-process (no DDS): /composed/uservlm/ask" in log, log[-2000:]

        # Spoken: asr_node hands the utterance to dialogue_node in-process, and the DDS copy of it
        # is dropped — one turn, not two.
        from diagnostic_msgs.msg import DiagnosticArray

        from uservlm_ros import bags
        from uservlm_ros.bench import default_bag

        dialogue_values, vlm_values = {}, {}

        def on_diagnostics(msg):
            for status in msg.status:
                if status.name.endswith("dialogue_node"):
                    dialogue_values.update({kv.key: kv.value for kv in status.values})
                if status.name.endswith("vlm_node"):
                    vlm_values.update({kv.key: kv.value for kv in status.values})

        probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DIAGNOSTICS)
        bags.replay(default_bag(), namespace="composed", wait_for_subscribers=30)
        spoken = lambda: [r for r in records if r.transcript != "What is a good book?"]  # noqa: E731
        assert spin_until(executor, lambda: spoken(), 120), (tmp_path / "cloud_node.log").read_text()[-3000:]
        assert spoken()[0].success, spoken()[0].error
        assert spin_until(executor, lambda: int(dialogue_values.get("speech_dds_duplicates_dropped", 0)) >= 1, 30), \
            dialogue_values
        assert int(dialogue_values["speech_in_process"]) == 1
        # One camera subscription for the process: vlm_node keeps the frames dialogue_node receives.
        for topic in ("/composed/camera/image_raw", "/composed/camera/image_raw/compressed"):
            assert [i.node_name for i in probe.get_subscriptions_info_by_topic(topic)] == ["dialogue_node"]
        frames = lambda values: int(values.get("frames_received", 0))  # noqa: E731
        assert spin_until(executor, lambda: frames(vlm_values) > 0 and frames(vlm_values) == frames(dialogue_values),
                          30), (vlm_values, dialogue_values)
        assert vlm_values["frames_from"] == "dialogue_node (in-process)"
        spin_until(executor, lambda: False, 2.0)  # a second turn for the same utterance would come now
        assert len(spoken()) == 1, [r.transcript for r in spoken()]
        probe.destroy_node()
    finally:
        graph.stop()
