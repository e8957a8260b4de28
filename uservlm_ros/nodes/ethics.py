"""ethics_node: ask before personalising on what was inferred from a face (paper §8).

Services ``uservlm/review`` (uservlm_ros/srv/Review) and ``uservlm/forget`` (Forget), around
:class:`uservlm_ros.engines.ethics.EthicsEngine`. ``vlm_node`` calls the review for every ask when
this node is running. If a clarifying question is pending for the user, the request's question is
taken as their reply: it is remembered, and the response names the original question to answer.
Consent is persisted per user in ``store_dir``; no image is ever stored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from uservlm_ros.engines.ethics.engine import EthicsConfig, EthicsEngine
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.runner import run_node
from uservlm_ros.srv import Forget, Review


def default_store_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "uservlm_ros" / "consent")


class EthicsNode(EngineNode):
    EXTRA_PARAMETERS = {
        "policy_path": (
            "",
            "Ethics policy YAML; empty = config/ethics_policy.yaml of the package",
        ),
        "store_dir": (
            "",
            "Consent store directory; empty = $XDG_DATA_HOME/uservlm_ros/consent "
            "(~/.local/share/...)",
        ),
        "use_embeddings": (
            True,
            "Add the MiniLM similarity term to the rules (false: rules only, no model)",
        ),
        "torch_threads": (
            1,
            "torch threads in this process (1 is fastest for one sentence at a time); 0 = torch's "
            "default",
        ),
    }

    def __init__(self, **kwargs):
        super().__init__("ethics_node", **kwargs)
        self._store_error_said = ""

    def engine_config(self) -> EthicsConfig:
        return EthicsConfig(
            policy_path=self.param("policy_path") or None,
            store_dir=self.param("store_dir") or default_store_dir(),
            use_embeddings=self.param("use_embeddings"),
            torch_threads=self.param("torch_threads") or None,
        )

    def load_engine(self, config: EthicsConfig) -> EthicsEngine:
        engine = EthicsEngine(config).load()
        for moved in getattr(engine, "moved_aside", ()) or ():
            self.get_logger().warning(f"corrupt consent record moved aside: {moved}")
        self._report_store(engine)
        return engine

    def describe_engine(self) -> str:
        return f"ethics policy, store {self.param('store_dir') or default_store_dir()}"

    def health_problem(self) -> str:
        error = self.engine.store_error if self.engine is not None else ""
        if not error:
            return ""
        return f"consent store unavailable, answers that need consent are generic: {error}"

    def diagnostic_values(self) -> dict[str, str]:
        if self.engine is None:
            return {}
        return {
            "consent_store": "error" if self.engine.store_error else "ok",
            "consent_store_error": self.engine.store_error,
            "consent_store_failures": str(self.engine.store_failures),
        }

    def _report_store(self, engine: EthicsEngine | None) -> None:
        """Log the consent store failing and recovering, once each time."""
        error = engine.store_error if engine is not None else ""
        if error == self._store_error_said:
            return
        if error:
            self.get_logger().error(
                f"consent store unavailable ({error}): answers that need "
                "consent are generic until it works again"
            )
        else:
            self.get_logger().info("consent store works again")
        self._store_error_said = error

    def create_interfaces(self) -> None:
        # One at a time: the engine's consent store is single-writer.
        group = MutuallyExclusiveCallbackGroup()
        self.serve(Review, "uservlm/review", self.on_review, group)
        self.serve(Forget, "uservlm/forget", self.on_forget, group)

    def on_review(self, request: Review.Request, response: Review.Response):
        started = time.perf_counter()
        with self.answering(response, "ethics", bad_request=(ValueError, TypeError)):
            if "\ufffd" in request.question or "\ufffd" in request.user_id:
                raise ValueError("question or user_id is not valid UTF-8")
            resolution = self.engine.resolve_reply(request.user_id, request.question)
            if resolution is not None:
                response.decision = resolution.decision
                response.reason = resolution.reason
                response.topic = resolution.topic or ""
                response.user_context = resolution.user_context
                response.resolved_reply = True
                response.original_question = resolution.original_question
            else:
                inferred = (
                    {name: None for name in request.inferred_attributes}
                    if request.has_inferred
                    else None
                )
                review = self.engine.review(request.question, request.user_id, inferred)
                response.decision = review.decision
                response.clarifying_question = review.clarifying_question
                response.reason = review.reason
                response.topic = review.topic or ""
                response.attributes = list(review.attributes)
                response.sensitive = list(review.sensitive)
                response.user_context = review.user_context
        response.review_seconds = time.perf_counter() - started
        if response.success:
            self.stage_times.add(review=response.review_seconds)
        self._report_store(self.engine)
        return response

    def on_forget(self, request: Forget.Request, response: Forget.Response):
        with self.answering(response, "ethics", bad_request=(ValueError, TypeError)):
            response.existed = bool(self.engine.forget(request.user_id))
        return response


def main(args=None) -> int:
    return run_node(lambda: EthicsNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
