"""Test recordings for barge-in: the robot's answer coming back as echo, and a person cutting in.

Each :class:`EchoRecording` holds its parts, so it can be mixed again with the loudspeaker stopped
early (what happens once barge-in stops the robot): the reference the speaker played (Piper,
22.05 kHz, stamped with the time its first sample went out), the echo path (delay, level, room)
and the person's voice aligned to the microphone's capture times. The robot is Piper's
en_US-joe-medium; the person is the same model pitched up by ``PERSON_PITCH`` with its duration
kept (resampled as if played faster, after synthesis that much slower): a higher voice with
shifted formants, so nothing in the test lets the robot's own waveform pass for the person.

Levels: the person speaks at ``PERSON_DBFS`` (RMS over speech), the echo at the person's level
plus ``EchoPath.gain_db``, the microphone's noise ``NOISE_BELOW_PERSON_DB`` under the person.
Everything is drawn from one seeded generator and Piper's noise is switched off, so the same
seed gives the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from uservlm_ros.engines.echo.room import (
    EchoPath,
    active_rms,
    convolve,
    impulse_response,
    mic_noise,
    onset_of,
)
from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, float_to_int16, resample, to_float32

PERSON_DBFS = -26.0
NOISE_BELOW_PERSON_DB = 35.0
#: The person's voice: Piper pitched up by this factor (about four semitones).
PERSON_PITCH = 1.25
#: Ranges the echo paths are drawn from (design range of the gate).
DELAY_RANGE_S = (0.020, 0.080)
GAIN_RANGE_DB = (-12.0, 0.0)
RT60_RANGE_S = (0.2, 0.5)
#: Microphone audio before the answer starts and after everything ends, seconds.
LEAD_S = 0.6
TRAIL_S = 1.0
#: The person starts within this fraction of the answer.
ONSET_RANGE = (0.3, 0.7)
#: Capture time of the first microphone sample of every recording (any clock will do).
MIC_START = 1000.0

ANSWERS = (
    "The weather today is sunny with a light breeze. It should stay warm until the evening.",
    "A dark suit and a white shirt are a safe choice. Add a plain tie if the meeting is formal.",
    "The library opens at nine in the morning. It closes at six on weekdays.",
    "I can see a person in front of me. They seem to be smiling at the camera.",
    "Paris is the capital of France. It is famous for its museums and its food.",
    "Water boils at one hundred degrees Celsius at sea level. Higher up it boils sooner.",
    "The meeting room is on the second floor. Take the lift and turn left.",
    "A healthy breakfast has some fruit and whole grains. Coffee is fine in moderation.",
    "The train to the airport leaves every fifteen minutes. The trip takes half an hour.",
    "Robots like me use cameras and microphones to understand the world around them.",
    "You could try a short walk after lunch. It helps many people stay focused.",
    "The museum has a new exhibition about ancient Egypt. It runs until the end of March.",
    "To reset your password, open the settings page. Then follow the link in the email.",
    "Tomatoes grow best in full sun. Water them in the morning and not at night.",
    "The nearest pharmacy is across the street. It is open until eight tonight.",
    "Chess is a game for two players. Each player starts with sixteen pieces.",
    "A good presentation tells one story. Keep the slides simple and speak slowly.",
    "The moon takes about twenty seven days to go around the earth once.",
    "Most cats sleep for more than twelve hours a day. They are most active at dawn.",
    "You can recycle paper, glass and most plastic bottles in the blue bins outside.",
    "The concert starts at eight o'clock. Doors open one hour before the show.",
    "Learning a language takes practice every day. Short sessions work better than long ones.",
    "The bakery on the corner sells fresh bread in the morning. Their rolls are popular.",
    "Your next appointment is on Thursday at ten. Please bring your identity card.",
)
INTERRUPTIONS = (
    "Wait, what time does it close?",
    "Sorry, can you say that again?",
    "Stop, I have another question.",
    "How far is the station from here?",
    "Excuse me, where is the bathroom?",
    "Hold on, is it open on Sunday?",
    "Thank you, that is enough.",
    "What about tomorrow morning?",
)


@dataclass
class EchoRecording:
    """One answer heard back by the microphone, with ground truth. Times are capture times."""

    name: str
    answer: str
    reference: np.ndarray  # int16: what the speaker played
    reference_rate: int
    reference_start: float  # time the reference's first sample went out
    path: EchoPath
    response: np.ndarray = field(repr=False)  # 16 kHz echo path, unit direct sound
    echo_scale: float = field(repr=False)  # reference (16 kHz float) -> echo level at the mic
    noise: np.ndarray = field(repr=False)
    person: np.ndarray | None = field(default=None, repr=False)  # 16 kHz, aligned to the mic
    person_text: str = ""
    person_onset: float | None = None  # first sample of the person's speech
    person_end: float | None = None
    mic_start: float = MIC_START

    @property
    def rate(self) -> int:
        return ASR_SAMPLE_RATE

    @property
    def samples(self) -> int:
        return self.noise.size

    @property
    def reference_end(self) -> float:
        return self.reference_start + self.reference.size / self.reference_rate

    def time_of(self, index: int) -> float:
        return self.mic_start + index / ASR_SAMPLE_RATE

    def index_of(self, stamp: float) -> int:
        return int(round((stamp - self.mic_start) * ASR_SAMPLE_RATE))

    def played(self, stop_at: float | None = None) -> np.ndarray:
        """The reference as played: cut at ``stop_at`` (the speaker stopped), int16."""
        if stop_at is None or stop_at >= self.reference_end:
            return self.reference
        keep = max(0, int((stop_at - self.reference_start) * self.reference_rate))
        return self.reference[:keep]

    def echo(self, stop_at: float | None = None) -> np.ndarray:
        """The echo alone at the microphone (float64), the speaker stopped at ``stop_at``."""
        played = resample(self.played(stop_at), self.reference_rate, ASR_SAMPLE_RATE)
        offset = self.index_of(self.reference_start)
        aligned = np.zeros(self.samples)
        aligned[offset : offset + played.size] = played[: max(0, self.samples - offset)]
        return convolve(aligned, self.response, self.samples) * self.echo_scale

    def mic(self, stop_at: float | None = None) -> np.ndarray:
        """What the microphone captured (float32 in [-1, 1])."""
        mixed = self.echo(stop_at) + self.noise
        if self.person is not None:
            mixed = mixed + self.person
        return np.clip(mixed, -1.0, 1.0).astype(np.float32)

    def chunks(
        self, chunk_ms: int = 40, stop_at: float | None = None
    ) -> Iterator[tuple[np.ndarray, float]]:
        """(int16 samples, capture stamp of the first) per ``chunk_ms``, as a microphone sends."""
        pcm = float_to_int16(self.mic(stop_at))
        step = ASR_SAMPLE_RATE * chunk_ms // 1000
        for start in range(0, pcm.size, step):
            yield pcm[start : start + step], self.time_of(start)

    def without_person(self) -> EchoRecording:
        """The same answer and room with nobody talking over it."""
        return replace(
            self,
            name=f"{self.name}-echo",
            person=None,
            person_text="",
            person_onset=None,
            person_end=None,
        )


class RecordingVoices:
    """Piper (the project's TTSEngine) with its random noise off: same text, same samples."""

    def __init__(self, engine=None):
        from uservlm_ros.engines.tts import TTSConfig, TTSEngine

        self.engine = engine or TTSEngine(TTSConfig(backend="piper"))
        self.engine.load()
        backend = getattr(self.engine, "_backend", None)
        if not hasattr(backend, "_syn"):
            raise RuntimeError(
                "the Piper backend changed: cannot switch its noise off for a repeatable take"
            )
        from piper import SynthesisConfig

        self._config = SynthesisConfig
        self._backend = backend
        self._base_scale = backend._syn.length_scale
        self.rate = self.engine.sample_rate

    def _synthesize(self, text: str, length_scale: float) -> np.ndarray:
        self._backend._syn = self._config(
            length_scale=self._base_scale * length_scale, noise_scale=0.0, noise_w_scale=0.0
        )
        return self.engine.synthesize(text).samples

    def robot(self, text: str) -> np.ndarray:
        """The robot's voice, int16 at :attr:`rate`."""
        return self._synthesize(text, 1.0)

    def person(self, text: str, pitch: float = PERSON_PITCH) -> np.ndarray:
        """The person's voice, float32 at 16 kHz: ``pitch`` times higher, same duration."""
        slow = to_float32(self._synthesize(text, pitch))
        played_at = Fraction(self.rate) * Fraction(pitch).limit_denominator(100)
        ratio = Fraction(ASR_SAMPLE_RATE) / played_at
        return resample_poly(slow, ratio.numerator, ratio.denominator).astype(np.float32)


def make_recording(
    name: str,
    answer: str,
    reference: np.ndarray,
    reference_rate: int,
    rng: np.random.Generator,
    person: np.ndarray | None = None,
    person_text: str = "",
    path: EchoPath | None = None,
    onset_fraction: float | None = None,
) -> EchoRecording:
    """Place ``reference`` (int16 at ``reference_rate``) and ``person`` (float 16 kHz) in a room
    drawn from ``rng`` (or ``path``), starting the person at ``onset_fraction`` of the answer."""
    if path is None:
        path = EchoPath(
            delay_s=float(rng.uniform(*DELAY_RANGE_S)),
            gain_db=float(rng.uniform(*GAIN_RANGE_DB)),
            rt60_s=float(rng.uniform(*RT60_RANGE_S)),
        )
    response = impulse_response(path, rng)
    answer_s = reference.size / reference_rate
    reference_start = MIC_START + LEAD_S
    end = reference_start + answer_s + path.delay_s + path.rt60_s
    person_target = 10.0 ** (PERSON_DBFS / 20.0)
    aligned_person, onset, person_end = None, None, None
    if onset_fraction is None:
        onset_fraction = float(rng.uniform(*ONSET_RANGE))
    if person is not None:
        person = np.asarray(person, dtype=np.float64)
        person = person * (person_target / active_rms(person))
        first = onset_of(person)
        onset = reference_start + onset_fraction * answer_s
        place = int(round((onset - MIC_START) * ASR_SAMPLE_RATE)) - first
        person_end = MIC_START + (place + person.size) / ASR_SAMPLE_RATE
        end = max(end, person_end)
    samples = int(round((end + TRAIL_S - MIC_START) * ASR_SAMPLE_RATE))
    if person is not None:
        aligned_person = np.zeros(samples)
        aligned_person[place : place + person.size] = person
    # Echo level: the echo's speech RMS is the person's level plus gain_db.
    played = resample(reference, reference_rate, ASR_SAMPLE_RATE)
    raw_echo = convolve(played, response, played.size + response.size)
    echo_scale = person_target * 10.0 ** (path.gain_db / 20.0) / active_rms(raw_echo)
    noise = mic_noise(rng, samples, person_target * 10.0 ** (-NOISE_BELOW_PERSON_DB / 20.0))
    return EchoRecording(
        name=name,
        answer=answer,
        reference=reference,
        reference_rate=reference_rate,
        reference_start=reference_start,
        path=path,
        response=response,
        echo_scale=echo_scale,
        noise=noise,
        person=aligned_person,
        person_text=person_text,
        person_onset=onset,
        person_end=person_end,
    )


def make_corpus(
    count: int = 24,
    seed: int = 0,
    voices: RecordingVoices | None = None,
    answers: Sequence[str] = ANSWERS,
    interruptions: Sequence[str] = INTERRUPTIONS,
) -> list[EchoRecording]:
    """``count`` answers (cycling through ``answers``), each in its own room with a person cutting
    in; :meth:`EchoRecording.without_person` gives the echo-only version."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    voices = voices or RecordingVoices()
    rng = np.random.default_rng(seed)
    robot_cache: dict[str, np.ndarray] = {}
    person_cache: dict[str, np.ndarray] = {}
    corpus = []
    for index in range(count):
        answer = answers[index % len(answers)]
        said = interruptions[index % len(interruptions)]
        if answer not in robot_cache:
            robot_cache[answer] = voices.robot(answer)
        if said not in person_cache:
            person_cache[said] = voices.person(said)
        corpus.append(
            make_recording(
                f"answer{index:02d}",
                answer,
                robot_cache[answer],
                voices.rate,
                rng,
                person_cache[said],
                said,
            )
        )
    return corpus


__all__ = [
    "ANSWERS",
    "INTERRUPTIONS",
    "EchoRecording",
    "RecordingVoices",
    "make_corpus",
    "make_recording",
]
