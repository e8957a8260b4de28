"""Topic messages between nodes composed into one process are handed over in-process too.

The topic counterpart of :mod:`uservlm_ros.ros.local_services`. rclpy has no intra-process
communication: a message from asr_node to dialogue_node in one process is still serialised,
goes through Fast DDS and wakes dialogue_node's executor before its callback sees it (~1–3 ms
on a 2-core machine, more when the executors are busy). In a composed process a subscription
registered here (:func:`subscribe`) is also called directly by :func:`publish` from the
publishing thread, with the very message object (no serialisation, no executor); the message is
then published on DDS as always, so other processes (the robot, the bench, ``ros2 topic echo``)
see every message. The subscription's DDS callback (:meth:`LocalSubscription.from_dds`) then
recognises that copy by its key (default: header stamp and frame id) and drops it: each message
reaches the node once. The subscription counts both (``delivered`` in-process, ``duplicates``
dropped) for /diagnostics.

Rules for a subscription registered here: its callback must be thread-safe (it runs on the
publisher's thread, outside the executor and its callback groups — dialogue_node's ``on_speech``
only puts the utterance on its turn queue) and must not modify the message (the publisher's
object). Off unless the process calls :func:`enable` (separate processes and the tests keep DDS).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

_lock = threading.Lock()
_subscriptions: dict[str, list["LocalSubscription"]] = {}
_enabled = False
KEYS_KEPT = 256  # locally delivered keys remembered until their DDS copy arrives


def header_key(msg) -> tuple:
    """A message's identity across its two deliveries: its header's stamp and frame id."""
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)


def enable() -> None:
    """Hand messages over in-process in this process from now on (a composed process calls it)."""
    global _enabled
    with _lock:
        _enabled = True


def disable() -> None:
    """Back to DDS only (tests)."""
    global _enabled
    with _lock:
        _enabled = False
        _subscriptions.clear()


def enabled() -> bool:
    return _enabled


class LocalSubscription:
    """``callback`` for the messages of topic ``name`` (fully qualified), whichever way they come."""

    def __init__(self, name: str, callback: Callable, key: Callable = header_key):
        self.name, self.callback, self.key = name, callback, key
        self.delivered = 0  # messages handed over in-process
        self.duplicates = 0  # DDS copies of messages already delivered in-process, dropped
        self._keys: deque = deque(maxlen=KEYS_KEPT)
        self._keys_lock = threading.Lock()

    def deliver(self, msg) -> None:
        """The in-process delivery (called by :func:`publish`, before the DDS copy is sent)."""
        with self._keys_lock:
            self._keys.append(self.key(msg))
            self.delivered += 1
        self.callback(msg)

    def from_dds(self, msg) -> None:
        """The DDS subscription's callback: the copy of a message delivered in-process is
        dropped; any other message (from another process) goes to ``callback``."""
        key = self.key(msg)
        with self._keys_lock:
            if key in self._keys:
                self._keys.remove(key)
                self.duplicates += 1
                return
        self.callback(msg)


def subscribe(name: str, callback: Callable, key: Callable = header_key) -> LocalSubscription:
    """A :class:`LocalSubscription` for ``name``; registered for in-process delivery when this
    process has :func:`enable`\\d it. Give its ``from_dds`` to the DDS subscription either way."""
    subscription = LocalSubscription(name, callback, key)
    with _lock:
        if _enabled:
            _subscriptions.setdefault(name, []).append(subscription)
    return subscription


def unsubscribe(subscription: LocalSubscription) -> None:
    with _lock:
        members = _subscriptions.get(subscription.name, [])
        if subscription in members:
            members.remove(subscription)


def publish(publisher, msg) -> int:
    """Hand ``msg`` to this process's subscriptions of the publisher's topic, then publish it on
    DDS. Returns how many in-process subscriptions it reached."""
    with _lock:
        local = list(_subscriptions.get(publisher.topic_name, ())) if _enabled else []
    for subscription in local:
        subscription.deliver(msg)
    publisher.publish(msg)
    return len(local)
