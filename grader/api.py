"""The Python API: the same engine, backends and cache the command line uses, sync and async.

    from grader import grade, grade_many, load_rubric

    result = grade(1, "I start with the logs ...")                     # a Grade (raises on failure)
    outcomes = grade_many([(1, "I check the logs."), (3, "I add an index.")])  # Grade or GradeFailure each

`backend` is a registry name (`auto`, `openai`, `ollama`, `local`...) or a Backend you built; the other
keywords are the command line's backend options (`BackendOptions`: model, base_url, api_key, mode...).
The sync functions run on one event loop per thread, kept between calls, so a Backend you built (its HTTP
client bound to the loop it first ran on) can grade again and again; it is yours to close
(`close(backend)`, or `await backend.aclose()` in async code).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from grader.backends import Backend, BackendOptions, get_backend
from grader.backends.retry import RetryPolicy
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import error_for
from grader.grading.cache import GradeCache
from grader.grading.contract import Grade, Outcome
from grader.grading.engine import Engine, Graded, Job, ReviewSource
from grader.grading.review import check_answer
from grader.rubric import Question, Rubric, load_rubric

QuestionRef = str | int | Question
T = TypeVar("T")


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
    on_outcome: Callable[[int, Outcome], None] | None = None,
    **options: Any,
) -> list[Outcome]:
    """Grade many (question, answer) pairs; one outcome each, in order: a Grade, or a GradeFailure for
    an answer that could not be graded. A failure that would fail them all (a refused key) is raised.

    `learn_from` shows each grade the most similar reviewed answers: a `grader serve` database (path or
    URL), or a `ReviewBank` you built. `max_attempts` (requests per model call), `reasks` (model calls
    more when a reply is invalid) and `deadline` (seconds a grade may take with the model, all of its
    requests, pauses and re-asks) are the CLI's `--max-attempts`, `--reasks` and `--deadline`.
    `on_outcome(index, outcome)` is called as each item is done, in the order they finish: what an
    interrupted call had finished is then yours (the list is returned only at the end). A grade read from
    the cache (`cache=True`) says so in its notes: its usage and attempts are the first grading's."""
    pairs = list(items)
    for i, pair in enumerate(pairs):  # not deep in the engine, as "cannot use a string pattern..."
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"item {i}: expected a (question, answer) pair, not {_shown(pair)}")
        question, answer = pair
        if not isinstance(question, str | int | Question) or isinstance(question, bool):
            raise TypeError(
                f"item {i}: the question must be an id, a number or a Question, not {type(question).__name__}"
            )
        if not isinstance(answer, str):
            raise TypeError(f"item {i}: the answer must be a str, not {type(answer).__name__}")
    if max_answer_chars < 1:
        raise ValueError(f"max_answer_chars must be at least 1, not {max_answer_chars}")
    bank = rubric if isinstance(rubric, Rubric) else load_rubric(rubric)
    owned = not isinstance(backend, Backend)
    retries = {"max_attempts": max_attempts, "reasks": reasks, "deadline": deadline}
    given = [name for name, value in retries.items() if value is not None]
    if isinstance(backend, Backend) and (given or options):  # they would be silently ignored
        raise TypeError(
            f"{', '.join([*given, *options])}: settings of a backend grader builds, not of the {backend.name} "
            "backend you built: give them to it (policy=RetryPolicy(...), model=...)"
        )
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
    outcomes: list[Outcome | None] = [None] * len(jobs)

    def done(graded: Graded[int]) -> None:
        outcomes[graded.job.tag] = outcome = graded.noted()
        if on_outcome is not None:
            on_outcome(graded.job.tag, outcome)

    try:
        await engine.run(jobs, done)
        return [o for o in outcomes if o is not None]
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


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


async def agrade(question: QuestionRef, answer: str, **kwargs: Any) -> Grade:
    """Grade one answer; raise the GraderError its failure stands for (an answer that is no text, empty or
    too long raises its own, EncodingError, EmptyAnswerError, AnswerTooLongError, before any model call)."""
    if not isinstance(answer, str):
        raise TypeError(f"the answer must be a str, not {type(answer).__name__}")
    limit = kwargs.get("max_answer_chars", DEFAULT_MAX_ANSWER_CHARS)
    if isinstance(limit, int) and limit >= 1:  # before a backend is built (else agrade_many says what is wrong)
        check_answer(answer, max_chars=limit)  # an empty answer is EmptyAnswerError, not "no OPENAI_API_KEY"
    (outcome,) = await agrade_many([(question, answer)], **kwargs)
    if not isinstance(outcome, Grade):
        raise error_for(outcome)
    return outcome


_loops = threading.local()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this thread's event loop, kept between calls: a Backend built by the caller keeps the
    loop its HTTP client was bound to (a fresh loop per call failed its second grade)."""
    runner = getattr(_loops, "runner", None)
    if runner is None:
        runner = _loops.runner = asyncio.Runner()
        weakref.finalize(threading.current_thread(), _close, runner)  # when the thread ends, or at exit
    return runner.run(coro)


def _close(runner: asyncio.Runner) -> None:
    """Close a finished thread's loop; from a thread running a loop of its own that cannot be done, and the
    loop is left to the garbage collector."""
    try:
        runner.close()
    except RuntimeError:
        pass


def grade_many(items: Iterable[tuple[QuestionRef, str]], **kwargs: Any) -> list[Outcome]:
    """`agrade_many`, for code that is not async."""
    return _run(agrade_many(items, **kwargs))


def grade(question: QuestionRef, answer: str, **kwargs: Any) -> Grade:
    """`agrade`, for code that is not async."""
    return _run(agrade(question, answer, **kwargs))


def close(backend: Backend) -> None:
    """Close a Backend you built and graded with through the sync functions (its HTTP connections)."""
    _run(backend.aclose())
