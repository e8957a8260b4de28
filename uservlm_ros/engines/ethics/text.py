"""Text hygiene shared by the rules, the reply reader and the consent store."""

import re
import unicodedata

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
    }
)
_SPACE = re.compile(r"\s+")


def clean(text: str) -> str:
    """Drop control characters (NUL included), straighten quotes, collapse whitespace."""
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _SPACE.sub(" ", text).strip()


def normalize(text: str) -> str:
    """The form every rule pattern is matched against: cleaned and lower-cased."""
    return clean(text).lower()


def clip(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters at a word boundary when possible, and whether it was
    cut."""
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(), True
