"""The generated interfaces exist with the fields the nodes and clients rely on.

Also run by `colcon test` (ament_add_pytest_test in CMakeLists.txt) against the colcon install.
"""

import importlib


def test_service_types_are_generated_in_this_package():
    from uservlm_ros.srv import Ask, Synthesize, Transcribe

    for srv, name in ((Ask, "Ask"), (Transcribe, "Transcribe"), (Synthesize, "Synthesize")):
        assert srv.__module__.startswith("uservlm_ros.srv"), srv.__module__
        assert srv.Request.__name__ == f"{name}_Request"


def test_ask_fields():
    from uservlm_ros.srv import Ask

    request = Ask.Request()
    assert set(request.get_fields_and_field_types()) == {
        "question",
        "image",
        "compressed_image",
        "user_id",
        "speak",
        "publish_audio",
        "stream_audio",
        "turn_id",
    }
    assert request.get_fields_and_field_types()["image"] == "sensor_msgs/Image"
    assert (
        request.get_fields_and_field_types()["compressed_image"] == "sensor_msgs/CompressedImage"
    )
    response_fields = Ask.Response.get_fields_and_field_types()
    for field in (
        "success",
        "error",
        "answer",
        "clarification",
        "preprocess_seconds",
        "prefill_seconds",
        "generation_seconds",
        "synthesis_seconds",
        "total_seconds",
        "placeholder_model",
        "audio",
        "review_decision",
        "review_seconds",
        "first_audio_seconds",
    ):
        assert field in response_fields, field


def test_messages():
    from uservlm_ros.msg import AudioChunk, Utterance

    assert AudioChunk.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "sample_rate": "uint32",
        "channels": "uint8",
        "data": "sequence<int16>",
    }
    assert {"text", "language", "confidence", "start", "end", "asr_seconds"} <= set(
        Utterance.get_fields_and_field_types()
    )


def test_barge_in_messages():
    from uservlm_ros.msg import BargeIn, SpeakingState

    assert SpeakingState.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "speaking": "boolean",
        "turn_id": "string",
        "reason": "string",
    }
    assert BargeIn.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "detected": "builtin_interfaces/Time",
        "probability": "float",
        "level_dbfs": "float",
    }


def test_type_support_is_loadable():
    # Importing a type is lazy; the C type support loads on first use (serialization).
    from rclpy.serialization import deserialize_message, serialize_message

    srv = importlib.import_module("uservlm_ros.srv").Ask
    request = srv.Request(question="Recommend me a movie", user_id="u1", speak=True)
    assert deserialize_message(serialize_message(request), srv.Request) == request


def test_person_fields_and_services():
    from uservlm_ros.msg import Interaction
    from uservlm_ros.srv import Ask, Identify, RememberPerson, Review

    assert {"person_id", "person_status", "person_seconds"} <= set(
        Ask.Response.get_fields_and_field_types()
    )
    assert {"person_id", "person_status", "person_seconds"} <= set(
        Interaction.get_fields_and_field_types()
    )
    identify = Identify.Response.get_fields_and_field_types()
    assert identify["crop_region"] == "sensor_msgs/RegionOfInterest"
    assert {"person_id", "status", "remembered", "face_id", "faces", "crop"} <= set(identify)
    assert set(Identify.Request.get_fields_and_field_types()) == {
        "image",
        "compressed_image",
        "identify",
    }
    assert set(RememberPerson.Request.get_fields_and_field_types()) == {"person_id"}
    assert {"acknowledgement", "follow_up", "person_action"} <= set(
        Review.Response.get_fields_and_field_types()
    )


def test_the_ask_action_mirrors_the_ask_service():
    """One turn, two interfaces: goal = request, result = response + cancelled, same types."""
    from uservlm_ros.action import Ask as AskAction
    from uservlm_ros.srv import Ask

    assert AskAction.Goal.get_fields_and_field_types() == Ask.Request.get_fields_and_field_types()
    result = dict(AskAction.Result.get_fields_and_field_types())
    assert result.pop("cancelled") == "boolean"
    assert result == Ask.Response.get_fields_and_field_types()
    assert AskAction.Feedback.get_fields_and_field_types() == {
        "stage": "string",
        "text": "string",
        "elapsed_seconds": "double",
    }
