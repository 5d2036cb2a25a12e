"""Run a suite's cases through a backend: concurrent, cached, and honest about what failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from grader.backends.base import Backend
from grader.errors import EmptyAnswerError, GraderError, GradingFailedError
from grader.eval.cases import EvalCase, Suite
from grader.grading.cache import GradeCache, grade_key
from grader.grading.contract import Grade
from grader.grading.review import check_answer, grade_answer


@dataclass
class CaseResult:
    case: EvalCase
    grade: Grade | None = None
    rejected: bool = False  # the grader refused the input (an empty answer)
    error: str | None = None  # unscored: the grade could not be obtained
    error_kind: str | None = None
    cached: bool = False

    @property
    def outcome(self) -> str:
        if self.grade is not None:
            return self.grade.tier.value
        return "rejected" if self.rejected else "failed"

    @property
    def scored(self) -> bool:
        return self.grade is not None

    @property
    def passed(self) -> bool:
        return self.outcome in self.case.expected


def exemplars_for(suite: Suite, case: EvalCase) -> tuple[tuple[str, str], ...]:
    if case.exemplars is not None:
        return tuple((e.tier.value, e.text) for e in case.exemplars)
    question = suite.rubric.find(case.question)
    hidden = case.hide_reference.value if case.hide_reference else None
    return tuple((t, x) for t, x in question.references.items() if t != hidden)


async def run_suite(
    suite: Suite,
    backend: Backend,
    *,
    cache: GradeCache | None = None,
    concurrency: int = 8,
    limit: int | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Grade every case (the first `limit`), `concurrency` at a time; nothing is dropped: a case that
    cannot be graded comes back with its error."""
    cases = suite.cases[:limit] if limit else suite.cases
    gate = asyncio.Semaphore(concurrency)
    backend_key = backend.cache_key()

    async def one(case: EvalCase) -> CaseResult:
        result = CaseResult(case)
        question = suite.rubric.find(case.question)
        exemplars = exemplars_for(suite, case)
        try:
            check_answer(case.answer)
        except EmptyAnswerError:
            result.rejected = True
        else:
            key = grade_key(backend_key, question.fingerprint(), list(exemplars), case.answer)
            cached = cache.get(key) if cache else None
            if cached is not None:
                result.grade, result.cached = cached, True
            else:
                async with gate:
                    try:
                        result.grade = await grade_answer(backend, question, case.answer, exemplars=exemplars)
                    except GradingFailedError as exc:
                        result.error, result.error_kind = str(exc), exc.kind
                    except GraderError as exc:
                        result.error, result.error_kind = str(exc), type(exc).__name__
                if result.grade is not None and cache is not None:
                    cache.put(key, result.grade)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(c) for c in cases)))
