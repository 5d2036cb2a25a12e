"""Cut an answer into spans (sentences and their clauses) that are exact slices of the answer, so the
span that best matches a key point can be quoted verbatim as evidence."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"'”’)]*|$)")
_CLAUSE_BREAK = re.compile(
    r";\s+|\s*[—–]\s*|\s+-\s+|,\s+|\s+(?=(?:and|then|while|but|so|which|before|after|because|when)\s)"
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
# Words that hold prose together; a bare list of keywords has almost none of them.
_FUNCTION_WORDS = frozenset(
    "i a an the to of and or in on for with we my our is are was be it that this as at by from when so then "
    "if not but can do have has they them their you your me us how what which who".split()
)
MIN_CLAUSE_WORDS = 3


@dataclass(frozen=True)
class Span:
    text: str
    start: int
    end: int


def spans(answer: str) -> list[Span]:
    """Sentences, plus the clauses of sentences that have several, each an exact slice of `answer`."""
    out: list[Span] = []
    for m in _SENTENCE.finditer(answer):
        sentence = _strip(answer, m.start(), m.end())
        if sentence is None:
            continue
        out.append(sentence)
        pieces, cursor = [], sentence.start
        for brk in _CLAUSE_BREAK.finditer(answer, sentence.start, sentence.end):
            pieces.append((cursor, brk.start()))
            cursor = brk.end()
        if pieces:
            pieces.append((cursor, sentence.end))
            for start, end in pieces:
                clause = _strip(answer, start, end)
                if clause is not None and len(_WORD.findall(clause.text)) >= MIN_CLAUSE_WORDS:
                    out.append(clause)
    return out


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and (text[start].isspace() or text[start] in ",;:"):
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(text[start:end], start, end) if end > start and _WORD.search(text, start, end) else None


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def prose_ratio(text: str) -> float:
    """Share of words that are function words: about 0.3-0.5 in prose, near 0 in a keyword list."""
    found = [w.lower() for w in words(text)]
    return sum(w in _FUNCTION_WORDS for w in found) / len(found) if found else 0.0
