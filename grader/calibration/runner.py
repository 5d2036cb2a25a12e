"""Grade the answers of human.csv with a backend, each distinct (question, answer) once, cached."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grader.backends.base import Backend
from grader.calibration.data import HumanGrade, Pair, answer_ids, check_same_answer, check_unique
from grader.config import DEFAULT_MAX_ANSWER_CHARS
from grader.errors import CalibrationDataError, GraderError, UnknownQuestionError
from grader.grading.cache import GradeCache, grade_key
from grader.grading.contract import Grade
from grader.grading.review import check_answer, grade_answer
from grader.rubric import Question, Rubric


@dataclass
class AnswerResult:
    """The model's grade of one distinct answer, or the error that stopped it."""

    question: Question
    answer: str
    where: str
    grade: Grade | None = None
    error: GraderError | None = None
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

    def answer_of(self, row: HumanGrade, question: Question) -> AnswerResult:
        return self.answers[(question.id, (row.answer or "").strip())]


def plan(path: str | Path, rows: list[HumanGrade], rubric: Rubric) -> Plan:
    """Check the rows (known questions, one grade per interviewer and answer) before any model is loaded,
    and list each distinct (question, answer) once, in order of first appearance."""
    questions = resolve_questions(path, rows, rubric)
    check_same_answer(path, rows)
    ids = answer_ids(rows, [q.id for q in questions])
    check_unique(path, rows, ids)
    answers: dict[tuple[str, str], AnswerResult] = {}
    for row, question in zip(rows, questions, strict=True):
        answer = row.answer or ""
        key = (question.id, answer.strip())
        if key not in answers:
            answers[key] = AnswerResult(question, answer, where=f"{path}:{row.line}: answer")
    return Plan(path, rows, questions, ids, answers)


async def grade_plan(
    work: Plan,
    backend: Backend,
    *,
    cache: GradeCache | None = None,
    concurrency: int | None = None,
    max_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    on_result: Callable[[AnswerResult], None] | None = None,
) -> list[Pair]:
    """Grade every distinct answer once, `concurrency` at a time, and pair each row with its grade.

    An answer that cannot be graded (empty, too long, no valid reply) makes its rows `failed`; when not
    a single answer could be graded, the first error is raised (a bad key should not look like data).
    """
    gate = asyncio.Semaphore(concurrency or backend.default_concurrency)
    backend_key = backend.cache_key()

    async def one(result: AnswerResult) -> None:
        try:
            check_answer(result.answer, max_chars=max_chars, where=result.where)
        except GraderError as exc:
            result.error = exc
        else:
            exemplars = result.question.references.items()
            key = grade_key(backend_key, result.question.fingerprint(), exemplars, result.answer)
            cached = cache.get(key) if cache is not None else None
            if cached is not None:
                result.grade, result.cached = cached, True
            else:
                async with gate:
                    try:
                        result.grade = await grade_answer(backend, result.question, result.answer)
                    except GraderError as exc:
                        result.error = exc
                if result.grade is not None and cache is not None:
                    cache.put(key, result.grade)
        if on_result is not None:
            on_result(result)

    results = list(work.answers.values())
    await asyncio.gather(*(one(r) for r in results))
    errors = [r.error for r in results if r.error is not None]
    if errors and len(errors) == len(results):
        raise errors[0]

    pairs = []
    for row, question, answer_id in zip(work.rows, work.questions, work.answer_ids, strict=True):
        result = work.answer_of(row, question)
        if result.grade is not None:
            pairs.append(Pair(row, question.id, answer_id, "paired", model=result.grade, answer=row.answer))
        else:
            pairs.append(Pair(row, question.id, answer_id, "failed", error=str(result.error), answer=row.answer))
    return pairs
