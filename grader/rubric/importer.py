"""Import a question bank in the recruiters' plain-text format into a rubric.

The format: an optional title, then numbered questions (`1. How do you ...?`), each followed by
`Great Response: "..."`, `Mediocre Response: "..."` and `Poor Response: "..."` lines. Quotes may be
straight or curly; a quoted response may run over several lines. Lines after a complete question that
are not part of the format (such as "Last updated") are reported back as ignored, never silently.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grader.errors import RubricError
from grader.rubric import Question, References, Rubric
from grader.textfiles import read_text

_QUESTION = re.compile(r"^\s*(\d+)\s*[.)]\s+(\S.*?)\s*$")
_RESPONSE = re.compile(r"^\s*(great|mediocre|poor)\s+(?:response|answer)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_OPEN_QUOTES = {'"': '"', "“": "”", "„": "“"}
_LEAD_INS = re.compile(
    r"^(how (do|would|did|should|could|can|will) you( (approach|handle|ensure|balance|decide|design|manage|go about))?|"
    r"what (would|do|did) you do( (if|when))?|"
    r"describe (your experience with|how you)?|"
    r"tell me about (a time (when )?you|your)|what is your (approach to)?|what are|can you|walk me through|"
    r"explain)\s+",
    re.IGNORECASE,
)
#: Longest id `slugify` makes: the rubric allows 80 characters, and a repeated slug gets `-N` appended.
_MAX_SLUG = 72
#: Longest question number (digits): more is a typo or junk, not a question bank.
_MAX_NUMBER_DIGITS = 9
_FILLER = {"the", "your", "you", "of", "for", "to", "and", "with", "on", "in", "do", "how", "had", "a", "an", "between"}


@dataclass
class ImportResult:
    rubric: Rubric
    ignored_lines: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Draft:
    number: int
    text: str
    line: int
    responses: dict[str, str] = field(default_factory=dict)


def slugify(question: str, max_words: int = 5) -> str:
    """A short, readable id from a question: `How do you approach debugging a production issue?` ->
    `debugging-a-production-issue`. Never longer than `_MAX_SLUG` characters (room for a `-N` suffix
    under the rubric's 80), whatever the question's words."""
    text = unicodedata.normalize("NFKD", _LEAD_INS.sub("", question.strip()).lower())  # "cómo" -> "como"
    words = re.findall(r"[a-z0-9]+", text.encode("ascii", "ignore").decode())
    while words and words[0] in _FILLER:
        words.pop(0)
    words = [w[:_MAX_SLUG] for w in words[:max_words]]
    while words and words[-1] in _FILLER:
        words.pop()
    while len("-".join(words)) > _MAX_SLUG and len(words) > 1:
        words.pop()
    return "-".join(words) or "question"


def distinct_slugs(questions: list[str]) -> list[str]:
    """Each question's slug, with more of its words where two would be the same: "set up an on-call
    rotation for a small team" and "... company" are told apart by their last word, not by `-2`."""
    slugs = [slugify(q) for q in questions]
    for more in range(6, 16):
        clash = {s for s in slugs if slugs.count(s) > 1}
        if not clash:
            break
        slugs = [slugify(q, max_words=more) if s in clash else s for s, q in zip(slugs, questions, strict=True)]
    return slugs


def import_bank(path: str | Path, *, name: str | None = None, known: Rubric | None = None) -> ImportResult:
    path = Path(path)
    result = parse_bank(read_text(path), label=str(path), name=name or path.stem, known=known)
    result.rubric.source = path.name
    return result


def parse_bank(
    text: str, *, label: str = "<bank>", name: str = "imported", known: Rubric | None = None
) -> ImportResult:
    """The bank's questions as a rubric with references and no key points. A question whose text is (or,
    edited, nearly is) a question of `known` keeps that question's id, so importing a bank again, or the
    bank a rubric was written from, gives the ids already in use (grades, reviews and caches name them)."""
    drafts: list[_Draft] = []
    ignored: list[tuple[int, str]] = []
    current: _Draft | None = None
    open_tier: str | None = None  # a quoted response still waiting for its closing quote
    open_close = ""
    after_response = False  # the line before was a response's (or its quote's last) line
    unquoted = False  # and that response had no quotes around it
    lines = text.lstrip("\ufeff").splitlines()

    def fail(lineno: int, message: str) -> RubricError:
        return RubricError(f"{label}:{lineno}: {message}")

    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if open_tier is not None and current is not None:
            current.responses[open_tier] += "\n" + raw
            if line.endswith(open_close):
                current.responses[open_tier] = current.responses[open_tier].rstrip()[: -len(open_close)]
                open_tier = None
                after_response = True
            continue
        follows_response, after_response = after_response, False
        if not line:
            continue
        if m := _RESPONSE.match(line):
            tier, body = m.group(1).lower(), m.group(2)
            if current is None:
                raise fail(lineno, f"'{m.group(1)} Response' before any numbered question")
            if tier in current.responses:
                raise fail(lineno, f"question {current.number} has a second {tier} response")
            body, still_open, close = _unquote(body)
            if not body.strip() and not still_open:
                raise fail(lineno, f"question {current.number}: the {tier} response is empty")
            current.responses[tier] = body
            if still_open:
                open_tier, open_close = tier, close
            after_response, unquoted = not still_open, not close
            continue
        if m := _QUESTION.match(line):
            if current is not None:
                _check_complete(current, label, cut_at=lineno if current.responses else None)
            digits = m.group(1)
            if len(digits.lstrip("0")) > _MAX_NUMBER_DIGITS:
                raise fail(lineno, f"question number {digits[:12]}… is too large")
            number = int(digits)
            if number < 1:
                raise fail(lineno, f"question number {number}: numbers start at 1")
            if any(d.number == number for d in drafts):
                first = next(d.line for d in drafts if d.number == number)
                raise fail(lineno, f"duplicate question number {number} (first at line {first})")
            current = _Draft(number=number, text=m.group(2), line=lineno)
            drafts.append(current)
            continue
        if current is not None and 0 < len(current.responses) < 3:
            raise fail(
                lineno,
                f"unexpected text inside question {current.number}: {line[:60]!r} (a response that runs over "
                'several lines needs quotes around it: Great Response: "...")',
            )
        tail = line.endswith(tuple(_OPEN_QUOTES.values())) and not line.startswith(tuple(_OPEN_QUOTES))
        if current is not None and len(current.responses) == 3 and follows_response and (unquoted or tail):
            # Right under an unquoted last response, or ending in a closing quote: that response's next
            # line, not a note after the question. Ignored, the poor reference would be cut short unsaid.
            how = (
                "a quote inside a quoted response ends it early: write inner quotes as ' or “”"
                if tail and not unquoted
                else "quote a response that runs over several lines"
            )
            raise fail(
                lineno,
                f"text right after question {current.number}'s last response: {line[:60]!r} ({how}; leave a blank "
                "line before a note that is not part of it)",
            )
        if current is not None and not current.responses:
            raise fail(lineno, f"question {current.number} has text before its responses: {line[:60]!r}")
        ignored.append((lineno, line))

    if open_tier is not None and current is not None:
        raise fail(len(lines), f"question {current.number}: the {open_tier} response's quote is never closed")
    if current is not None:
        _check_complete(current, label)
    if not drafts:
        raise RubricError(f"{label}: no questions found (expected lines like '1. How do you ...?')")

    questions: list[Question] = []
    kept = known_ids(drafts, known)
    used: set[str] = set(kept.values())
    new = [d for d in drafts if d.number not in kept]
    fresh = dict(zip([d.number for d in new], distinct_slugs([d.text for d in new]), strict=True))
    for d in drafts:
        slug = kept.get(d.number) or fresh[d.number]
        if d.number not in kept:
            base, n = slug, 2
            while slug in used:
                slug, n = f"{base}-{n}", n + 1
            used.add(slug)
        try:
            references = References(**d.responses)
            questions.append(Question(id=slug, number=d.number, text=d.text, references=references))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ("references", *err["loc"]) if exc.title == "References" else err["loc"]
            raise fail(d.line, f"question {d.number}: {'.'.join(map(str, loc))}: {_problem(err)}") from None
    try:
        rubric = Rubric(name=name, questions=questions)
    except ValidationError as exc:
        raise RubricError(f"{label}: {_problem(exc.errors()[0])}") from None
    return ImportResult(rubric=rubric, ignored_lines=ignored)


#: How close (difflib's ratio) an edited question's text must stay to keep its id.
SAME_QUESTION = 0.8


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def known_ids(drafts: list[_Draft], known: Rubric | None) -> dict[int, str]:
    """Question number -> the id of the `known` question it is: the same text (ignoring case and
    punctuation), else the one most like it at `SAME_QUESTION` or more; each known id used once."""
    if known is None:
        return {}
    texts = {q.id: _words(q.text) for q in known.questions}
    kept: dict[int, str] = {}
    exact = {t: qid for qid, t in texts.items()}
    for d in drafts:
        qid = exact.get(_words(d.text))
        if qid is not None and qid not in kept.values():
            kept[d.number] = qid
    for d in drafts:
        if d.number in kept:
            continue
        free = [qid for qid in texts if qid not in kept.values()]
        scored = [(difflib.SequenceMatcher(None, _words(d.text), texts[qid]).ratio(), qid) for qid in free]
        best = max(scored, default=(0.0, ""))
        if best[0] >= SAME_QUESTION:
            kept[d.number] = best[1]
    return kept


def _problem(err: Any) -> str:
    """A pydantic error's message on one line, in the rubric checker's words."""
    if err["type"] == "string_pattern_mismatch":
        return "must not be empty"
    return str(err["msg"]).removeprefix("Value error, ")


def _unquote(body: str) -> tuple[str, bool, str]:
    """Strip the enclosing quotes of a response. Returns (text, quote still open, closing quote)."""
    if body and body[0] in _OPEN_QUOTES:
        close = _OPEN_QUOTES[body[0]]
        inner = body[1:]
        if len(inner) >= 1 and inner.endswith(close):
            return inner[: -len(close)], False, close
        if body[0] == "“" and inner.endswith('"'):
            return inner[:-1], False, '"'
        return inner, True, close
    return body, False, ""


def _check_complete(draft: _Draft, label: str, cut_at: int | None = None) -> None:
    """Each question needs its three responses. `cut_at`: the line of the next question, which came while
    this one had some of them: a numbered list inside an unquoted response ("1) ...") reads as one."""
    missing = [t for t in ("great", "mediocre", "poor") if t not in draft.responses]
    if missing:
        why = (
            f"; line {cut_at} reads as the next question: a numbered list inside a response needs quotes "
            'around the whole response (Great Response: "...")'
            if cut_at is not None
            else ""
        )
        raise RubricError(
            f"{label}:{draft.line}: question {draft.number} has no {' or '.join(missing)} response (each question "
            f"needs a great, a mediocre and a poor one: the points are drafted from how they differ{why})"
        )
