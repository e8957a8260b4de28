"""User-VLM question answering as a plain Python engine (no ROS): load once, answer many times.

    engine = VLMEngine(VLMConfig(base_model="tiny-random-paligemma2", adapter=None))
    engine.load()                                   # VLMLoadError with a clear message on failure
    reply = engine.answer("What should I eat?", image=rgb_uint8_hxwx3)
    reply.text, reply.prefill_seconds, reply.placeholder

With the default configuration (PaliGemma 2 3B + ACIDE/User-VLM-3B-Instruct, local files only)
and no cached weights, the engine falls back to the tiny randomly initialised model: it runs the
whole pipeline, but its answers are meaningless text, and ``placeholder`` says so.

Timings per answer (seconds, ``time.perf_counter``; the wait for the lock is not included):
preprocess = image resize/normalise + tokenisation (+ copy to the device); prefill = vision tower,
projector and the forward pass over the prompt, up to the first generated token; generation = the
remaining greedy decoding steps; total = all of it plus decoding the text.

Thread safety: one generation at a time. ``answer(..., lock_timeout=s)`` raises :class:`EngineBusy`
when the engine stays busy for ``s`` seconds (0 = do not wait), so a server can refuse a request
instead of queueing it forever; ``busy`` tells whether a generation is running.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

import numpy as np

from ..vlm.errors import VLMLoadError
from ..vlm.loading import DTYPES, DEVICE_RE, LoadInfo, load_model
from ..vlm.prompt import MAX_QUESTION_CHARS, build_prompt, prepare_inputs, validate_image

__all__ = ["VLMConfig", "VLMAnswer", "VLMEngine", "VLMLoadError", "EngineBusy"]


class EngineBusy(RuntimeError):
    """The engine is answering another question and the caller did not want to wait."""


@dataclasses.dataclass
class VLMConfig:
    # Hub id or local path; "tiny-random-paligemma2" = the random placeholder.
    base_model: str = "google/paligemma2-3b-ft-docci-448"
    # Hub id or local path of a LoRA/MoLE adapter; None or "" = base model only.
    adapter: str | None = "ACIDE/User-VLM-3B-Instruct"
    # Base model not available -> run the tiny placeholder (answers meaningless, flagged).
    offline_fallback: bool = True
    # Never contact the model hub; only the local Hugging Face cache and local paths.
    local_files_only: bool = True
    device: str = "cpu"  # cpu, cuda, cuda:N, auto
    dtype: str = "float32"  # float32, bfloat16, float16, auto
    max_new_tokens: int = 100  # the paper's setting
    max_question_chars: int = MAX_QUESTION_CHARS
    # Where the tiny placeholder is built; None = ${XDG_CACHE_HOME:-~/.cache}/uservlm_ros.
    tiny_cache_dir: str | None = None
    # PaliGemma's 1,024 <locNNNN> and 128 <segNNN> tokens encode boxes and masks for detection and
    # segmentation prompts; a conversational answer never uses them, so they are suppressed while
    # answering (otherwise the random placeholder model emits mostly those, and TTS reads them out).
    suppress_location_tokens: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ValueError("base_model is empty")
        if not DEVICE_RE.match(self.device or ""):
            raise ValueError(f"device {self.device!r}: use cpu, cuda, cuda:N or auto")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not isinstance(self.max_question_chars, int) or self.max_question_chars < 1:
            raise ValueError(
                f"max_question_chars must be a positive integer, got {self.max_question_chars!r}"
            )


@dataclasses.dataclass
class VLMAnswer:
    text: str
    generated_tokens: int  # new tokens, not counting EOS/padding
    preprocess_seconds: float
    prefill_seconds: float
    generation_seconds: float
    total_seconds: float
    placeholder: bool  # True: the tiny random model answered; the text is meaningless
    model: str


class VLMEngine:
    def __init__(self, config: VLMConfig | None = None):
        self.config = config or VLMConfig()
        self.config.validate()
        self._lock = threading.Lock()
        self._model = None
        self._processor = None
        self._info: LoadInfo | None = None
        self._suppressed: list[int] = []

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> LoadInfo:
        """Load model, processor and adapter (replacing any loaded ones). Raises VLMLoadError."""
        cfg = self.config
        with self._lock:
            self._model = self._processor = self._info = None
            self._model, self._processor, self._info = load_model(
                cfg.base_model,
                cfg.adapter,
                device=cfg.device,
                dtype=cfg.dtype,
                offline_fallback=cfg.offline_fallback,
                local_files_only=cfg.local_files_only,
                tiny_cache_dir=cfg.tiny_cache_dir,
            )
            self._suppressed = _location_token_ids(self._processor.tokenizer) \
                if cfg.suppress_location_tokens else []
            return self._info

    def close(self) -> None:
        """Drop the model (frees its memory once nothing else holds it)."""
        with self._lock:
            self._model = self._processor = self._info = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def info(self) -> LoadInfo | None:
        return self._info

    @property
    def model_name(self) -> str:
        return self._info.model_name if self._info else ""

    @property
    def placeholder(self) -> bool:
        return bool(self._info and self._info.placeholder)

    @property
    def warnings(self) -> list[str]:
        return list(self._info.warnings) if self._info else []

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    # ------------------------------------------------------------------ answering
    def answer(
        self,
        question: str,
        image: np.ndarray | None = None,
        user_context: str | None = None,
        on_token: Callable[[str], None] | None = None,
        lock_timeout: float | None = None,
        max_new_tokens: int | None = None,
    ) -> VLMAnswer:
        """Answer ``question`` about/for the person in ``image`` (RGB HxWx3 uint8, any size).

        ``image=None``: a neutral grey image is used (see ``vlm.prompt``). ``user_context``: short
        text the person confirmed, placed before the question. ``on_token(piece)`` is called from
        this thread with each new piece of text as it is generated (the pieces concatenate to the
        answer before stripping); an exception it raises aborts the answer. ``lock_timeout``: None
        waits for a running answer to finish, a number waits at most that long and then raises
        EngineBusy. Raises ValueError for bad input, RuntimeError if not loaded.
        """
        build_prompt(question, user_context, self.config.max_question_chars)  # ValueError early
        if image is not None:
            validate_image(image)
        new_tokens = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        if not isinstance(new_tokens, int) or new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {new_tokens!r}")
        if lock_timeout is None:
            acquired = self._lock.acquire()
        elif lock_timeout > 0:
            acquired = self._lock.acquire(timeout=lock_timeout)
        else:
            acquired = self._lock.acquire(blocking=False)
        if not acquired:
            raise EngineBusy("the VLM is busy answering another question")
        try:
            if self._model is None:
                raise RuntimeError("the VLM engine is not loaded: call load() first")
            return self._generate(question, image, user_context, on_token, new_tokens)
        finally:
            self._lock.release()

    def _generate(self, question, image, user_context, on_token, max_new_tokens) -> VLMAnswer:
        import torch

        model, processor, info = self._model, self._processor, self._info
        started = time.perf_counter()
        inputs = prepare_inputs(processor, question, image, user_context, self.config.max_question_chars)
        inputs = {key: value.to(info.device) for key, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(getattr(torch, info.dtype))
        preprocessed = time.perf_counter()

        streamer = _TimingStreamer(processor.tokenizer, on_token)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                streamer=streamer,
                pad_token_id=processor.tokenizer.pad_token_id,
                suppress_tokens=self._suppressed or None,
            )
        finished = time.perf_counter()
        first = streamer.first_token_time or finished

        new_ids = output[0, inputs["input_ids"].shape[1]:].tolist()
        text = processor.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        not_counted = _eos_ids(model, processor) | {processor.tokenizer.pad_token_id}
        return VLMAnswer(
            text=text,
            generated_tokens=sum(1 for token in new_ids if token not in not_counted),
            preprocess_seconds=preprocessed - started,
            prefill_seconds=first - preprocessed,
            generation_seconds=finished - first,
            total_seconds=time.perf_counter() - started,
            placeholder=info.placeholder,
            model=info.model_name,
        )


def _eos_ids(model, processor) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    return ids | {processor.tokenizer.eos_token_id}


def _location_token_ids(tokenizer) -> list[int]:
    """Ids of PaliGemma's <locNNNN> and <segNNN> tokens present in this tokenizer."""
    names = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]
    vocab = tokenizer.get_vocab()
    return sorted(vocab[name] for name in names if name in vocab)


class _TimingStreamer:
    """generate() streamer: notes when the first new token arrives and streams text pieces.

    generate() first hands over the whole prompt, then one token per step.
    """

    def __init__(self, tokenizer, on_token):
        self.tokenizer = tokenizer
        self.on_token = on_token
        self.first_token_time: float | None = None
        self._prompt_seen = False
        self._ids: list[int] = []
        self._emitted = ""

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if self.first_token_time is None:
            self.first_token_time = time.perf_counter()
        self._ids.extend(value.reshape(-1).tolist())
        if self.on_token is not None:
            self._emit(final=False)

    def end(self) -> None:
        if self.on_token is not None:
            self._emit(final=True)

    def _emit(self, final: bool) -> None:
        # Re-decoding everything keeps multi-token characters and word joins right (<= 100 tokens).
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        # A byte-fallback character split over tokens decodes as U+FFFD until it is complete.
        if not final and text.endswith("\ufffd"):
            return
        if text.startswith(self._emitted) and len(text) > len(self._emitted):
            piece, self._emitted = text[len(self._emitted):], text
            self.on_token(piece)
