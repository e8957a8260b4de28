"""A service server that vanishes while a call waits on it: the caller gets an error within its
timeout, never a hang. Both callers of the package are checked: ``call_with_timeout`` (what
dialogue_node's ask and vlm_node's review and synthesis use) and ``UserVLMClient`` (the CLI).
The server is a process of its own that takes the request and then dies: SIGKILL (a crash) or
SIGINT (an orderly exit, which the caller notices in about a second instead of at its timeout)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor

from uservlm_ros.ros import qos
from uservlm_ros.ros.service_client import ServiceUnavailable, call_with_timeout, wait_for_server
from uservlm_ros.srv import Synthesize
from uservlm_ros.tools.client import ServiceError, UserVLMClient

TIMEOUT = 4.0
SERVER = r"""
import sys, time
import rclpy
from uservlm_ros.ros import qos
from uservlm_ros.srv import Synthesize

rclpy.init()
node = rclpy.create_node("vanishing_server", namespace=sys.argv[1])

def never_answers(request, response):
    print("received", flush=True)
    time.sleep(600)
    return response

node.create_service(Synthesize, "uservlm/synthesize", never_answers, qos_profile=qos.SERVICES)
print("ready", flush=True)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    node.destroy_node()
    rclpy.try_shutdown()
"""


class Server:
    """The server process; ``dies_with`` is sent to it as soon as it has the request."""

    def __init__(self, namespace: str, dies_with: int):
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, namespace],
            text=True,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.process.stdout.readline().strip() == "ready"
        self.killed_at: float | None = None
        self._watcher = threading.Thread(
            target=self._kill_on_request, args=(dies_with,), daemon=True
        )
        self._watcher.start()

    def _kill_on_request(self, signum: int) -> None:
        if self.process.stdout.readline().strip() == "received":
            self.process.send_signal(signum)
            self.killed_at = time.monotonic()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def caller(rclpy_context):
    import rclpy

    node = rclpy.create_node("caller", namespace="vanish", context=rclpy_context)
    client = node.create_client(
        Synthesize,
        "uservlm/synthesize",
        qos_profile=qos.SERVICES,
        callback_group=ReentrantCallbackGroup(),
    )
    executor = MultiThreadedExecutor(num_threads=2, context=rclpy_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield client
    executor.shutdown()
    node.destroy_node()


@pytest.mark.parametrize(
    "signum, error, within",
    [
        (signal.SIGKILL, (TimeoutError, ServiceUnavailable), TIMEOUT),
        (signal.SIGINT, ServiceUnavailable, 2.5),  # an orderly exit is noticed before the timeout
    ],
    ids=["SIGKILL", "SIGINT"],
)
def test_call_with_timeout_ends_with_an_error(caller, signum, error, within):
    server = Server("vanish", signum)
    try:
        assert wait_for_server(caller, 30.0)
        started = time.monotonic()
        with pytest.raises(error) as raised:
            call_with_timeout(caller, Synthesize.Request(text="hello"), TIMEOUT)
        elapsed = time.monotonic() - started
        assert server.killed_at is not None, "the server never had the request"
        assert elapsed <= within + 0.5, f"{elapsed:.1f} s: {raised.value}"
    finally:
        server.close()


def test_the_cli_client_ends_with_an_error(tmp_path):
    server = Server("vanish_cli", signal.SIGKILL)
    try:
        with UserVLMClient(namespace="vanish_cli", node_name="vanish_cli_client") as client:
            started = time.monotonic()
            with pytest.raises(ServiceError):
                client.synthesize("hello", timeout=TIMEOUT)
            assert time.monotonic() - started <= TIMEOUT + 0.5
            assert server.killed_at is not None
    finally:
        server.close()
