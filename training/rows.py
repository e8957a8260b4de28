"""Training and benchmark data: hub ids or local files, one validation pass, clean examples out.

Three kinds of rows (paper §3.3):
  profile     (image, profile)                      stage 1, D_PT
  instruct    (image, question, answer)             stage 2, D_Instruct
  preference  (image, question, chosen, rejected)   stage 3, D_DPO

A source is a hub dataset id (`ACIDE/user-vlm-instruct`) or a local file (.jsonl / .json / .parquet
/
.csv). In a local file the image column holds a path relative to `image_dir` (default: the file's
folder); hub datasets carry the image itself. Profiles come from a free-text column or, for
FairFace-style labels (columns file, age, gender, race), from the paper's template.

Every row is checked once before training (`clean`): a missing, unreadable or too small image, an
empty text field, or chosen == rejected is a bad row, named by its index. `on_bad_row="stop"`
raises
`BadRowError` at the first one; `"skip"` drops them and the `DataReport` says how many and why.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from uservlm_ros.model.prompt import PROFILE_TEMPLATE, validate_text

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
KINDS = ("profile", "instruct", "preference")


class BadRowError(ValueError):
    """A row that cannot be trained on or evaluated; the message names the row and the reason."""


@dataclass
class DataArgs:
    """Where the data comes from and how its rows are read and checked."""

    dataset: str = field(
        default="", metadata={"help": "Hub dataset id or local .jsonl/.json/.parquet/.csv file."}
    )
    split: str = field(default="train", metadata={"help": "Split of a hub dataset."})
    image_dir: str | None = field(
        default=None,
        metadata={"help": "Folder of images named in a local file (default: the file's folder)."},
    )
    max_rows: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    on_bad_row: str = field(default="skip", metadata={"help": "skip | stop"})
    min_image_side: int = field(
        default=32, metadata={"help": "Images smaller than this (px) are bad rows."}
    )
    image_column: str = "image"
    text_column: str = field(default="text", metadata={"help": "Free-text profile (stage 1)."})
    profile_template: str = field(
        default=PROFILE_TEMPLATE,
        metadata={
            "help": "Used when the text column is absent: FairFace-style columns race, gender, "
            "age."
        },
    )
    question_column: str = "question"
    answer_column: str = "answer"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"

    def validate(self) -> None:
        if not self.dataset:
            raise ValueError("dataset: give a hub dataset id or a local data file")
        if self.on_bad_row not in ("skip", "stop"):
            raise ValueError(f"on_bad_row must be 'skip' or 'stop', got {self.on_bad_row!r}")
        path = Path(self.dataset)
        if path.suffix in LOCAL_FORMATS and not path.is_file():
            raise ValueError(f"dataset file not found: {self.dataset}")
        if self.image_dir is not None and not Path(self.image_dir).is_dir():
            raise ValueError(f"image_dir not found: {self.image_dir}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("max_rows must be >= 1")


@dataclass
class DataReport:
    rows: int = 0
    kept: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        reasons = Counter(reason.split(":")[0] for _, reason in self.skipped)
        text = f"{self.kept}/{self.rows} rows kept, {len(self.skipped)} skipped"
        return text + (
            f" ({', '.join(f'{n} {r}' for r, n in reasons.items())})" if reasons else ""
        )

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "skipped": len(self.skipped),
            "skipped_rows": [{"row": i, "reason": r} for i, r in self.skipped],
        }


def load_table(args: DataArgs):
    """The raw rows as a `datasets.Dataset` (images not decoded) and the folder relative paths
    start from."""
    import datasets

    path = Path(args.dataset)
    if path.suffix in LOCAL_FORMATS:
        table = datasets.load_dataset(
            LOCAL_FORMATS[path.suffix], data_files=str(path), split="train"
        )
        image_root = Path(args.image_dir) if args.image_dir else path.parent
    else:
        try:
            table = datasets.load_dataset(args.dataset, split=args.split)
        except Exception as exc:  # offline, unknown id, no such split...
            raise ValueError(
                f"cannot load dataset {args.dataset!r} (split {args.split!r}): {exc}"
            ) from exc
        image_root = Path(args.image_dir) if args.image_dir else Path(".")
    if args.image_column in table.column_names and isinstance(
        table.features[args.image_column], datasets.Image
    ):
        # Decode ourselves: a corrupt image must become a named bad row, not a crash deep in a
        # DataLoader.
        table = table.cast_column(args.image_column, datasets.Image(decode=False))
    if args.max_rows is not None:
        table = table.select(range(min(args.max_rows, len(table))))
    return table, image_root


def open_image(value, image_root: Path | None = None) -> Image.Image:
    """An RGB PIL image from a path, {"bytes", "path"} dict or PIL image; BadRowError says what is
    wrong."""
    if isinstance(value, (list, tuple)):  # TRL's "images" column: a list with one image
        value = value[0] if len(value) == 1 else None
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRowError("missing image")
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, (bytes, bytearray)):
            image = Image.open(io.BytesIO(value))
        else:
            path = Path(value)
            if not path.is_absolute() and image_root is not None:
                path = image_root / path
            if not path.is_file():
                raise BadRowError(f"missing image: {path} not found")
            image = Image.open(path)
        image.load()
        return image.convert("RGB")
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        if isinstance(exc, BadRowError):
            raise
        raise BadRowError(f"unreadable image: {exc}") from exc


def profile_text(row: dict, args: DataArgs) -> str:
    """Stage-1 target: the free-text profile, or the paper's template filled from FairFace
    labels."""
    text = row.get(args.text_column)
    if isinstance(text, str) and text.strip():
        return text.strip()
    labels = {key: row.get(key) for key in ("race", "gender", "age")}
    if all(isinstance(v, str) and v.strip() for v in labels.values()):
        # FairFace spells "Latino_Hispanic" and capitalises gender: make the sentence read
        # naturally.
        return args.profile_template.format(
            race=labels["race"].replace("_", " "),
            gender=labels["gender"].lower(),
            age=labels["age"],
        )
    return ""


def example_from_row(
    row: dict, kind: str, args: DataArgs, image_root: Path | None, reserved: tuple[str, ...] = ()
) -> dict:
    """One clean example {image, question?, answer | chosen + rejected}, or BadRowError.

    `reserved`: strings no text may contain (the tokenizer's special tokens; the prompt's own
    markers are always checked), since they would change the prompt or end the answer early.
    """
    image_value = row.get(args.image_column, row.get("file"))
    image = open_image(image_value, image_root)
    if min(image.size) < args.min_image_side:
        raise BadRowError(
            f"wrong image size: {image.size[0]}x{image.size[1]} "
            f"(smaller than min_image_side={args.min_image_side})"
        )
    if kind == "profile":
        profile = profile_text(row, args)
        if not profile:
            raise BadRowError(
                f"empty answer: no {args.text_column!r} text and no race/gender/age labels"
            )
        return {"image": image, "answer": _checked(profile, "profile", reserved)}
    question = _text(row, args.question_column, "empty question", reserved)
    if kind == "instruct":
        return {
            "image": image,
            "question": question,
            "answer": _text(row, args.answer_column, "empty answer", reserved),
        }
    chosen = _text(row, args.chosen_column, "empty answer", reserved)
    rejected = _text(row, args.rejected_column, "empty answer", reserved)
    if chosen == rejected:
        raise BadRowError("chosen == rejected")
    return {"image": image, "question": question, "chosen": chosen, "rejected": rejected}


def _text(row: dict, column: str, reason: str, reserved: tuple[str, ...] = ()) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise BadRowError(f"{reason}: column {column!r} is missing or blank")
    return _checked(value, column, reserved)


def _checked(text: str, what: str, reserved: tuple[str, ...]) -> str:
    try:  # the prompt module's own rule (its markers), plus the tokenizer's special tokens
        validate_text(text, what, max_chars=None)
        return validate_text(text, what, max_chars=None, reserved=reserved)
    except ValueError as exc:
        raise BadRowError(f"bad text: {exc}") from exc


def clean(
    table,
    kind: str,
    args: DataArgs,
    image_root: Path | None,
    reserved: tuple[str, ...] = (),
    log=print,
):
    """Check every row once; return (table of good rows, DataReport). Stops or skips per
    `on_bad_row`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    report, good = DataReport(rows=len(table)), []
    for index, row in enumerate(table):
        try:
            example_from_row(row, kind, args, image_root, reserved)
        except BadRowError as exc:
            message = f"{args.dataset} row {index}: {exc}"
            if args.on_bad_row == "stop":
                raise BadRowError(message + " (on_bad_row=stop)") from exc
            report.skipped.append((index, str(exc)))
            log(f"skipping {message}")
            continue
        good.append(index)
    report.kept = len(good)
    if not good:
        raise BadRowError(f"{args.dataset}: no usable rows ({report.summary()})")
    return table.select(good), report


class Examples:
    """A torch-style dataset of clean examples, decoding images lazily from the cleaned table."""

    def __init__(self, table, kind: str, args: DataArgs, image_root: Path | None):
        self.table, self.kind, self.args, self.image_root = table, kind, args, image_root

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        return example_from_row(self.table[int(index)], self.kind, self.args, self.image_root)


def load_examples(args: DataArgs, kind: str, reserved: tuple[str, ...] = (), log=print):
    """(Examples, DataReport) of clean rows; see `clean`."""
    table, image_root = load_table(args)
    table, report = clean(table, kind, args, image_root, reserved, log=log)
    log(f"data {args.dataset}: {report.summary()}")
    return Examples(table, kind, args, image_root), report


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
