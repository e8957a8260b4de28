"""Service calls between nodes composed into one process go straight to the server's callback.

rclcpp gives composed nodes intra-process communication; rclpy has none: a call between two
nodes of one process still serialises the request, crosses the loopback through DDS and wakes
both executors (a round trip costs ~5 ms on a 2-core machine, a response carrying 180 KB of
audio up to 10 ms). In a composed process (``cloud_node``, ``uservlm up --compose``) each served
service is also registered here under its fully qualified name, and
:func:`uservlm_ros.ros.service_client.call_with_timeout` calls a registered server directly: the
same callback, the same request and response objects (no serialisation), the same mutual
exclusion as its callback group, and the same timeout (the callback runs on a worker thread,
so a stuck server fails the call instead of hanging it). The services stay on DDS for every
other process: ``ros2 service call`` and remote clients see no difference.

Off unless the process calls :func:`enable` (separate processes and the tests keep DDS).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

_lock = threading.Lock()
_servers: dict[str, tuple[type, Callable]] = {}
_enabled = False
_workers: ThreadPoolExecutor | None = None
_WORKER_PREFIX = "local_service"
calls: dict[str, int] = {}  # in-process calls made, per service (for /diagnostics and logs)


def enable(workers: int = 8) -> None:
    """Serve in-process calls in this process from now on (a composed process calls it first)."""
    global _enabled, _workers
    with _lock:
        _enabled = True
        if _workers is None:
            _workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_WORKER_PREFIX)


def disable() -> None:
    """Back to DDS for every call (tests)."""
    global _enabled
    with _lock:
        _enabled = False
        _servers.clear()
        calls.clear()


def enabled() -> bool:
    return _enabled


def register(name: str, srv_type: type, callback: Callable) -> None:
    """``callback(request, response) -> response`` serves ``name`` (fully qualified) in-process."""
    if not _enabled:
        return
    with _lock:
        _servers[name] = (srv_type, callback)


def unregister(name: str, callback: Callable) -> None:
    with _lock:
        if name in _servers and _servers[name][1] is callback:
            del _servers[name]


def lookup(name: str, srv_type: type) -> Callable | None:
    with _lock:
        entry = _servers.get(name)
    return entry[1] if entry is not None and entry[0] is srv_type else None


def call(callback: Callable, srv_type: type, request, timeout: float, name: str):
    """Run ``callback`` on a worker thread; its response, or TimeoutError after ``timeout`` s.
    A call made from a worker (a served callback calling another service) runs in that thread:
    nested calls never wait for a free worker, and the outer call's timeout bounds them."""
    with _lock:
        calls[name] = calls.get(name, 0) + 1
    if threading.current_thread().name.startswith(_WORKER_PREFIX):
        return callback(request, srv_type.Response())
    future = _workers.submit(callback, request, srv_type.Response())
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise TimeoutError(f"service {name} did not answer within {timeout:.1f} s") from None


def exclusive(callback: Callable, lock: threading.Lock) -> Callable:
    """``callback`` run under ``lock``: what a mutually exclusive callback group guarantees on the
    executor, kept for in-process calls that do not go through the executor."""
    def run(request, response):
        with lock:
            return callback(request, response)
    return run
