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


def sentences(answer: str) -> list[Span]:
    """The answer's sentences (and list items, lines), each an exact slice of `answer`."""
    found = (_strip(answer, m.start(), m.end()) for m in _SENTENCE.finditer(answer))
    return [s for s in found if s is not None]


def windows(answer: str, cut: list[Span], size: int = 2) -> list[Span]:
    """Runs of `size` adjacent sentences, exact slices of `answer`: a point made across two sentences
    ("I check the deploys. Then I diff what changed") matches as a whole."""
    return [
        Span(answer[cut[i].start : cut[i + size - 1].end], cut[i].start, cut[i + size - 1].end)
        for i in range(len(cut) - size + 1)
    ]


def spans(answer: str) -> list[Span]:
    """Sentences, plus the clauses of sentences that have several, each an exact slice of `answer`."""
    out: list[Span] = []
    for sentence in sentences(answer):
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


def chunks(answer: str, cut: list[Span], size: int = 14, stride: int = 7, longer_than: int = 28) -> list[Span]:
    """Runs of `size` words (every `stride` words) inside sentences longer than `longer_than` words:
    spoken answers come as one unpunctuated run, whose clauses a sentence split never finds."""
    out: list[Span] = []
    for sentence in cut:
        found = list(_WORD.finditer(answer, sentence.start, sentence.end))
        if len(found) <= longer_than:
            continue
        for i in range(0, len(found) - size + stride, stride):
            piece = found[i : i + size]
            out.append(Span(answer[piece[0].start() : piece[-1].end()], piece[0].start(), piece[-1].end()))
    return out


# --- signs that a text is not an answer, whatever its words match -----------------------------------------

_NEGATION = re.compile(
    r"\b(?:not|never|no|don't|doesn't|won't|wouldn't|shouldn't|cannot|can't|isn't|aren't)\b|n't\b", re.IGNORECASE
)


def negated_share(cut: list[Span]) -> float:
    """Share of sentences that carry a negation: a great answer with "NOT" inserted everywhere reads
    like the great answer to an embedding model."""
    return sum(bool(_NEGATION.search(s.text)) for s in cut) / len(cut) if cut else 0.0


def repetition(text: str) -> float:
    """Share of the word pairs taken by the most frequent one: "X and the Y and the Z", or the same text
    pasted several times, score high; prose stays under about 0.05."""
    found = [w.lower() for w in words(text)]
    pairs = list(zip(found, found[1:], strict=False))
    if len(pairs) < 8:
        return 0.0
    counts: dict[tuple[str, str], int] = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return max(counts.values()) / len(pairs)


_CLASSES = {
    **dict.fromkeys("the a an my our your this these those their its every each".split(), "D"),
    **dict.fromkeys("to of in on for with at by from into about over under".split(), "P"),
    **dict.fromkeys("and or but nor".split(), "C"),
    **dict.fromkeys("i we you they he she".split(), "R"),
}
# Word-class pairs that prose almost never has ("the of", "to and", "we i"), nor a determiner or
# preposition ending a sentence; shuffled words have them at chance rates.
_ODD_PAIRS = {
    ("D", "D"),
    ("D", "P"),
    ("D", "C"),
    ("D", "R"),
    ("P", "C"),
    (
        "P",
        "D",
    ),
    ("C", "C"),
    ("R", "R"),
    ("D", "."),
    ("P", "."),
    ("C", "."),
}
_ODD_PAIRS.discard(("P", "D"))
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*|[.!?;:]")


def disorder(text: str) -> float:
    """Share of adjacent word pairs that prose almost never has: about 0.01 in an answer, spoken or not,
    and 0.1 or more once its words are shuffled into a salad."""
    classes = [_CLASSES.get(t.lower(), "." if not t[0].isalpha() else "X") for t in _TOKEN.findall(text)]
    pairs = list(zip(classes, classes[1:], strict=False))
    if len(pairs) < 12:
        return 0.0
    return sum(p in _ODD_PAIRS for p in pairs) / len(pairs)


def echo(answer: str, question: str) -> float:
    """Share of the answer's words that are the question's words: the question pasted as the answer."""
    asked = {w.lower() for w in words(question)}
    found = [w.lower() for w in words(answer)]
    return sum(w in asked for w in found) / len(found) if found else 0.0


_STOP = _FUNCTION_WORDS | frozenset(
    "also just really very about into out up all any some more most other than too only own same such "
    "would should could will may might must been being am were does did doing its it's i'm i've we've "
    "yeah um uh like you know thing things stuff lot get got make made use used using".split()
)
_SUFFIXES = (
    "ations",
    "ation",
    "ments",
    "ment",
    "ings",
    "ing",
    "ities",
    "ity",
    "ions",
    "ion",
    "ies",
    "ers",
    "er",
    "ed",
    "es",
    "ly",
    "s",
)


def stem(word: str) -> str:
    """A crude stem, enough to match "deploys", "deployed" and "deployment" to one another."""
    w = word.lower().replace("’", "'").strip("'-")
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            return w[: -len(suffix)]
    return w


def content_stems(text: str) -> frozenset[str]:
    """The stems of a text's content words (no function words, fillers or very short words)."""
    return frozenset(stem(w) for w in words(text) if len(w) > 2 and w.lower() not in _STOP)
