"""Propose key points and red flags for questions that have none, for a human to review.

With a chat model configured, the model proposes them through `prompts/draft_*.jinja`, and each
proposal is validated like a grade: short, distinct, and traceable to a verbatim quote of the great
(key points) or poor (red flags) reference; invalid proposals are re-asked. Without one, the three
references are contrasted (`grader.rubric.contrast`): the great one's claims that the weaker ones lack.
`draft_by_splitting`, the older mechanical split of the great reference, is kept as the baseline it is
measured against (and the SAF suites' key points). Either way every drafted point is marked `draft: true`
and carries its `quote`, and a grade that uses one is flagged for review.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from grader.backends.base import Backend
from grader.backends.chat import ChatBackend, Conversation
from grader.backends.replies import _strictify, extract_json, normalise, quote_in_answer
from grader.errors import BackendError, GradingFailedError
from grader.grading.contract import GradeRequest
from grader.rubric import KeyPoint, Question, RedFlag, Rubric
from grader.rubric.importer import slugify
from grader.wording import counted

MAX_WORDS = 16
#: Other ways a candidate may say a point: the offline backend matches answers against these too, and they
#: are most of what makes the hand-written rubric grade well (dev, local backend: 0.800 with, 0.625 without).
MAX_PHRASINGS = 4
PHRASING_WORDS = 40
MAX_CHARS = 120
KEY_POINTS = (3, 8)
RED_FLAGS = (1, 4)


class DraftPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The lengths in the schema bound a self-hosted server's constrained decoding (a small model otherwise
    # explains each point for a paragraph, until its context is full); OpenAI's strict mode gets the schema
    # without them. They are not validated here: `check_draft` tidies or re-asks.
    quote: str = Field(
        description="Verbatim words from the reference answer this point comes from.",
        json_schema_extra={"maxLength": 300},
    )
    name: str = Field(
        description="Two or three lowercase words joined by hyphens, e.g. 'reproduce-first'.",
        json_schema_extra={"maxLength": 40},
    )
    text: str = Field(
        description=f"The point as a short, checkable statement (at most {MAX_WORDS} words).",
        json_schema_extra={"maxLength": MAX_CHARS},
    )
    phrasings: list[Annotated[str, WithJsonSchema({"type": "string", "maxLength": 200})]] = Field(
        default_factory=list,
        description=f"Up to {MAX_PHRASINGS} other ways a candidate might say it, in their own words, first person.",
        json_schema_extra={"maxItems": MAX_PHRASINGS},
    )


class DraftReply(BaseModel):
    """What the model proposes for one question."""

    model_config = ConfigDict(extra="forbid")

    key_points: list[DraftPoint] = Field(
        description="What the great answer does that the mediocre one does not: 4 to 8 points.",
        json_schema_extra={"maxItems": KEY_POINTS[1]},
    )
    red_flags: list[DraftPoint] = Field(
        description="What makes the poor answer poor: 1 to 3 flags.", json_schema_extra={"maxItems": RED_FLAGS[1]}
    )


def draft_schema() -> dict[str, object]:
    return _strictify(DraftReply.model_json_schema())


@dataclass
class DraftCheck:
    reply: DraftReply | None = None
    errors: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # points left out of an otherwise valid reply

    @property
    def ok(self) -> bool:
        return self.reply is not None and not self.errors

    @property
    def acceptable(self) -> bool:
        return False

    @property
    def problem(self) -> str:
        return self.errors[0] if self.errors else ""

    def feedback(self) -> str:
        return (
            "Your reply was not valid:\n- " + "\n- ".join(self.errors) + "\nReply again with the corrected JSON only."
        )


def check_draft(raw: str, question: Question) -> DraftCheck:
    """Validate a draft reply. Forgiving where nothing is lost: a long text is cut to its first sentence,
    an empty or over-long phrasing is left out, and a point whose quote is not in the reference is
    dropped (noted in `dropped`) while enough points remain; anything else is sent back to the model."""
    check = DraftCheck()
    try:
        check.reply = DraftReply.model_validate_json(extract_json(raw))
    except ValidationError as exc:
        check.errors += [f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()[:6]]
        return check
    refs = question.references
    for kind, source, (lo, hi) in (
        ("key_points", refs.great, KEY_POINTS),
        ("red_flags", refs.poor or "", RED_FLAGS if refs.poor else (0, 0)),
    ):
        points: list[DraftPoint] = getattr(check.reply, kind)
        quoted = [quote_in_answer(p.quote, source) for p in points]
        if not all(quoted) and sum(quoted) >= lo:
            check.dropped += [f"{kind}[{i}] (quote not in the reference)" for i, ok in enumerate(quoted) if not ok]
            points = [p for p, ok in zip(points, quoted, strict=True) if ok]
            setattr(check.reply, kind, points)
        if not lo <= len(points) <= hi:
            check.errors.append(f"{kind} has {len(points)} items; give {lo} to {hi}")
        seen: list[set[str]] = []
        for i, p in enumerate(points):
            p.text = _first_sentence(p.text)
            p.phrasings = _phrasings(p)
            words = p.text.split()
            if not words or len(words) > MAX_WORDS or len(p.text) > MAX_CHARS:
                check.errors.append(f"{kind}[{i}].text must be 1 to {MAX_WORDS} words")
            if not quote_in_answer(p.quote, source):
                which = "great" if kind == "key_points" else "poor"
                check.errors.append(f"{kind}[{i}].quote is not a verbatim quote of the {which} reference")
            bag = set(normalise(p.text).split())
            if any(_jaccard(bag, other) > 0.7 for other in seen):
                check.errors.append(f"{kind}[{i}] repeats an earlier point; make each point distinct")
            seen.append(bag)
    return check


def _first_sentence(text: str) -> str:
    """A point's text as a short statement about the answer: cut to its first sentence when the whole is
    over the limit (small models state the point, then explain it: "I reproduce the issue first. This
    helps me..."), and a first-person or still too long one made a statement the way offline drafts are
    (`contrast.statement`: "Reproduces the issue first", asides cut, at most `MAX_WORDS` words)."""
    text = " ".join(text.split())
    if len(text.split()) > MAX_WORDS:
        text = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0]
    if len(text.split()) > MAX_WORDS or re.match(r"(?:I|We)\b", text):
        from grader.rubric.contrast import statement

        text = statement(text)
    return text


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _ids(question: Question, names: list[str], taken: set[str]) -> list[str]:
    out = []
    for name in names:
        base = f"q{question.number:02d}.{slugify(name, max_words=3) or 'point'}"
        pid, n = base, 2
        while pid in taken:
            pid, n = f"{base}-{n}", n + 1
        taken.add(pid)
        out.append(pid)
    return out


async def draft_with_model(backend: ChatBackend, question: Question) -> tuple[list[KeyPoint], list[RedFlag], list[str]]:
    """The model's key points and red flags for one question, and what of its reply was left out."""
    user = backend.prompts.render("draft_user.jinja", question=question)
    conversation = Conversation(
        messages=[backend.system_message(None, "draft_system.jinja"), {"role": "user", "content": user}],
        schema=draft_schema(),
        name="draft_reply",
    )
    answered = await backend.ask(conversation, GradeRequest(question, ""), lambda t: check_draft(t, question))
    assert isinstance(answered.check, DraftCheck) and answered.check.reply is not None
    reply = answered.check.reply
    return (*_to_points(question, reply.key_points, reply.red_flags), answered.check.dropped)


def _to_points(
    question: Question, key_points: list[DraftPoint], red_flags: list[DraftPoint]
) -> tuple[list[KeyPoint], list[RedFlag]]:
    taken: set[str] = set()
    kp_ids = _ids(question, [p.name for p in key_points], taken)
    rf_ids = _ids(question, [p.name for p in red_flags], taken)
    return (
        [
            KeyPoint(id=i, text=p.text.strip(), phrasings=p.phrasings, quote=p.quote, draft=True)
            for i, p in zip(kp_ids, key_points, strict=True)
        ],
        [
            RedFlag(id=i, text=p.text.strip(), phrasings=p.phrasings, quote=p.quote, draft=True)
            for i, p in zip(rf_ids, red_flags, strict=True)
        ],
    )


def _phrasings(p: DraftPoint) -> list[str]:
    """The model's other phrasings, tidied: whitespace collapsed, empty or over-long ones and repeats (of
    each other or of the point's own text) left out, at most `MAX_PHRASINGS`."""
    seen = {normalise(p.text)}
    out = []
    for x in p.phrasings:
        x = " ".join(x.split())
        if x and len(x.split()) <= PHRASING_WORDS and normalise(x) not in seen:
            seen.add(normalise(x))
            out.append(x)
    return out[:MAX_PHRASINGS]


# Sentence ends, semicolons, line breaks and list bullets all separate claims.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])|;\s+|\s*\n+\s*(?:[-*•]\s+|\d+[.)]\s+)?")
_LEAD = re.compile(r"^(first|then|finally|also|for example|additionally|i also|and)\b[,]?\s*", re.IGNORECASE)


def claims(text: str) -> list[str]:
    """The distinct claims of a reference: its sentences, with connective lead-ins dropped."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text.strip()):
        claim = " ".join(_LEAD.sub("", sentence.strip()).split())
        if len(claim.split()) >= 4:
            out.append(claim[0].upper() + claim[1:])
    return out


def draft_by_splitting(question: Question) -> tuple[list[KeyPoint], list[RedFlag]]:
    """No model: key points from the great reference's claims that the mediocre one lacks; red flags
    from the poor reference's claims that share least with the great one."""
    great = set(normalise(question.references.great).split())
    mediocre = set(normalise(question.references.mediocre or "").split())
    candidates = claims(question.references.great)
    candidates.sort(key=lambda c: _jaccard(set(normalise(c).split()), mediocre))
    chosen: list[str] = []
    for c in candidates:
        bag = set(normalise(c).split())
        if all(_jaccard(bag, set(normalise(o).split())) <= 0.5 for o in chosen):
            chosen.append(c)
        if len(chosen) == KEY_POINTS[1]:
            break
    chosen.sort(key=claims(question.references.great).index)
    flags = sorted(claims(question.references.poor or ""), key=lambda c: _jaccard(set(normalise(c).split()), great))
    flags = flags[:2]
    as_points = [DraftPoint(quote=c, name=" ".join(c.split()[:6]), text=_shorten(c)) for c in chosen]
    as_flags = [DraftPoint(quote=c, name=" ".join(c.split()[:6]), text=_shorten(c)) for c in flags]
    return _to_points(question, as_points, as_flags)


def _shorten(claim: str, limit: int = 200) -> str:
    """Cut a long claim at the last comma in its second half, else at a word boundary."""
    if len(claim) <= limit:
        return claim
    head = claim[: limit - 1]
    comma = head.rfind(",")
    cut = head[:comma] if comma >= limit // 2 else head.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


async def draft_rubric(
    rubric: Rubric, backend: Backend | None, on_drafted: Callable[[Rubric, str], None] | None = None
) -> tuple[Rubric, list[str]]:
    """Fill in key points and red flags for every question lacking them. Returns the new rubric and one
    line per question saying what was drafted and how. `on_drafted` gets the rubric as it stands after each
    drafted question (the rest unchanged) and that question's line, so a caller can save it and say so: a
    killed run keeps what was drafted, and the next run drafts only the questions still without key points."""
    questions, report = [], []
    offline = None
    for q in rubric.questions:
        if q.key_points:
            questions.append(q)
            continue
        failed = None
        if isinstance(backend, ChatBackend):
            try:
                kps, rfs, left_out = await draft_with_model(backend, q)
                from grader.rubric.contrast import screen

                kps, rfs, dropped = screen(q, kps, rfs)
                dropped = [*left_out, *(f"{d} (no contrast)" for d in dropped)]
                how = f"{backend.name}:{backend.model}" + (f"; dropped {', '.join(dropped)}" if dropped else "")
            except (GradingFailedError, BackendError) as exc:
                # One question the model cannot draft (no valid reply; a request the server refuses, such
                # as re-asks that outgrow a small model's context) must not lose the others: it is drafted
                # offline and the report says so. A refusal every request would get (key, model) stops.
                if isinstance(exc, BackendError) and exc.status != 400:
                    raise
                failed = str(exc)
        if failed is not None or not isinstance(backend, ChatBackend):
            from grader.rubric.contrast import draft_offline  # numpy and the embedder: only when drafting offline

            offline = offline or draft_offline(rubric)
            kps, rfs = offline(q)
            how = (
                f"offline, because the model gave no valid draft: {failed}"
                if failed is not None
                else "offline: the great reference's claims the weaker references lack (no chat model configured)"
            )
        if q.red_flags:
            rfs = list(q.red_flags)
        questions.append(q.model_copy(update={"key_points": kps, "red_flags": rfs}))
        report.append(f"{q.id}: drafted {counted(len(kps), 'key point')}, {counted(len(rfs), 'red flag')} ({how})")
        if on_drafted is not None:
            on_drafted(rubric.with_questions([*questions, *rubric.questions[len(questions) :]]), report[-1])
    return rubric.with_questions(questions), report
