"""From a parsed transcript to a scorecard: redact, segment, match, grade, stamp the evidence, restore.

Segmentation and matching run locally. Only the candidate's answer text goes to the grading backend
(with `redact`, after names, e-mails, phones and URLs are replaced), through the grading engine, one
job per matched exchange, all of one transcript's exchanges at once (which the local backend turns into
one batch). A grade that cannot be had is recorded on its question as its `GradeFailure` and kept out
of the summary; a problem that would fail every grade (a refused key, a broken template) stops the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from grader.backends.base import Backend
from grader.backends.replies import normalise
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.grading.cache import GradeCache
from grader.grading.contract import CoveredPoint, Grade, GradeFailure
from grader.grading.engine import Engine, Job, ReviewSource
from grader.rubric import Rubric
from grader.transcripts.match import Match, QuestionMatcher
from grader.transcripts.parse import Transcript, Turn, format_time
from grader.transcripts.redact import Redactor
from grader.transcripts.scorecard import (
    Evidence,
    FlagRef,
    PointRef,
    Scorecard,
    ScoredQuestion,
    SmallTalk,
    UnmatchedQuestion,
    summarize,
)
from grader.transcripts.segment import Aside, Exchange, Piece, Roles, segment


@dataclass(frozen=True)
class Settings:
    redact: bool = False
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS
    #: Grades from earlier runs (`grader transcript --cache`); None grades every answer afresh.
    cache: GradeCache | None = field(default=None, compare=False)
    #: Reviewed answers shown with each grade (`--learn-from DB`).
    reviews: ReviewSource | None = field(default=None, compare=False)


Kind = Literal["rubric", "unmatched", "followup", "small_talk"]


@dataclass(frozen=True)
class Accounted:
    """Where one interviewer question went: `question_id` is the rubric question it asked (rubric), or
    the one of the exchange it follows up (followup; None when that exchange is unmatched)."""

    kind: Kind
    question_id: str | None = None


@dataclass
class Prepared:
    """A transcript segmented and matched, ready to grade: what tests inspect."""

    transcript: Transcript  # as sent (redacted when asked)
    roles: Roles
    redactor: Redactor | None
    exchanges: list[Exchange]
    matches: dict[str, Match]  # asked text -> its match
    skipped: list[int]
    small_talk: list[Aside] = field(default_factory=list)

    def accounted(self) -> dict[int, Accounted]:
        """Every interviewer turn that asks something, and where it went. A turn with small talk and a
        real question in it counts as the real question."""
        found: dict[int, Accounted] = {a.turn: Accounted("small_talk") for a in self.small_talk}
        for ex in self.exchanges:
            kind: Kind = "rubric" if ex.question_id is not None else "unmatched"
            for i in ex.followups:
                found[i] = Accounted("followup", ex.question_id)
            for i in [*ex.opening, *ex.reasked]:
                found[i] = Accounted(kind, ex.question_id)
        return found


def prepare(transcript: Transcript, roles: Roles, matcher: QuestionMatcher, *, redact: bool = False) -> Prepared:
    redactor = Redactor(transcript.speakers) if redact else None
    turns = transcript.turns
    if redactor is not None:
        turns = [Turn(t.speaker, redactor.redact(t.text), t.start, t.end) for t in turns]
    working = Transcript(transcript.source, transcript.format, turns)
    matches: dict[str, Match] = {}

    def ids(texts: Sequence[str]) -> list[str | None]:
        found = matcher.match(texts)
        matches.update(zip(texts, found, strict=True))
        return [m.question.id if m.question is not None else None for m in found]

    seg = segment(working, roles, match=ids)
    exchanges = _merge_repeats(seg.exchanges)
    return Prepared(working, roles, redactor, exchanges, matches, sorted(set(seg.skipped)), seg.small_talk)


def _merge_repeats(exchanges: list[Exchange]) -> list[Exchange]:
    """A rubric question the interviewer comes back to later is one question: its later exchanges join the
    first, so the whole answer is graded once."""
    first: dict[str, Exchange] = {}
    out: list[Exchange] = []
    for ex in exchanges:
        earlier = first.get(ex.question_id) if ex.question_id else None
        if earlier is None:
            if ex.question_id:
                first[ex.question_id] = ex
            out.append(ex)
            continue
        earlier.turns += ex.turns
        earlier.answer += ex.answer
        earlier.followups += ex.opening + ex.followups  # shown with the question's follow-ups
        earlier.reasked += ex.opening
        earlier.clarifications += ex.clarifications
    return out


async def score_transcript(
    transcript: Transcript,
    roles: Roles,
    *,
    rubric: Rubric,
    backend: Backend,
    matcher: QuestionMatcher,
    settings: Settings | None = None,
) -> Scorecard:
    settings = settings or Settings()
    prepared = prepare(transcript, roles, matcher, redact=settings.redact)
    turns = prepared.transcript.turns
    restore = prepared.redactor.restore if prepared.redactor is not None else (lambda text: text)
    matched = [ex for ex in prepared.exchanges if ex.question_id is not None]
    answers = [ex.answer_text(turns) for ex in matched]

    engine = Engine(
        backend,
        rubric=rubric,
        cache=settings.cache,
        review_threshold=settings.review_threshold,
        max_answer_chars=settings.max_answer_chars,
        reviews=settings.reviews,
    )
    jobs = [
        Job(ex.question_id or "", text, tag=ex, where=f"{transcript.source}: the answer to {ex.question_id}")
        for ex, (text, _) in zip(matched, answers, strict=True)
    ]
    results = [graded.outcome for graded in await engine.grade_all(jobs)]

    questions = []
    for ex, (answer, pieces), result in zip(matched, answers, results, strict=True):
        question = rubric.find(ex.question_id or "")
        match = prepared.matches[ex.asked]
        texts = {p.id: p.text for p in [*question.key_points, *question.red_flags]}
        grade = _restored(result, restore) if isinstance(result, Grade) else None
        if grade is not None and ex.together:  # one reply to two questions: which part answers which is a guess
            shared = (
                f"asked together with {', '.join(ex.together)} and answered in one reply, graded for each: "
                "check which part answers this question"
            )
            grade = grade.model_copy(update={"needs_review": True, "review_reasons": [*grade.review_reasons, shared]})
        failure = result if isinstance(result, GradeFailure) else None
        evidence = []
        if isinstance(result, Grade):
            for point in result.covered_points:
                turn = _turn_of(point.evidence, answer, pieces, turns)
                evidence.append(
                    Evidence(
                        point_id=point.id,
                        point=texts.get(point.id, point.id),
                        quote=restore(point.evidence) if point.evidence else None,
                        speaker=turn.speaker if turn else None,
                        start=turn.start if turn else None,
                        timestamp=format_time(turn.start) if turn else None,
                    )
                )
        questions.append(
            ScoredQuestion(
                question_id=question.id,
                number=question.number,
                question=question.text,
                asked=restore(ex.question_text(turns)),
                asked_at=format_time(ex.asked_at(turns)),
                match_score=match.score,
                also_close=match.runner_up.text if match.ambiguous and match.runner_up else None,
                answer=restore(answer),
                answer_turns=len(ex.answer),
                followups=[restore(turns[i].text) for i in ex.followups],
                grade=grade,
                failure=failure.model_copy(update={"message": restore(failure.message)}) if failure else None,
                evidence=evidence,
                missed=[PointRef(id=p, text=texts.get(p, p)) for p in (grade.missed_points if grade else [])],
                red_flags=[
                    _flag(f, texts.get(f, f), result.red_flag_evidence.get(f), answer, pieces, turns, restore)
                    for f in result.red_flags
                ]
                if isinstance(result, Grade)
                else [],
            )
        )
    questions.sort(key=lambda q: q.number)
    unmatched = [
        UnmatchedQuestion(
            asked=restore(ex.question_text(turns)),
            asked_at=format_time(ex.asked_at(turns)),
            closest=prepared.matches[ex.asked].best.id,
            score=prepared.matches[ex.asked].score,
            answer_turns=len(ex.answer),
            followups=[restore(turns[i].text) for i in ex.followups],
        )
        for ex in prepared.exchanges
        if ex.question_id is None
    ]
    small_talk = [
        SmallTalk(asked=restore(a.text), asked_at=format_time(turns[a.turn].start), reply_turns=len(a.replies))
        for a in prepared.small_talk
    ]
    speakers = transcript.speakers
    return Scorecard(
        source=transcript.source,
        format=transcript.format,
        candidate=roles.candidate,
        interviewers=[s for s in speakers if s in roles.interviewers],
        rubric=rubric.name,
        backend=backend.name,
        model=backend.model,
        redacted=settings.redact,
        match_threshold=matcher.threshold,
        questions=questions,
        unmatched=unmatched,
        small_talk=small_talk,
        skipped_turns=len(prepared.skipped),
        summary=summarize(questions, len(unmatched), small_talk=len(small_talk)),
    )


def _flag(  # noqa: PLR0913
    flag_id: str,
    text: str,
    quote: str | None,
    answer: str,
    pieces: list[Piece],
    turns: Sequence[Turn],
    restore: Callable[[str], str],
) -> FlagRef:
    """A red flag shown, with its quote (placeholders put back) and the time it was said."""
    turn = _turn_of(quote, answer, pieces, turns) if quote else None
    return FlagRef(
        id=flag_id,
        text=text,
        quote=restore(quote) if quote else None,
        timestamp=format_time(turn.start) if turn else None,
    )


def _restored(grade: Grade, restore) -> Grade:  # noqa: ANN001
    """The grade with placeholders put back: the report is local."""
    return grade.model_copy(
        update={
            "justification": restore(grade.justification),
            "covered_points": [
                CoveredPoint(id=p.id, evidence=restore(p.evidence) if p.evidence else p.evidence)
                for p in grade.covered_points
            ],
            "red_flag_evidence": {f: restore(q) for f, q in grade.red_flag_evidence.items()},
            "notes": [restore(n) for n in grade.notes],
            "review_reasons": [restore(r) for r in grade.review_reasons],
        }
    )


# --- where a quote was said ----------------------------------------------------------------------------


def _normalised_index(text: str) -> tuple[str, list[int]]:
    """`normalise(text)`, and for each of its characters the index in `text` it came from."""
    chars: list[str] = []
    index: list[int] = []
    space = True
    for i, ch in enumerate(text):
        if ch.isspace():
            if not space:
                chars.append(" ")
                index.append(i)
            space = True
            continue
        for c in normalise(ch) or ch:
            chars.append(c)
            index.append(i)
        space = False
    return "".join(chars), index


_EDGE = " \t\n\"'.,;:!?-—–()[]"


def locate(quote: str, text: str) -> int | None:
    """Where a quote (verbatim up to case, quotes and spacing; `...` between pieces) starts in `text`."""
    haystack, index = _normalised_index(text)
    first = normalise(quote.replace("…", "...").split("...")[0]).strip(_EDGE)
    if not first:
        return None
    found = haystack.find(first)
    return index[found] if found >= 0 else None


def _turn_of(quote: str | None, answer: str, pieces: list[Piece], turns: Sequence[Turn]) -> Turn | None:
    if not quote:
        return None
    offset = locate(quote, answer)
    if offset is None:
        return None
    for piece in pieces:
        if piece.start <= offset < piece.end:
            return turns[piece.turn]
    return None
