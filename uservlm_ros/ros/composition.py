"""A composed process: member nodes in one process, talking to each other in-process.

rclcpp gives composed nodes intra-process communication; rclpy has none: a service call or a
message between two nodes of one process is still serialised, crosses the loopback through DDS
and wakes both executors. :class:`Composition` gives a composed process (``cloud_node``) that
shortcut by wrapping what its member nodes create, so a node module is written as any ROS node is
and never knows it may be composed. Outside the process nothing changes: every service is still
served on DDS and every message still published there.

- **Services.** A member's client of a service that a member serves calls the server's callback
  directly on a worker thread: the same request and response objects, the mutual exclusion of
  the server's callback group (a lock the executor path takes too) and the caller's timeout. A
  served callback that calls another service runs it in its own thread (no worker to wait for).
- **Handed-over topics** (``speech``). A message a member publishes reaches the members'
  subscriptions at once, from the publishing thread, before it goes out on DDS; those
  subscriptions recognise its DDS copy by its header (stamp and frame id) and drop it.
- **Shared topics** (the camera). A topic that several members subscribe to is received once, by
  the first subscription; the later ones are fed from its callback.

Callbacks reached in-process run outside their node's executor: they must be thread-safe and
must not modify the message. :meth:`Composition.install` patches ``rclpy.node.Node`` for the
whole process; only a process made of member nodes (``nodes/cloud.py``) installs it.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

HANDED_OVER_TOPICS = ("speech",)
SHARED_TOPICS = ("camera/image_raw", "camera/image_raw/compressed")
KEYS_KEPT = 256  # keys of messages handed over, remembered until their DDS copy arrives
_WORKER_PREFIX = "composition"


def header_key(msg) -> tuple:
    """A message's identity across its two deliveries: its header's stamp and frame id."""
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)


class HandedOver:
    """A subscription's callback for messages that come in-process or over DDS, each once."""

    def __init__(self, node_name: str, callback: Callable):
        self.node_name, self.callback = node_name, callback
        self.delivered = 0  # messages handed over in-process
        self.duplicates = 0  # DDS copies of those, dropped
        self._keys: deque = deque(maxlen=KEYS_KEPT)
        self._lock = threading.Lock()

    def deliver(self, msg) -> None:
        with self._lock:
            self._keys.append(header_key(msg))
            self.delivered += 1
        self.callback(msg)

    def from_dds(self, msg) -> None:
        key = header_key(msg)
        with self._lock:
            if key in self._keys:
                self._keys.remove(key)
                self.duplicates += 1
                return
        self.callback(msg)


@dataclass
class _Reader:
    node: Node
    callback: Callable
    args: tuple  # create_subscription's (msg_type, topic, qos_profile)
    kwargs: dict


@dataclass
class _SharedTopic:
    """One DDS subscription for a topic that several members read."""

    readers: list[_Reader] = field(default_factory=list)
    subscription: object = None  # the real one, owned by readers[0]

    def dispatch(self, msg) -> None:
        for reader in tuple(self.readers):
            reader.callback(msg)


class SharedSubscription:
    """What a member gets for a shared topic that another member already receives."""

    def __init__(self, topic_name: str, msg_type):
        self.topic_name, self.msg_type = topic_name, msg_type


class Composition:
    """The in-process shortcuts of one composed process (see the module docstring)."""

    def __init__(
        self,
        handed_over: tuple[str, ...] = HANDED_OVER_TOPICS,
        shared: tuple[str, ...] = SHARED_TOPICS,
        workers: int = 8,
    ):
        self.handed_over_topics, self.shared_topics = handed_over, shared
        self.calls: Counter = Counter()  # in-process calls made, per service
        self._lock = threading.RLock()
        self._servers: dict[tuple[str, type], Callable] = {}
        self._service_keys: dict[int, tuple[str, type]] = {}
        self._group_locks: dict[int, threading.Lock] = {}
        self._handed: dict[str, list[HandedOver]] = {}
        self._handed_by_subscription: dict[int, tuple[str, HandedOver]] = {}
        self._shared: dict[tuple, _SharedTopic] = {}
        self._shared_by_handle: dict[int, tuple[tuple, _Reader]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_WORKER_PREFIX)
        self._originals: dict[str, Callable] = {}

    # -- installation ---------------------------------------------------------------------------
    def install(self) -> Composition:
        """Wrap the entity factories of every node of this process from now on."""
        if self._originals:
            return self
        for name in (
            "create_service",
            "destroy_service",
            "create_client",
            "create_publisher",
            "create_subscription",
            "destroy_subscription",
        ):
            self._originals[name] = getattr(Node, name)
            setattr(Node, name, self._wrapper(name))
        return self

    def uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(Node, name, original)
        self._originals = {}
        self._pool.shutdown(wait=False)

    def _wrapper(self, name: str) -> Callable:
        hook = getattr(self, f"_{name}")

        def wrapped(node, *args, **kwargs):
            return hook(node, *args, **kwargs)

        wrapped.__name__ = name
        return wrapped

    def _original(self, name: str, node, *args, **kwargs):
        return self._originals[name](node, *args, **kwargs)

    @staticmethod
    def _names(node, topic: str, names: tuple[str, ...]) -> bool:
        resolved = node.resolve_topic_name(topic)
        return any(node.resolve_topic_name(name) == resolved for name in names)

    # -- services -------------------------------------------------------------------------------
    def _create_service(self, node, srv_type, srv_name, callback, **kwargs):
        group = kwargs.get("callback_group") or node.default_callback_group
        if isinstance(group, MutuallyExclusiveCallbackGroup):
            callback = _exclusive(
                callback, self._group_locks.setdefault(id(group), threading.Lock())
            )
        service = self._original("create_service", node, srv_type, srv_name, callback, **kwargs)
        key = (service.service_name, srv_type)
        with self._lock:
            self._servers[key] = callback
            self._service_keys[id(service)] = key
        return service

    def _destroy_service(self, node, service):
        with self._lock:
            key = self._service_keys.pop(id(service), None)
            if key is not None:
                self._servers.pop(key, None)
        return self._original("destroy_service", node, service)

    def _create_client(self, node, srv_type, srv_name, **kwargs):
        client = self._original("create_client", node, srv_type, srv_name, **kwargs)
        call_dds, ready_on_dds = client.call_async, client.service_is_ready
        logged = []

        def server():
            with self._lock:
                return self._servers.get((client.service_name, srv_type))

        def call_async(request):
            callback = server()
            if callback is None:
                return call_dds(request)
            with self._lock:
                self.calls[client.service_name] += 1
            if not logged:
                logged.append(True)
                node.get_logger().info(
                    f"composed: {client.service_name} is called in-process (no DDS)"
                )
            return self._call(callback, srv_type, request)

        client.call_async = call_async
        client.service_is_ready = lambda: server() is not None or ready_on_dds()
        return client

    def _call(self, callback: Callable, srv_type, request) -> Future:
        future = Future()

        def run():
            try:
                future.set_result(callback(request, srv_type.Response()))
            except BaseException as error:  # the caller sees it, as from a DDS call
                future.set_exception(error)

        if threading.current_thread().name.startswith(_WORKER_PREFIX):
            run()  # a served callback calling another service: never wait for a free worker
        else:
            self._pool.submit(run)
        return future

    # -- topics ---------------------------------------------------------------------------------
    def _create_publisher(self, node, msg_type, topic, *args, **kwargs):
        publisher = self._original("create_publisher", node, msg_type, topic, *args, **kwargs)
        if self._names(node, topic, self.handed_over_topics):
            publish_on_dds, name = publisher.publish, publisher.topic_name

            def publish(msg):
                with self._lock:
                    readers = tuple(self._handed.get(name, ()))
                for reader in readers:
                    reader.deliver(msg)
                publish_on_dds(msg)

            publisher.publish = publish
        return publisher

    def _create_subscription(self, node, msg_type, topic, callback, *args, **kwargs):
        if self._names(node, topic, self.handed_over_topics):
            reader = HandedOver(node.get_name(), callback)
            subscription = self._original(
                "create_subscription", node, msg_type, topic, reader.from_dds, *args, **kwargs
            )
            with self._lock:
                self._handed.setdefault(subscription.topic_name, []).append(reader)
                self._handed_by_subscription[id(subscription)] = (subscription.topic_name, reader)
            return subscription
        if self._names(node, topic, self.shared_topics):
            return self._subscribe_shared(node, msg_type, topic, callback, args, kwargs)
        return self._original(
            "create_subscription", node, msg_type, topic, callback, *args, **kwargs
        )

    def _subscribe_shared(self, node, msg_type, topic, callback, args, kwargs):
        key = (node.resolve_topic_name(topic), msg_type, bool(kwargs.get("raw", False)))
        reader = _Reader(node, callback, (msg_type, topic, *args), kwargs)
        with self._lock:
            shared = self._shared.setdefault(key, _SharedTopic())
            shared.readers.append(reader)
            if shared.subscription is None:
                handle = shared.subscription = self._receive(shared, reader)
            else:
                handle = SharedSubscription(key[0], msg_type)
            self._shared_by_handle[id(handle)] = (key, reader)
        return handle

    def _receive(self, shared: _SharedTopic, reader: _Reader):
        msg_type, topic, *args = reader.args
        return self._original(
            "create_subscription",
            reader.node,
            msg_type,
            topic,
            shared.dispatch,
            *args,
            **reader.kwargs,
        )

    def _destroy_subscription(self, node, subscription):
        with self._lock:
            handed = self._handed_by_subscription.pop(id(subscription), None)
            if handed is not None:
                self._handed[handed[0]].remove(handed[1])
            entry = self._shared_by_handle.pop(id(subscription), None)
            if entry is None:
                return self._original("destroy_subscription", node, subscription)
            key, reader = entry
            shared = self._shared[key]
            owner = shared.readers[0] is reader
            shared.readers.remove(reader)
            if not owner:
                return True
            done = self._original("destroy_subscription", reader.node, shared.subscription)
            shared.subscription = None
            if shared.readers and shared.readers[0].node.context.ok():  # not while shutting down
                shared.subscription = self._receive(shared, shared.readers[0])
            return done

    # -- what it did ----------------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        """Key/values for /diagnostics: in-process calls, hand-overs and shared subscriptions."""
        values = {}
        with self._lock:
            for service, count in sorted(self.calls.items()):
                values[f"calls {service}"] = str(count)
            for topic, readers in sorted(self._handed.items()):
                for reader in readers:
                    values[f"handed over {topic} -> {reader.node_name}"] = str(reader.delivered)
                    values[f"dds copies dropped {topic} -> {reader.node_name}"] = str(
                        reader.duplicates
                    )
            for (topic, _, _), shared in sorted(self._shared.items(), key=lambda item: item[0][0]):
                names = [reader.node.get_name() for reader in shared.readers]
                if names:
                    values[f"subscribers {topic}"] = f"{names[0]} (on DDS)" + "".join(
                        f", {name} (fed in-process)" for name in names[1:]
                    )
        return values


def _exclusive(callback: Callable, lock: threading.Lock) -> Callable:
    """``callback`` under ``lock``: a mutually exclusive callback group's guarantee, kept for
    calls that do not go through the executor."""

    def run(request, response):
        with lock:
            return callback(request, response)

    return run
