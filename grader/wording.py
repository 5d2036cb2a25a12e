"""Counts in words, for every message that names a number of things: "1 question", "3 questions"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, plural unless one: "1 red flag", "3 key points", "2 people" (`plural="people"`)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
