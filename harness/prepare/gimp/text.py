"""Text helpers shared by the parser, the query selection and the statistics: whitespace, Hangul."""

from __future__ import annotations

import unicodedata

__all__ = ["hangul_count", "hangul_share", "is_hangul", "normalize_ws"]


def normalize_ws(text: str) -> str:
    """NFC-normalise `text` and collapse every run of whitespace (NBSP included) to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def is_hangul(char: str) -> bool:
    """Whether `char` is a precomposed Hangul syllable (U+AC00..U+D7A3)."""
    return "\uac00" <= char <= "\ud7a3"


def hangul_count(text: str) -> int:
    """The number of precomposed Hangul syllables (U+AC00..U+D7A3) in `text`."""
    return sum(1 for char in text if is_hangul(char))


def hangul_share(text: str) -> float:
    """Hangul syllables as a share of all letters (`str.isalpha`) of `text`; 0.0 without letters."""
    letters = sum(1 for char in text if char.isalpha())
    return hangul_count(text) / letters if letters else 0.0
