"""Cut an answer into spans (sentences, clauses, word chunks, windows) that are exact slices of the
answer, so the span that best matches a key point can be quoted verbatim as evidence; and the text
signals the guard rails read (repetition, echo of the question, negation, word order, content words)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files

# A sentence ends at . ! ? (with closing quotes or brackets), at a line break (bullets, list items) or at the end.
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"'”’)]*|(?=\n)|$)")
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
#: How `whole_tokens` widens an evidence quote (part of the local backend's cache key): 3 also after "e.g.".
QUOTES_VERSION = 3


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


def spans(answer: str, cut: list[Span] | None = None) -> list[Span]:
    """Sentences (`cut`, when the caller has them already), plus the clauses of sentences that have
    several, each an exact slice of `answer`."""
    out: list[Span] = []
    for sentence in sentences(answer) if cut is None else cut:
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


def whole_tokens(answer: str, span: Span) -> Span:
    """`span` of `answer` widened where the sentence splitter cut inside a token: at a dot between two
    letters or digits ("OAuth 2." then "0 and short-lived JWTs", "Node." then "js"), or after an abbreviation
    that ends no sentence ("a cache, e.g." then "Redis"; "at 3 a.m." then "we were paged"). The splitter keeps
    those cuts, as the fitted rule was measured with them (refitted on whole tokens, dev leave-one-question-out
    went from 0.750 to 0.742); a quote shown to a person is whole, still verbatim."""
    start, end = span.start, span.end
    if not (_cut_after(answer, end) or _cut_after(answer, start)):
        return span
    pieces = [(m.start(), m.end()) for m in _SENTENCE.finditer(answer)]
    while _cut_after(answer, end) and (after := next((b for a, b in pieces if a == end), None)) is not None:
        end = after
    while _cut_after(answer, start):
        # the piece before the one `start` opens (the pieces run on, each from the end of the one before)
        before = next((a for a, b in pieces if b <= start and not answer[b:start].strip(" \t,;:")), None)
        if before is None or before >= start:
            break
        start = before
    return _strip(answer, start, end) or span


#: Abbreviations that end no sentence; and those that may, unless what follows goes on in lower case.
#: Titles in their case only: "800 ms." and "no DR." end sentences.
_NEVER_AN_END = re.compile(r"(?:\b(?:(?i:e\.g|i\.e|cf|vs|viz|approx)|Mr|Mrs|Ms|Dr|St)\.)\Z")
_MAYBE_AN_END = re.compile(r"(?:\b(?:a\.m|p\.m|etc|incl|esp|min|sec)\.)\Z", re.IGNORECASE)


def _cut_after(text: str, i: int) -> bool:
    """Whether a splitter's cut at `i` (a span ending there, or the next one beginning) is inside a sentence:
    right after a dot between two letters or digits, or after an abbreviation that ends no sentence there."""
    if _inside(text, i - 1):
        return True
    head = text[max(0, i - 12) : i]
    trimmed = head.rstrip(" \t\r\n,;:")  # "e.g., Redis": the comma is the splitter's, not a sentence's
    if "\n" in head[len(trimmed) :]:
        return False  # a line break between: a list item, a new line, is its own span either way
    head = trimmed
    if _NEVER_AN_END.search(head):
        return True
    if _MAYBE_AN_END.search(head):
        rest = text[i:].lstrip()
        return bool(rest) and (rest[0].islower() or rest[0].isdigit())
    return False


def _inside(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i] == "." and text[i - 1].isalnum() and text[i + 1].isalnum()


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
    return negated_sentences(cut) / len(cut) if cut else 0.0


def negated_sentences(cut: list[Span]) -> int:
    return sum(bool(_NEGATION.search(s.text)) for s in cut)


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


_ORDER_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*|[.!?;:\n]")
_ORDER_VOCAB = _FUNCTION_WORDS | frozenset(
    "also just really very about into out up all any some more most other than too only would should could "
    "will may might must been being am were does did its these those every each over under".split()
)
MIN_ORDER_PAIRS = 12


def _order_tokens(text: str) -> list[str]:
    """Function words as themselves, every other word as X, sentence ends as '.': word order, not topic."""
    out = ["<s>"]
    for token in _ORDER_TOKEN.findall(text):
        w = token.lower()
        out.append(w if w in _ORDER_VOCAB else ("X" if w[0].isalpha() else "."))
    return out


@dataclass(frozen=True)
class OrderModel:
    """A bigram model of how function words follow one another in English prose. `score` tells prose
    (spoken or not) from the same words shuffled into a salad, which an embedding model cannot see."""

    unigrams: dict[str, int]
    bigrams: dict[str, int]  # "a b" -> count

    @classmethod
    def train(cls, texts: list[str]) -> OrderModel:
        uni: dict[str, int] = {}
        bi: dict[str, int] = {}
        for text in texts:
            tokens = _order_tokens(text)
            for a, b in zip(tokens, tokens[1:], strict=False):
                uni[b] = uni.get(b, 0) + 1
                bi[f"{a} {b}"] = bi.get(f"{a} {b}", 0) + 1
        return cls(dict(sorted(uni.items())), dict(sorted(bi.items())))

    @classmethod
    def load(cls) -> OrderModel:
        """The packaged model (`order.json`, written by scripts/fit_local.py from the rubric's own text)."""
        data = json.loads((files("grader.backends.local") / "order.json").read_text(encoding="utf-8"))
        return cls(unigrams=data["unigrams"], bigrams=data["bigrams"])

    def to_json(self) -> str:
        return json.dumps({"unigrams": self.unigrams, "bigrams": self.bigrams}, indent=0, sort_keys=True) + "\n"

    @cached_property
    def _context(self) -> dict[str, int]:
        ctx: dict[str, int] = {}
        for pair, n in self.bigrams.items():
            a = pair.split(" ", 1)[0]
            ctx[a] = ctx.get(a, 0) + n
        return ctx

    def score(self, text: str) -> float:
        """How sure it is that the text's words are in prose order: the mean log-ratio of its word pairs,
        P(next | previous) / P(next), over its standard error (a t statistic). Prose scores well above
        zero, a shuffled text well below, and a short text near zero either way; nan under 12 pairs."""
        tokens = _order_tokens(text)
        if len(tokens) - 1 < MIN_ORDER_PAIRS:
            return float("nan")
        total, vocab, ctx = sum(self.unigrams.values()), len(self.unigrams) + 1, self._context
        values = []
        for a, b in zip(tokens, tokens[1:], strict=False):
            p_pair = (self.bigrams.get(f"{a} {b}", 0) + 0.5) / (ctx.get(a, 0) + 0.5 * vocab)
            p_next = (self.unigrams.get(b, 0) + 0.5) / (total + 0.5 * vocab)
            values.append(math.log(p_pair / p_next))
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1e-9
        return mean / (spread / math.sqrt(len(values)))


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
