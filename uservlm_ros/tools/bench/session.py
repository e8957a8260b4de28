"""The bench's robot-side session: it waits for the graph, replays the bag turn after turn and
collects one row per turn (:mod:`.replay`), through its node (:mod:`.watch`)."""

from __future__ import annotations

import dataclasses
import math
import time

from uservlm_ros.engines.asr.vad import VadConfig
from uservlm_ros.tools import bags
from uservlm_ros.tools.bench.config import (
    CLOUD_NODES,
    CONSENT_REPLY,
    PIPELINES,
    BenchError,
    SessionConfig,
)
from uservlm_ros.tools.bench.replay import replay_turn
from uservlm_ros.tools.bench.report import pipeline_label
from uservlm_ros.tools.bench.vad_track import VadTrack, bag_audio
from uservlm_ros.tools.bench.watch import GraphWatch


class Session(GraphWatch):
    """One bench run on the robot side: wait for the graph, prepare the user, replay the bag
    turn after turn (each phase with its pipeline), collect the rows."""

    # -- the run ----------------------------------------------------------------------------
    def wait_ready(self) -> dict:
        started = time.monotonic()
        timeout = self.config.startup_timeout
        for name, client in self.services.items():
            self.spin_until(
                client.service_is_ready, timeout, f"/uservlm/{name} up (see the node logs)"
            )
        for name, client in self.get_parameters.items():
            self.spin_until(client.service_is_ready, timeout, f"{name} up")
        self.spin_until(
            lambda: self.diag("dialogue_node", (0, 1))[1] == 0,
            timeout,
            "dialogue_node reporting the cloud side reachable (/diagnostics OK)",
        )
        self.spin_until(
            lambda: self.node.count_publishers("speech") >= 1
            and self.node.count_subscribers("speech") >= 2
            and self.node.count_subscribers("speech_audio") >= 2
            and self.node.count_publishers("speech_started") >= 1,
            timeout,
            "asr_node -> dialogue_node -> speaker_node topics matched",
        )
        self.log(f"[bench] graph ready after {time.monotonic() - started:.1f} s")
        params = {
            "asr_node": self.parameters(
                "asr_node",
                [
                    "model",
                    "device",
                    "compute_type",
                    "beam_size",
                    *(f.name for f in dataclasses.fields(VadConfig)),
                    "barge_in.tail_ms",
                    "barge_in.echo_delay_max_ms",
                    "speculative",
                ],
            ),
            "vlm_node": self.parameters(
                "vlm_node",
                ["base_model", "adapter", "device", "dtype", "max_new_tokens", "offline_fallback"],
            ),
            "tts_node": self.parameters("tts_node", ["backend", "piper_voice", "coqui_model"]),
            "ethics_node": self.parameters("ethics_node", ["use_embeddings"]),
            "person_node": self.parameters(
                "person_node",
                ["detector", "detect_scale", "addressee", "user_crop", "track_rate_hz"],
            ),
            "dialogue_node": self.parameters(
                "dialogue_node", ["user_id", "speak", "stream_audio", "max_frame_skew"]
            ),
        }
        asr = params["asr_node"]
        self.echo_tail = (
            float(asr.get("barge_in.tail_ms") or 0.0)
            + float(asr.get("barge_in.echo_delay_max_ms") or 0.0)
        ) / 1000.0
        # What each engine node says it loaded (e.g. "active: piper:en_US-joe-medium").
        params["engines"] = {
            name: self.diag(name)[2] for name in CLOUD_NODES if self.diag(name) is not None
        }
        return params

    def prepare_user(self) -> tuple[str, str, str]:
        """(question, user id, review decision the measured turns will get)."""
        from uservlm_ros.ros.conversions import array_to_audio
        from uservlm_ros.srv import Forget, Review, Transcribe

        samples, rate, channels = bag_audio(self.bag)
        request = Transcribe.Request()
        request.audio = array_to_audio(
            samples.reshape(-1, channels) if channels > 1 else samples, rate
        )
        response = self.call(self.services["transcribe"], request, 120.0)
        if not response.success or not response.text.strip():
            raise BenchError(
                f"the bag's audio did not transcribe: {response.error or 'no speech'}"
            )
        question = response.text.strip()
        consent = self.config.consent
        user = self.config.user_id if consent == "grant" else ""
        if self.config.attach:
            self.override("dialogue_node", "user_id", user)
            self.override("dialogue_node", "stream_audio", self.config.stream_audio)
            self.override("vlm_node", "person_identification", consent != "anonymous")
        if consent == "anonymous":
            return question, user, "anonymous (no consent memory)"
        if consent == "face":  # whoever the graph knew the face as goes; the stranger is met anew
            self.call(self.services["forget"], Forget.Request(user_id=self.face_person()))
            user = self.face_person()
        else:
            self.call(self.services["forget"], Forget.Request(user_id=user))
        review = self.call(
            self.services["review"], Review.Request(question=question, user_id=user)
        )
        if review.success and review.decision == "clarify":
            reply = self.call(
                self.services["review"], Review.Request(question=CONSENT_REPLY, user_id=user)
            )
            if not (reply.success and reply.resolved_reply and reply.decision == "allow"):
                raise BenchError(
                    f"pre-consent failed: the review read {CONSENT_REPLY!r} as {reply.decision!r} "
                    f"({reply.error or reply.reason})"
                )
        elif not review.success:
            raise BenchError(f"/uservlm/review failed: {review.error}")
        check = self.call(self.services["review"], Review.Request(question=question, user_id=user))
        return question, user, check.decision

    def face_person(self) -> str:
        """The person id person_node resolves the face in the bag's middle camera frame to (the
        turns, on their own frames, resolve to the same person)."""
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        from uservlm_ros.srv import Identify

        request = Identify.Request(identify=True)
        jpeg, raw = self.bag.of(bags.CAMERA_JPEG), self.bag.of(bags.CAMERA_RAW)
        if jpeg:
            request.compressed_image = deserialize_message(
                jpeg[len(jpeg) // 2].data, CompressedImage
            )
        elif raw:
            request.image = deserialize_message(raw[len(raw) // 2].data, Image)
        else:
            raise BenchError("--consent face: the bag has no camera frames")
        found = self.call(self.services["identify"], request, 60.0)
        if not found.success or not found.person_id:
            why = found.error or found.status
            raise BenchError(f"--consent face: the bag's face resolves to nobody ({why})")
        return found.person_id

    def cleanup_user(self, user: str) -> None:
        from uservlm_ros.srv import Forget

        try:
            if user:
                self.call(self.services["forget"], Forget.Request(user_id=user), 10.0)
            for (node_name, name), value in self._restore.items():
                self.set_parameter(node_name, name, value)
        except BenchError as error:
            self.log(f"[bench] warning: clean-up: {error}")

    def run(self) -> dict:
        params = self.wait_ready()
        user = "" if self.config.consent == "anonymous" else self.config.user_id
        try:
            question, user, decision = self.prepare_user()
            # Does dialogue_node stream the answer sentence by sentence (a parameter newer graphs
            # have)?
            self.streaming = bool(
                self.parameters("dialogue_node", ["stream_audio"])["stream_audio"]
            )
            params["dialogue_node"]["stream_audio"] = self.streaming
            self.log(
                f"[bench] question (transcribed from the bag): {question!r}; user "
                f"{user or '(anonymous)'}: review says {decision}"
            )
            utterances = VadTrack(self.bag, params["asr_node"]).next_replay()
            if not utterances:
                raise BenchError(
                    "the VAD (asr_node's parameters) finds no complete utterance in "
                    f"{self.bag.path}: "
                    "it needs speech followed by at least min_silence_ms of silence"
                )
            self.vad = VadTrack(self.bag, params["asr_node"])
            phases = [
                self.run_phase(uplink, utterances, pipeline)
                for uplink in self.config.uplinks
                for pipeline in self.config.pipelines
            ]
        finally:
            self.cleanup_user(user)  # forget the bench user; restore dialogue_node's parameters
        return {
            "params": params,
            "question": question,
            "user_id": user,
            "review_decision": decision,
            "utterances_per_replay": len(utterances),
            "phases": phases,
            "bag": {
                "path": str(self.bag.path),
                "messages": len(self.bag.messages),
                "duration": self.bag.duration,
                "topics": {
                    t.name: {"type": t.msgtype, "count": t.count} for t in self.bag.topics.values()
                },
            },
        }

    def set_pipeline(self, pipeline: str) -> dict:
        """Set the nodes' parameters of a PIPELINES entry ("" = leave them); what the phase runs
        with."""
        for node_name, values in PIPELINES.get(pipeline, {}).items():
            for name, value in values.items():
                self.override(node_name, name, value)
        asr = self.parameters("asr_node", ["speculative", "window_seconds"])
        state = {
            "stream_audio": bool(
                self.parameters("dialogue_node", ["stream_audio"])["stream_audio"]
            ),
            "speculative": bool(asr["speculative"]),
            "window_seconds": asr["window_seconds"],
        }
        self.streaming = state["stream_audio"]
        self.vad.speculative = state["speculative"]  # asr_start follows asr_node's setting
        self.pipeline = pipeline or pipeline_label(**state)
        return state

    def run_phase(self, uplink: str, utterances: list[dict], pipeline: str = "") -> dict:
        state = self.set_pipeline(pipeline)
        label = " ".join(
            part
            for part in (uplink if len(self.config.uplinks) > 1 or not pipeline else "", pipeline)
            if part
        )
        messages = bags.camera_uplink(self.bag, uplink)
        replayer = bags.Replayer(self.node, self.bag, messages=messages)
        camera = [
            name
            for name in replayer.names.values()
            if name.endswith(bags.CAMERA_RAW) or name.endswith(bags.CAMERA_JPEG)
        ]
        need = {name: 1 for name in replayer.names.values()}
        need.update({name: self.config.min_camera_subscribers for name in camera})
        replayer.wait_for_subscribers(self.executor, self.config.startup_timeout, need, settle=1.0)
        link_before = self.link_stats()
        phase_started = time.monotonic()
        rows = []
        total = self.config.warmup + self.config.turns
        for index in range(total):
            warm = index < self.config.warmup
            rows += replay_turn(
                self, replayer, uplink, index - self.config.warmup + 1, warm, utterances, camera
            )
            row = rows[-1]
            self.log(
                f"[bench] {label} {'warm-up' if warm else 'turn'} "
                f"{index + 1 - (0 if warm else self.config.warmup)}"
                f"/{self.config.warmup if warm else self.config.turns}: "
                + (
                    f"audio out {row['speech_end_to_audio_out']:.2f} s, middleware "
                    + (
                        "n/a (streamed)"
                        if math.isnan(row["middleware"])
                        else f"{row['middleware'] * 1000:.0f} ms"
                    )
                    if row.get("success")
                    else f"FAILED: {row.get('error')}"
                )
            )
        seconds = time.monotonic() - phase_started
        link_after = self.link_stats()
        replayer.destroy()
        return {
            "uplink": uplink,
            "label": label,
            "pipeline": pipeline,
            **state,
            "rows": rows,
            "seconds": seconds,
            "link_before": link_before,
            "link_after": link_after,
        }


def run_session(config: SessionConfig, alive=None, log=print) -> dict:
    session = Session(config, alive=alive, log=log)
    try:
        return session.run()
    finally:
        session.close()
