"""ethics_node through ROS: /uservlm/ask asks before personalising, takes the next ask from the
same user as the reply, answers the original question, remembers consent across a restart of
the ethics node, and forgets a user on request. vlm_node and ethics_node run as processes in a
namespace of their own."""

from __future__ import annotations

import pytest

from ros_helpers import start_cloud
from uservlm_ros.bringup.graph import nodes
from uservlm_ros.ros.conversions import read_image_file
from uservlm_ros.srv import Review
from uservlm_ros.tools.cli import bundled_photo
from uservlm_ros.tools.client import UserVLMClient
from uservlm_ros.tools.launcher import GraphProcesses

NS = "ethics_test"
QUESTION = "What should I eat tonight?"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("ethics_node")
    specs = [spec for spec in nodes("cloud") if spec.name in ("vlm_node", "ethics_node")]
    graph = start_cloud(log_dir, specs=specs, services=("ask", "review"), namespace=NS)
    yield graph
    graph.stop()


@pytest.fixture
def client(graph):
    with UserVLMClient(namespace=NS, node_name="ethics_test_client") as client:
        yield client


@pytest.fixture(scope="module")
def person():
    return read_image_file(str(bundled_photo()))


def ask(client, question, user, image):
    response = client.ask(question, image=image, user_id=user, timeout=60).response
    assert response.success, response.error
    return response


def restart_ethics(graph: GraphProcesses, client: UserVLMClient) -> None:
    graph.stop("ethics_node")
    spec = next(s for s in graph.specs if s.name == "ethics_node")
    graph.restart(spec)
    assert client.wait_for("review", 120), "ethics_node did not come back"


def test_clarify_reply_answer_and_memory(graph, client, person):
    first = ask(client, QUESTION, "alice", person)
    assert first.clarification and first.review_decision == "clarify"
    assert first.answer and first.generated_tokens == 0, (
        "a clarifying question is not a model answer"
    )

    second = ask(client, "Yes. I'm vegetarian.", "alice", person)
    assert not second.clarification and second.review_decision == "allow"
    assert second.generated_tokens > 0 and second.image_source == "request"
    assert (
        "vegetarian" in second.review_reason.lower() or "consent" in second.review_reason.lower()
    )

    restart_ethics(graph, client)
    remembered = ask(client, QUESTION, "alice", person)
    assert not remembered.clarification, remembered.review_reason
    assert remembered.review_decision == "allow"

    forgot = client.forget("alice").response
    assert forgot.success and forgot.existed
    again = ask(client, QUESTION, "alice", person)
    assert again.clarification, "after forget the robot must ask again"


def test_declined_means_generic_without_the_face(client, person):
    assert ask(client, "Which sport would suit me?", "bob", person).clarification
    declined = ask(client, "No, please don't.", "bob", person)
    assert declined.review_decision == "generic" and declined.image_source == "withheld"


@pytest.mark.parametrize("user", ["../../etc/passwd", "a/b\\c", "x" * 1000, "名前"])
def test_hostile_or_odd_user_ids_are_just_data(client, person, user):
    response = ask(client, QUESTION, user, person)
    assert response.clarification
    assert client.forget(user).response.success


def test_bad_review_requests_get_errors(client):
    wire = Review.Request(question="q", user_id="u" * 2000)
    response = client.call("review", wire, 30).response
    assert not response.success and "user" in response.error.lower()
    ok = client.call(
        "review", Review.Request(question="What time is it?", user_id="carol"), 30
    ).response
    assert ok.success and ok.decision == "allow"
