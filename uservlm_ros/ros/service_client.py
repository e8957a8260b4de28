"""Calling a service from inside a callback of a MultiThreadedExecutor, with a deadline.

rclpy futures complete on an executor thread; waiting on a threading.Event (instead of spinning)
is what makes a nested call safe. The caller's callback group must be reentrant.
"""
from __future__ import annotations

import threading


class ServiceUnavailable(RuntimeError):
    pass


def call_with_timeout(client, request, timeout: float):
    """Send ``request`` and wait at most ``timeout`` seconds for the response."""
    if not client.service_is_ready():
        if not client.wait_for_service(timeout_sec=min(timeout, 2.0)):
            raise ServiceUnavailable(f"service {client.srv_name} is not available")
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        client.remove_pending_request(future)
        raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.1f} s")
    if future.exception() is not None:
        raise RuntimeError(f"service {client.srv_name} failed: {future.exception()}")
    return future.result()
