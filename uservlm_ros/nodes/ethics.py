"""ethics_node: ask before personalising on what was inferred from a face (paper §8).

Services ``uservlm/review`` (uservlm_ros/srv/Review) and ``uservlm/forget`` (Forget), around
:class:`uservlm_ros.engines.ethics.EthicsEngine`. ``vlm_node`` calls the review for every ask when
this node is running. If a clarifying question is pending for the user, the request's question is
taken as their reply: it is remembered, and the response names the original question to answer.
Consent is persisted per user in ``store_dir``; no image is ever stored.

Persons resolved from the face by person_node are session persons: their consent is held in
memory only, and dropped when person_node reports them gone (``persons/forgotten``). When such a
person asks to be remembered ("remember me", or a yes to "Shall I remember you next time?"), this
node has person_node store their face template (``uservlm/remember_person``) and then moves their
consent to disk. ``uservlm/forget`` and "forget me" delete everything: the consent here, the face
template and gallery entry in person_node (``uservlm/forget_person``), and, through
``persons/forgotten``, what vlm_node cached of them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from std_msgs.msg import String

from uservlm_ros.engines.ethics.engine import (
    DECLINE,
    FORGET,
    REMEMBER,
    EthicsConfig,
    EthicsEngine,
)
from uservlm_ros.engines.person.identity import valid_person_id
from uservlm_ros.ros import qos
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.runner import run_node
from uservlm_ros.ros.service_client import ServiceUnavailable, call_with_timeout, wait_for_server
from uservlm_ros.srv import Forget, RememberPerson, Review

FORGOTTEN_TOPIC = "persons/forgotten"
ACKNOWLEDGE = "acknowledge"


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
        "session_ttl_s": (
            EthicsConfig.session_ttl_s,
            "A session person's in-memory consent unused this long is dropped, seconds (a "
            "safety net: person_node reports departures)",
        ),
        "person_timeout": (
            10.0,
            "Seconds to wait for person_node when remembering or forgetting a person",
        ),
    }

    def __init__(self, **kwargs):
        super().__init__("ethics_node", **kwargs)
        people = ReentrantCallbackGroup()
        self._remember_person = self.create_client(
            RememberPerson,
            "uservlm/remember_person",
            qos_profile=qos.SERVICES,
            callback_group=people,
        )
        self._forget_person = self.create_client(
            Forget, "uservlm/forget_person", qos_profile=qos.SERVICES, callback_group=people
        )
        self._forgotten = self.create_publisher(String, FORGOTTEN_TOPIC, qos.EVENTS)
        self.create_subscription(
            String,
            FORGOTTEN_TOPIC,
            self.on_forgotten,
            qos.EVENTS,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.sessions_dropped = 0
        self._store_error_said = ""

    def engine_config(self) -> EthicsConfig:
        return EthicsConfig(
            policy_path=self.param("policy_path") or None,
            store_dir=self.param("store_dir") or default_store_dir(),
            use_embeddings=self.param("use_embeddings"),
            torch_threads=self.param("torch_threads") or None,
            session_ttl_s=self.param("session_ttl_s"),
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
            return {"session_persons_dropped": str(self.sessions_dropped)}
        return {
            "session_persons_dropped": str(self.sessions_dropped),
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
            self._review(request, response)
        response.review_seconds = time.perf_counter() - started
        if response.success:
            self.stage_times.add(review=response.review_seconds)
        self._report_store(self.engine)
        return response

    def _review(self, request: Review.Request, response: Review.Response) -> None:
        engine, user = self.engine, request.user_id
        words = engine.policy.persons
        asked = engine.speaker_request(user, request.question)
        if asked == FORGET:
            self.forget_everywhere(user)
            response.decision, response.acknowledgement = ACKNOWLEDGE, words.forgotten
            response.person_action = "forgotten"
            response.reason = "the person asked to be forgotten: everything about them deleted"
            return
        remembered, why = self.remember(user) if asked == REMEMBER else (False, "")
        resolution = engine.resolve_reply(user, request.question)
        if resolution is not None:
            response.decision = resolution.decision
            response.reason = resolution.reason
            response.topic = resolution.topic or ""
            response.user_context = resolution.user_context
            response.resolved_reply = True
            response.original_question = resolution.original_question
            response.follow_up = resolution.follow_up
            if asked == REMEMBER:  # "yes, and remember me": the answer, then the outcome
                response.follow_up = words.remembered if remembered else words.unavailable
                response.reason += f"; {why}"
        elif asked == REMEMBER:
            response.decision = ACKNOWLEDGE
            response.acknowledgement = words.remembered if remembered else words.unavailable
            response.reason = why
        elif asked == DECLINE:
            response.decision, response.acknowledgement = ACKNOWLEDGE, words.declined
            response.person_action = "declined"
            response.reason = "the person does not want to be remembered: kept for this visit only"
        else:
            inferred = (
                {name: None for name in request.inferred_attributes}
                if request.has_inferred
                else None
            )
            review = engine.review(request.question, user, inferred)
            response.decision = review.decision
            response.clarifying_question = review.clarifying_question
            response.reason = review.reason
            response.topic = review.topic or ""
            response.attributes = list(review.attributes)
            response.sensitive = list(review.sensitive)
            response.user_context = review.user_context
        if remembered:
            response.person_action = "remembered"

    # -- the person themselves -----------------------------------------------------------------
    def remember(self, person_id: str) -> tuple[bool, str]:
        """The person agreed to be remembered: person_node stores their face template, then
        their consent moves to disk. (done, why in words); never raises."""
        from uservlm_ros.engines.ethics.consent import StoreError

        timeout = self.param("person_timeout")
        try:
            done = call_with_timeout(
                self._remember_person, RememberPerson.Request(person_id=person_id), timeout
            )
        except (ServiceUnavailable, TimeoutError, RuntimeError) as error:
            self.get_logger().warning(f"cannot remember {person_id}: {error}")
            return False, f"the person asked to be remembered, but person_node failed: {error}"
        if not done.success:
            self.get_logger().warning(f"cannot remember {person_id}: {done.error}")
            return False, f"the person asked to be remembered, but: {done.error}"
        try:
            kept = self.engine.persist(person_id)
        except StoreError as error:  # the template is stored; their consent stays in memory
            self.get_logger().error(f"{person_id}'s consent not moved to disk: {error}")
            return True, f"face template stored; consent kept in memory only ({error})"
        self.get_logger().info(f"{person_id} is remembered (face template and consent on disk)")
        return True, "the person asked to be remembered: face template stored" + (
            ", consent kept on disk" if kept else " (no consent store: consent in memory)"
        )

    def forget_everywhere(self, user_id: str) -> bool:
        """Delete everything about ``user_id``: consent here, for a person id also the face
        template and gallery entry in person_node; then ``persons/forgotten`` tells the others.
        True if anything existed. RuntimeError when person_node could not confirm (the consent
        is gone already; calling again is safe)."""
        existed = bool(self.engine.forget(user_id))
        if valid_person_id(user_id):
            timeout = self.param("person_timeout")
            if not wait_for_server(self._forget_person, timeout):
                raise RuntimeError(
                    "person_node is not reachable: the face template could not be deleted "
                    "(the consent is; try again when person_node runs)"
                )
            done = call_with_timeout(self._forget_person, Forget.Request(user_id=user_id), timeout)
            if not done.success:
                raise RuntimeError(f"person_node could not forget the face: {done.error}")
            existed = existed or done.existed
        self._forgotten.publish(String(data=user_id))
        return existed

    def on_forgotten(self, message: String) -> None:
        """person_node forgot a session person (they left): drop their in-memory consent."""
        if self.engine is not None and message.data and self.engine.drop_session(message.data):
            self.sessions_dropped += 1

    def on_forget(self, request: Forget.Request, response: Forget.Response):
        with self.answering(response, "ethics", bad_request=(ValueError, TypeError)):
            response.existed = self.forget_everywhere(request.user_id)
        return response


def main(args=None) -> int:
    return run_node(lambda: EthicsNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
