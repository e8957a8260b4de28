"""``uservlm bench BAG``: the spoken loop's latency, replayed from a recording, turn after turn.

The graph runs as in deployment — asr_node, tts_node, vlm_node and ethics_node (the cloud side)
plus speaker_node and dialogue_node (the robot side), each its own process — except that the
camera and the microphone are replaced by a bag (default: the bundled
``uservlm_ros/data/demo_bag``) played with its original timing (:class:`uservlm_ros.bags.Replayer`:
spin-by-deadline, header stamps shifted to "now" so the stream looks live). ``--attach`` uses a
graph that is already running instead (``uservlm up``, without camera/microphone publishing).

Each replay of the bag is one turn: the person asks, the robot answers aloud. The bench waits until
the graph is ready (services up, ``audio`` and the camera topic subscribed, dialogue_node sees
``/uservlm/ask``), replays the bag ``--warmup`` times unmeasured and then ``--turns`` times,
waiting after each turn until the robot has finished speaking (ASR ignores audio captured while
the robot speaks, as on the robot).

The ethics review. The bundled question ("What should I wear to a business meeting?") is one the
review answers with a clarifying question for a stranger, and *generically* (the face withheld
from the VLM) for an anonymous user. The bench **pre-consents** a dedicated user
(``--user-id``, default ``bench-visitor``): before the first turn it asks ``/uservlm/review`` the
bag's question (transcribed once by ``/uservlm/transcribe``, which also warms ASR up) for that user
and answers the clarification with "Yes, please." — so every measured turn takes the full
personalised path (review -> image + question to the VLM -> speech). The user is forgotten again
at the end. ``--consent anonymous`` measures the generic path instead (empty user id).
In ``--attach`` mode dialogue_node's ``user_id`` parameter is set to the bench user for the run
and restored afterwards; no real user's consent is touched.

``--compose`` runs the four cloud nodes and dialogue_node as one process (``cloud_node``):
dialogue_node takes the turn on the cloud side, gets asr_node's utterance in-process and calls
the ask in-process, vlm_node calls the review and the synthesis in-process;
``hop_ask_transport`` and ``hop_cloud_internal`` shrink to what the nodes do. The robot side is
then speaker_node alone.

``--low-latency`` holds /dev/cpu_dma_latency at 0 µs for the run (:mod:`uservlm_ros.cpu_latency`:
idle CPUs poll instead of halting); the report states the CPU idle setting either way.

Speech out. dialogue_node can have the cloud speak the answer sentence by sentence while it is
still being written (its ``stream_audio`` parameter). The bench turns that off for its run by default
— the answer is synthesized whole, then spoken — because the decomposition below needs the stages
to run one after the other. ``--stream-audio`` measures streamed speech: the end-to-end times stay
valid; ``middleware`` and the two hops after the answer are left empty (synthesis then overlaps
generation, and the first audio goes out before the response arrives).

Per turn, from the ``interactions`` record dialogue_node publishes (all seconds; "speech end" is
the end of the utterance as the VAD placed it, in the audio's capture clock):

- ``speech_end_to_transcript`` / ``_to_answer`` / ``_to_audio_out``: the utterance published by
  asr_node / the /uservlm/ask response received by dialogue_node / the first sample out of
  speaker_node.
- engine compute: ``vad`` (the Silero segmenter on the audio chunk that ended the utterance),
  ``asr`` (Whisper), ``review`` (ethics), ``preprocess``, ``prefill``, ``generation`` (VLM),
  ``synthesis`` (TTS), each timed inside its node or engine.
- ``vad_wait``: audio the VAD must still *hear* after the speech end before it can close the
  utterance (its silence window, plus the chunking) = receive time of the chunk that completes the
  utterance - speech end, both from the bag. ``asr_start``: the same for the chunk from which
  asr_node can start transcribing; earlier than ``vad_wait`` when asr_node transcribes
  speculatively (its ``speculative`` parameter: it starts on the candidate utterance while the
  end is being confirmed). Both computed by running asr_node's segmenter, with its parameters,
  over the bag's audio (:class:`VadTrack`), then moved to when the replay actually published that
  chunk: ``replay_late`` is the replay's own timing error on it (the bench process is busy too:
  it spins its subscriptions and publishes the camera between chunks). Not compute, not
  middleware: audio that has not been published yet is time the microphone takes.
- ``vad_exposed`` = max(vad_wait - asr, asr_start): the part of that wait ASR does not hide (the
  transcript needs both the confirmed end and the transcription); = ``vad_wait`` without
  speculation.

**ROS middleware share** (``middleware``)::

    middleware = speech_end_to_audio_out - vad_exposed
                 - (vad + asr + review + preprocess + prefill + generation + synthesis)

i.e. everything on the robot -> cloud -> robot path that is not an engine computing or the VAD
waiting for audio: DDS transport of every hop, executor scheduling and queueing, message
(de)serialisation and conversions in the nodes. It is split exactly into five parts that sum to it:

- ``hop_audio_to_transcript`` = transcript - vad_exposed - vad - asr: ``audio`` topic (robot ->
  cloud), the chunk's conversion and the ASR worker queue;
- ``hop_transcript_to_ask`` = answer - transcript - ask_round_trip: ``speech`` topic (cloud ->
  robot) + dialogue_node picking and converting the frame and building the request;
- ``hop_ask_transport``: the /uservlm/ask service's own transport. dialogue_node asks with
  ``publish_audio`` (vlm_node publishes the spoken answer on ``speech_audio`` itself, the response
  travels back beside it): the request's way robot -> cloud (question + the camera's JPEG) =
  speech_audio publish stamp - request sent - ``first_audio`` (Ask first_audio_seconds: request
  received -> audio published). For a cloud that returns the audio in the response instead:
  ask_round_trip - server (request and response, with the audio);
- ``hop_cloud_internal`` = first_audio (resp. server = Ask ``total_seconds``) - (review +
  preprocess + prefill + generation + synthesis): the /uservlm/review and /uservlm/synthesize
  round trips inside the cloud, request checks;
- ``hop_answer_to_audio_out`` = audio_out - the speech_audio publish stamp (resp. audio_out -
  answer): the ``speech_audio`` topic to speaker_node and the speaker starting the utterance.

Measured directly, besides: ``speech_hop`` (an Utterance's publish stamp -> its arrival at the
bench, which sits on the robot side), ``probe_rtt`` (median of 5 idle ``get_parameters`` service
round trips to vlm_node after each turn: the bare robot -> cloud -> robot service hop) and, for the
netns link, bytes through each direction's shaper.

Losses: frames and audio chunks published by the replay vs received by the graph, from the nodes'
own /diagnostics counters (asr_node ``chunks_heard`` + ``chunks_ignored_self_speech``, vlm_node
and dialogue_node ``frames_received``) read before and after each turn.

``--link netns``: the robot side (this bench's replay + speaker_node + dialogue_node) and the
cloud side run in two network namespaces joined by a veth pair shaped with ``tc tbf`` (default
100 Mbit/s each way, **no added propagation delay: netem is not available**); see
:mod:`uservlm_ros.netlink`. ``--uplink jpeg raw`` (the netns default) compares feeding the camera
as JPEG (``camera/image_raw/compressed``) or raw rgb8 frames (``camera/image_raw``, decoded from
the bag's JPEG before the replay) — vlm_node subscribes to the camera, so the stream crosses the
link. The replaying process publishes in Fast DDS's asynchronous mode there
(``RMW_FASTRTPS_PUBLICATION_MODE=ASYNCHRONOUS``): on the robot, camera and microphone are separate
processes, and a synchronous ``publish()`` of a raw frame into the shaped link blocks (holding the
GIL, measured up to 62 ms), which would delay the audio behind it. The link report adds the bytes
through each shaper, its drops, and UDP datagrams dropped for a full socket receive buffer.

Output: a table of median and p95 on stdout, ``bench[_<label>].csv`` (one row per turn),
``.png`` (per-turn stacked stages and latency CDFs), ``.json`` (everything, with hardware and
models) in ``--out``. Same-host clocks: robot and cloud share one clock here, so cross-process
stamps are comparable.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from uservlm_ros import bags
from uservlm_ros.cpu_latency import CpuLatencyHold, LatencyError
from uservlm_ros.engines.asr import WINDOW_SECONDS_DEFAULT

DEFAULT_USER = "bench-visitor"
CONSENT_REPLY = "Yes, please."
CLOUD_NODES = ("asr_node", "tts_node", "vlm_node", "ethics_node")
ROBOT_NODES = ("speaker_node", "dialogue_node")
PAPER_MIDDLEWARE = "320 ± 45 ms"
COMPUTE_STAGES = ("vad", "asr", "review", "preprocess", "prefill", "generation", "synthesis")
HOPS = ("hop_audio_to_transcript", "hop_transcript_to_ask", "hop_ask_transport", "hop_cloud_internal",
        "hop_answer_to_audio_out")
# (column, label) of the summary table, in order.
SUMMARY = (
    ("speech_end_to_transcript", "speech end -> transcript"),
    ("speech_end_to_answer", "speech end -> answer"),
    ("speech_end_to_audio_out", "speech end -> first audio out"),
    ("vad_wait", "  VAD: audio to hear after speech end"),
    ("replay_late", "  ... of it the replay's lateness"),
    ("vad_exposed", "  ... of it not hidden by ASR"),
    ("compute", "  engine compute (VAD+ASR+review+VLM+TTS)"),
    *((stage, f"    {stage}") for stage in COMPUTE_STAGES),
    ("middleware", "  ROS middleware share"),
    ("hop_audio_to_transcript", "    audio topic + ASR queue"),
    ("hop_transcript_to_ask", "    speech topic + dialogue prep"),
    ("hop_ask_transport", "    /uservlm/ask transport"),
    ("hop_cloud_internal", "    review/synthesize hops (cloud)"),
    ("hop_answer_to_audio_out", "    speech_audio topic + speaker"),
    ("speech_hop", "  speech topic hop (measured)"),
    ("probe_rtt", "  idle service round trip (probe)"),
)
# --compare: the same graph, the same bag, one phase each (node parameters set for the phase).
PIPELINES = {
    # The paper's pipeline: Whisper on its standard 30 s window once the end of speech is
    # confirmed, the whole answer, the whole synthesis, then play.
    "sequential": {"dialogue_node": {"stream_audio": False},
                   "asr_node": {"speculative": False, "window_seconds": 0.0}},
    # The same, with Whisper's encoder window cut to the utterance (asr_node's default).
    "short-window": {"dialogue_node": {"stream_audio": False},
                     "asr_node": {"speculative": False, "window_seconds": WINDOW_SECONDS_DEFAULT}},
    # Ours: short window, transcription from the moment the silence begins (speculative), each
    # sentence synthesized and played while the model writes the rest (stream_audio).
    "streamed": {"dialogue_node": {"stream_audio": True},
                 "asr_node": {"speculative": True, "window_seconds": WINDOW_SECONDS_DEFAULT}},
}
TTFA_TARGET = 1.5  # issue 6: time to first audio at least 1.5x better than the sequential pipeline
DIAG_COUNTERS = {"asr_node": ("chunks_heard", "chunks_ignored_self_speech"),
                 "vlm_node": ("frames_received",), "dialogue_node": ("frames_received",)}


class BenchError(RuntimeError):
    """The benchmark could not run; the message says which step failed."""


def default_bag() -> Path:
    from importlib import resources

    return Path(str(resources.files("uservlm_ros") / "data" / "demo_bag"))


# -- configuration -----------------------------------------------------------------------------
@dataclass
class SessionConfig:
    """What the robot-side session needs (JSON-able: it crosses into the robot namespace)."""
    bag: str
    turns: int = 10
    warmup: int = 1
    uplinks: list = field(default_factory=lambda: ["jpeg"])
    speed: float = 1.0
    namespace: str = ""
    user_id: str = DEFAULT_USER
    consent: str = "grant"  # grant | anonymous
    attach: bool = False
    startup_timeout: float = 600.0
    turn_timeout: float = 180.0
    probes: int = 5
    min_camera_subscribers: int = 2  # dialogue_node + vlm_node (composed: one, vlm_node shares dialogue_node's)
    link: dict | None = None  # netns link (token, rate) for the shaper counters
    stream_audio: bool = False  # dialogue_node's stream_audio for the run (see the module docstring)
    pipelines: list = field(default_factory=lambda: [""])  # "" = as configured; else keys of PIPELINES


# -- hardware ----------------------------------------------------------------------------------
def hardware() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = "none"
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        gpu = result.stdout.strip() or "none"
    return {"cpu": cpu or platform.processor() or "unknown", "cores": os.cpu_count(),
            "memory": memory, "gpu": gpu, "kernel": platform.release(), "python": platform.python_version(),
            "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")}


# -- the VAD, offline ----------------------------------------------------------------------------
class VadTrack:
    """asr_node's listening, replayed offline: the utterances it closes in each replay of the bag and,
    for each (seconds after its speech end, from the bag's clock):

    - ``vad_wait``: until the receive time of the audio chunk that completes the utterance;
    - ``asr_start``: until the chunk from which asr_node can start transcribing it — the same chunk,
      or, with asr_node's ``speculative`` transcription, the earlier chunk at which the segmenter
      first offers the utterance as a candidate that then closes unchanged.

    Each carries the bag index of its chunk (``chunk``, ``start_chunk``), so the bench can move
    those times to when the replay actually published the chunk (:func:`vad_times`).

    Same Silero segmenter and parameters as asr_node (``vad_threshold``, ``min_silence_ms``,
    ``speech_pad_ms``, ``max_utterance_seconds``, ``speculative``), fed the same chunk sequence.
    asr_node's segmenter keeps its state from one replay to the next, so :meth:`next_replay` is
    called once per replay, warm-ups included, in order. Exact for a graph the bench started
    (asr_node heard nothing else); an approximation with ``--attach``."""

    def __init__(self, bag: bags.Bag, params: dict):
        import numpy as np

        from uservlm_ros.audio import ASR_SAMPLE_RATE, resample, to_mono
        from uservlm_ros.engines.asr import VoiceActivitySegmenter
        from uservlm_ros.engines.listening import StreamListener

        segmenter = VoiceActivitySegmenter(
            threshold=float(params.get("vad_threshold") or 0.5),
            min_silence_ms=int(params.get("min_silence_ms") or 500),
            speech_pad_ms=int(params.get("speech_pad_ms") if params.get("speech_pad_ms") is not None else 200),
            max_utterance_s=float(params.get("max_utterance_seconds") or 30.0))
        self.listener = StreamListener(segmenter)
        # Older graphs have no speculative transcription (the parameter is then not declared).
        self.speculative = bool(params.get("speculative")) and hasattr(self.listener, "candidate")
        self.chunks = []
        for message in bag.of(bags.AUDIO):
            chunk = bag.deserialize(message)
            samples = to_mono(np.asarray(chunk.data, dtype=np.int16).reshape(-1), int(chunk.channels))
            if int(chunk.sample_rate) != ASR_SAMPLE_RATE:
                samples = resample(samples, int(chunk.sample_rate), ASR_SAMPLE_RATE)
            stamp = chunk.header.stamp.sec + chunk.header.stamp.nanosec * 1e-9
            self.chunks.append((stamp, message.log_time / 1e9, samples))
        self._shift = 0.0
        self._candidate = None  # (HeardSpeech, receive time and index of the chunk that offered it)

    def next_replay(self) -> list[dict]:
        found = []
        # Later replays continue the stream: shift the stamps past the previous replay's end.
        for index, (stamp, received, samples) in enumerate(self.chunks):
            for heard in self.listener.feed(samples, stamp + self._shift):
                end = heard.end - self._shift
                early = self._candidate if self._candidate and heard.same_as(self._candidate[0]) else None
                found.append({"end": end, "vad_wait": received - end,
                              "asr_start": (early[1] if early else received) - end, "speculative": bool(early),
                              "chunk": index, "start_chunk": early[2] if early else index})
                self._candidate = None
            if self.speculative:  # as asr_node.on_audio: a new candidate replaces the previous one
                candidate = self.listener.candidate()
                if candidate is not None and not candidate.same_as(self._candidate and self._candidate[0]):
                    self._candidate = (candidate, received, index)
        if self.chunks:
            self._shift += self.chunks[-1][1] - self.chunks[0][0] + 1.0
        return found


def bag_audio(bag: bags.Bag):
    """All of the bag's audio, concatenated: (int16 samples, sample rate, channels)."""
    import numpy as np

    chunks = [bag.deserialize(m) for m in bag.of(bags.AUDIO)]
    if not chunks:
        raise BenchError(f"{bag.path} has no {bags.AUDIO} topic: nothing to ask")
    data = np.concatenate([np.asarray(c.data, dtype=np.int16) for c in chunks])
    return data, int(chunks[0].sample_rate), int(chunks[0].channels)


# -- statistics --------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (as numpy's default)."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return data[low] + (data[high] - data[low]) * (position - low)


def summarize(rows: list[dict]) -> dict[str, dict]:
    measured = [r for r in rows if not r.get("warmup") and r.get("success")]
    out = {}
    for column, _ in SUMMARY:
        values = [r[column] for r in measured if isinstance(r.get(column), (int, float)) and not math.isnan(r[column])]
        out[column] = {"median": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}
    return out


# -- the robot-side session ----------------------------------------------------------------------
class Session:
    """The bench's own node on the robot side: replays the bag, watches the graph, collects rows."""

    def __init__(self, config: SessionConfig, alive=None, log=print):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Bool

        from uservlm_ros.msg import AudioChunk, Interaction, Utterance
        from uservlm_ros.ros import qos
        from uservlm_ros.srv import Ask, Forget, Review, Synthesize, Transcribe

        self.config = config
        self.alive = alive or (lambda: None)
        self.log = log
        self.bag = bags.read_bag(config.bag)
        bags.use_package_dds_profile()
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"uservlm_bench_{os.getpid()}", namespace="/" + config.namespace.strip("/"),
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.interactions: list = []
        self.utterances: list = []
        self.spoken: list = []
        self.speaking = False
        self.speaking_changed = time.monotonic()
        self.spoke = 0  # times robot_speaking went true
        self.echo_tail = 0.3  # asr_node's self_speech_tail, read in wait_ready()
        self.diagnostics: dict[str, tuple[float, int, str, dict]] = {}
        node = self.node
        node.create_subscription(Interaction, "interactions", lambda m: self.interactions.append((time.time(), m)),
                                 qos.EVENTS)
        node.create_subscription(Utterance, "speech", lambda m: self.utterances.append((time.time(), m)), qos.EVENTS)
        node.create_subscription(AudioChunk, "speech_audio",
                                 lambda m: self.spoken.append((time.time(), m.header.stamp, m.header.frame_id)),
                                 qos.SPEECH_AUDIO)
        node.create_subscription(Bool, "robot_speaking", self._on_speaking, qos.LATCHED)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.DIAGNOSTICS)
        self.services = {name: node.create_client(kind, f"uservlm/{name}", qos_profile=qos.SERVICES)
                         for name, kind in (("ask", Ask), ("transcribe", Transcribe), ("synthesize", Synthesize),
                                            ("review", Review), ("forget", Forget))}
        self.get_parameters = {name: node.create_client(GetParameters, f"{name}/get_parameters")
                               for name in (*CLOUD_NODES, "dialogue_node")}
        self.set_parameters_clients = {name: node.create_client(SetParameters, f"{name}/set_parameters")
                                       for name in ("asr_node", "dialogue_node")}
        self._restore: dict = {}  # {(node, parameter): value before the run} (attach mode, --compare)
        self.streaming = False
        self.pipeline = ""

    # -- plumbing ---------------------------------------------------------------------------
    def _on_speaking(self, msg) -> None:
        if bool(msg.data) != self.speaking:
            self.speaking = bool(msg.data)
            self.spoke += int(self.speaking)
            self.speaking_changed = time.monotonic()

    def _fq(self, node_name: str) -> str:
        """Fully qualified name of a graph node (diagnostics are keyed by it: /diagnostics is global)."""
        return "/" + "/".join(p for p in (self.config.namespace.strip("/"), node_name) if p)

    def diag(self, node_name: str, default=None):
        return self.diagnostics.get(self._fq(node_name), default)

    def _on_diagnostics(self, msg) -> None:
        now = time.time()
        for status in msg.status:
            name = status.name.split(": ", 1)[-1]
            self.diagnostics[name] = (now, int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                      else int(status.level), status.message,
                                      {kv.key: kv.value for kv in status.values})

    def spin_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.alive()
            if time.monotonic() >= deadline:
                raise BenchError(f"{what}: not within {timeout:.0f} s")
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client, request, timeout: float = 60.0):
        self.spin_until(client.service_is_ready, timeout, f"service {client.srv_name} up")
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f"service {client.srv_name} answers")
        if future.exception() is not None:
            raise BenchError(f"service {client.srv_name} failed: {future.exception()}")
        return future.result()

    def parameters(self, node_name: str, names: list[str]) -> dict:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(self.get_parameters[node_name], GetParameters.Request(names=names), 30.0)
        return {name: parameter_value_to_python(value) for name, value in zip(names, response.values)}

    def set_parameter(self, node_name: str, name: str, value) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        response = self.call(self.set_parameters_clients[node_name], request, 30.0)
        if not response.results or not response.results[0].successful:
            raise BenchError(f"could not set {node_name} {name}: "
                             f"{response.results[0].reason if response.results else 'no answer'}")

    def override(self, node_name: str, name: str, value) -> None:
        """Set a node's parameter for the run and remember the old value (restored at the end);
        a parameter the node does not declare is left alone."""
        current = self.parameters(node_name, [name])[name]
        if current is None or current == value:
            return
        self._restore.setdefault((node_name, name), current)
        self.set_parameter(node_name, name, value)

    def probe(self) -> float:
        """One idle service round trip to vlm_node (get_parameters: no engine work), seconds."""
        from rcl_interfaces.srv import GetParameters

        started = time.perf_counter()
        self.call(self.get_parameters["vlm_node"], GetParameters.Request(names=["device"]), 10.0)
        return time.perf_counter() - started

    def fresh_counters(self, since: float) -> dict[str, dict[str, int]]:
        """Wait for a /diagnostics status newer than ``since`` from each counting node; their counters."""
        nodes = [n for n in DIAG_COUNTERS if self.diag(n) is not None or not self.config.attach]
        self.spin_until(lambda: all(self.diag(n, (0,))[0] > since for n in nodes), 15.0,
                        "fresh /diagnostics from " + ", ".join(nodes))
        return {n: {key: int(float(self.diag(n)[3].get(key, 0) or 0)) for key in DIAG_COUNTERS[n]}
                for n in nodes}

    def link_stats(self):
        if not self.config.link:
            return None
        from uservlm_ros.netlink import Link

        try:
            return Link(rate=self.config.link["rate"], token=self.config.link["token"]).qdisc_stats()
        except Exception as error:  # counters are a bonus: report why they are missing
            return {"error": str(error)}

    # -- the run ----------------------------------------------------------------------------
    def wait_ready(self) -> dict:
        started = time.monotonic()
        timeout = self.config.startup_timeout
        for name, client in self.services.items():
            self.spin_until(client.service_is_ready, timeout, f"/uservlm/{name} up (see the node logs)")
        for name, client in self.get_parameters.items():
            self.spin_until(client.service_is_ready, timeout, f"{name} up")
        self.spin_until(lambda: self.diag("dialogue_node", (0, 1))[1] == 0, timeout,
                        "dialogue_node reporting the cloud side reachable (/diagnostics OK)")
        self.spin_until(lambda: self.node.count_publishers("speech") >= 1 and self.node.count_subscribers("speech") >= 2
                        and self.node.count_subscribers("speech_audio") >= 2
                        and self.node.count_publishers("speech_started") >= 1, timeout,
                        "asr_node -> dialogue_node -> speaker_node topics matched")
        self.log(f"[bench] graph ready after {time.monotonic() - started:.1f} s")
        params = {
            "asr_node": self.parameters("asr_node", ["model", "device", "compute_type", "beam_size", "vad_threshold",
                                                     "min_silence_ms", "speech_pad_ms", "max_utterance_seconds",
                                                     "self_speech_tail", "speculative"]),
            "vlm_node": self.parameters("vlm_node", ["base_model", "adapter", "device", "dtype", "max_new_tokens",
                                                     "offline_fallback"]),
            "tts_node": self.parameters("tts_node", ["backend", "piper_voice", "coqui_model"]),
            "ethics_node": self.parameters("ethics_node", ["use_embeddings"]),
            "dialogue_node": self.parameters("dialogue_node", ["user_id", "speak", "stream_audio",
                                                               "max_frame_skew"]),
        }
        self.echo_tail = float(params["asr_node"].get("self_speech_tail") or 0.0)
        # What each engine node says it loaded (e.g. "active: piper:en_US-joe-medium").
        params["engines"] = {name: self.diag(name)[2] for name in CLOUD_NODES if self.diag(name) is not None}
        return params

    def prepare_user(self) -> tuple[str, str, str]:
        """(question, user id, review decision the measured turns will get)."""
        from uservlm_ros.ros.conversions import array_to_audio
        from uservlm_ros.srv import Forget, Review, Transcribe

        samples, rate, channels = bag_audio(self.bag)
        request = Transcribe.Request()
        request.audio = array_to_audio(samples.reshape(-1, channels) if channels > 1 else samples, rate)
        response = self.call(self.services["transcribe"], request, 120.0)
        if not response.success or not response.text.strip():
            raise BenchError(f"the bag's audio did not transcribe: {response.error or 'no speech'}")
        question = response.text.strip()
        user = "" if self.config.consent == "anonymous" else self.config.user_id
        if self.config.attach:
            self.override("dialogue_node", "user_id", user)
            self.override("dialogue_node", "stream_audio", self.config.stream_audio)
        if not user:
            return question, user, "anonymous (no consent memory)"
        self.call(self.services["forget"], Forget.Request(user_id=user))
        review = self.call(self.services["review"], Review.Request(question=question, user_id=user))
        if review.success and review.decision == "clarify":
            reply = self.call(self.services["review"], Review.Request(question=CONSENT_REPLY, user_id=user))
            if not (reply.success and reply.resolved_reply and reply.decision == "allow"):
                raise BenchError(f"pre-consent failed: the review read {CONSENT_REPLY!r} as {reply.decision!r} "
                                 f"({reply.error or reply.reason})")
        elif not review.success:
            raise BenchError(f"/uservlm/review failed: {review.error}")
        check = self.call(self.services["review"], Review.Request(question=question, user_id=user))
        return question, user, check.decision

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
            # Does dialogue_node stream the answer sentence by sentence (a parameter newer graphs have)?
            self.streaming = bool(self.parameters("dialogue_node", ["stream_audio"])["stream_audio"])
            params["dialogue_node"]["stream_audio"] = self.streaming
            self.log(f"[bench] question (transcribed from the bag): {question!r}; user "
                     f"{user or '(anonymous)'}: review says {decision}")
            utterances = VadTrack(self.bag, params["asr_node"]).next_replay()
            if not utterances:
                raise BenchError(f"the VAD (asr_node's parameters) finds no complete utterance in {self.bag.path}: "
                                 "it needs speech followed by at least min_silence_ms of silence")
            self.vad = VadTrack(self.bag, params["asr_node"])
            phases = [self.run_phase(uplink, utterances, pipeline)
                      for uplink in self.config.uplinks for pipeline in self.config.pipelines]
        finally:
            self.cleanup_user(user)  # forget the bench user; restore dialogue_node's parameters
        return {"params": params, "question": question, "user_id": user, "review_decision": decision,
                "utterances_per_replay": len(utterances), "phases": phases,
                "bag": {"path": str(self.bag.path), "messages": len(self.bag.messages),
                        "duration": self.bag.duration,
                        "topics": {t.name: {"type": t.msgtype, "count": t.count} for t in self.bag.topics.values()}}}

    def set_pipeline(self, pipeline: str) -> dict:
        """Set the nodes' parameters of a PIPELINES entry ("" = leave them); what the phase runs with."""
        for node_name, values in PIPELINES.get(pipeline, {}).items():
            for name, value in values.items():
                self.override(node_name, name, value)
        asr = self.parameters("asr_node", ["speculative", "window_seconds"])
        state = {"stream_audio": bool(self.parameters("dialogue_node", ["stream_audio"])["stream_audio"]),
                 "speculative": bool(asr["speculative"]), "window_seconds": asr["window_seconds"]}
        self.streaming = state["stream_audio"]
        self.vad.speculative = state["speculative"]  # asr_start follows asr_node's setting
        self.pipeline = pipeline or pipeline_label(**state)
        return state

    def run_phase(self, uplink: str, utterances: list[dict], pipeline: str = "") -> dict:
        state = self.set_pipeline(pipeline)
        label = " ".join(part for part in (uplink if len(self.config.uplinks) > 1 or not pipeline else "", pipeline)
                         if part)
        messages = bags.camera_uplink(self.bag, uplink)
        replayer = bags.Replayer(self.node, self.bag, messages=messages)
        camera = [name for name in replayer.names.values() if name.endswith(bags.CAMERA_RAW) or
                  name.endswith(bags.CAMERA_JPEG)]
        need = {name: 1 for name in replayer.names.values()}
        need.update({name: self.config.min_camera_subscribers for name in camera})
        replayer.wait_for_subscribers(self.executor, self.config.startup_timeout, need, settle=1.0)
        link_before = self.link_stats()
        phase_started = time.monotonic()
        rows = []
        total = self.config.warmup + self.config.turns
        for index in range(total):
            warm = index < self.config.warmup
            rows += self.take_turn(replayer, uplink, index - self.config.warmup + 1, warm, utterances, camera)
            row = rows[-1]
            self.log(f"[bench] {label} {'warm-up' if warm else 'turn'} {index + 1 - (0 if warm else self.config.warmup)}"
                     f"/{self.config.warmup if warm else self.config.turns}: "
                     + (f"audio out {row['speech_end_to_audio_out']:.2f} s, middleware "
                        + ("n/a (streamed)" if math.isnan(row["middleware"]) else f"{row['middleware'] * 1000:.0f} ms")
                        if row.get("success") else f"FAILED: {row.get('error')}"))
        seconds = time.monotonic() - phase_started
        link_after = self.link_stats()
        replayer.destroy()
        return {"uplink": uplink, "label": label, "pipeline": pipeline, **state, "rows": rows, "seconds": seconds,
                "link_before": link_before, "link_after": link_after}

    def take_turn(self, replayer, uplink: str, turn: int, warm: bool, utterances: list[dict],
                  camera: list[str]) -> list[dict]:
        timeout = self.config.turn_timeout
        # The robot must be silent (plus ASR's echo tail), or ASR ignores the question.
        self.spin_until(lambda: not self.speaking and time.monotonic() - self.speaking_changed > self.echo_tail + 0.2,
                        timeout, "the robot to stop speaking before the turn")
        before = self.fresh_counters(time.time())
        n_interactions, n_utterances, n_spoken = len(self.interactions), len(self.utterances), len(self.spoken)
        spoke = self.spoke
        report = replayer.play(self.executor, rate=self.config.speed)
        utterances = self.vad.next_replay() or utterances
        expected = len(utterances)
        self.spin_until(lambda: len(self.interactions) >= n_interactions + expected, timeout,
                        f"{expected} interaction record(s) for this replay")
        answers = sum(1 for _, r in self.interactions[n_interactions:] if r.speech_end_to_audio_out > 0)
        # robot_speaking and interactions are different topics: wait for the speaking to be seen.
        self.spin_until(lambda: self.spoke >= spoke + min(answers, 1) and not self.speaking, timeout,
                        "the robot to finish speaking")
        after = self.fresh_counters(time.time())
        probes = [self.probe() for _ in range(self.config.probes)]
        published_frames = sum(n for t, n in report.counts.items() if replayer.names[t] in camera)
        published_chunks = sum(n for t, n in report.counts.items() if replayer.names[t].endswith(bags.AUDIO))

        def delta(node_name: str) -> int | None:
            if node_name not in before or node_name not in after:
                return None
            return sum(after[node_name].values()) - sum(before[node_name].values())

        late = audio_lateness(report, replayer.names)
        rows = []
        new_utterances = self.utterances[n_utterances:]
        for position, (received, record) in enumerate(self.interactions[n_interactions:n_interactions + expected]):
            # this turn's speech_audio messages: (arrival at the bench, publish stamp), seconds
            spoken = [(t, s.sec + s.nanosec * 1e-9) for t, s, frame in self.spoken[n_spoken:]
                      if frame == record.turn_id]
            speech_end = record.speech_end.sec + record.speech_end.nanosec * 1e-9
            heard = [t - (u.header.stamp.sec + u.header.stamp.nanosec * 1e-9) for t, u in new_utterances]
            row = {"uplink": uplink, "pipeline": self.pipeline, "turn": turn, "warmup": warm, "turn_id": record.turn_id,
                   "success": bool(record.success) and record.speech_end_to_audio_out > 0,
                   "error": record.error, "transcript": record.transcript, "answer": record.answer[:80],
                   "clarification": bool(record.clarification), "image_source": record.image_source,
                   "model": record.model, "placeholder_model": bool(record.placeholder_model),
                   "speech_end_to_transcript": record.speech_end_to_transcript,
                   "speech_end_to_answer": record.speech_end_to_answer,
                   "speech_end_to_audio_out": record.speech_end_to_audio_out,
                   **vad_times(utterances[min(position, len(utterances) - 1)], late),
                   "speculative_asr": utterances[min(position, len(utterances) - 1)]["speculative"],
                   # online speech end - where the offline VAD put it (restamped): ~0 when they agree
                   "speech_end_error": (record.speech_end.sec + record.speech_end.nanosec * 1e-9)
                                       - (report.started_wall + utterances[min(position, len(utterances) - 1)]["end"]
                                          - replayer.messages[0].log_time / 1e9),
                   "vad": record.vad_seconds, "asr": record.asr_seconds, "review": record.review_seconds,
                   "preprocess": record.preprocess_seconds, "prefill": record.prefill_seconds,
                   "generation": record.generation_seconds, "synthesis": record.synthesis_seconds,
                   "ask_round_trip": record.ask_round_trip_seconds, "server": record.server_seconds,
                   "speech_hop": heard[position] if position < len(heard) else math.nan,
                   "speech_audio_hop": spoken[0][0] - spoken[0][1] if spoken else math.nan,
                   "first_audio": record.first_audio_seconds,
                   "speech_end_to_speech_audio": spoken[0][1] - speech_end if spoken else math.nan,
                   "probe_rtt": statistics.median(probes) if probes else math.nan,
                   "frames_published": published_frames, "frames_received_vlm": delta("vlm_node"),
                   "frames_received_dialogue": delta("dialogue_node"),
                   "chunks_published": published_chunks, "chunks_received_asr": delta("asr_node"),
                   "replay_error_median_ms": report.median_error_ms, "replay_error_max_ms": report.max_error_ms,
                   "streamed": self.streaming}
            fill_derived(row)
            rows.append(row)
        return rows

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def audio_lateness(report: bags.ReplayReport, names: dict) -> list[float]:
    """Seconds each audio chunk of one replay went out after its due time (the replay's own
    timing error: a busy bench process publishes a chunk late), in bag order."""
    return [published - scheduled
            for published, scheduled, topic in zip(report.published, report.scheduled, report.topics)
            if names[topic].endswith(bags.AUDIO)]


def vad_times(utterance: dict, late: list[float]) -> dict:
    """``vad_wait`` and ``asr_start`` of one utterance (:class:`VadTrack`), each moved to when the
    replay actually published its chunk, and that lateness as ``replay_late`` (seconds): the
    audio was not there yet, so the wait is the microphone's, not the middleware's."""
    def lateness(key: str) -> float:
        index = utterance.get(key)
        return max(late[index], 0.0) if index is not None and index < len(late) else 0.0

    return {"vad_wait": utterance["vad_wait"] + lateness("chunk"),
            "asr_start": utterance["asr_start"] + lateness("start_chunk"),
            "replay_late": lateness("chunk")}


def fill_derived(row: dict) -> dict:
    """compute, vad_exposed, middleware and its five hops (see the module docstring) from a row."""
    compute = sum(row[stage] for stage in COMPUTE_STAGES)
    cloud_compute = compute - row["asr"] - row["vad"]
    row["compute"] = compute
    # The VAD's wait that ASR does not hide: transcription (from asr_start) and the VAD's
    # confirmation of the end (vad_wait) run side by side; the transcript needs both.
    row["vad_exposed"] = max(row["vad_wait"] - row["asr"], row.get("asr_start", row["vad_wait"]))
    if not row["success"]:
        for name in ("middleware", *HOPS):
            row[name] = math.nan
        return row
    row["middleware"] = row["speech_end_to_audio_out"] - row["vad_exposed"] - compute
    row["hop_audio_to_transcript"] = (row["speech_end_to_transcript"] - row["vad_exposed"] - row["vad"]
                                      - row["asr"])
    row["hop_transcript_to_ask"] = (row["speech_end_to_answer"] - row["speech_end_to_transcript"]
                                    - row["ask_round_trip"])
    if row.get("first_audio", 0) > 0 and not math.isnan(row.get("speech_end_to_speech_audio", math.nan)):
        # publish_audio: vlm_node published the audio for the speaker itself; the spoken path is
        # request -> cloud -> speech_audio -> speaker, the response travels back beside it.
        sent = row["speech_end_to_answer"] - row["ask_round_trip"]
        row["hop_ask_transport"] = row["speech_end_to_speech_audio"] - sent - row["first_audio"]
        row["hop_cloud_internal"] = row["first_audio"] - cloud_compute
        row["hop_answer_to_audio_out"] = row["speech_end_to_audio_out"] - row["speech_end_to_speech_audio"]
    else:  # the audio came back in the response and dialogue_node published it
        row["hop_ask_transport"] = row["ask_round_trip"] - row["server"]
        row["hop_cloud_internal"] = row["server"] - cloud_compute
        row["hop_answer_to_audio_out"] = row["speech_end_to_audio_out"] - row["speech_end_to_answer"]
    if row.get("streamed"):
        # Sentences were spoken while the answer was still being written: synthesis overlaps
        # generation and the first audio precedes the response, so these are not defined.
        for name in ("middleware", "hop_cloud_internal", "hop_answer_to_audio_out"):
            row[name] = math.nan
    return row


def run_session(config: SessionConfig, alive=None, log=print) -> dict:
    session = Session(config, alive=alive, log=log)
    try:
        return session.run()
    finally:
        session.close()


# -- reports -----------------------------------------------------------------------------------
def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(rows[0].keys()) if rows else []
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})


def plot(phases: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("vad_exposed", *COMPUTE_STAGES, "middleware")
    colours = dict(zip(stages, plt.get_cmap("tab10").colors))
    figure, (bars, cdf) = plt.subplots(1, 2, figsize=(13, 5))
    x = 0
    ticks, labels = [], []
    for phase in phases:
        rows = [r for r in phase["rows"] if not r["warmup"] and r["success"]]
        for row in rows:
            bottom = 0.0
            for stage in stages:
                value = max(0.0, row[stage])
                bars.bar(x, value, bottom=bottom, color=colours[stage],
                         label=stage if x == 0 else None)
                bottom += value
            ticks.append(x)
            labels.append(f"{_label(phase)[0].upper()}{row['turn']}" if len(phases) > 1 else str(row["turn"]))
            x += 1
        x += 1
    bars.set_xticks(ticks, labels, fontsize=7)
    bars.set_ylabel("seconds from end of speech to first audio out")
    bars.set_xlabel("turn" + (" (" + ", ".join(f"{_label(p)[0].upper()} = {_label(p)}" for p in phases) + ")"
                              if len(phases) > 1 else ""))
    bars.set_title("per-turn stages (stacked)")
    bars.set_ylim(0, bars.get_ylim()[1] * 1.4)
    bars.legend(fontsize=7, loc="upper left", ncol=4)
    for phase in phases:
        rows = [r for r in phase["rows"] if not r["warmup"] and r["success"]]
        for column, style in (("speech_end_to_transcript", ":"), ("speech_end_to_answer", "--"),
                              ("speech_end_to_audio_out", "-"), ("middleware", "-.")):
            values = sorted(r[column] for r in rows)
            if not values:
                continue
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            cdf.step(values, fractions, where="post", linestyle=style,
                     label=f"{column.replace('speech_end_to_', 'to ')}" + (f" ({_label(phase)})" if len(phases) > 1 else ""))
    cdf.set_xscale("log")
    cdf.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    cdf.set_xlabel("seconds (log scale)")
    cdf.set_ylabel("fraction of turns")
    cdf.set_title("latency CDF")
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=7, loc="lower right")
    import textwrap

    figure.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _label(phase: dict) -> str:
    return phase.get("label") or phase["uplink"]


def pipeline_label(stream_audio: bool, speculative: bool, window_seconds) -> str:
    window = "standard 30 s window" if not window_seconds else f"{window_seconds:g} s window"
    return (f"speech {'streamed' if stream_audio else 'whole'}, ASR {'speculative' if speculative else 'after the end'}, "
            f"{window}")


def describe_phase(phase: dict) -> str:
    if "stream_audio" not in phase:  # a result written before phases said what they ran
        return "uplink " + phase["uplink"]
    speech = ("each sentence spoken as soon as it is synthesized (stream_audio on): the middleware share is "
              "not defined when synthesis overlaps generation" if phase["stream_audio"]
              else "the whole answer once synthesized (stream_audio off)")
    asr = ("transcription starts when the silence begins (speculative on)" if phase["speculative"]
           else "transcription starts when the end of speech is confirmed (speculative off)")
    window = phase.get("window_seconds")
    asr += "; Whisper's standard 30 s window" if not window else f"; encoder window {window:g} s (grown to fit)"
    return f"uplink {phase['uplink']}; speech out: {speech}; ASR: {asr}"


def compare_pipelines(phases: list[dict]) -> list[str]:
    """Time to first audio of each pipeline against the sequential one, per uplink (--compare)."""
    lines = []
    for uplink in dict.fromkeys(p["uplink"] for p in phases):
        by_pipeline = {p.get("pipeline"): summarize(p["rows"])["speech_end_to_audio_out"]
                       for p in phases if p["uplink"] == uplink}
        base = by_pipeline.get("sequential")
        others = [name for name in by_pipeline if name and name != "sequential"]
        if base is None or not others:
            continue
        lines.append("")
        lines.append(f"time to first audio ({uplink}), one run, median (p95) ms: sequential "
                     f"{_ms(base['median']).strip()} ({_ms(base['p95']).strip()})")
        for name in others:
            after = by_pipeline[name]
            ratio = base["median"] / after["median"] if after["median"] else math.nan
            ratio95 = base["p95"] / after["p95"] if after["p95"] else math.nan
            target = (f"; target >= {TTFA_TARGET}x: {'met' if ratio >= TTFA_TARGET else 'NOT met'}"
                      if name == "streamed" else "")
            lines.append(f"  {name}: {_ms(after['median']).strip()} ({_ms(after['p95']).strip()}): "
                         f"{ratio:.2f}x faster at the median, {ratio95:.2f}x at p95{target}")
    return lines


def _ms(value: float) -> str:
    return "     -" if value is None or math.isnan(value) else f"{value * 1000:8.0f}"


def losses(rows: list[dict]) -> dict:
    measured = [r for r in rows]
    total = {k: 0 for k in ("frames_published", "frames_received_vlm", "frames_received_dialogue",
                            "chunks_published", "chunks_received_asr")}
    unknown = set()
    for row in measured:
        for key in total:
            if row.get(key) is None:
                unknown.add(key)
            else:
                total[key] += int(row[key])
    for key in unknown:
        total[key] = None
    return total


def format_report(result: dict) -> str:
    meta = result["meta"]
    hw = meta["hardware"]
    lines = [f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']} RAM, GPU: {hw['gpu']}; "
             f"Linux {hw['kernel']}, Python {hw['python']}, {hw['rmw']}"]
    lines.append("models: " + meta["models_text"])
    lines.append("link: " + meta["link_text"])
    if "cloud_processes" in meta:
        lines.append("cloud nodes: " + meta["cloud_processes"])
    if "cpu_idle" in meta:
        lines.append(meta["cpu_idle"])
    session = result["session"]
    bag = session["bag"]
    lines.append(f"bag: {bag['path']} ({bag['messages']} messages, {bag['duration']:.2f} s); question "
                 f"{session['question']!r}; user {session['user_id'] or '(anonymous)'} -> review: "
                 f"{session['review_decision']}")
    for phase in session["phases"]:
        rows = phase["rows"]
        measured = [r for r in rows if not r["warmup"]]
        ok = [r for r in measured if r["success"]]
        summary = summarize(rows)
        lines.append("")
        lines.append(f"{_label(phase)}: {len(ok)}/{len(measured)} turns answered and spoken "
                     f"(+{len(rows) - len(measured)} warm-up); clarifications: "
                     f"{sum(1 for r in ok if r['clarification'])}; user image: "
                     f"{', '.join(sorted({r['image_source'] for r in ok})) or '-'}")
        lines.append("  " + describe_phase(phase))
        lines.append(f"  {'':40s} {'median':>8s} {'p95':>8s}   (ms, n={summary['speech_end_to_audio_out']['n']})")
        for column, label in SUMMARY:
            lines.append(f"  {label:40s} {_ms(summary[column]['median'])} {_ms(summary[column]['p95'])}")
        lines.append(f"  paper's ROS 2 middleware latency per interaction: {PAPER_MIDDLEWARE}")
        lost = losses(rows)
        frames_ok = all(lost[k] == lost["frames_published"] for k in ("frames_received_vlm", "frames_received_dialogue")
                        if lost[k] is not None)
        chunks_ok = lost["chunks_received_asr"] in (None, lost["chunks_published"])
        verdict = "no frame or audio chunk lost" if frames_ok and chunks_ok else "LOSSES"
        lines.append(f"  {verdict}: frames published {lost['frames_published']}, received by vlm_node "
                     f"{lost['frames_received_vlm']}, by dialogue_node {lost['frames_received_dialogue']}; "
                     f"audio chunks published {lost['chunks_published']}, received by asr_node "
                     f"{lost['chunks_received_asr']} (warm-up included)")
        errors = [r["replay_error_median_ms"] for r in rows]
        lines.append(f"  replay timing error: median {statistics.median(errors):.2f} ms per turn, max "
                     f"{max(r['replay_error_max_ms'] for r in rows):.2f} ms")
        before, after = phase.get("link_before"), phase.get("link_after")
        if before and after and "error" not in before and "error" not in after:
            up = after["robot"]["bytes"] - before["robot"]["bytes"]
            down = after["cloud"]["bytes"] - before["cloud"]["bytes"]
            lines.append(f"  link: uplink {up / 1e6:.1f} MB ({up * 8 / phase['seconds'] / 1e6:.1f} Mbit/s average), "
                         f"downlink {down / 1e6:.1f} MB in {phase['seconds']:.0f} s; shaper drops up "
                         f"{after['robot']['dropped'] - before['robot']['dropped']}, down "
                         f"{after['cloud']['dropped'] - before['cloud']['dropped']}; UDP datagrams dropped for "
                         f"a full socket receive buffer: cloud side "
                         f"{after['cloud'].get('udp_rcvbuf_errors', 0) - before['cloud'].get('udp_rcvbuf_errors', 0)}, "
                         f"robot side "
                         f"{after['robot'].get('udp_rcvbuf_errors', 0) - before['robot'].get('udp_rcvbuf_errors', 0)}")
    lines += compare_pipelines(session["phases"])
    if meta.get("placeholder"):
        lines.append("")
        lines.append("NOTE: the VLM is the tiny RANDOMLY INITIALISED PaliGemma 2 stand-in (meaningless answers, "
                     "about 0.3 M parameters): its prefill/generation times say nothing about User-VLM 3B.")
    return "\n".join(lines)


def describe_models(session: dict) -> tuple[str, bool]:
    params = session["params"]
    rows = [r for phase in session["phases"] for r in phase["rows"] if r["success"]]
    answered_by = sorted({r["model"] for r in rows if r["model"]})
    placeholder = any(r["placeholder_model"] for r in rows)
    asr, vlm, tts, ethics = params["asr_node"], params["vlm_node"], params["tts_node"], params["ethics_node"]
    engines = params.get("engines", {})

    def loaded(node: str) -> str:
        message = engines.get(node, "")
        return f" [{node}: {message}]" if message else ""

    text = (f"ASR Whisper {asr['model']} ({asr['device']}, beam {asr['beam_size']}); "
            f"VLM answered by {', '.join(answered_by) or '?'}"
            + (" = tiny RANDOM stand-in" if placeholder else "")
            + f" (configured: base {vlm['base_model']}, adapter {vlm['adapter'] or '-'}, {vlm['device']}, "
              f"max_new_tokens {vlm['max_new_tokens']}); TTS {tts['backend']}"
            + (f" {Path(tts['piper_voice']).name}" if tts.get("piper_voice") else "")
            + loaded("tts_node") + f"; ethics rules{' + MiniLM' if ethics['use_embeddings'] else ''}")
    return text, placeholder


def finish(result: dict, out_dir: Path, label: str) -> str:
    """Write CSV, PNG and JSON; return the printed report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    session = result["session"]
    result["meta"]["models_text"], result["meta"]["placeholder"] = describe_models(session)
    stem = "bench" + (f"_{label}" if label else "")
    rows = [r for phase in session["phases"] for r in phase["rows"]]
    paths = {"csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png", "json": out_dir / f"{stem}.json"}
    write_csv(rows, paths["csv"])
    title = (f"uservlm bench: {Path(session['bag']['path']).name}, {result['meta']['link_text']}; "
             f"{result['meta']['hardware']['cpu']} x{result['meta']['hardware']['cores']}"
             + ("; VLM = tiny random stand-in" if result["meta"]["placeholder"] else ""))
    plot(session["phases"], paths["png"], title)
    result["summary"] = {_label(phase): summarize(phase["rows"]) for phase in session["phases"]}
    paths["json"].write_text(json.dumps(result, indent=1, default=str))
    report = format_report(result)
    return report + "\n\nwrote " + ", ".join(str(p) for p in paths.values())


# -- the whole run -------------------------------------------------------------------------------
@dataclass
class BenchOptions:
    bag: Path
    turns: int = 10
    warmup: int = 1
    uplinks: tuple = ("jpeg",)
    speed: float = 1.0
    attach: bool = False
    namespace: str = ""
    out: Path = Path("out/bench")
    link: str = "loopback"  # loopback | netns
    link_rate: str = "100mbit"
    params_file: Path | None = None
    overrides: dict = field(default_factory=dict)  # {node: {parameter: value}}
    consent: str = "grant"
    user_id: str = DEFAULT_USER
    startup_timeout: float = 600.0
    turn_timeout: float = 180.0
    label: str = ""
    stream_audio: bool = False
    compare: bool = False  # one phase per PIPELINES entry
    compose: bool = False  # the cloud nodes in one process (uservlm_ros/nodes/cloud.py)
    low_latency: bool = False  # hold /dev/cpu_dma_latency at 0 µs for the run (uservlm_ros/cpu_latency.py)


def graph_overrides(options: BenchOptions, out_dir: Path) -> dict:
    overrides = {
        "speaker_node": {"mode": "file", "output_dir": str(out_dir / "speech"), "realtime": True},
        "dialogue_node": {"user_id": "" if options.consent == "anonymous" else options.user_id,
                          "stream_audio": options.stream_audio},
        "ethics_node": {"store_dir": str(out_dir / "consent")},
    }
    for node, values in options.overrides.items():
        overrides.setdefault(node, {}).update(values)
    return overrides


def bench_specs(side: str, compose: bool = False):
    """The nodes the bench starts: the cloud side and the robot side minus camera/microphone.
    ``compose``: the cloud side as one process, with dialogue_node in it (the turn is taken on
    the cloud side of the link)."""
    from uservlm_ros.graph import JOINS_CLOUD, compose_cloud, nodes

    robot = [spec for spec in nodes("robot") if spec.name in ROBOT_NODES]
    if not compose:
        return nodes("cloud") if side == "cloud" else robot
    if side == "cloud":
        return compose_cloud(nodes("cloud") + [spec for spec in robot if spec.name in JOINS_CLOUD])
    return [spec for spec in robot if spec.name not in JOINS_CLOUD]


def _session_config(options: BenchOptions, link=None) -> SessionConfig:
    return SessionConfig(bag=str(Path(options.bag).resolve()), turns=options.turns, warmup=options.warmup,
                         uplinks=list(options.uplinks), speed=options.speed, namespace=options.namespace,
                         user_id=options.user_id, consent=options.consent, attach=options.attach,
                         startup_timeout=options.startup_timeout, turn_timeout=options.turn_timeout,
                         min_camera_subscribers=1 if options.attach or options.compose else 2,
                         stream_audio=options.stream_audio,
                         pipelines=list(PIPELINES) if options.compare else [""],
                         link={"token": link.token, "rate": link.rate} if link is not None else None)


def _watch(graphs):
    def alive() -> None:
        for graph in graphs:
            if graph.exited():
                raise BenchError(f"a node exited: {graph.exited()} (logs in {graph.log_dir})")
    return alive


def run_bench(options: BenchOptions, log=print) -> tuple[dict, str]:
    """Run the benchmark; returns (result, report text). Raises BenchError naming what failed."""
    out_dir = Path(options.out).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. a file of that name, no permission
        raise BenchError(f"--out {out_dir}: cannot create the output folder: {error}") from None
    if options.link not in ("loopback", "netns"):
        raise BenchError(f"--link must be loopback or netns, got {options.link!r}")
    if options.link == "netns" and options.attach:
        raise BenchError("--attach uses a running graph; --link netns starts its own in two namespaces")
    bags.read_bag(options.bag)  # fail early on a bad bag
    meta = {"hardware": hardware(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "options": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}}
    meta["cloud_processes"] = ("one process (cloud_node, --compose) with dialogue_node: ask, review and "
                               "synthesis called in-process, each node on its own executor thread"
                               if options.compose else "one process per node")
    hold = CpuLatencyHold(0)
    if options.low_latency:
        try:
            hold.acquire()  # system-wide: every process of the graph, either namespace
        except LatencyError as error:
            raise BenchError(f"--low-latency: {error}") from None
    meta["cpu_idle"] = hold.describe()
    try:
        return _run_bench(options, out_dir, meta, log)
    finally:
        hold.release()


def _run_bench(options: BenchOptions, out_dir: Path, meta: dict, log) -> tuple[dict, str]:
    from uservlm_ros.launcher import GraphProcesses

    started = time.monotonic()
    if options.link == "loopback":
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        meta["link_text"] = ("loopback: all processes on this host, Fast DDS shared memory + UDPv4 "
                             "(config/fastdds.xml)" + (", attached to a running graph" if options.attach else ""))
        graphs = []
        if not options.attach:
            specs = (bench_specs("cloud", options.compose)
                     + bench_specs("robot", options.compose))
            graph = GraphProcesses(specs, params_file=options.params_file,
                                   namespace=options.namespace, log_dir=out_dir / "logs",
                                   overrides=graph_overrides(options, out_dir))
            log(f"[bench] starting {', '.join(s.name for s in graph.specs)} (logs in {out_dir / 'logs'})")
            graphs.append(graph.start())
        try:
            session = run_session(_session_config(options), alive=_watch(graphs), log=log)
        finally:
            for graph in graphs:
                graph.stop()
    else:
        session = _run_netns(options, out_dir, meta, log)
    meta["seconds"] = time.monotonic() - started
    result = {"meta": meta, "session": session}
    return result, finish(result, out_dir, options.label)


def _run_netns(options: BenchOptions, out_dir: Path, meta: dict, log) -> dict:
    from uservlm_ros.launcher import GraphProcesses, die_with_parent
    from uservlm_ros.netlink import shaped_link

    with shaped_link(options.link_rate) as link:
        meta["link_text"] = (f"netns: robot side in {link.robot_ns} ({link.robot_address}), cloud side in "
                             f"{link.cloud_ns} ({link.cloud_address}), veth shaped by tc tbf to {link.rate} each "
                             "way, no added delay (netem unavailable); DDS over UDPv4, discovery to static peers")
        log(f"[bench] link up: {meta['link_text']}")
        overrides = graph_overrides(options, out_dir)
        cloud = GraphProcesses(bench_specs("cloud", options.compose),
                               params_file=options.params_file, namespace=options.namespace,
                               log_dir=out_dir / "logs", overrides=overrides, env=link.environment("cloud"),
                               command_prefix=link.exec_prefix("cloud"))
        robot = GraphProcesses(bench_specs("robot", options.compose),
                               params_file=options.params_file, namespace=options.namespace,
                               log_dir=out_dir / "logs", overrides=overrides, env=link.environment("robot"),
                               command_prefix=link.exec_prefix("robot"))
        config_path, result_path = out_dir / "session_config.json", out_dir / "session_result.json"
        result_path.unlink(missing_ok=True)
        config_path.write_text(json.dumps(asdict(_session_config(options, link))))
        log(f"[bench] starting {', '.join(s.name for s in cloud.specs)} in {link.cloud_ns}, "
            f"{', '.join(s.name for s in robot.specs)} and the replay in {link.robot_ns}")
        graphs = [cloud.start(), robot.start()]
        worker = None
        try:
            env = dict(robot.env)
            # On the robot the camera and the microphone are separate processes. In one replaying
            # process, Fast DDS's default synchronous publication would block (holding the GIL)
            # while a 921,600-byte raw frame squeezes through the shaped link, delaying the audio
            # behind it; asynchronous publication hands the frame to Fast DDS's sender thread.
            env["RMW_FASTRTPS_PUBLICATION_MODE"] = "ASYNCHRONOUS"
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                            env.get("PYTHONPATH", "")) if p)
            worker = subprocess.Popen([*link.exec_prefix("robot"), sys.executable, "-m", "uservlm_ros.bench",
                                       "--session", str(config_path), str(result_path)], env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=die_with_parent())
            alive = _watch(graphs)
            while worker.poll() is None:
                alive()
                time.sleep(0.2)  # the orchestrator only polls processes; no ROS here
            if worker.returncode != 0 or not result_path.is_file():
                raise BenchError(f"the robot-side session failed (exit {worker.returncode}); see above and "
                                 f"{out_dir / 'logs'}")
            return json.loads(result_path.read_text())
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, 2)
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, 9)
            for graph in graphs:
                graph.stop()


# -- CLI ---------------------------------------------------------------------------------------
def options_from_args(args) -> BenchOptions:
    from uservlm_ros.graph import MODEL_ARGUMENTS, model_overrides

    uplinks = tuple(args.uplink) if args.uplink else (("jpeg", "raw") if args.link == "netns" else ("jpeg",))
    overrides = model_overrides({name: getattr(args, name, "") for name in MODEL_ARGUMENTS})
    return BenchOptions(bag=Path(args.bag) if args.bag else default_bag(), turns=args.turns, warmup=args.warmup,
                        uplinks=uplinks, speed=args.speed, attach=args.attach, namespace=args.namespace,
                        out=Path(args.out), link=args.link, link_rate=args.rate,
                        params_file=Path(args.params_file) if args.params_file else None, overrides=overrides,
                        consent=args.consent, user_id=args.user_id, startup_timeout=args.startup_timeout,
                        turn_timeout=args.turn_timeout, stream_audio=args.stream_audio, compare=args.compare,
                        compose=args.compose, low_latency=args.low_latency,
                        label=args.label or (args.link if args.link != "loopback" else ""))


def cmd_bench(args) -> int:
    from uservlm_ros.netlink import LinkError

    if args.turns < 1 or args.warmup < 0:
        print("error: --turns must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 64
    from uservlm_ros.launcher import interrupt_on

    try:
        with interrupt_on():  # SIGTERM, SIGHUP: the graph stops as on Ctrl-C
            _, report = run_bench(options_from_args(args),
                                  log=lambda text: print(text, flush=True))
    except (BenchError, bags.BagError, LinkError) as error:
        print(f"[bench] error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[bench] interrupted", file=sys.stderr)
        return 130
    print("\n" + report, flush=True)
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """``uservlm bench``: add it to the CLI with ``bench.add_bench_parser(sub)``."""
    from uservlm_ros.graph import MODEL_ARGUMENTS

    parser = subparsers.add_parser(
        "bench", help="replay a bag through the graph N times; latency per stage and the ROS middleware share")
    parser.add_argument("bag", nargs="?", help="rosbag2 directory (default: the bundled demo bag)")
    parser.add_argument("--turns", type=int, default=10, help="measured replays of the bag")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured replays first (model warm-up)")
    parser.add_argument("--uplink", nargs="+", choices=("jpeg", "raw", "bag"),
                        help="camera stream(s) to feed: JPEG (camera/image_raw/compressed), raw rgb8 "
                             "(camera/image_raw) or both as recorded; several = one phase each "
                             "(default: jpeg; with --link netns: jpeg raw)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (1 = original timing)")
    parser.add_argument("--link", choices=("loopback", "netns"), default="loopback",
                        help="loopback: one host; netns: robot and cloud in two network namespaces over a shaped veth")
    parser.add_argument("--rate", default="100mbit", help="netns link rate each way, tc syntax (e.g. 20mbit)")
    parser.add_argument("--attach", action="store_true",
                        help="use a running graph (uservlm up, without camera/microphone) instead of starting one")
    parser.add_argument("--namespace", default="", help="robot namespace of the graph")
    parser.add_argument("--consent", choices=("grant", "anonymous"), default="grant",
                        help="grant: a pre-consented bench user (full personalised path); anonymous: empty user id "
                             "(the review answers generically, the face is withheld)")
    parser.add_argument("--user-id", default=DEFAULT_USER, help="the bench's user (forgotten at the end)")
    parser.add_argument("--stream-audio", action="store_true",
                        help="speak each sentence as soon as it is synthesized (dialogue_node stream_audio); "
                             "default off: the answer is spoken whole, which keeps the stage decomposition exact")
    parser.add_argument("--compare", action="store_true",
                        help="three phases in one run: sequential (Whisper's standard 30 s window once the end "
                             "of speech is confirmed, whole answer, then speech), short-window (the same with "
                             "asr_node's shorter encoder window) and streamed (short window, speculative "
                             "transcription, each sentence spoken as soon as it is synthesized); prints each "
                             "one's time to first audio and its ratio to sequential")
    parser.add_argument("--compose", action="store_true",
                        help="run the cloud nodes and dialogue_node in one process (cloud_node): the ask, the "
                             "ethics review and TTS are called in-process instead of over DDS")
    parser.add_argument("--low-latency", action="store_true",
                        help="hold the kernel's CPU wake-up latency at 0 µs for the run (/dev/cpu_dma_latency; "
                             "needs root or write access): idle CPUs poll instead of sleeping")
    parser.add_argument("--params-file", help="parameter YAML applied after config/*.yaml")
    parser.add_argument("--out", default="out/bench", help="folder for CSV, PNG, JSON, logs and spoken WAVs")
    parser.add_argument("--label", default="", help="suffix of the output file names")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for the graph")
    parser.add_argument("--turn-timeout", type=float, default=180.0, help="seconds to wait for each turn")
    for argument, (_, _, help_text) in MODEL_ARGUMENTS.items():
        parser.add_argument(f"--{argument.replace('_', '-')}", dest=argument, default="", help=help_text)
    parser.set_defaults(func=cmd_bench)
    return parser


def _session_main(config_path: str, result_path: str) -> int:
    """Entry of the robot-side session in its network namespace (``--link netns``)."""
    config = SessionConfig(**json.loads(Path(config_path).read_text()))
    try:
        result = run_session(config, log=lambda text: print(text, flush=True))
    except (BenchError, bags.BagError) as error:
        print(f"[bench] error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--session"] and len(argv) == 3:
        return _session_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(prog="uservlm")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
