"""A small rclpy client for the cloud services: the pip-only twin of ``ros2 service call``.

Owns its rclpy context, so it can live inside a test, a script or the evaluation harness without
touching anyone else's rclpy state.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import array_to_audio, encoded_image_message, rgb_to_image
from uservlm_ros.ros.service_client import GONE_POLL_SECONDS, SERVER_GONE_SECONDS
from uservlm_ros.srv import Ask, Forget, Identify, Review, Synthesize, Transcribe


class ServiceError(RuntimeError):
    """The service could not be reached or did not answer in time."""


@dataclass
class Reply:
    response: object
    round_trip_seconds: float


def _join(namespace: str, name: str) -> str:
    namespace = namespace.strip("/")
    return f"/{namespace}/{name}" if namespace else f"/{name}"


class UserVLMClient:
    def __init__(self, namespace: str = "", node_name: str | None = None):
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(
            node_name or f"uservlm_client_{os.getpid()}", context=self.context
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.clients = {
            "ask": self.node.create_client(
                Ask, _join(namespace, "uservlm/ask"), qos_profile=qos.SERVICES
            ),
            "transcribe": self.node.create_client(
                Transcribe, _join(namespace, "uservlm/transcribe"), qos_profile=qos.SERVICES
            ),
            "synthesize": self.node.create_client(
                Synthesize, _join(namespace, "uservlm/synthesize"), qos_profile=qos.SERVICES
            ),
            "review": self.node.create_client(
                Review, _join(namespace, "uservlm/review"), qos_profile=qos.SERVICES
            ),
            "forget": self.node.create_client(
                Forget, _join(namespace, "uservlm/forget"), qos_profile=qos.SERVICES
            ),
            "identify": self.node.create_client(
                Identify, _join(namespace, "uservlm/identify"), qos_profile=qos.SERVICES
            ),
        }

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_for(self, service: str, timeout: float) -> bool:
        """Spin until ``service`` has a server or the deadline passes."""
        client = self.clients[service]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.service_is_ready():
                return True
            self.executor.spin_once(timeout_sec=0.1)
        return client.service_is_ready()

    def call(self, service: str, request, timeout: float) -> Reply:
        client = self.clients[service]
        started = time.monotonic()
        if not self.wait_for(service, timeout):
            raise ServiceError(
                f"service {client.srv_name} is not available after {timeout:.0f} s "
                "(is the cloud side up? try `uservlm up --cloud`)"
            )
        sent = time.perf_counter()
        future = client.call_async(request)
        deadline, gone_since = started + timeout, None
        while not future.done() and time.monotonic() < deadline:
            step = min(GONE_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
            self.executor.spin_until_future_complete(future, timeout_sec=step)
            if future.done() or client.service_is_ready():
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= SERVER_GONE_SECONDS:
                client.remove_pending_request(future)
                raise ServiceError(f"service {client.srv_name} went away during the call")
        if not future.done():
            client.remove_pending_request(future)
            raise ServiceError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
        return Reply(future.result(), time.perf_counter() - sent)

    def ask(
        self,
        question: str,
        image: np.ndarray | bytes | None = None,
        user_id: str = "",
        speak: bool = False,
        timeout: float = 60.0,
    ) -> Reply:
        """``image``: an RGB array (sent as rgb8) or the bytes of a JPEG/PNG file (sent as they
        are, in ``compressed_image``)."""
        request = Ask.Request(question=question, user_id=user_id, speak=speak)
        if isinstance(image, (bytes, bytearray)):
            request.compressed_image = encoded_image_message(bytes(image))
        elif image is not None:
            request.image = rgb_to_image(image)
        return self.call("ask", request, timeout)

    def transcribe(
        self, samples: np.ndarray, sample_rate: int, language: str = "", timeout: float = 60.0
    ) -> Reply:
        request = Transcribe.Request(language=language)
        request.audio = array_to_audio(np.asarray(samples, dtype=np.int16), sample_rate)
        return self.call("transcribe", request, timeout)

    def identify(
        self, image: np.ndarray | bytes, identify: bool = True, timeout: float = 30.0
    ) -> Reply:
        """Who person_node says the addressee in ``image`` is (an RGB array, or JPEG/PNG
        bytes)."""
        request = Identify.Request(identify=identify)
        if isinstance(image, (bytes, bytearray)):
            request.compressed_image = encoded_image_message(bytes(image))
        else:
            request.image = rgb_to_image(image)
        return self.call("identify", request, timeout)

    def forget(self, user_id: str, timeout: float = 30.0) -> Reply:
        return self.call("forget", Forget.Request(user_id=user_id), timeout)

    def synthesize(self, text: str, timeout: float = 60.0) -> Reply:
        return self.call("synthesize", Synthesize.Request(text=text), timeout)
