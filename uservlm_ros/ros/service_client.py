"""Calling a service from inside a callback of a MultiThreadedExecutor, with a deadline.

rclpy futures complete on an executor thread; waiting on a threading.Event (instead of spinning)
is what makes a nested call safe. The caller's callback group must be reentrant.
"""

from __future__ import annotations

import threading
import time

# rclpy's Client.wait_for_service() sleeps in 0.25 s steps (ros2/rclpy#58): a server that is
# momentarily not "ready" in the graph cache (seen when another participant joins or leaves)
# cost a whole turn 250 ms. Poll finely instead.
READY_POLL_SECONDS = 0.002
# A server that leaves the graph while a call waits (it exited, or DDS saw its participant go)
# ends the call at once instead of at its timeout, once it has been gone this long (a server can
# look briefly not ready while other participants join or leave).
SERVER_GONE_SECONDS = 1.0
GONE_POLL_SECONDS = 0.1


class ServiceUnavailable(RuntimeError):
    pass


def wait_for_server(client, timeout: float, poll: float = READY_POLL_SECONDS) -> bool:
    """True as soon as ``client``'s server is ready, False after ``timeout`` seconds."""
    deadline = time.monotonic() + max(0.0, timeout)
    while not client.service_is_ready():
        if time.monotonic() >= deadline or not client.context.ok():
            return client.service_is_ready()
        time.sleep(poll)
    return True


def call_with_timeout(client, request, timeout: float):
    """Send ``request`` and wait at most ``timeout`` seconds for the response."""
    if not wait_for_server(client, min(timeout, 2.0)):
        raise ServiceUnavailable(f"service {client.srv_name} is not available")
    done = threading.Event()
    deadline = time.monotonic() + timeout
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    gone_since = None
    while not done.wait(max(0.0, min(GONE_POLL_SECONDS, deadline - time.monotonic()))):
        now = time.monotonic()
        if now >= deadline:
            client.remove_pending_request(future)
            raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.1f} s")
        if client.service_is_ready():
            gone_since = None
        elif gone_since is None:
            gone_since = now
        elif now - gone_since >= SERVER_GONE_SECONDS:
            client.remove_pending_request(future)
            raise ServiceUnavailable(f"service {client.srv_name} went away during the call")
    if future.exception() is not None:
        raise RuntimeError(f"service {client.srv_name} failed: {future.exception()}")
    return future.result()
