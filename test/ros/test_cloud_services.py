"""The three cloud services across processes: asr_node, tts_node and vlm_node run as separate
processes (as `uservlm up --cloud` starts them) and are called through rclpy clients with the
generated types. Every bad input gets success=false with an error naming it, and the next request
is served normally."""

from __future__ import annotations

import array
import threading
import time

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from uservlm_ros.ros.conversions import (
    compressed_to_rgb,
    read_image_file,
    rgb_to_compressed,
    rgb_to_image,
)
from uservlm_ros.speech.audio import word_error_rate
from uservlm_ros.srv import Ask, Transcribe
from uservlm_ros.tools.cli import bundled_photo
from uservlm_ros.tools.client import UserVLMClient

SENTENCE = "Please tell me what I should wear to a business meeting tomorrow."


@pytest.fixture
def client(cloud):
    with UserVLMClient(node_name="test_cloud_client") as client:
        yield client


@pytest.fixture(scope="module")
def person():
    return read_image_file(str(bundled_photo()))


def ok(reply):
    assert reply.response.success, reply.response.error
    return reply.response


def check_served(client, person):
    """The node still answers a normal request after a bad one."""
    response = ok(client.ask("Recommend me a movie", image=person))
    assert response.answer.strip() or response.generated_tokens > 0


# -- /uservlm/ask -------------------------------------------------------------------------------
def test_ask_with_image_returns_answer_and_timings(client, person):
    response = ok(client.ask("What do you see in this picture?", image=person))
    assert response.placeholder_model, "offline default must say it is the tiny random model"
    assert response.image_source == "request"
    assert response.review_decision == "allow" and response.review_seconds > 0
    assert response.generated_tokens > 0
    assert 0 < response.prefill_seconds and 0 < response.generation_seconds
    assert (
        response.preprocess_seconds + response.prefill_seconds + response.generation_seconds
        <= response.total_seconds + 1e-6
    )
    assert response.synthesis_seconds == 0 and len(response.audio.data) == 0


def test_anonymous_personal_question_is_answered_without_the_face(client, person):
    response = ok(client.ask("What should I wear to a business meeting?", image=person))
    assert response.review_decision == "generic" and response.image_source == "withheld"
    assert "clothing" in response.review_reason


def test_ask_speak_returns_audio(client, person):
    response = ok(
        client.ask(
            "What should I wear to a business meeting?", image=person, speak=True, timeout=120
        )
    )
    assert response.synthesis_seconds > 0
    assert (
        response.audio.sample_rate > 0
        and len(response.audio.data) > response.audio.sample_rate // 10
    )


def test_ask_uses_newest_camera_frame_raw_then_compressed(client, person):
    from sensor_msgs.msg import CompressedImage

    from uservlm_ros.ros import qos

    node = client.node
    raw_pub = node.create_publisher(Image, "camera/image_raw", qos.CAMERA)
    jpeg_pub = node.create_publisher(CompressedImage, "camera/image_raw/compressed", qos.CAMERA)
    frame = np.ascontiguousarray(np.resize(person, (480, 640, 3)))
    for publisher, message, source in (
        (raw_pub, rgb_to_image(frame), "camera/image_raw"),
        (jpeg_pub, rgb_to_compressed(frame), "camera/image_raw/compressed"),
    ):
        # Best-effort frames: publish until the server reports using one (deadline, no sleeps).
        for _ in range(50):
            publisher.publish(message)
            client.executor.spin_once(timeout_sec=0.05)
            response = ok(client.ask("Who is in front of you?", timeout=60))
            if response.image_source == source:
                break
        assert response.image_source == source


@pytest.mark.parametrize(
    "question, error",
    [
        ("", "question is empty"),
        ("   \t\n ", "question is empty"),
        ("why? " * 300, "the limit is 1000"),
    ],
)
def test_ask_bad_questions(client, person, question, error):
    response = client.ask(question, image=person).response
    assert not response.success and error in response.error
    check_served(client, person)


def test_ask_invalid_utf8(client, person):
    # A C++ or Python client can put any bytes in a string field; rclpy on the server decodes them
    # with errors="replace". Build such a request at the byte level.
    request = Ask.Request(question="What should I eat? XXXX")
    wire = serialize_message(request).replace(b"XXXX", b"\xff\xfe\xc3\x28")
    bad = deserialize_message(wire, Ask.Request)
    reply = client.call("ask", bad, 60)
    assert not reply.response.success and "not valid UTF-8" in reply.response.error
    check_served(client, person)


def _image(encoding="rgb8", width=64, height=48, step=None, data=None):
    channels = {"rgb8": 3, "yuv422": 2, "32FC1": 4}[encoding]
    step = width * channels if step is None else step
    data = bytes(height * step) if data is None else data
    return Image(encoding=encoding, width=width, height=height, step=step, data=data)


@pytest.mark.parametrize(
    "image, error",
    [
        (_image(encoding="yuv422"), "unsupported image encoding"),
        (_image(encoding="32FC1"), "unsupported image encoding"),
        (_image(width=0, data=b""), "zero size"),
        (_image(height=0, data=b""), "zero size"),
        (_image(data=bytes(64 * 3 * 47)), "expected height x step"),
        (_image(step=10), "smaller than width"),
    ],
)
def test_ask_bad_images(client, person, image, error):
    request = Ask.Request(question="What do you see?", image=image)
    response = client.call("ask", request, 60).response
    assert not response.success and error in response.error, response.error
    check_served(client, person)


def test_ask_with_a_jpeg_uses_it_undecoded_on_the_uplink(client, person):
    jpeg = rgb_to_compressed(person)
    assert len(jpeg.data) < person.nbytes / 10
    response = ok(client.ask("What do you see in this picture?", image=bytes(jpeg.data)))
    assert response.image_source == "request/compressed"
    assert response.preprocess_seconds > 0 and response.generated_tokens > 0


def test_ask_with_a_jpeg_answers_as_with_its_pixels(client, person):
    """Sent as a JPEG or as the decoded pixels of that JPEG: the model sees the same image."""
    jpeg = rgb_to_compressed(person)
    as_jpeg = ok(client.ask("Describe this person.", image=bytes(jpeg.data)))
    as_pixels = ok(client.ask("Describe this person.", image=compressed_to_rgb(jpeg)))
    assert as_jpeg.image_source == "request/compressed" and as_pixels.image_source == "request"
    assert as_jpeg.answer == as_pixels.answer


@pytest.mark.parametrize(
    "image_format, data, error",
    [
        ("", b"", None),  # nothing filled in: no image in the request (answered)
        ("jpeg", b"", "has no data"),
        ("gif", b"GIF89a" + bytes(100), "neither JPEG nor PNG"),
        (
            "jpeg",
            b"\xff\xd8\xff\xe0" + bytes(100),
            "could not be decoded",
        ),  # JPEG signature, corrupt body
    ],
)
def test_ask_bad_compressed_images(client, person, image_format, data, error):
    request = Ask.Request(question="What do you see?")
    request.compressed_image.format = image_format
    request.compressed_image.data = data
    response = client.call("ask", request, 60).response
    if error is None:
        assert response.success, response.error
    else:
        assert not response.success and error in response.error, response.error
    check_served(client, person)


def test_ask_with_both_image_fields_is_refused(client, person):
    request = Ask.Request(
        question="What do you see?",
        image=rgb_to_image(person),
        compressed_image=rgb_to_compressed(person),
    )
    response = client.call("ask", request, 60).response
    assert not response.success and "at most one of image and compressed_image" in response.error
    check_served(client, person)


def test_concurrent_asks_all_get_a_response(client, person, cloud):
    """Four clients at once: each is answered or refused as busy, never left hanging."""
    results, errors = [], []

    def one(index):
        try:
            with UserVLMClient(node_name=f"test_concurrent_{index}") as own:
                results.append(
                    own.ask(
                        f"Question number {index}: what sport suits me?", image=person, timeout=120
                    ).response
                )
        except Exception as error:  # a timeout here is the failure this test looks for
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert len(results) == 4
    for response in results:
        assert response.success or response.error.startswith("busy"), response.error


# -- /uservlm/synthesize and /uservlm/transcribe -------------------------------------------------
def test_tts_then_asr_round_trip(client):
    spoken = ok(client.synthesize(SENTENCE))
    assert spoken.audio.sample_rate > 0 and spoken.voice
    request = Transcribe.Request()
    request.audio = spoken.audio
    text = ok(client.call("transcribe", request, 120)).text
    assert word_error_rate(SENTENCE, text) <= 0.2, text


@pytest.mark.parametrize(
    "text, error", [("", "empty"), ("  \n", "empty"), ("word " * 1000, "2000")]
)
def test_synthesize_bad_text(client, text, error):
    response = client.synthesize(text).response
    assert not response.success and error in response.error, response.error
    assert ok(client.synthesize("Hello.")).audio.data


def _transcribe_request(float_samples=None, data=None, sample_rate=16000, channels=1):
    request = Transcribe.Request()
    request.audio.sample_rate = sample_rate
    request.audio.channels = channels
    if data is not None:
        request.audio.data = array.array("h", np.asarray(data, np.int16).tobytes())
    if float_samples is not None:
        request.float_samples = array.array("f", np.asarray(float_samples, np.float32).tobytes())
    return request


@pytest.mark.parametrize(
    "request_kwargs, error",
    [
        (dict(float_samples=[0.0, float("nan"), 0.1] * 1000), "NaN"),
        (dict(float_samples=[0.0, float("inf")] * 1000), "inf"),
        (dict(data=[]), "zero samples"),
        (dict(data=np.zeros(16000 * 31, np.int16)), "maximum"),
        (dict(data=np.zeros(3201, np.int16), channels=2), "multiple"),
        (dict(data=np.zeros(1600, np.int16), sample_rate=0), "sample_rate"),
    ],
)
def test_transcribe_bad_audio(client, request_kwargs, error):
    response = client.call("transcribe", _transcribe_request(**request_kwargs), 60).response
    assert not response.success and error.lower() in response.error.lower(), response.error
    silence = client.call(
        "transcribe", _transcribe_request(data=np.zeros(8000, np.int16)), 60
    ).response
    assert silence.success, silence.error


def test_streamed_speech_has_the_same_content_as_whole_speech(client, person):
    """stream_audio: sentences go out on speech_audio while the turn runs; same words as speak."""
    from uservlm_ros.msg import AudioChunk
    from uservlm_ros.ros import qos

    chunks = []
    client.node.create_subscription(AudioChunk, "speech_audio", chunks.append, qos.SPEECH_AUDIO)
    # With the face in view a food suggestion could lean on inferred attributes: the robot asks
    # first, and that clarifying question (real words) is what is spoken here.
    request = Ask.Request(
        question="What should I eat tonight?",
        user_id="stream-user",
        speak=True,
        stream_audio=True,
        turn_id="turn-stream",
        image=rgb_to_image(person),
    )
    streamed = ok(client.call("ask", request, 120))
    assert streamed.clarification and len(streamed.audio.data) == 0, (
        streamed.review_decision,
        streamed.review_reason,
    )
    assert 0 < streamed.first_audio_seconds <= streamed.total_seconds

    def spin_until(done, seconds=30.0):
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            client.executor.spin_once(timeout_sec=0.05)

    spin_until(lambda: len(chunks) >= 2)
    assert len(chunks) >= 2, "a two-sentence question is spoken sentence by sentence"
    assert all(chunk.header.frame_id == "turn-stream" for chunk in chunks)

    whole = ok(
        client.ask(
            "What should I eat tonight?",
            image=person,
            user_id="whole-user",
            speak=True,
            timeout=120,
        )
    )
    assert whole.answer == streamed.answer and len(whole.audio.data)

    # publish_audio: the whole answer goes to the speaker, not into the response, in pieces the
    # speaker joins into one utterance: vlm_node's speech_chunk_seconds (0.5 s) first, then
    # doubling.
    request = Ask.Request(
        question="What should I eat tonight?",
        user_id="publish-user",
        speak=True,
        publish_audio=True,
        turn_id="turn-publish",
        image=rgb_to_image(person),
    )
    published = ok(client.call("ask", request, 120))
    assert published.answer == whole.answer and len(published.audio.data) == 0
    assert 0 < published.first_audio_seconds <= published.total_seconds

    def published_chunks():
        return [chunk for chunk in chunks if chunk.header.frame_id == "turn-publish"]

    # The pieces after the first are paced: each goes out when the audio before it has half played.
    spin_until(
        lambda: sum(len(chunk.data) for chunk in published_chunks()) >= 0.9 * len(whole.audio.data)
    )
    pieces = published_chunks()
    rate = whole.audio.sample_rate
    assert len(pieces) >= 2 and all(chunk.sample_rate == rate for chunk in pieces)
    assert len(pieces[0].data) == int(round(0.5 * rate))
    assert all(len(chunk.data) <= 0.5 * rate * 2**i for i, chunk in enumerate(pieces))
    assert [
        chunk.header.stamp.sec + chunk.header.stamp.nanosec * 1e-9 for chunk in pieces
    ] == sorted(chunk.header.stamp.sec + chunk.header.stamp.nanosec * 1e-9 for chunk in pieces)
    total = sum(len(chunk.data) for chunk in pieces)
    assert abs(total - len(whole.audio.data)) <= 0.1 * len(whole.audio.data)
    # The streamed turn's paced pieces went out at the latest when the next turn's audio did.
    chunks[:] = [chunk for chunk in chunks if chunk.header.frame_id == "turn-stream"]

    def words(audio_chunks):
        request = Transcribe.Request()
        request.audio = audio_chunks[0]
        request.audio.data = array.array(
            "h", b"".join(np.asarray(c.data, np.int16).tobytes() for c in audio_chunks)
        )
        return ok(client.call("transcribe", request, 120)).text

    assert word_error_rate(streamed.answer, words(chunks)) <= 0.25
    assert word_error_rate(streamed.answer, words([whole.audio])) <= 0.25
