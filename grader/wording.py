"""Counts in words, for every message that names a number of things: "1 question", "3 questions", and
lists cut short: "a, b and 4 more"."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, plural unless one: "1 red flag", "3 key points", "2 people" (`plural="people"`)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def same_letters(a: str, b: str) -> str:
    """Said where two spellings read as one print alike: the same letters in another Unicode form."""
    same = unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)
    return " (the same letters in another Unicode form)" if same else ""


def named(shown: Sequence[str], total: int) -> str:
    """`a, b, c` and, past those listed, `and N more` (`total` things in all)."""
    more = total - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
