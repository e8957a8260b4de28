"""Ethics engine: ask before personalising on what a face suggests (User-VLM 360°, §8).

A User-VLM answer can lean on the asker's apparent age, gender, ethnicity or mood. For questions
where that matters (food, travel, clothing, careers, health, …) the engine first asks a clarifying
question, and personalises only after the person agreed or told us what they want::

    engine = EthicsEngine(EthicsConfig(store_dir="~/.ros/uservlm_consent")).load()
    review = engine.review("What should I eat tonight?", user_id="p-17")
    review.decision             # "clarify"
    review.clarifying_question  # "Would you like a suggestion tailored to you? Tell me about …"
    # … the robot says it; the same person's next utterance is their reply:
    resolution = engine.resolve_reply("p-17", "I'm vegetarian")
    resolution.original_question  # "What should I eat tonight?"
    resolution.decision           # "allow"
    resolution.user_context       # "The user said: I'm vegetarian."

Routing: while ``pending(user_id)`` is not None, pass that person's next utterance to
``resolve_reply``; ``review`` with a new question drops an unanswered clarification.
``resolve_reply`` returns None when nothing is pending (expired, never asked, anonymous): then
the utterance is a new question for ``review``.

Anonymous users (empty user id) are never remembered. Asking them is pointless — their reply could
not be tied to them, nor kept — so questions that would need a clarification get ``generic``.
While the consent store cannot be read or written (a full disk, no permission, a path in the way)
nobody can be remembered either: everyone is reviewed as an anonymous user, ``reason`` says why,
:attr:`EthicsEngine.store_error` says what failed, and the store is tried again at the next
request, so the engine recovers by itself once the store works.

Persons the camera sees (ids from the person engine, ``p`` + 16 hex digits) are *session persons*
until they agree to be remembered: what they say is held in memory only and dropped when they
leave (``drop_session``). ``speaker_request`` reads what an utterance asks about the person
themselves ("remember me", "forget me", a yes or no to "Shall I remember you next time?", which a
consent given in a reply offers as ``Resolution.follow_up``); the caller remembers the face and
then calls ``persist``, which moves their record to disk.

Decisions (see :mod:`uservlm_ros.engines.ethics.decision`): ``allow`` answer as usual, leaning only
on
``inferred_allowed`` and ``user_context``; ``clarify`` say ``clarifying_question`` instead;
``generic`` answer without leaning on any protected attribute. ``reason`` says which rule, example
sentence and similarity fired, and what the person told us. Inferred attribute *values* are
never stored, logged or spoken; only their names are used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from uservlm_ros.engines.ethics.classifier import QuestionClassifier
from uservlm_ros.engines.ethics.consent import (
    DECLINED,
    GRANTED,
    STATED,
    Consent,
    ConsentStore,
    Pending,
    StoreError,
)
from uservlm_ros.engines.ethics.decision import (
    ALLOW,
    CLARIFY,
    GENERIC,
    Outcome,
    from_consents,
    in_play,
)
from uservlm_ros.engines.ethics.policy import Policy, load_policy
from uservlm_ros.engines.ethics.replies import NO, STATEMENT, UNCLEAR, YES, read_reply
from uservlm_ros.engines.ethics.text import clean, clip, normalize
from uservlm_ros.engines.person.identity import valid_person_id

LOG = logging.getLogger(__name__)
MAX_USER_ID_CHARS = 1024
# what an utterance asks about the person themselves (speaker_request)
REMEMBER, FORGET, DECLINE = "remember", "forget", "decline"

__all__ = [
    "ALLOW",
    "CLARIFY",
    "DECLINE",
    "FORGET",
    "GENERIC",
    "REMEMBER",
    "Consent",
    "EthicsConfig",
    "EthicsEngine",
    "Pending",
    "Resolution",
    "Review",
]


@dataclass(frozen=True)
class EthicsConfig:
    # The policy YAML; None = config/ethics_policy.yaml shipped with the package.
    policy_path: str | Path | None = None
    # Directory of the consent store; None = memory only (nothing survives a restart).
    store_dir: str | Path | None = None
    # False = rules only (keywords pick the topic, no embedding term): less accurate, no model to
    # load.
    use_embeddings: bool = True
    # torch intra-op threads, set process-wide when the model loads; None = leave torch alone. 1 is
    # fastest for one sentence at a time, but only set it when no bigger model shares the process.
    torch_threads: int | None = None
    # Session persons' in-memory records unused this long are dropped, seconds (a safety net: the
    # person node reports departures, but it may have restarted in between).
    session_ttl_s: float = 1800.0
    # Time source for expiry (tests pass a fake clock).
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        ttl = self.session_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError(f"session_ttl_s must be > 0 seconds, got {ttl!r}")


@dataclass(frozen=True)
class Review:
    decision: str  # allow | clarify | generic
    clarifying_question: str  # what to say when decision == "clarify", else ""
    reason: str
    topic: str | None
    attributes: tuple[str, ...]  # inferred attributes a personalised answer would lean on
    sensitive: tuple[str, ...]  # those of them the policy marks sensitive
    user_context: str  # text for the VLM prompt ("The user said: …"), "" if none
    pending: bool  # a clarification now waits for this person's reply
    inferred_allowed: tuple[str, ...]  # inferred attributes the answer may lean on


@dataclass(frozen=True)
class Resolution:
    original_question: str
    decision: str  # allow | generic
    user_context: str
    reason: str
    topic: str
    reply_kind: str  # yes | no | statement | unclear | attributes_only
    inferred_allowed: tuple[str, ...]
    follow_up: str = ""  # to say after the answer ("Shall I remember you next time?"), or ""


def _user(user_id) -> str:
    """The id as stored; "" = anonymous. Ids are opaque data: no path, no escaping, no trimming."""
    if user_id is None:
        return ""
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a string, got {type(user_id).__name__}")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise ValueError(f"user_id longer than {MAX_USER_ID_CHARS} characters")
    return "" if not user_id.strip() else user_id


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


class EthicsEngine:
    def __init__(self, config: EthicsConfig | None = None, embedder=None):
        self.config = config or EthicsConfig()
        self._embedder = embedder
        self._policy: Policy | None = None
        self._classifier: QuestionClassifier | None = None
        self._store: ConsentStore | None = None
        self._store_open = False
        self._store_error = ""
        self.store_failures = 0  # store operations that failed since load
        self._lock = threading.RLock()
        self._offers: dict[str, float] = {}  # session person -> when "remember you?" lapses
        self._declined: set[str] = set()  # session persons who said no to being remembered

    # --- life cycle ---

    def load(self) -> EthicsEngine:
        """Read the policy, load the embedding model (once per process), open the consent store."""
        policy = load_policy(self.config.policy_path)
        embedder = self._embedder
        if embedder is None and self.config.use_embeddings:
            from uservlm_ros.engines.ethics.embedding import shared_embedder

            embedder = shared_embedder(policy.classifier.model_path, self.config.torch_threads)
        classifier = QuestionClassifier(policy, embedder if self.config.use_embeddings else None)
        store = ConsentStore(
            self.config.store_dir,
            policy.limits.max_events_per_user,
            self.config.clock,
            volatile=valid_person_id,
            volatile_ttl_s=self.config.session_ttl_s,
        )
        with self._lock:
            self._policy, self._classifier, self._store = policy, classifier, store
            try:
                self._open_store()
            except StoreError as exc:  # reviews still answer (as for anonymous users) meanwhile
                self._store_failed(exc)
        LOG.info(
            "ethics engine ready: policy %s (%s), %d topics, %s, store %s",
            policy.source,
            policy.digest,
            len(policy.topics),
            "rules + embeddings" if embedder and self.config.use_embeddings else "rules only",
            self.config.store_dir or "in memory",
        )
        return self

    @property
    def policy(self) -> Policy:
        self._ready()
        return self._policy

    @property
    def classifier(self) -> QuestionClassifier:
        """The question classifier (for evaluation and for fitting its weights)."""
        self._ready()
        return self._classifier

    @property
    def moved_aside(self) -> tuple[Path, ...]:
        """Corrupt consent files moved aside since start (each was logged)."""
        return tuple(self._store.moved_aside) if self._store else ()

    def _ready(self) -> None:
        if self._policy is None:
            raise RuntimeError("EthicsEngine.load() has not been called")

    @property
    def store_error(self) -> str:
        """Why the consent store failed at its last use ("" while it works)."""
        return self._store_error

    def _open_store(self) -> None:
        """Open the store if it is not open yet (again at each use after a failed open)."""
        if not self._store_open:
            self._store.open()
            self._store_open = True

    def _store_failed(self, exc: StoreError) -> str:
        error = str(exc)
        self.store_failures += 1
        if error != self._store_error:
            LOG.error(
                "consent store unavailable: %s; nobody can be remembered, answers that need "
                "consent stay generic until it works again",
                error,
            )
        self._store_error = error
        return error

    def _store_worked(self) -> None:
        if self._store_error:
            LOG.warning("consent store works again (%d failed operations)", self.store_failures)
        self._store_error = ""

    # --- questions ---

    def review(
        self, question: str, user_id: str | None, inferred: Mapping | None = None
    ) -> Review:
        """Decide how to answer ``question`` from ``user_id``. ``inferred``: attribute name ->
        value as
        perception estimated it (values are ignored); None = unknown, assume all could be
        inferred."""
        self._ready()
        question = _text(question, "question")
        uid = _user(user_id)
        if inferred is not None and not isinstance(inferred, Mapping):
            raise TypeError(f"inferred must be a mapping or None, got {type(inferred).__name__}")
        inferred_names = None if inferred is None else {k for k in inferred if isinstance(k, str)}
        with self._lock:
            try:
                if uid:
                    self._open_store()
                    self._expire_sessions()
                    if self._store.pending(uid):
                        self._store.update(uid, pending=None)
                        LOG.debug("a new question from %s drops the unanswered clarification", uid)
                review = self._review(question, uid, inferred_names)
                if uid:
                    self._store_worked()
            except StoreError as exc:  # fail closed: what cannot be remembered is not asked
                error = self._store_failed(exc)
                review = self._review(question, "", inferred_names)
                why = (
                    f"consent store unavailable ({error}): nothing can be remembered, reviewed "
                    f"as for an anonymous user; {review.reason}"
                )
                review = replace(review, reason=why)
        LOG.debug("review: %s (%s)", review.decision, review.reason)
        return review

    def _review(self, question: str, uid: str, inferred: set | None) -> Review:
        policy = self._policy
        current = self._store.current(uid) if uid else {}
        refused = {
            s.split(":", 1)[1]
            for s, c in current.items()
            if s.startswith("attribute:") and c.status == DECLINED
        }

        def visible(names) -> tuple[str, ...]:
            return tuple(
                a for a in names if (inferred is None or a in inferred) and a not in refused
            )

        def result(
            decision: str,
            reason: str,
            topic=None,
            attributes=(),
            context="",
            allowed=None,
            clarifying="",
        ) -> Review:
            if allowed is None:
                allowed = visible(policy.attributes)
            sensitive = tuple(a for a in attributes if policy.attributes[a].sensitive)
            return Review(
                decision,
                clarifying,
                reason,
                topic,
                tuple(attributes),
                sensitive,
                context,
                decision == CLARIFY,
                tuple(allowed),
            )

        if not clean(question):
            return result(GENERIC, "empty question: nothing to personalise", allowed=())
        found = self._classifier.assess(question)
        cut = (
            f" (question cut to {policy.limits.max_question_chars} characters)"
            if found.truncated
            else ""
        )
        if found.topic is None:
            return result(ALLOW, f"{found.topic_evidence}: nothing to personalise{cut}")
        topic = found.topic
        attributes = in_play(policy, topic, inferred)
        why = f"topic {found.topic_evidence}; {found.explain_score()}{cut}"
        if not found.personal:
            return result(
                ALLOW, f"not a personal request ({why} < 0): answering as usual", topic, attributes
            )
        if found.third_party:
            return result(
                GENERIC,
                f"the question is about someone else (rule third_party {found.third_party}): "
                f"not leaning on the asker's appearance; {why}",
                topic,
                attributes,
                allowed=visible(a for a in attributes if not policy.attributes[a].needs_consent),
            )
        if found.invites_inference:
            return result(
                ALLOW,
                f"the person asks me to judge from their appearance (rule invites_inference "
                f"{found.invites_inference}); {why}",
                topic,
                attributes,
                allowed=tuple(a for a in policy.attributes if inferred is None or a in inferred),
            )
        attention = f"a personal '{topic}' answer would lean on " + (
            f"{', '.join(attributes)}" if attributes else "nothing inferred here"
        )
        outcome = from_consents(policy, topic, attributes, current)  # {} for anonymous users
        protected = policy.consent_attributes(attributes)
        free = tuple(a for a in attributes if a not in protected)
        if found.self_disclosure and protected:
            # What they say now is newer than anything they told me before: their words win, and
            # what I see is used only as far as they already agreed to it.
            agreed = (
                outcome.inferred_allowed
                if outcome and outcome.decision == ALLOW
                else tuple(
                    a
                    for a in protected
                    if (c := current.get(f"attribute:{a}")) and c.status == GRANTED
                )
                + free
            )
            return result(
                ALLOW,
                f"{attention}, but the person states it themselves (rule self_disclosure "
                f"{found.self_disclosure}): personalising with their words; {why}",
                topic,
                attributes,
                allowed=agreed,
            )
        if outcome:
            return result(
                outcome.decision,
                f"{attention}; {outcome.reason}; {why}",
                topic,
                attributes,
                outcome.user_context,
                outcome.inferred_allowed,
            )
        sensitive = [a for a in protected if policy.attributes[a].sensitive]
        sensitive_note = f" (consent needed for their {policy.labels(protected)}" + (
            "; all sensitive)"
            if len(sensitive) == len(protected)
            else f"; sensitive: {', '.join(sensitive)})"
        )
        if not uid:
            return result(
                GENERIC,
                f"{attention}{sensitive_note}; anonymous user: nothing can be remembered, so "
                f"no clarifying question, answering without personalisation; {why}",
                topic,
                attributes,
                allowed=free,
            )
        template = policy.topics[topic].clarifying_question or policy.default_clarifying_question
        now = self.config.clock()
        self._store.update(
            uid,
            pending=Pending(
                clip(clean(question), policy.limits.max_question_chars)[0],
                topic,
                attributes,
                now,
                now + policy.expiry.pending_seconds,
            ),
        )
        return result(
            CLARIFY,
            f"{attention}{sensitive_note} and this person has not told me yet; {why}",
            topic,
            attributes,
            allowed=(),
            clarifying=template.format(attributes=policy.labels(protected)),
        )

    # --- replies ---

    def resolve_reply(
        self, user_id: str | None, reply_text: str, language: str | None = None
    ) -> Resolution | None:
        """Take ``reply_text`` as the answer to this person's pending clarification, remember it,
        and say
        how to answer the original question. None when nothing is pending for this person."""
        self._ready()
        uid = _user(user_id)
        reply = _text(reply_text, "reply_text")
        if not uid:
            return None
        policy = self._policy
        with self._lock:
            try:
                self._open_store()
                self._expire_sessions()
                pending = self._store.pending(uid)
            except StoreError as exc:  # nothing known to be pending: a new question, then
                self._store_failed(exc)
                return None
            if pending is None:
                self._store_worked()
                return None
            reading = read_reply(policy, reply, language)
            now = self.config.clock()
            events = []
            statement = clip(clean(reading.statement), policy.limits.max_statement_chars)[0]
            topic_scope = f"topic:{pending.topic}"
            if reading.kind == YES:
                events.append(
                    Consent(
                        topic_scope, GRANTED, statement, now, now + policy.expiry.granted_seconds
                    )
                )
            elif reading.kind == STATEMENT:
                events.append(
                    Consent(
                        topic_scope, STATED, statement, now, now + policy.expiry.granted_seconds
                    )
                )
            elif reading.kind == NO:
                events.append(
                    Consent(topic_scope, DECLINED, "", now, now + policy.expiry.declined_seconds)
                )
            events += [
                Consent(f"attribute:{a}", DECLINED, "", now, now + policy.expiry.declined_seconds)
                for a in reading.declined_attributes
            ]
            try:
                self._store.update(uid, events, pending=None)
                current = self._store.current(uid)
                self._store_worked()
            except StoreError as exc:  # the reply cannot be recorded: no consent to lean on
                error = self._store_failed(exc)
                why = (
                    f"reply read as {reading.kind}: {reading.evidence}; consent store "
                    f"unavailable ({error}): the reply cannot be recorded, answering without "
                    "personalisation"
                )
                free = tuple(
                    a for a in pending.attributes if not policy.attributes[a].needs_consent
                )
                return Resolution(
                    pending.question, GENERIC, "", why, pending.topic, reading.kind, free
                )
        outcome = from_consents(policy, pending.topic, pending.attributes, current)
        if outcome is None:  # unclear, or only attribute refusals: no consent for the rest
            why = (
                "unclear reply, not treated as consent"
                if reading.kind == UNCLEAR
                else "no yes for the rest, not treated as consent"
            )
            outcome = Outcome(
                GENERIC,
                f"{why}: answering without personalisation",
                inferred_allowed=tuple(
                    a for a in pending.attributes if not policy.attributes[a].needs_consent
                ),
            )
        cut = (
            f" (reply cut to {policy.limits.max_reply_chars} characters)"
            if reading.truncated
            else ""
        )
        reason = f"reply read as {reading.kind}: {reading.evidence}{cut}; {outcome.reason}"
        follow_up = ""
        if (
            outcome.decision == ALLOW
            and reading.kind in (YES, STATEMENT)
            and self.is_session(uid)
            and self.config.store_dir is not None
        ):
            with self._lock:
                if uid not in self._declined:
                    self._offers[uid] = self.config.clock() + policy.expiry.pending_seconds
                    follow_up = policy.persons.offer
        LOG.debug("resolution: %s (%s)", outcome.decision, reason)
        return Resolution(
            pending.question,
            outcome.decision,
            outcome.user_context,
            reason,
            pending.topic,
            reading.kind,
            outcome.inferred_allowed,
            follow_up,
        )

    # --- the person themselves ---

    def is_session(self, user_id: str | None) -> bool:
        """A person the camera sees who has not agreed to be remembered: what they say stays in
        memory."""
        self._ready()
        uid = _user(user_id)
        return bool(uid) and valid_person_id(uid) and self._store.in_memory(uid)

    def speaker_request(self, user_id: str | None, text: str) -> str | None:
        """What ``text`` asks about the person themselves: REMEMBER ("remember me", or a yes to
        the offer to remember them; session persons only), FORGET ("forget me"; anyone not
        anonymous), DECLINE (a no to the offer), or None (review it as usual). An open offer is
        answered or dropped by this utterance either way."""
        self._ready()
        uid = _user(user_id)
        text = _text(text, "text")
        if not uid:
            return None
        persons = self._policy.persons
        norm = normalize(clip(text, self._policy.limits.max_reply_chars)[0])
        session = self.is_session(uid)
        with self._lock:
            self._expire_sessions()
            offered = self._offers.pop(uid, None) is not None
        if session and any(rule.search(norm) for rule in persons.remember):
            return REMEMBER
        if any(rule.search(norm) for rule in persons.forget):
            return FORGET
        if session and offered:
            kind = read_reply(self._policy, text).kind
            if kind == YES:
                return REMEMBER
            if kind == NO:
                with self._lock:
                    self._declined.add(uid)
                return DECLINE
        return None

    def persist(self, user_id: str | None) -> bool:
        """The person agreed to be remembered: their record (consents, a pending question) moves
        to disk and stays there. False when there is no store directory or the id is anonymous.
        Raises StoreError when the write fails (the record stays in memory)."""
        self._ready()
        uid = _user(user_id)
        with self._lock:
            self._offers.pop(uid, None)
            self._declined.discard(uid)
            persisted = self._store.persist(uid)
        if persisted:
            LOG.info("a person agreed to be remembered: their consents are kept on disk")
        return persisted

    def drop_session(self, user_id: str | None) -> bool:
        """A session person left (the person engine forgot them): drop what they said, which was
        in memory only. True if there was something. Remembered persons are untouched."""
        self._ready()
        uid = _user(user_id)
        if not uid:
            return False
        with self._lock:
            self._offers.pop(uid, None)
            self._declined.discard(uid)
            return self._store.drop_volatile(uid)

    def _expire_sessions(self) -> None:
        now = self.config.clock()
        for uid in [u for u, until in self._offers.items() if until <= now]:
            del self._offers[uid]
        for uid in self._store.expire_volatile():
            self._offers.pop(uid, None)
            self._declined.discard(uid)

    # --- memory ---

    def pending(self, user_id: str | None) -> Pending | None:
        self._ready()
        uid = _user(user_id)
        return self._store.pending(uid) if uid else None

    def consents(self, user_id: str | None) -> tuple[Consent, ...]:
        """What holds now for this person: the latest unexpired word per scope."""
        self._ready()
        uid = _user(user_id)
        return (
            tuple(sorted(self._store.current(uid).values(), key=lambda c: c.scope)) if uid else ()
        )

    def history(self, user_id: str | None) -> tuple[Consent, ...]:
        """Everything unexpired this person said, oldest first, changes of mind included."""
        self._ready()
        uid = _user(user_id)
        return self._store.history(uid) if uid else ()

    def forget(self, user_id: str | None) -> bool:
        """Remove the person entirely (consents, history, pending question). True if anything was
        stored."""
        self._ready()
        uid = _user(user_id)
        with self._lock:
            self._offers.pop(uid, None)
            self._declined.discard(uid)
            removed = self._store.forget(uid) if uid else False
        LOG.info("forgot a user (%s)", "record removed" if removed else "nothing stored")
        return removed
