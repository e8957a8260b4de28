"""Load a PaliGemma 2 base model, its processor and a User-VLM adapter: the one loading code path.

``load_model(base, adapter, ...)`` returns ``(model, processor, info)``.

* ``base`` and ``adapter`` are model-hub ids or local paths. Something that looks like a path
  (absolute, starting with ``.`` or ``~``, or existing) is a path; anything else is a hub id.
  ``base`` may also be ``TINY_MODEL_ID`` ("tiny-random-paligemma2"): the randomly initialised
  stand-in from :mod:`uservlm_ros.model.tiny`, whose answers are meaningless text.
* Offline: with ``local_files_only=True`` (or ``HF_HUB_OFFLINE`` set, when the argument is None)
  only the local Hugging Face cache is used. With ``local_files_only=False`` the hub is probed
  first with a 2 s TCP connect; when it is unreachable loading continues offline instead of
  waiting for HTTP timeouts.
* Fallback: when the base model is not available and ``offline_fallback`` is true, the tiny model
  is loaded instead, ``info.placeholder`` is True and ``info.warnings`` says so. A hub-id adapter
  (made for the real base) is then skipped with a warning; a local adapter made for the tiny model
  still loads. A local base path that does not exist is a configuration error, never a fallback.
* Adapters, detected by their files (a missing file is named in the error):

  - PEFT LoRA: ``adapter_config.json`` + ``adapter_model.safetensors``
  - MoLE: the same + ``mole_config.json`` + ``mole_experts.safetensors`` (see ``mole.save_mole``)
  - stage-1 projector: ``multi_modal_projector.safetensors`` alone (see :func:`save_projector`);
    its weights replace the base model's projector

* ``device``: "cpu", "cuda", "cuda:N" or "auto" (the first CUDA device when there is one, else
  CPU). The whole model goes to that one device; no multi-GPU sharding.
* ``dtype``: "float32", "bfloat16", "float16" or "auto" (bfloat16 on CUDA, float32 on CPU).
  float16 on CPU works but is slow and lossy; it is allowed with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from uservlm_ros.model.errors import VLMLoadError
from uservlm_ros.model.mole import MOLE_CONFIG_FILE, MOLE_WEIGHTS_FILE, load_mole
from uservlm_ros.model.tiny import TINY_MODEL_ID, ensure_tiny_model, is_tiny_model_dir

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
PROJECTOR_MODULE = "multi_modal_projector"
PROJECTOR_FILE = "multi_modal_projector.safetensors"
PROJECTOR_FORMAT = "uservlm_ros.projector"
MOLE_FILES = (MOLE_CONFIG_FILE, MOLE_WEIGHTS_FILE)
DTYPES = ("float32", "bfloat16", "float16", "auto")
DEVICE_RE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")
_NO_ADAPTER = ("", "none", "null")
HUB_PROBE_TIMEOUT_S = 2.0

__all__ = [
    "VLMLoadError",
    "LoadInfo",
    "load_model",
    "detect_adapter_type",
    "looks_like_path",
    "save_projector",
    "load_projector",
]


@dataclasses.dataclass
class LoadInfo:
    model_name: str  # what answers: "<base>" or "<base> + <adapter>", "(placeholder)" if tiny
    base: str
    adapter: str | None
    adapter_type: str | None  # "lora", "mole", "projector" or None
    placeholder: bool
    device: str
    dtype: str
    load_seconds: float
    warnings: list[str] = dataclasses.field(default_factory=list)


def looks_like_path(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or os.path.exists(os.path.expanduser(name))
    )


def detect_adapter_type(path) -> str:
    """ "lora", "mole" or "projector" for an adapter directory; VLMLoadError naming a missing
    file."""
    path = Path(path)
    if not path.is_dir():
        raise VLMLoadError(f"adapter not found: {path}")
    if (path / PROJECTOR_FILE).is_file() and not (path / PEFT_FILES[0]).exists():
        return "projector"
    is_mole = (path / MOLE_CONFIG_FILE).exists() or (path / MOLE_WEIGHTS_FILE).exists()
    required = PEFT_FILES + (MOLE_FILES if is_mole else ())
    for name in required:
        if not (path / name).is_file():
            kind = "MoLE" if is_mole else "LoRA"
            raise VLMLoadError(f"{kind} adapter {path} is missing {name}")
    return "mole" if is_mole else "lora"


def resolve_device(device: str) -> str:
    import torch

    if not DEVICE_RE.match(device or ""):
        raise VLMLoadError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VLMLoadError(f"device {device!r} requested but CUDA is not available")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise VLMLoadError(f"device {device!r} requested but only {count} CUDA devices exist")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype not in DTYPES:
        raise VLMLoadError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return dtype, getattr(torch, dtype)


def load_model(
    base: str,
    adapter: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    offline_fallback: bool = True,
    local_files_only: bool | None = None,
    tiny_cache_dir: str | None = None,
):
    """Load base model + processor (+ adapter). Returns ``(model, processor, LoadInfo)``.

    Raises :class:`VLMLoadError` with a message naming what could not be loaded and why.
    """
    started = time.monotonic()
    warnings: list[str] = []
    device = resolve_device(device)
    dtype_name, torch_dtype = resolve_dtype(dtype, device)
    if dtype_name == "float16" and device == "cpu":
        warnings.append("float16 on CPU is slow and may lose precision; float32 is recommended")
    if local_files_only is None:
        local_files_only = _env_flag("HF_HUB_OFFLINE")
    if not local_files_only and not _hub_reachable():
        local_files_only = True
        warnings.append("model hub unreachable: using local files only")

    base = (base or "").strip()
    if not base:
        raise VLMLoadError("no base model given")
    placeholder = False
    if base == TINY_MODEL_ID:
        base_path, placeholder = str(ensure_tiny_model(tiny_cache_dir)), True
    elif looks_like_path(base):
        base_path = os.path.expanduser(base)
        if not os.path.isdir(base_path):
            raise VLMLoadError(f"base model not found: {base_path}")
        placeholder = is_tiny_model_dir(base_path)
    else:
        base_path = base

    try:
        model, processor = _load_base(base_path, torch_dtype, local_files_only)
    except (
        Exception
    ) as error:  # from_pretrained raises many types; all become VLMLoadError or a warning
        if looks_like_path(base) or placeholder or not offline_fallback:
            raise VLMLoadError(
                f"base model {base!r} could not be loaded: {_short(error)}"
            ) from error
        warnings.append(
            f"base model {base!r} is not available ({_short(error)}); using the tiny random "
            f"placeholder {TINY_MODEL_ID!r}: its answers are meaningless"
        )
        base_path, placeholder = str(ensure_tiny_model(tiny_cache_dir)), True
        model, processor = _load_base(base_path, torch_dtype, True)
    base_name = TINY_MODEL_ID if placeholder else base

    adapter_name, adapter_type = None, None
    adapter = (adapter or "").strip()
    if adapter.lower() not in _NO_ADAPTER:
        adapter_dir = _resolve_adapter(adapter, placeholder, local_files_only, warnings)
        if adapter_dir is not None:
            model, adapter_type = _load_adapter(model, adapter_dir, adapter)
            adapter_name = adapter

    model.to(device)
    model.eval()
    name = base_name + (f" + {adapter_name}" if adapter_name else "")
    info = LoadInfo(
        model_name=name + (" (placeholder)" if placeholder else ""),
        base=base_name,
        adapter=adapter_name,
        adapter_type=adapter_type,
        placeholder=placeholder,
        device=device,
        dtype=dtype_name,
        load_seconds=time.monotonic() - started,
        warnings=warnings,
    )
    return model, processor, info


def _load_base(path: str, torch_dtype, local_files_only: bool):
    from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(path, local_files_only=local_files_only)
    model = PaliGemmaForConditionalGeneration.from_pretrained(
        path, dtype=torch_dtype, local_files_only=local_files_only
    )
    return model, processor


def _resolve_adapter(adapter: str, placeholder: bool, local_files_only: bool, warnings: list[str]):
    """Local directory of the adapter, or None when it is skipped (with a warning)."""
    if looks_like_path(adapter):
        path = Path(os.path.expanduser(adapter))
        if not path.exists():
            raise VLMLoadError(f"adapter not found: {path}")
        detect_adapter_type(path)
        made_for = _adapter_base(path)
        if placeholder and made_for and not _names_tiny_model(made_for):
            warnings.append(
                f"adapter {adapter!r} was made for {made_for!r}, not for the placeholder model; "
                "not loaded"
            )
            return None
        return path
    if placeholder:
        warnings.append(
            f"adapter {adapter!r} is for the real base model; not loaded on the placeholder"
        )
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(adapter, local_files_only=local_files_only))
    except Exception as error:  # huggingface_hub raises several unrelated types here
        where = "in the local cache" if local_files_only else "on the hub"
        raise VLMLoadError(
            f"adapter {adapter!r} is not available {where}: {_short(error)}"
        ) from error


def save_projector(model, out_dir) -> Path:
    """Stage-1 output: the multi-modal projector's weights, loadable as an adapter directory."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = _projector(model).state_dict()
    state = {key: value.detach().to("cpu").contiguous() for key, value in weights.items()}
    base = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    save_file(
        state, str(out / PROJECTOR_FILE), metadata={"format": PROJECTOR_FORMAT, "base_model": base}
    )
    return out


def load_projector(model, adapter_dir):
    """Replace the model's projector weights with a stage-1 output (strict on keys and shapes)."""
    from safetensors.torch import load_file

    path = Path(adapter_dir) / PROJECTOR_FILE
    try:
        saved = load_file(str(path))
    except (OSError, ValueError) as error:
        raise VLMLoadError(f"cannot read {path}: {error}") from error
    projector = _projector(model)
    expected = projector.state_dict()
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise VLMLoadError(
            f"projector weights in {path} do not fit: missing keys {missing}, unexpected keys "
            f"{unexpected}"
        )
    for key, value in expected.items():
        if saved[key].shape != value.shape:
            raise VLMLoadError(
                f"projector weight {key} in {path} has shape {tuple(saved[key].shape)}, "
                f"the model expects {tuple(value.shape)}"
            )
    projector.load_state_dict(saved)
    return model


def _projector(model):
    for name, module in model.named_modules():
        if name.endswith(PROJECTOR_MODULE):
            return module
    raise VLMLoadError(f"the model has no {PROJECTOR_MODULE}")


def _load_adapter(model, path: Path, name: str):
    from peft import PeftModel

    adapter_type = detect_adapter_type(path)
    try:
        if adapter_type == "projector":
            model = load_projector(model, path)
        elif adapter_type == "mole":
            model = load_mole(model, path)
        else:
            model = PeftModel.from_pretrained(model, str(path))
    except VLMLoadError:
        raise
    except Exception as error:  # PEFT raises many types (size mismatch, missing modules, ...)
        raise VLMLoadError(
            f"adapter {name!r} does not fit the base model: {_short(error)}"
        ) from error
    return model, adapter_type


def _adapter_base(path: Path) -> str:
    """The base model an adapter was made for, as recorded in it ("" when unknown)."""
    if detect_adapter_type(path) == "projector":
        from safetensors import safe_open

        try:
            with safe_open(str(path / PROJECTOR_FILE), framework="pt") as handle:
                return (handle.metadata() or {}).get("base_model", "")
        except (OSError, ValueError) as error:
            raise VLMLoadError(f"cannot read {path / PROJECTOR_FILE}: {error}") from error
    try:
        return (
            json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            or ""
        )
    except (OSError, ValueError) as error:
        raise VLMLoadError(f"cannot read {path / 'adapter_config.json'}: {error}") from error


def _names_tiny_model(name: str) -> bool:
    return (
        TINY_MODEL_ID in name
        or "tiny-paligemma2" in name
        or is_tiny_model_dir(os.path.expanduser(name))
    )


def _hub_reachable() -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
