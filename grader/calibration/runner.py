"""Grade the answers of human.csv through the grading engine, each distinct (question, answer) once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.backends.base import Backend
from grader.calibration.data import HumanGrade, Pair, answer_ids, check_same_answer, check_unique
from grader.config import DEFAULT_MAX_ANSWER_CHARS
from grader.errors import CalibrationDataError, UnknownQuestionError, error_for
from grader.grading.cache import GradeCache
from grader.grading.contract import HoldsOutcome, Outcome
from grader.grading.engine import Engine, Graded, Job
from grader.rubric import Question, Rubric


@dataclass
class AnswerResult(HoldsOutcome):
    """One distinct answer, and once graded, the model's grade or the failure that stopped it."""

    question: Question
    answer: str
    where: str
    outcome: Outcome | None = None
    cached: bool = False


def resolve_questions(path: str | Path, rows: list[HumanGrade], rubric: Rubric) -> list[Question]:
    """The rubric question of each row; an unknown one is an error naming the line."""
    out = []
    for row in rows:
        try:
            out.append(rubric.find(row.question))
        except UnknownQuestionError as exc:
            raise CalibrationDataError(f"{path}:{row.line}: unknown question {row.question!r}", hint=exc.hint) from None
    return out


@dataclass
class Plan:
    """The rows of human.csv, checked, with their questions and the distinct answers to grade."""

    path: str | Path
    rows: list[HumanGrade]
    questions: list[Question]
    answer_ids: list[str]
    answers: dict[tuple[str, str], AnswerResult]
    rubric: Rubric | None = None  # the questions' rubric: the engine grades against it (its other questions too)

    def answer_of(self, row: HumanGrade, question: Question) -> AnswerResult:
        return self.answers[(question.id, (row.answer or "").strip())]


def plan(path: str | Path, rows: list[HumanGrade], rubric: Rubric) -> Plan:
    """Check the rows (known questions, one grade per interviewer and answer) before any model is loaded,
    and list each distinct (question, answer) once, in order of first appearance."""
    questions = resolve_questions(path, rows, rubric)
    check_same_answer(path, rows, {row.question: q.id for row, q in zip(rows, questions, strict=True)}.get)
    ids = answer_ids(rows, [q.id for q in questions])
    check_unique(path, rows, ids)
    answers: dict[tuple[str, str], AnswerResult] = {}
    for row, question in zip(rows, questions, strict=True):
        answer = row.answer or ""
        key = (question.id, answer.strip())
        if key not in answers:
            answers[key] = AnswerResult(question, answer, where=f"{path}:{row.line}: answer")
    return Plan(path, rows, questions, ids, answers, rubric)


async def grade_plan(
    work: Plan,
    backend: Backend,
    *,
    cache: GradeCache | None = None,
    concurrency: int | None = None,
    max_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    on_result: Callable[[AnswerResult], None] | None = None,
) -> list[Pair]:
    """Grade every distinct answer once and pair each row with its grade.

    An answer that cannot be graded (empty, too long, no valid reply) makes its rows `failed`; when not
    a single answer could be graded, the first failure ends the command (a bad key should not look like
    data).
    """
    engine = Engine(backend, rubric=work.rubric, cache=cache, concurrency=concurrency, max_answer_chars=max_chars)
    results = list(work.answers.values())

    def keep(graded: Graded[AnswerResult]) -> None:
        result = graded.job.tag
        result.outcome, result.cached = graded.outcome, graded.source == "cache"
        if on_result is not None:
            on_result(result)

    await engine.run((Job(r.question, r.answer, tag=r, where=r.where) for r in results), keep)
    failures = [r.failure for r in results if r.failure is not None]
    if failures and len(failures) == len(results):
        raise error_for(failures[0])

    pairs = []
    for row, question, answer_id in zip(work.rows, work.questions, work.answer_ids, strict=True):
        result = work.answer_of(row, question)
        if result.grade is not None:
            pairs.append(Pair(row, question.id, answer_id, "paired", model=result.grade, answer=row.answer))
        else:
            pairs.append(Pair(row, question.id, answer_id, "failed", failure=result.failure, answer=row.answer))
    return pairs
