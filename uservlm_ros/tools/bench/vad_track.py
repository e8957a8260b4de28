"""asr_node's listening replayed offline over a bag: when each utterance's end is confirmed."""

from __future__ import annotations

import dataclasses

from uservlm_ros.engines.asr.listening import StreamListener
from uservlm_ros.engines.asr.vad import VadConfig, VoiceActivitySegmenter
from uservlm_ros.tools import bags
from uservlm_ros.tools.bench.config import BenchError


def vad_config(params: dict) -> VadConfig:
    """asr_node's VAD settings from its parameters (``None`` = not declared: the default)."""
    names = [field.name for field in dataclasses.fields(VadConfig)]
    return VadConfig(**{name: params[name] for name in names if params.get(name) is not None})


class VadTrack:
    """asr_node's listening, replayed offline: the utterances it closes in each replay of the bag
    and,
    for each (seconds after its speech end, from the bag's clock):

    - ``vad_wait``: until the receive time of the audio chunk that completes the utterance;
    - ``asr_start``: until the chunk from which asr_node can start transcribing it: the same chunk,
      or, with asr_node's ``speculative`` transcription, the earlier chunk at which the listener
      offered the utterance as a candidate that then closed unchanged.

    Each carries the bag index of its chunk (``chunk``, ``start_chunk``), so the bench can move
    those times to when the replay actually published the chunk (:func:`.metrics.vad_times`).

    The same listener, segmenter and settings as asr_node (:func:`vad_config` of its parameters,
    and its ``speculative``), fed the same chunk sequence. asr_node's segmenter keeps its state
    from
    one replay to the next, so :meth:`next_replay` is called once per replay, warm-ups included, in
    order. Exact for a graph the bench started (asr_node heard nothing else); an approximation with
    ``--attach``."""

    def __init__(self, bag: bags.Bag, params: dict):
        import numpy as np

        from uservlm_ros.speech.audio import ASR_SAMPLE_RATE, resample, to_mono

        self.listener = StreamListener(VoiceActivitySegmenter(vad_config(params)))
        self.speculative = bool(params.get("speculative"))
        self.chunks = []
        for message in bag.of(bags.AUDIO):
            chunk = bag.deserialize(message)
            samples = to_mono(
                np.asarray(chunk.data, dtype=np.int16).reshape(-1), int(chunk.channels)
            )
            if int(chunk.sample_rate) != ASR_SAMPLE_RATE:
                samples = resample(samples, int(chunk.sample_rate), ASR_SAMPLE_RATE)
            stamp = chunk.header.stamp.sec + chunk.header.stamp.nanosec * 1e-9
            self.chunks.append((stamp, message.log_time / 1e9, samples))
        self._shift = 0.0
        self._offered = None  # receive time and index of the chunk whose candidate was offered

    def next_replay(self) -> list[dict]:
        found = []
        # Later replays continue the stream: shift the stamps past the previous replay's end.
        for index, (stamp, received, samples) in enumerate(self.chunks):
            for heard in self.listener.feed(samples, stamp + self._shift):
                end = heard.end - self._shift
                early = self._offered if self.listener.settle(heard) else None
                found.append(
                    {
                        "end": end,
                        "vad_wait": received - end,
                        "asr_start": (early[0] if early else received) - end,
                        "speculative": bool(early),
                        "chunk": index,
                        "start_chunk": early[1] if early else index,
                    }
                )
                self._offered = None
            if self.speculative and self.listener.speculate() is not None:  # as asr_node does
                self._offered = (received, index)
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
