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

Per-person image cache (opt-in, ``vision_cache_size`` > 0): ``answer(..., person_key="alice")``
reuses what was computed from Alice's picture on her previous turn when the picture is
byte-identical (see :mod:`uservlm_ros.model.image_cache`; answers are unchanged). With
``prefix_mode="bidirectional"`` (the default, the trained model) the image features are reused and
the vision tower is skipped; with ``prefix_mode="cacheable"`` (adapters trained in that mode, see
:mod:`uservlm_ros.model.prefix`) the KV cache of the image block is reused and only the question is
prefilled. ``forget_person(key)`` drops a person's entry; ``load()`` and ``close()`` drop all.

Thread safety: one generation at a time. ``answer(..., lock_timeout=s)`` raises :class:`EngineBusy`
when the engine stays busy for ``s`` seconds (0 = do not wait), so a server can refuse a request
instead of queueing it forever; ``busy`` tells whether a generation is running.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np

from uservlm_ros.model import image_cache, prefix
from uservlm_ros.model.errors import VLMLoadError
from uservlm_ros.model.loading import DEVICE_RE, DTYPES, LoadInfo, load_model
from uservlm_ros.model.prompt import (
    MAX_QUESTION_CHARS,
    build_prompt,
    neutral_image,
    prepare_inputs,
    validate_image,
)

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
    # answering (otherwise the random placeholder model emits mostly those, and TTS reads them
    # out).
    suppress_location_tokens: bool = True
    # Persons whose image features (or image-block KV cache, in "cacheable" mode) are kept for
    # their next turn; 0 = off. Used only by answer(..., person_key=...).
    vision_cache_size: int = 0
    # "bidirectional": PaliGemma's prefix-LM over image + question, as trained. "cacheable": only
    # image + BOS bidirectional, the question causal -- needs adapters trained in that mode.
    prefix_mode: str = prefix.DEFAULT_PREFIX_MODE

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ValueError("base_model is empty")
        if not DEVICE_RE.match(self.device or ""):
            raise ValueError(f"device {self.device!r}: use cpu, cuda, cuda:N or auto")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(
                f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}"
            )
        if not isinstance(self.max_question_chars, int) or self.max_question_chars < 1:
            raise ValueError(
                f"max_question_chars must be a positive integer, got {self.max_question_chars!r}"
            )
        if not isinstance(self.vision_cache_size, int) or self.vision_cache_size < 0:
            raise ValueError(
                f"vision_cache_size must be a non-negative integer, got {self.vision_cache_size!r}"
            )
        prefix.validate_prefix_mode(self.prefix_mode)


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
    # Per-person image cache: "off" (no person_key or vision_cache_size 0), "miss" (computed and
    # stored) or "hit" (image features / image-block KV reused).
    image_cache: str = "off"


class VLMEngine:
    def __init__(self, config: VLMConfig | None = None):
        self.config = config or VLMConfig()
        self.config.validate()
        self._lock = threading.Lock()
        self._model = None
        self._processor = None
        self._info: LoadInfo | None = None
        self._suppressed: list[int] = []
        self._image_cache = image_cache.PersonImageCache(self.config.vision_cache_size)

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> LoadInfo:
        """Load model, processor and adapter (replacing any loaded ones). Raises VLMLoadError."""
        cfg = self.config
        with self._lock:
            self._model = self._processor = self._info = None
            self._image_cache.clear()
            self._model, self._processor, self._info = load_model(
                cfg.base_model,
                cfg.adapter,
                device=cfg.device,
                dtype=cfg.dtype,
                offline_fallback=cfg.offline_fallback,
                local_files_only=cfg.local_files_only,
                tiny_cache_dir=cfg.tiny_cache_dir,
            )
            tokenizer = self._processor.tokenizer
            self._suppressed = sorted(
                set(_control_byte_token_ids(tokenizer))
                | set(_location_token_ids(tokenizer) if cfg.suppress_location_tokens else [])
            )
            if cfg.prefix_mode != prefix.DEFAULT_PREFIX_MODE:
                self._info.warnings.append(
                    f"prefix_mode={cfg.prefix_mode!r} changes the model's attention: answers are "
                    "only "
                    "as good as the adapter's training in that mode"
                )
            return self._info

    def close(self) -> None:
        """Drop the model (frees its memory once nothing else holds it)."""
        with self._lock:
            self._model = self._processor = self._info = None
            self._image_cache.clear()

    def forget_person(self, person_key: str) -> bool:
        """Drop what is cached from ``person_key``'s picture; True if there was something.
        Waits for a running answer to finish."""
        with self._lock:
            return self._image_cache.forget(person_key)

    @property
    def cached_persons(self) -> int:
        return len(self._image_cache)

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
        person_key: str | None = None,
    ) -> VLMAnswer:
        """Answer ``question`` about/for the person in ``image`` (RGB HxWx3 uint8, any size).

        ``image=None``: a neutral grey image is used (see ``vlm.prompt``). ``user_context``: short
        text the person confirmed, placed before the question. ``on_token(piece)`` is called from
        this thread with each new piece of text as it is generated (the pieces concatenate to the
        answer before stripping); an exception it raises aborts the answer. ``lock_timeout``: None
        waits for a running answer to finish, a number waits at most that long and then raises
        EngineBusy. ``person_key``: who is in the picture (any stable id); with
        ``vision_cache_size`` > 0 the work done on that person's picture is reused on their next
        turn when the picture is byte-identical (see the module docstring).
        Raises ValueError for bad input, RuntimeError if not loaded.
        """
        build_prompt(question, user_context, self.config.max_question_chars)  # ValueError early
        if image is not None:
            validate_image(image)
        new_tokens = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        if not isinstance(new_tokens, int) or new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {new_tokens!r}")
        if person_key is not None and (not isinstance(person_key, str) or not person_key.strip()):
            raise ValueError(f"person_key must be a non-empty string, got {person_key!r}")
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
            return self._generate(question, image, user_context, on_token, new_tokens, person_key)
        finally:
            self._lock.release()

    def _generate(
        self, question, image, user_context, on_token, max_new_tokens, person_key=None
    ) -> VLMAnswer:
        import torch

        model, processor, info = self._model, self._processor, self._info
        started = time.perf_counter()
        inputs = prepare_inputs(
            processor, question, image, user_context, self.config.max_question_chars
        )
        inputs = {key: value.to(info.device) for key, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(getattr(torch, info.dtype))
        if self.config.prefix_mode != prefix.DEFAULT_PREFIX_MODE:
            inputs["token_type_ids"] = prefix.make_token_type_ids(
                inputs["input_ids"],
                inputs["token_type_ids"],
                self.config.prefix_mode,
                model.config.image_token_id,
                processor.tokenizer.bos_token_id,
            )
        preprocessed = time.perf_counter()

        streamer = _TimingStreamer(processor.tokenizer, on_token)
        cache_state = "off"
        if person_key is not None and self._image_cache.enabled:
            cache_state = self._use_image_cache(model, inputs, person_key, image)
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

        new_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
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
            image_cache=cache_state,
        )

    def _use_image_cache(self, model, inputs: dict, person_key: str, image) -> str:
        """Swap ``pixel_values`` in ``inputs`` for the person's cached image features (or, in
        "cacheable" mode, for the image-block KV cache), computing and storing them on a miss.
        Returns "hit" or "miss". Runs inside the prefill timing window."""
        digest = image_cache.image_digest(image if image is not None else neutral_image())
        entry = self._image_cache.lookup(person_key, digest)
        cacheable = self.config.prefix_mode == "cacheable"
        if cacheable:
            length = prefix.cacheable_prefix_length(inputs["input_ids"], inputs["token_type_ids"])
            prefix_ids = inputs["input_ids"][:, :length]
            if entry is not None and (
                entry.prefix is None or not _same(entry.prefix_ids, prefix_ids)
            ):
                entry = None
            state = "hit" if entry is not None else "miss"
            if entry is None:
                cache = prefix.build_prefix_cache(
                    model, inputs["input_ids"], inputs["pixel_values"], length
                )
                entry = image_cache.CacheEntry(digest, prefix=cache, prefix_ids=prefix_ids)
                self._image_cache.store(person_key, entry)
            inputs["past_key_values"] = prefix.fork_cache(entry.prefix)
        else:
            if entry is not None and entry.features is None:
                entry = None
            state = "hit" if entry is not None else "miss"
            if entry is None:
                features = image_cache.image_features(model, inputs["pixel_values"])
                entry = image_cache.CacheEntry(digest, features=features)
                self._image_cache.store(person_key, entry)
            inputs["mm_encoder_outputs"] = image_cache.encoder_outputs(entry.features)
        del inputs["pixel_values"]
        return state


def _same(a, b) -> bool:
    return a is not None and a.shape == b.shape and bool((a == b).all())


def _eos_ids(model, processor) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    return ids | {processor.tokenizer.eos_token_id}


def _location_token_ids(tokenizer) -> list[int]:
    """Ids of PaliGemma's <locNNNN> and <segNNN> tokens present in this tokenizer."""
    names = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]
    vocab = tokenizer.get_vocab()
    return sorted(vocab[name] for name in names if name in vocab)


def _control_byte_token_ids(tokenizer) -> list[int]:
    """Ids of the byte-fallback tokens <0x00>..<0x1F>, <0x7F> (tab, newline, carriage return
    excepted) present in this tokenizer (Gemma's, the tiny stand-in's). They decode to control
    characters, which an answer to be shown or spoken never contains and TTS refuses; the random
    stand-in emitted one (U+0017) and its spoken answer failed. Always suppressed."""
    codes = [code for code in [*range(0x20), 0x7F] if chr(code) not in "\t\n\r"]
    vocab = tokenizer.get_vocab()
    return sorted(vocab[name] for name in (f"<0x{code:02X}>" for code in codes) if name in vocab)


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
            piece, self._emitted = text[len(self._emitted) :], text
            self.on_token(piece)
