"""The one place where answers are graded: every feature that grades (one answer, a batch file, an eval
suite, calibration data, a transcript) hands the engine `Job`s and reads back `Graded` outcomes.

The engine owns what they all need and none should redo:
- input checks (unknown question, empty or over-long answer) that turn into a `GradeFailure`, never a
  crash; a failure whose cause would fail every other answer too (a refused key, a broken template)
  stops the run instead (`FailureKind.fatal`);
- the grade cache, with one key (`cache_key`), and de-duplication of the same answer to the same question
  within a run;
- the adaptive concurrency limit (`grader.grading.limit`), told about rate limits by the retry layer;
- repeated samples (`samples > 1`) and their combination;
- the review policy, applied **after** the cache, so a changed `--review-threshold` applies to cached
  grades too;
- one set of counters (`Stats`) that every feature reports from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Literal, Protocol, TypeVar

from grader.backends.base import Backend
from grader.backends.retry import transient_listener
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import GraderError, UsageError
from grader.grading.cache import GradeCache
from grader.grading.contract import (
    FailureKind,
    Grade,
    GradeFailure,
    GradeRequest,
    HoldsOutcome,
    Outcome,
    Reviewed,
    Sampling,
)
from grader.grading.limit import AdaptiveLimit
from grader.grading.review import SAMPLE_TEMPERATURE, apply_review_policy, check_answer
from grader.rubric import Question, Rubric

T = TypeVar("T")
Source = Literal["model", "cache", "duplicate", "input"]

#: Jobs read ahead and regrouped by question before they are sent (see `by_question`).
QUESTION_WINDOW = 512


@dataclass(frozen=True)
class Job(Generic[T]):
    """One answer to grade, as a feature hands it over. `tag` is the feature's own handle on it (a batch
    row, an eval case), given back unchanged with the outcome."""

    question: Question | str  # a rubric question, or its id or number (resolved against the engine's rubric)
    answer: str
    tag: T
    exemplars: tuple[tuple[str, str], ...] | None = None  # None: the question's three references
    where: str = "the answer"  # how error messages name this answer
    reviewed: tuple[Reviewed, ...] | None = None  # None: the engine's `reviews` pick them (if it has any)


#: The note on a grade read from the grade cache (`Graded.noted`).
FROM_CACHE = "from the grade cache: no model call now (usage and attempts are the first grading's)"


@dataclass(frozen=True)
class Graded(HoldsOutcome, Generic[T]):
    """A job and what grading it ended in."""

    job: Job[T]
    outcome: Outcome
    source: Source  # graded by the model now, read from the cache, shared with a duplicate, or refused input

    @property
    def fresh(self) -> bool:
        """Graded by a model call in this run (what tokens and cost count)."""
        return self.source == "model"

    def noted(self, note: str = FROM_CACHE) -> Outcome:
        """The outcome as a caller is handed it: a grade read from the grade cache says so in its notes, as
        its usage and attempts are the first grading's, no new cost."""
        if self.source == "cache" and isinstance(self.outcome, Grade):
            return self.outcome.model_copy(update={"notes": [*self.outcome.notes, note]})
        return self.outcome


@dataclass
class Stats:
    """What a run did, counted once for every feature: outcomes, where they came from, model calls and
    tokens spent on fresh grades (failed attempts included)."""

    graded: int = 0
    failed: int = 0
    cached: int = 0
    duplicates: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def done(self) -> int:
        return self.graded + self.failed

    def record(self, graded: Graded[Any]) -> None:
        outcome = graded.outcome
        if isinstance(outcome, Grade):
            self.graded += 1
            self.tiers[outcome.tier.value] += 1
        else:
            self.failed += 1
            self.failures[outcome.kind.value] += 1
        self.cached += graded.source == "cache"
        self.duplicates += graded.source == "duplicate"
        if graded.fresh:
            self.model_calls += outcome.attempts
            self.prompt_tokens += outcome.usage.prompt_tokens
            self.completion_tokens += outcome.usage.completion_tokens
            self.cached_tokens += outcome.usage.cached_tokens

    def counts(self) -> dict[str, Any]:
        """Every counter (not `started`), plain and picklable: what a worker process reports."""
        return {
            f.name: (dict(v) if isinstance(v := getattr(self, f.name), Counter) else v)
            for f in fields(self)
            if f.name != "started"
        }

    def add(self, counts: dict[str, Any]) -> None:
        """Add another run's `counts()` to these."""
        for name, value in counts.items():
            if isinstance(value, dict):
                getattr(self, name).update(value)
            else:
                setattr(self, name, getattr(self, name) + value)


class ReviewSource(Protocol):
    """Where the reviewed answers shown with a grade come from (`grader.grading.reviews.ReviewBank`)."""

    def nearest(self, question: Question, answer: str) -> tuple[Reviewed, ...]:
        """The reviewed answers to this question most similar to `answer`, most similar first."""
        ...


class _GaveUp(Exception):
    def __init__(self, outcome: GradeFailure) -> None:
        self.outcome = outcome


def cache_key(backend_key: str, request: GradeRequest) -> str:
    """The one grade-cache key: the backend's configuration (model, prompts or rule parameters), the
    question's fingerprint, the exemplars shown, the sample and its sampling settings, the answer, and the
    reviewed answers shown with it. Not the Grade's fields: the key is also a Batch API request's custom_id,
    and a field added with a default must neither orphan a submitted batch nor pay for every cached grade
    again (a grade cached before `red_flag_evidence` has none)."""
    digest = _question_digest(backend_key, request.question.fingerprint(), request.reference_answers).copy()
    tail = [request.sample, request.sampling.key(), request.answer]
    if request.reviewed:
        tail.append([r.key() for r in request.reviewed])
    digest.update(json.dumps(tail, ensure_ascii=False).encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _question_digest(backend_key: str, fingerprint: str, exemplars: tuple[tuple[str, str], ...]) -> Any:
    """The key's hash state over what every answer to one question shares, computed once per question."""
    blob = json.dumps([backend_key, fingerprint, [list(e) for e in exemplars]], ensure_ascii=False)
    return hashlib.sha256(blob.encode() + b"\0")


class Engine:
    """Grades jobs concurrently through one backend; see the module docstring for what it owns."""

    def __init__(
        self,
        backend: Backend,
        *,
        rubric: Rubric | None = None,
        cache: GradeCache | None = None,
        concurrency: int | None = None,
        limit: AdaptiveLimit | None = None,
        review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
        samples: int = 1,
        temperature: float | None = None,
        stats: Stats | None = None,
        reviews: ReviewSource | None = None,
    ) -> None:
        if samples < 1:
            raise UsageError("--samples must be at least 1")
        if samples > 1 and not backend.stochastic:
            raise UsageError(
                f"--samples needs a chat backend that samples (openai, ollama); the {backend.name} backend is "
                "deterministic",
                hint="use the openai or ollama backend, or grade once (no --samples, samples=1 in Python)",
            )
        self.backend = backend
        self.rubric = rubric
        self.cache = cache
        self.limit = limit or AdaptiveLimit(concurrency or backend.default_concurrency)
        self.review_threshold = review_threshold
        self.max_answer_chars = max_answer_chars
        self.samples = samples
        self.sampling = Sampling(temperature=temperature or SAMPLE_TEMPERATURE) if samples > 1 else Sampling()
        self.stats = stats if stats is not None else Stats()
        self.reviews = reviews
        self._backend_key = backend.cache_key(rubric)  # a backend comparing with the other questions keys by them
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}

    # --- one job --------------------------------------------------------------------------------------

    async def grade(self, job: Job[T]) -> Graded[T]:
        """Grade one job (through the limit, the cache and the review policy), counted in `stats`. Jobs
        graded this way concurrently (a service's requests) share the limit, as `run`'s do."""
        token = transient_listener.set(self.limit.on_transient)
        try:
            graded = await self._grade(job)
        finally:
            transient_listener.reset(token)
        self.stats.record(graded)
        return graded

    async def _grade(self, job: Job[T]) -> Graded[T]:
        try:
            requests, key = self._requests(job)
        except GraderError as exc:
            question_id = job.question.id if isinstance(job.question, Question) else None
            return Graded(job, exc.failure(question_id), "input")
        source: Source = "model"
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            outcome: Outcome = hit
            source = "cache"
        elif key in self._inflight:  # the same answer to the same question, being graded right now
            outcome = await asyncio.shield(self._inflight[key])
            source = "duplicate"
        else:
            outcome = await self._fresh(key, requests)
        if isinstance(outcome, Grade):
            outcome = apply_review_policy(
                outcome, requests[0].question, self.review_threshold, answer=job.answer, references=job.exemplars
            )
        return Graded(job, outcome, source)

    def _requests(self, job: Job[Any]) -> tuple[list[GradeRequest], str]:
        """The job's requests (one per sample) and its cache key; a GraderError for input that cannot be
        graded (an unknown question, an empty or over-long answer)."""
        question = job.question if isinstance(job.question, Question) else self._find(job.question)
        check_answer(job.answer, max_chars=self.max_answer_chars, where=job.where)
        reviewed = job.reviewed
        if reviewed is None:
            reviewed = self.reviews.nearest(question, job.answer) if self.reviews is not None else ()
        requests = [
            GradeRequest(
                question,
                job.answer,
                job.exemplars,
                sample=i,
                sampling=self.sampling,
                reviewed=reviewed,
                bank=self.rubric,
            )
            for i in range(self.samples)
        ]
        key = cache_key(self._backend_key, requests[0]) + (f":{self.samples}" if self.samples > 1 else "")
        return requests, key

    def pending(self, jobs: Iterable[Job[Any]]) -> Iterator[tuple[str, GradeRequest]]:
        """The distinct jobs a model still has to grade (valid input, not in the cache), each with its
        cache key: what a request file for a provider's Batch API holds."""
        seen: set[str] = set()
        for job in jobs:
            try:
                requests, key = self._requests(job)
            except GraderError:
                continue  # graded as a failure when the results come back
            if key in seen or (self.cache is not None and self.cache.get(key) is not None):
                continue
            seen.add(key)
            yield key, requests[0]

    def _find(self, ref: str) -> Question:
        if self.rubric is None:
            raise GraderError("a job names its question by id, but the engine was given no rubric")
        return self.rubric.find(ref)

    async def _fresh(self, key: str, requests: list[GradeRequest]) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            async with self.limit:
                outcome = await self._call(requests)
                if isinstance(outcome, GradeFailure) and outcome.kind is FailureKind.transport:
                    raise _GaveUp(outcome)  # leaves the limit as a failed request, not a success
        except _GaveUp as gave_up:
            outcome = gave_up.outcome
        except BaseException as exc:  # a fatal failure or a bug: duplicates waiting on it learn it too
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            self._inflight.pop(key, None)
            raise
        future.set_result(outcome)
        if isinstance(outcome, GradeFailure):
            # Duplicates already waiting share it; a later job asks the model again. Kept, one failure
            # would answer every later request for that answer in a long-running `grader serve`.
            del self._inflight[key]
        elif self.cache is not None:
            self.cache.put(key, outcome, requests[0].answer)
            del self._inflight[key]  # later duplicates find it in the cache: memory stays flat
        return outcome

    async def _call(self, requests: list[GradeRequest]) -> Outcome:
        """The backend's grade (the combination of samples), or the failure that stopped it; a failure
        that would stop every other answer too is raised."""
        question_id = requests[0].question.id
        try:
            if len(requests) == 1:
                grade = await self.backend.grade(requests[0])
            else:
                results = await asyncio.gather(*(self.backend.grade(r) for r in requests), return_exceptions=True)
                grade = self.backend.combine_samples(requests[0].question, list(results))
        except GraderError as exc:
            if exc.failure_kind.fatal:
                raise
            return exc.failure(question_id)
        if reviewed := requests[0].reviewed:
            used = ", ".join(f"{r.id} ({r.tier.value})" for r in reviewed)
            grade = grade.model_copy(update={"notes": [*grade.notes, f"shown reviewed answers: {used}"]})
        return grade

    # --- many jobs ------------------------------------------------------------------------------------

    async def run(self, jobs: Iterable[Job[T]], emit: Callable[[Graded[T]], None]) -> Stats:
        """Grade every job, `limit` at a time, calling `emit` with each outcome the moment it is done.

        Jobs are read lazily (a large input is never held whole) and regrouped by question in windows
        (`by_question`), so a server's prefix cache reuses each question's prompt. A fatal failure or an
        unexpected error stops the run and is raised; what was emitted before stays emitted.
        """
        width = self.limit.maximum
        queue: asyncio.Queue[Job[T] | None] = asyncio.Queue(maxsize=width * 2)

        async def worker() -> None:
            while (job := await queue.get()) is not None:
                graded = await self._grade(job)
                self.stats.record(graded)
                emit(graded)

        token = transient_listener.set(self.limit.on_transient)  # the retry layer reports 429s to the limit
        try:
            # A task group: should a worker die (a fatal failure, a bug), the producer blocked on a full
            # queue is cancelled with it instead of waiting for it forever.
            async with asyncio.TaskGroup() as group:
                for _ in range(width):
                    group.create_task(worker())
                for job in by_question(jobs, window=max(QUESTION_WINDOW, width * 4)):
                    await queue.put(job)
                for _ in range(width):
                    await queue.put(None)
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        finally:
            transient_listener.reset(token)
        return self.stats

    async def stream(self, jobs: Iterable[Job[T]]) -> AsyncIterator[Graded[T]]:
        """`run` as an async iterator: outcomes in the order they finish."""
        out: asyncio.Queue[Graded[T] | None] = asyncio.Queue()

        async def produce() -> None:
            try:
                await self.run(jobs, out.put_nowait)
            finally:
                out.put_nowait(None)

        task = asyncio.create_task(produce())
        try:
            while (graded := await out.get()) is not None:
                yield graded
            await task  # raises what stopped the run
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def grade_all(self, jobs: Iterable[Job[T]]) -> list[Graded[T]]:
        """Every job's outcome, in the order the jobs were given."""
        listed = list(jobs)
        order = {id(job): i for i, job in enumerate(listed)}
        done: list[Graded[T]] = []
        await self.run(listed, done.append)
        return sorted(done, key=lambda g: order[id(g.job)])


def by_question(jobs: Iterable[Job[T]], window: int = QUESTION_WINDOW) -> Iterator[Job[T]]:
    """The jobs in windows of `window`, each regrouped by question in order of first appearance, so the
    requests for one question go out together and a server's prefix cache (one slot on llama.cpp) reuses
    the question's prompt. Outcomes are emitted as they finish anyway, so nothing depends on input order;
    the window keeps memory flat on a large input."""
    batch: list[Job[T]] = []

    def flush() -> Iterator[Job[T]]:
        order: dict[str, int] = {}
        for job in batch:
            order.setdefault(_question_ref(job), len(order))
        yield from sorted(batch, key=lambda j: order[_question_ref(j)])  # stable: input order within a question
        batch.clear()

    for job in jobs:
        batch.append(job)
        if len(batch) >= window:
            yield from flush()
    yield from flush()


def _question_ref(job: Job[Any]) -> str:
    return job.question.id if isinstance(job.question, Question) else job.question
