"""The shape every model-holding node shares: a lifecycle node around one plain-Python engine.

- parameters are declared in ``__init__`` with a description each; their defaults come from the
  engine's config dataclass (one source of truth), YAML files override them;
- the engine loads in ``on_configure``; a failure returns FAILURE with the reason logged and shown
  on /diagnostics, and the node stays up so a fixed configuration can be retried;
- services are created in ``on_activate`` (``serve``) and destroyed in ``on_deactivate``;
- /diagnostics once a second: lifecycle state, model, request and error counts, stage timings;
- ``autostart`` (default true) configures and activates the node at start-up, so it works without
  a lifecycle manager (``uservlm up``); set it false to drive the transitions from outside.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from uservlm_ros.ros import qos
from uservlm_ros.ros.diagnostics import ERROR, OK, WARN, publish_status
from uservlm_ros.ros.parameters import dataclass_parameters, declare


class StageTimes:
    """Rolling per-stage wall times (seconds) for diagnostics and benchmarks."""

    def __init__(self, window: int = 100):
        self._lock = threading.Lock()
        self._times: dict[str, deque] = {}
        self._window = window

    def add(self, **stages: float) -> None:
        with self._lock:
            for stage, seconds in stages.items():
                self._times.setdefault(stage, deque(maxlen=self._window)).append(float(seconds))

    def medians(self) -> dict[str, float]:
        with self._lock:
            return {stage: statistics.median(v) for stage, v in self._times.items() if v}


class EngineNode(LifecycleNode):
    """Base class: subclasses set CONFIG (a dataclass) and DESCRIPTIONS, and implement
    ``load_engine(config)``, ``create_interfaces()``, ``destroy_interfaces()``."""

    CONFIG: type = None
    DESCRIPTIONS: dict[str, str] = {}
    EXTRA_PARAMETERS: dict[str, tuple[Any, str]] = {}

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self.engine = None
        self.load_error = ""
        self.requests = 0
        self.errors = 0
        self.last_error = ""
        self.stage_times = StageTimes()
        self._counter_lock = threading.Lock()
        self._served = []
        self._declare(self.config_defaults())
        self._declare({name: value for name, value in self.EXTRA_PARAMETERS.items()})
        self._declare(
            {
                "autostart": (
                    True,
                    "Configure and activate this node at start-up "
                    "(false: wait for a lifecycle manager)",
                )
            }
        )
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._diagnostics_timer = self.create_timer(1.0, self.publish_diagnostics)

    # -- parameters ---------------------------------------------------------------------------
    @classmethod
    def config_defaults(cls) -> dict[str, tuple[Any, str]]:
        """{name: (default, description)} from the engine's config dataclass."""
        return dataclass_parameters(cls.CONFIG, cls.DESCRIPTIONS) if cls.CONFIG is not None else {}

    @classmethod
    def declared_parameter_names(cls) -> set[str]:
        return set(cls.config_defaults()) | set(cls.EXTRA_PARAMETERS) | {"autostart"}

    def _declare(self, parameters: dict[str, tuple[Any, str]]) -> None:
        declare(self, parameters)

    def param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def engine_config(self):
        return self.CONFIG(**{name: self.param(name) for name in self.config_defaults()})

    # -- lifecycle ----------------------------------------------------------------------------
    def load_engine(self, config):  # pragma: no cover - abstract
        raise NotImplementedError

    def create_interfaces(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def serve(self, srv_type, name: str, callback, callback_group=None):
        """Create a service with the package's service QoS; destroyed on deactivate."""
        group = callback_group or ReentrantCallbackGroup()
        service = self.create_service(
            srv_type,
            name,
            self._guarded(callback, name),
            qos_profile=qos.SERVICES,
            callback_group=group,
        )
        self._served.append(service)
        return service

    def _guarded(self, callback, name: str):
        """``callback`` that always answers: rclpy sends no response when a service callback
        raises, and the client then waits for its whole timeout. An exception that escapes (a
        bug: the callbacks catch their engines' errors) becomes an error response, is logged and
        counted, and the node keeps serving."""

        def serve_request(request, response):
            try:
                return callback(request, response)
            except Exception as error:
                response.success = False
                response.error = f"{name} failed: internal error: {type(error).__name__}: {error}"
                self.get_logger().error(response.error)
                self.count_request(response.error)
                return response

        return serve_request

    def destroy_interfaces(self) -> None:
        for service in self._served:
            self.destroy_service(service)
        self._served = []

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        started = time.perf_counter()
        try:
            config = self.engine_config()
            self.engine = self.load_engine(config)
        except Exception as error:  # any load failure is reported, never fatal to the process
            self.load_error = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"configure failed: {self.load_error}")
            self.engine = None
            return TransitionCallbackReturn.FAILURE
        self.load_error = ""
        self.get_logger().info(
            f"configured in {time.perf_counter() - started:.1f} s: {self.describe_engine()}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.create_interfaces()
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.destroy_interfaces()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.engine = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.destroy_interfaces()
        self.engine = None
        return TransitionCallbackReturn.SUCCESS

    def autostart(self) -> bool:
        """Configure and activate when the ``autostart`` parameter says so. True when active."""
        if not self.param("autostart"):
            return False
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # -- bookkeeping --------------------------------------------------------------------------
    def count_request(self, error: str = "") -> None:
        with self._counter_lock:
            self.requests += 1
            if error:
                self.errors += 1
                self.last_error = error

    @contextmanager
    def answering(self, response, engine: str, bad_request=(ValueError,)):
        """Run a service callback's work: success on return; a ``bad_request`` exception becomes
        "bad request: ..."; any other one "<engine> engine failed: ..." (logged). Never raises, so
        the node keeps serving; every request is counted."""
        try:
            yield
            response.success = True
        except bad_request as error:
            response.success, response.error = False, f"bad request: {error}"
        except Exception as error:  # engine fault: report it, keep serving
            response.success, response.error = (
                False,
                f"{engine} engine failed: {type(error).__name__}: {error}",
            )
            self.get_logger().error(response.error)
        self.count_request(response.error)

    def describe_engine(self) -> str:
        return type(self.engine).__name__ if self.engine is not None else "no engine"

    def diagnostic_values(self) -> dict[str, str]:
        """Extra key/values for /diagnostics; subclasses extend."""
        return {}

    def health_problem(self) -> str:
        """A fault of the loaded engine that /diagnostics reports at ERROR level while it lasts
        (the node keeps serving); "" when there is none. Subclasses extend."""
        return ""

    def publish_diagnostics(self) -> None:
        state = (
            self._state_machine.current_state[1] if hasattr(self, "_state_machine") else "unknown"
        )
        if self.load_error:
            level, message = ERROR, f"load failed: {self.load_error}"
        elif self.engine is None:
            level, message = WARN, f"{state}: no engine loaded"
        elif problem := self.health_problem():
            level, message = ERROR, f"{state}: {problem}"
        else:
            level, message = OK, f"{state}: {self.describe_engine()}"
        values = {
            "state": state,
            "requests": self.requests,
            "errors": self.errors,
            "last_error": self.last_error,
        }
        values.update({f"median_{k}": f"{v:.4f}" for k, v in self.stage_times.medians().items()})
        values.update(self.diagnostic_values())
        publish_status(self, self._diagnostics, level, message, values)
