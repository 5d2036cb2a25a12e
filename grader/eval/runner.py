"""Run a suite's cases through the grading engine; nothing is dropped: a case that cannot be graded comes
back with its `GradeFailure`, kept out of every metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grader.backends.base import Backend
from grader.eval.cases import EvalCase, Suite
from grader.grading.cache import GradeCache
from grader.grading.contract import FailureKind, HoldsOutcome, Outcome
from grader.grading.engine import Engine, Graded, Job


@dataclass
class CaseResult(HoldsOutcome):
    """A case and its outcome; a failure (a refused input too, see `rejected`) is unscored."""

    case: EvalCase
    outcome: Outcome
    cached: bool = False

    @property
    def rejected(self) -> bool:
        """The grader refused the input (an empty answer): what some cases expect."""
        return self.failure is not None and self.failure.kind is FailureKind.empty_answer

    @property
    def failed(self) -> bool:
        return self.failure is not None and not self.rejected

    @property
    def verdict(self) -> str:
        """The tier, `rejected` or `failed`: what a case's `expected` lists."""
        if self.grade is not None:
            return self.grade.tier.value
        return "rejected" if self.rejected else "failed"

    @property
    def scored(self) -> bool:
        return self.grade is not None

    @property
    def passed(self) -> bool:
        return self.verdict in self.case.expected


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
    concurrency: int | None = None,
    limit: int | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Grade every case (the first `limit`), in case order."""
    cases = suite.cases[:limit] if limit else suite.cases
    engine = Engine(backend, rubric=suite.rubric, cache=cache, concurrency=concurrency)
    jobs = [Job(c.question, c.answer, tag=c, exemplars=exemplars_for(suite, c)) for c in cases]

    done: dict[int, CaseResult] = {}

    def keep(graded: Graded[EvalCase]) -> None:
        done[id(graded.job)] = result = CaseResult(graded.job.tag, graded.outcome, cached=graded.source == "cache")
        if on_result is not None:
            on_result(result)

    await engine.run(jobs, keep)
    return [done[id(job)] for job in jobs]
