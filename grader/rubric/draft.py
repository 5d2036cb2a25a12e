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
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.backends.base import Backend
from grader.backends.chat import ChatBackend, Conversation
from grader.backends.replies import _strictify, extract_json, normalise, quote_in_answer
from grader.errors import GradingFailedError
from grader.grading.contract import GradeRequest
from grader.rubric import KeyPoint, Question, RedFlag, Rubric
from grader.rubric.importer import slugify

MAX_WORDS = 16
MAX_CHARS = 120
KEY_POINTS = (3, 8)
RED_FLAGS = (1, 4)


class DraftPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quote: str = Field(description="Verbatim words from the reference answer this point comes from.")
    name: str = Field(description="Two or three lowercase words joined by hyphens, e.g. 'reproduce-first'.")
    text: str = Field(description=f"The point as a short, checkable statement (at most {MAX_WORDS} words).")


class DraftReply(BaseModel):
    """What the model proposes for one question."""

    model_config = ConfigDict(extra="forbid")

    key_points: list[DraftPoint] = Field(
        description="What the great answer does that the mediocre one does not: 4 to 8 points."
    )
    red_flags: list[DraftPoint] = Field(description="What makes the poor answer poor: 1 to 3 flags.")


def draft_schema() -> dict[str, object]:
    return _strictify(DraftReply.model_json_schema())


@dataclass
class DraftCheck:
    reply: DraftReply | None = None
    errors: list[str] = field(default_factory=list)

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
    check = DraftCheck()
    try:
        check.reply = DraftReply.model_validate_json(extract_json(raw))
    except ValidationError as exc:
        check.errors += [f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()[:6]]
        return check
    refs = question.references
    for kind, points, source, (lo, hi) in (
        ("key_points", check.reply.key_points, refs.great, KEY_POINTS),
        ("red_flags", check.reply.red_flags, refs.poor or "", RED_FLAGS if refs.poor else (0, 0)),
    ):
        if not lo <= len(points) <= hi:
            check.errors.append(f"{kind} has {len(points)} items; give {lo} to {hi}")
        seen: list[set[str]] = []
        for i, p in enumerate(points):
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


async def draft_with_model(backend: ChatBackend, question: Question) -> tuple[list[KeyPoint], list[RedFlag]]:
    user = backend.prompts.render("draft_user.jinja", question=question)
    conversation = Conversation(
        messages=[backend.system_message(None, "draft_system.jinja"), {"role": "user", "content": user}],
        schema=draft_schema(),
        name="draft_reply",
    )
    answered = await backend.ask(conversation, GradeRequest(question, ""), lambda t: check_draft(t, question))
    assert isinstance(answered.check, DraftCheck) and answered.check.reply is not None
    return _to_points(question, answered.check.reply.key_points, answered.check.reply.red_flags)


def _to_points(
    question: Question, key_points: list[DraftPoint], red_flags: list[DraftPoint]
) -> tuple[list[KeyPoint], list[RedFlag]]:
    taken: set[str] = set()
    kp_ids = _ids(question, [p.name for p in key_points], taken)
    rf_ids = _ids(question, [p.name for p in red_flags], taken)
    return (
        [
            KeyPoint(id=i, text=p.text.strip(), quote=p.quote, draft=True)
            for i, p in zip(kp_ids, key_points, strict=True)
        ],
        [RedFlag(id=i, text=p.text.strip(), quote=p.quote, draft=True) for i, p in zip(rf_ids, red_flags, strict=True)],
    )


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


async def draft_rubric(rubric: Rubric, backend: Backend | None) -> tuple[Rubric, list[str]]:
    """Fill in key points and red flags for every question lacking them. Returns the new rubric and one
    line per question saying what was drafted and how."""
    questions, report = [], []
    offline = None
    for q in rubric.questions:
        if q.key_points:
            questions.append(q)
            continue
        failed = None
        if isinstance(backend, ChatBackend):
            try:
                kps, rfs = await draft_with_model(backend, q)
                how = f"{backend.name}:{backend.model}"
            except GradingFailedError as exc:
                # One question the model cannot draft must not lose the others: it is drafted offline
                # and the report says so.
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
        report.append(f"{q.id}: drafted {len(kps)} key points, {len(rfs)} red flags ({how})")
    return Rubric.model_validate(rubric.model_copy(update={"questions": questions}).model_dump()), report
