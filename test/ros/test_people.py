"""Who the robot is talking to, through the running cloud graph (person_node, vlm_node and
ethics_node as processes: the session's ``cloud`` fixture): /uservlm/ask with no user_id resolves
the person from the face, consent is per person and held in memory until they agree to be
remembered, /uservlm/forget deletes the face template and the rest, the bad inputs get clear
outcomes, and REP-155 faces and persons are published with the real hri_msgs."""

from __future__ import annotations

import json
import stat
import time

import numpy as np
import pytest

import person_scenes as ps
from uservlm_ros.engines.person.identity import valid_person_id
from uservlm_ros.ros.conversions import rgb_to_compressed, rgb_to_image
from uservlm_ros.tools.client import UserVLMClient

QUESTION = "What should I wear to a business meeting?"
OFFER = "Shall I remember you next time?"


@pytest.fixture
def client(cloud):
    with UserVLMClient(node_name="test_people_client") as client:
        yield client


@pytest.fixture(scope="module")
def store(cloud):
    """The graph's data directory: consent records, and face templates in faces/."""
    return cloud.log_dir / "consent"


def ask(client, question, image, user_id=""):
    response = client.ask(question, image=image, user_id=user_id, timeout=120).response
    assert response.success, response.error
    return response


def identify(client, image, **kwargs):
    response = client.identify(image, **kwargs).response
    assert response.success, response.error
    return response


def strangers(client, *images) -> None:
    """Whoever is in ``images`` is forgotten first: the shared graph may have met them."""
    for image in images:
        person_id = identify(client, image).person_id
        if person_id:
            assert client.forget(person_id).response.success


def data_files(store) -> list:
    return sorted(p for p in store.rglob("*") if p.is_file())


def test_consent_is_per_person_resolved_from_the_face(client, store):
    anna, ben = ps.alone("astronaut"), ps.alone("hopper")
    strangers(client, anna, ben)
    asked = ask(client, QUESTION, anna)
    assert valid_person_id(asked.person_id) and asked.person_status == "new"
    assert asked.clarification and asked.image_source == "request:upper_body"
    assert asked.person_seconds > 0
    # her reply, on another frame of her (mirrored): the same person, the original question
    replied = ask(client, "Yes, please go ahead.", ps.alone("astronaut", "mirror"))
    assert replied.person_id == asked.person_id and replied.person_status == "known"
    assert replied.review_decision == "allow" and replied.generated_tokens > 0
    assert replied.answer.endswith(OFFER), "a session person who agreed is offered memory"
    # the next visitor is asked for themselves: Anna's yes is not Ben's
    other = ask(client, QUESTION, ben)
    assert other.person_id not in ("", asked.person_id) and other.clarification
    # Anna again, darker light: recognised, her consent holds
    again = ask(client, QUESTION, ps.alone("astronaut", "dark"))
    assert again.person_id == asked.person_id and again.review_decision == "allow"
    # nothing of these session persons reached the disk
    leaked = [p for p in data_files(store) if asked.person_id in p.read_text(errors="replace")]
    assert not leaked and not list((store / "faces").glob("*.face.json"))
    # a caller's user_id still wins over the face
    named = ask(client, "What time is it?", anna, user_id="alice")
    assert named.person_id == "alice" and named.person_status == "given"
    assert named.image_source == "request:upper_body"


def test_remember_me_keeps_template_and_consent_and_forget_deletes_them(client, store):
    ben = ps.alone("hopper", "bright")
    strangers(client, ben)
    asked = ask(client, "Which sport would suit me?", ben)
    person = asked.person_id
    assert asked.clarification
    ask(client, "Yes, go ahead.", ben)
    remembered = ask(client, "Please remember me next time.", ben)
    assert remembered.review_decision == "acknowledge" and remembered.generated_tokens == 0
    assert "remember you" in remembered.answer.lower()
    template = store / "faces" / f"{person}.face.json"
    assert template.is_file() and stat.S_IMODE(template.stat().st_mode) == 0o600
    assert "exemplars" in json.loads(template.read_text())
    records = [p for p in store.glob("*.json") if person in p.read_text()]
    assert len(records) == 1 and stat.S_IMODE(records[0].stat().st_mode) == 0o600
    assert identify(client, ben).status == "remembered"

    forgot = client.forget(person).response
    assert forgot.success and forgot.existed, forgot.error
    assert not template.exists() and not [p for p in store.glob("*") if person in p.name]
    assert not [p for p in data_files(store) if person in p.read_text(errors="replace")]
    assert identify(client, ben).person_id != person, "forgotten: met as a stranger"
    unknown = client.forget("p0000000000000000").response
    assert unknown.success and not unknown.existed


def test_what_perception_saw_goes_to_the_review(client):
    wall = ps.scene()  # no face
    for user in ("", "alice"):
        response = ask(client, QUESTION, wall, user_id=user)
        assert not response.clarification, "no face: nothing to ask about looks"
        assert response.review_decision == "allow" and response.image_source == "request:full"
    assert ask(client, QUESTION, wall).person_status == "no_face"
    # turned away and half hidden: a face, nobody identified -> anonymous, the face withheld
    turned = ask(client, QUESTION, ps.scene((np.asarray(ps.photo("cameraman")), (60, 0))))
    assert (turned.person_id, turned.person_status) == ("", "unidentified")
    assert turned.review_decision == "generic" and turned.image_source == "withheld"


def test_the_person_leaving_before_the_reply_and_people_swapping(client):
    anna, ben = ps.alone("astronaut", "bright"), ps.alone("hopper", "grey")
    strangers(client, anna, ben)
    assert ask(client, "What should I eat tonight?", anna).clarification
    # Ben answers instead: no question is pending for him, his words are his own question
    stray = ask(client, "Yes, please.", ben)
    assert not stray.clarification and stray.review_decision == "allow"
    # Anna, back (with Ben beside her, now on the other side), still has her question pending
    both = ps.scene(ps.at("hopper", (160, 210), 90)[0], ps.at("astronaut", (470, 200), 110)[0])
    resumed = ask(client, "Yes, please.", both)
    assert resumed.person_id == identify(client, anna).person_id
    assert resumed.review_decision == "allow" and resumed.generated_tokens > 0


@pytest.mark.parametrize(
    "image, outcome",
    [
        (ps.crowd(4, 2), {"faces": 8}),
        (ps.alone("astronaut", face_px=30), {"faces": 0, "status": "no_face"}),
        (np.full((480, 640, 3), 128, np.uint8), {"faces": 0, "status": "no_face"}),
    ],
    ids=["eight faces", "faces under 40 px", "grey frame"],
)
def test_identify_outcomes(client, image, outcome):
    response = identify(client, image)
    for field, value in outcome.items():
        assert getattr(response, field) == value, (field, response)
    if outcome.get("faces") == 0:
        assert response.crop == "full" and response.person_id == ""


def test_identify_bad_input_is_refused_and_the_node_carries_on(client, cloud):
    from uservlm_ros.srv import Identify

    mono = np.ascontiguousarray(ps.alone("hopper")[:, :, 1])
    message = rgb_to_image(ps.alone("hopper"))
    message.encoding, message.step, message.data = "mono8", 640, mono.tobytes()
    grey = client.call("identify", Identify.Request(image=message, identify=True), 30).response
    assert grey.success and grey.faces == 1 and grey.person_id, grey.error
    assert message.header.stamp.sec == 0  # no timestamp: fine
    for request, error in (
        (Identify.Request(), "exactly one"),
        (
            Identify.Request(
                image=rgb_to_image(ps.scene()), compressed_image=rgb_to_compressed(ps.scene())
            ),
            "exactly one",
        ),
    ):
        response = client.call("identify", request, 30).response
        assert not response.success and error in response.error
    broken = rgb_to_compressed(ps.scene())
    broken.data = bytes(broken.data[:200])
    response = client.call("identify", Identify.Request(compressed_image=broken), 30).response
    assert not response.success and response.error.startswith("bad request")
    assert identify(client, ps.alone("hopper")).faces == 1
    assert cloud.exited() == {}


def test_no_embedding_of_anyone_who_did_not_agree_reaches_the_disk(client, store):
    from uservlm_ros.engines.person import PersonConfig
    from uservlm_ros.engines.person.detection import FaceDetector
    from uservlm_ros.engines.person.embedding import FaceEmbedder, distance

    anna, ben = ps.alone("astronaut", "jpeg"), ps.alone("hopper", "blur")
    strangers(client, anna, ben)
    assert ask(client, QUESTION, anna).clarification  # Anna agrees to a personal answer only
    assert ask(client, "Yes, go ahead.", anna).review_decision == "allow"
    kept = ask(client, "Remember me, please.", ben).person_id  # Ben agrees to be remembered
    assert (store / "faces" / f"{kept}.face.json").is_file()
    config = PersonConfig()
    detector, embedder = FaceDetector(config), FaceEmbedder()
    vectors = []
    for variant in ("plain", "mirror", "dark", "jpeg"):
        frame = ps.alone("astronaut", variant)
        vectors += [embedder.embed(frame, face) for face in detector.detect(frame).faces]
    assert len(vectors) == 4
    found = []

    def walk(value):
        if isinstance(value, list) and len(value) == 128:
            found.append(value)
        elif isinstance(value, (list, dict)):
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)

    for path in data_files(store):
        walk(json.loads(path.read_text()))  # everything this package writes is JSON
    assert found, "Ben's template is on disk"
    for stored in found:
        nearest = min(distance(stored, vector) for vector in vectors)
        assert nearest > config.match_threshold, "an embedding of a session person is on disk"
    assert client.forget(kept).response.existed


def test_rep155_faces_and_persons_with_the_real_hri_msgs(client, rclpy_context):
    hri = pytest.importorskip("hri_msgs.msg")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from ros_helpers import spin_until
    from uservlm_ros.ros import qos

    node = rclpy.create_node("rep155_probe", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    seen: dict[str, list] = {"faces": [], "persons": [], "roi": [], "cropped": [], "face_id": []}
    node.create_subscription(
        hri.IdsList, "humans/faces/tracked", lambda m: seen["faces"].append(m), qos.HUMANS
    )
    node.create_subscription(
        hri.IdsList, "humans/persons/tracked", lambda m: seen["persons"].append(m), qos.HUMANS
    )
    camera = node.create_publisher(Image, "camera/image_raw", qos.CAMERA)
    two = ps.pair(face_px=100)

    def show(frame, until, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            camera.publish(rgb_to_image(frame))  # no timestamp: person_node uses receive time
            if spin_until(executor, until, 0.2):
                return True
        return False

    assert show(two, lambda: seen["faces"] and len(seen["faces"][-1].ids) == 2)
    assert show(two, lambda: seen["persons"] and len(seen["persons"][-1].ids) == 2)
    faces, persons = list(seen["faces"][-1].ids), list(seen["persons"][-1].ids)
    assert seen["faces"][-1].header.stamp.sec > 0
    assert all(f.startswith("f") for f in faces) and all(valid_person_id(p) for p in persons)
    face = faces[0]
    node.create_subscription(
        hri.NormalizedRegionOfInterest2D,
        f"humans/faces/{face}/roi",
        lambda m: seen["roi"].append(m),
        qos.HUMANS,
    )
    node.create_subscription(
        Image, f"humans/faces/{face}/cropped", lambda m: seen["cropped"].append(m), qos.HUMANS
    )
    node.create_subscription(
        String,
        f"humans/persons/{persons[0]}/face_id",
        lambda m: seen["face_id"].append(m),
        qos.LATCHED,
    )
    assert show(two, lambda: seen["roi"] and seen["cropped"] and seen["face_id"])
    roi = seen["roi"][-1]
    assert 0 <= roi.xmin < roi.xmax <= 1 and 0 <= roi.ymin < roi.ymax <= 1
    assert seen["cropped"][-1].encoding == "rgb8" and seen["cropped"][-1].width > 40
    assert seen["face_id"][-1].data in faces
    # the turn and the topics agree on who is who
    assert identify(client, ps.alone("hopper")).person_id in persons

    # they leave: the tracks end, their per-id topics go
    assert show(ps.scene(), lambda: seen["faces"] and not seen["faces"][-1].ids)
    assert spin_until(
        executor, lambda: node.count_publishers(f"/humans/faces/{face}/roi") == 0, 30
    )
    assert node.count_publishers(f"/humans/persons/{persons[0]}/face_id") == 0
    node.destroy_node()


def test_a_person_who_left_takes_their_consent_along(client, cloud, rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from ros_helpers import spin_until
    from uservlm_ros.ros import qos

    anna = ps.alone("astronaut", "roll")
    strangers(client, anna)
    person = ask(client, QUESTION, anna).person_id
    assert ask(client, "Yes, go ahead.", anna).review_decision == "allow"
    assert ask(client, QUESTION, anna).review_decision == "allow"
    # what person_node says when her session runs out (session_ttl_s after she was last seen)
    node = rclpy.create_node("departure", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    forgotten = node.create_publisher(String, "persons/forgotten", qos.EVENTS)
    assert spin_until(executor, lambda: forgotten.get_subscription_count() >= 2, 30)
    forgotten.publish(String(data=person))
    spin_until(executor, lambda: False, 1.0)  # delivered on a reliable topic; let it land
    again = ask(client, QUESTION, anna)
    assert again.person_id == person and again.clarification, "her consent left with her"
    node.destroy_node()


def test_a_corrupt_face_template_is_moved_aside_and_the_rest_loads(tmp_path, rclpy_context):
    from rclpy.parameter import Parameter

    from person_engines import engine as person_engine
    from uservlm_ros.nodes.person import PersonNode

    faces = tmp_path / "faces"
    keeper = person_engine(store_dir=faces)
    kept = keeper.resolve(ps.alone("hopper")).person_id
    assert keeper.remember(kept)
    (faces / "p00000000000000aa.face.json").write_text('{"format": 1, "exemplars": [[0.1,')
    node = PersonNode(
        context=rclpy_context,
        namespace="corrupt",
        parameter_overrides=[
            Parameter("store_dir", value=str(faces)),
            Parameter("publish_rep155", value=False),
        ],
    )
    try:
        assert node.autostart(), node.load_error
        assert node.engine.counts()["remembered_persons"] == 1
        assert node.engine.resolve(ps.alone("hopper")).person_id == kept
        assert [p.name for p in faces.glob("*.corrupt-*")] and not (
            faces / "p00000000000000aa.face.json"
        ).exists()
    finally:
        node.destroy_node()
