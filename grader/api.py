"""The Python API: the same engine, backends and cache the command line uses, sync and async.

    from grader import grade, grade_many, load_rubric

    result = grade(1, "I start with the logs ...")                     # a Grade (raises on failure)
    outcomes = grade_many([(1, "I check the logs."), (3, "I add an index.")])  # Grade or GradeFailure each

`backend` is a registry name (`auto`, `openai`, `ollama`, `local`...) or a Backend you built; the other
keywords are the command line's backend options (`BackendOptions`: model, base_url, mode...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grader.backends import Backend, BackendOptions, get_backend
from grader.backends.retry import RetryPolicy
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import error_for
from grader.grading.cache import GradeCache
from grader.grading.contract import Grade, Outcome
from grader.grading.engine import Engine, Job, ReviewSource
from grader.rubric import Question, Rubric, load_rubric

QuestionRef = str | int | Question


async def agrade_many(
    items: Iterable[tuple[QuestionRef, str]],
    *,
    backend: str | Backend = "auto",
    rubric: Rubric | str | Path | None = None,
    cache: bool = False,
    concurrency: int | None = None,
    samples: int = 1,
    temperature: float | None = None,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    learn_from: ReviewSource | str | Path | None = None,
    max_attempts: int | None = None,
    reasks: int | None = None,
    deadline: float | None = None,
    **options: Any,
) -> list[Outcome]:
    """Grade many (question, answer) pairs; one outcome each, in order: a Grade, or a GradeFailure for
    an answer that could not be graded. A failure that would fail them all (a refused key) is raised.

    `learn_from` shows each grade the most similar reviewed answers: a `grader serve` database (path or
    URL), or a `ReviewBank` you built. `max_attempts` (requests per model call), `reasks` (model calls
    more when a reply is invalid) and `deadline` (seconds a grade may take with the model, all of its
    requests, pauses and re-asks) are the CLI's `--max-attempts`, `--reasks` and `--deadline`."""
    pairs = list(items)
    for i, (_, answer) in enumerate(pairs):  # not deep in the engine, as "cannot use a string pattern..."
        if not isinstance(answer, str):
            raise TypeError(f"item {i}: the answer must be a str, not {type(answer).__name__}")
    bank = rubric if isinstance(rubric, Rubric) else load_rubric(rubric)
    owned = not isinstance(backend, Backend)
    if temperature is not None:
        options["temperature"] = temperature
    if max_attempts is not None or reasks is not None or deadline is not None:
        default = RetryPolicy()
        options["policy"] = RetryPolicy(
            attempts=default.attempts if max_attempts is None else max_attempts,
            reasks=default.reasks if reasks is None else reasks,
            deadline=deadline,
        )
    the_backend = get_backend(backend, BackendOptions(**options)) if isinstance(backend, str) else backend
    grade_cache = GradeCache() if cache else None
    engine = Engine(
        the_backend,
        rubric=bank,
        cache=grade_cache,
        concurrency=concurrency,
        samples=samples,
        temperature=temperature,
        review_threshold=review_threshold,
        max_answer_chars=max_answer_chars,
        reviews=_reviews(learn_from),
    )
    jobs = [Job(q if isinstance(q, Question) else str(q), answer, tag=i) for i, (q, answer) in enumerate(pairs)]
    try:
        return [graded.outcome for graded in await engine.grade_all(jobs)]
    finally:
        if owned:
            await the_backend.aclose()
        if grade_cache is not None:
            grade_cache.close()


def _reviews(source: ReviewSource | str | Path | None) -> ReviewSource | None:
    if source is None or not isinstance(source, str | Path):
        return source
    from grader.service.store import review_bank

    return review_bank(source)


async def agrade(question: QuestionRef, answer: str, **kwargs: Any) -> Grade:
    """Grade one answer; raise the GraderError its failure stands for."""
    if not isinstance(answer, str):
        raise TypeError(f"the answer must be a str, not {type(answer).__name__}")
    (outcome,) = await agrade_many([(question, answer)], **kwargs)
    if not isinstance(outcome, Grade):
        raise error_for(outcome)
    return outcome


def grade_many(items: Iterable[tuple[QuestionRef, str]], **kwargs: Any) -> list[Outcome]:
    """`agrade_many`, for code that is not async."""
    return asyncio.run(agrade_many(items, **kwargs))


def grade(question: QuestionRef, answer: str, **kwargs: Any) -> Grade:
    """`agrade`, for code that is not async."""
    return asyncio.run(agrade(question, answer, **kwargs))
