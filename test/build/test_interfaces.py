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
    assert set(request.get_fields_and_field_types()) == {"question", "image", "compressed_image", "user_id",
                                                         "speak", "publish_audio", "stream_audio", "turn_id"}
    assert request.get_fields_and_field_types()["image"] == "sensor_msgs/Image"
    assert request.get_fields_and_field_types()["compressed_image"] == "sensor_msgs/CompressedImage"
    response_fields = Ask.Response.get_fields_and_field_types()
    for field in ("success", "error", "answer", "clarification", "preprocess_seconds", "prefill_seconds",
                  "generation_seconds", "synthesis_seconds", "total_seconds", "placeholder_model", "audio",
                  "review_decision", "review_seconds", "first_audio_seconds"):
        assert field in response_fields, field


def test_messages():
    from uservlm_ros.msg import AudioChunk, Utterance

    assert AudioChunk.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "sample_rate": "uint32", "channels": "uint8", "data": "sequence<int16>"}
    assert {"text", "language", "confidence", "start", "end", "asr_seconds"} <= set(
        Utterance.get_fields_and_field_types())


def test_type_support_is_loadable():
    # Importing a type is lazy; the C type support loads on first use (serialization).
    from rclpy.serialization import deserialize_message, serialize_message

    srv = importlib.import_module("uservlm_ros.srv").Ask
    request = srv.Request(question="Recommend me a movie", user_id="u1", speak=True)
    assert deserialize_message(serialize_message(request), srv.Request) == request
