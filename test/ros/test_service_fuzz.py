"""Property-based fuzz of /uservlm/ask, /uservlm/review and /uservlm/synthesize over DDS
(hypothesis): requests with random field values (text of any script, control characters, NUL,
oversized strings, images whose sizes, encodings, steps and bytes disagree, compressed images
that are not what they claim, random flags and user ids). Every request gets a response within
its timeout, an error response says what was wrong, and each node serves a normal request
afterwards, in the same process. Deterministic (derandomized) and bounded: a fixed number of
cases, each within a call timeout. The full fuzz, about 1,000 cases (2 minutes on 2 cores), is
marked slow; CI runs 150 of them. The graph is the session's cloud side (conftest's ``cloud``)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from uservlm_ros.srv import Ask, Review, Synthesize  # noqa: E402
from uservlm_ros.tools.cli import bundled_photo  # noqa: E402
from uservlm_ros.tools.client import UserVLMClient  # noqa: E402

CASES = {
    "full": {"ask": 300, "review": 450, "synthesize": 250},
    "ci": {"ask": 50, "review": 70, "synthesize": 30},
}
SCALES = [pytest.param("ci"), pytest.param("full", marks=pytest.mark.slow)]
CALL_TIMEOUT = 120.0
UINT32 = 2**32 - 1
JPEG = bundled_photo().read_bytes()
ATTRIBUTES = ["age", "gender", "ethnicity", "emotion", "clothing"]

EDGE_TEXTS = [
    "",
    " ",
    "\n\t ",
    "x" * 1001,
    "word " * 450,
    "A\x00B",
    "\x1b[31mred",
    "\ufffd?",
    "What should I eat for lunch today?",
    "Yes please",
    "مرحبا كيف حالك؟",
    "这是一个问题吗？",
    "🙂" * 50,
    "e\u0301" * 20,
    "\u202eevil",
]
printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200)
texts = st.one_of(printable, st.text(max_size=200), st.sampled_from(EDGE_TEXTS))
user_ids = st.one_of(
    st.just(""),
    st.text(max_size=40),
    st.sampled_from(["fuzz-user", "../../etc/passwd", "a/b\\c", "x" * 1100]),
)
sizes = st.one_of(st.integers(0, 64), st.integers(0, UINT32))


@st.composite
def raw_images(draw, message):
    if draw(st.booleans()):  # consistent sizes, any content
        message.height, message.width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
        message.encoding = draw(st.sampled_from(["rgb8", "bgr8", "mono8", "rgba8", "bgra8"]))
        channels = {"mono8": 1, "rgba8": 4, "bgra8": 4}.get(message.encoding, 3)
        message.step = message.width * channels + draw(st.integers(0, 3))
        message.data = draw(
            st.binary(
                min_size=message.height * message.step, max_size=message.height * message.step
            )
        )
    else:  # anything
        message.height, message.width, message.step = draw(sizes), draw(sizes), draw(sizes)
        message.encoding = draw(
            st.one_of(st.sampled_from(["rgb8", "16UC1", "yuv422", ""]), st.text(max_size=12))
        )
        message.is_bigendian = draw(st.integers(0, 255))
        message.data = draw(st.binary(max_size=4096))


@st.composite
def compressed_images(draw, message):
    message.format = draw(
        st.one_of(st.sampled_from(["jpeg", "png", "", "bmp", "rgb8; jpeg"]), st.text(max_size=12))
    )
    message.data = draw(
        st.one_of(
            st.binary(max_size=2048),
            st.binary(max_size=512).map(
                lambda tail: b"\xff\xd8\xff" + tail
            ),  # claims to be a JPEG
            st.binary(max_size=512).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
            st.integers(0, len(JPEG)).map(lambda cut: JPEG[:cut]),  # a real JPEG, cut anywhere
            st.just(JPEG),
        )
    )


@st.composite
def ask_requests(draw):
    request = Ask.Request(
        question=draw(texts), user_id=draw(user_ids), turn_id=draw(st.text(max_size=20))
    )
    flags = [draw(st.booleans()) for _ in range(3)]
    request.speak, request.publish_audio, request.stream_audio = flags
    image = draw(st.sampled_from(["none"] * 4 + ["raw"] * 2 + ["compressed"] * 3 + ["both"]))
    if image in ("raw", "both"):
        draw(raw_images(request.image))
    if image in ("compressed", "both"):
        draw(compressed_images(request.compressed_image))
    return request


@st.composite
def review_requests(draw):
    attributes = st.one_of(st.sampled_from(ATTRIBUTES), st.text(max_size=20))
    return Review.Request(
        question=draw(texts),
        user_id=draw(user_ids),
        has_inferred=draw(st.booleans()),
        inferred_attributes=draw(st.lists(attributes, max_size=6)),
    )


synthesize_requests = st.builds(Synthesize.Request, text=texts)

FUZZ = dict(
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def served(cloud):
    """The cloud side (each node in its own process, shared by the session) and a client."""
    with UserVLMClient(node_name="fuzz_client") as client:
        yield cloud, client


def call(served, service: str, request, tally: Counter):
    graph, client = served
    reply = client.call(service, request, CALL_TIMEOUT)  # ServiceError (no answer) fails the test
    response = reply.response
    tally["requests"] += 1
    tally["answered" if response.success else "refused"] += 1
    assert response.success or response.error.strip(), f"an error response must say why: {request}"
    assert not graph.exited(), f"a node died on {request}: {graph.exited()}"
    return response


def still_serving(served) -> None:
    _, client = served
    assert client.ask("Recommend me a movie", timeout=CALL_TIMEOUT).response.success
    review = client.call("review", Review.Request(question="What time is it?"), CALL_TIMEOUT)
    assert review.response.success
    assert client.synthesize("Hello, I am Pepper.", timeout=CALL_TIMEOUT).response.success


@pytest.mark.parametrize("scale", SCALES)
def test_ask_answers_every_request(served, scale):
    tally, cases = Counter(), CASES[scale]["ask"]

    @settings(max_examples=cases, **FUZZ)
    @given(ask_requests())
    def fuzz(request):
        response = call(served, "ask", request, tally)
        if response.error:
            tally[f"error: {response.error.split(':')[0][:40]}"] += 1
        if response.success:
            assert response.image_source and response.model

    started = time.monotonic()
    fuzz()
    print(f"\n[fuzz] /uservlm/ask: {dict(tally)} in {time.monotonic() - started:.0f} s")
    assert tally["requests"] >= cases and tally["answered"] and tally["refused"]
    still_serving(served)


@pytest.mark.parametrize("scale", SCALES)
def test_review_answers_every_request(served, scale):
    tally, cases = Counter(), CASES[scale]["review"]

    @settings(max_examples=cases, **FUZZ)
    @given(review_requests())
    def fuzz(request):
        response = call(served, "review", request, tally)
        if response.success:
            assert response.decision in ("allow", "clarify", "generic"), response
            assert response.reason

    started = time.monotonic()
    fuzz()
    print(f"\n[fuzz] /uservlm/review: {dict(tally)} in {time.monotonic() - started:.0f} s")
    assert tally["requests"] >= cases and tally["answered"] and tally["refused"]
    still_serving(served)


@pytest.mark.parametrize("scale", SCALES)
def test_synthesize_answers_every_request(served, scale):
    tally, cases = Counter(), CASES[scale]["synthesize"]

    @settings(max_examples=cases, **FUZZ)
    @given(synthesize_requests)
    def fuzz(request):
        response = call(served, "synthesize", request, tally)
        if response.success:
            assert response.audio.sample_rate > 0 and len(response.audio.data) > 0

    started = time.monotonic()
    fuzz()
    print(f"\n[fuzz] /uservlm/synthesize: {dict(tally)} in {time.monotonic() - started:.0f} s")
    assert tally["requests"] >= cases and tally["answered"] and tally["refused"]
    still_serving(served)
