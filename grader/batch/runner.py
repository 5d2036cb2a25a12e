"""Grade a stream of rows concurrently: an adaptive concurrency limit, the grade cache, duplicate answers
graded once, every row ending as a grade or a recorded error, each written the moment it is done."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from grader.backends.base import Backend
from grader.backends.retry import TransientError
from grader.batch.files import Row, Writer, output_record
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import GraderError, GradingFailedError
from grader.grading.cache import GradeCache, grade_key
from grader.grading.contract import Grade
from grader.grading.review import check_answer, grade_answer
from grader.rubric import Rubric


class AdaptiveLimit:
    """How many grades may be in flight: halved on every 429, grown by one after a full window of
    successes, never above the user's --concurrency (additive increase, multiplicative decrease)."""

    def __init__(self, maximum: int) -> None:
        self.in_flight = 0
        self._wins = 0
        self._changed = asyncio.Condition()
        self.resize(maximum)

    def resize(self, maximum: int) -> None:
        self.maximum = self.limit = self.lowest = max(1, maximum)

    def on_transient(self, exc: TransientError) -> None:
        if exc.status == 429:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._wins = 0

    async def __aenter__(self) -> AdaptiveLimit:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        async with self._changed:
            self.in_flight -= 1
            if exc_type is None:
                self._wins += 1
                if self._wins >= self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._wins = 0
            self._changed.notify_all()


@dataclass
class BatchStats:
    total: int = 0
    skipped: int = 0  # already in the output (--resume)
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

    def counts(self) -> dict[str, Any]:
        """Every counter (not `total` or `started`), plain and picklable: what a worker process reports."""
        return {
            f.name: (dict(v) if isinstance(v := getattr(self, f.name), Counter) else v)
            for f in fields(self)
            if f.name not in ("total", "started")
        }

    def add(self, counts: dict[str, Any]) -> None:
        """Add another run's `counts()` to these."""
        for name, value in counts.items():
            if isinstance(value, dict):
                getattr(self, name).update(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    def record(self, grade: Grade | None, error: tuple[str, str] | None) -> None:
        """Count one finished row: a grade, or an error (message, kind)."""
        if grade is not None:
            self.graded += 1
            self.tiers[grade.tier.value] += 1
        else:
            self.failed += 1
            self.failures[error[1] if error else "unknown"] += 1


#: Rows read ahead and regrouped by question before they are sent (see `by_question`).
QUESTION_WINDOW = 512


def by_question(rows: Iterable[Row], window: int = QUESTION_WINDOW) -> Iterator[Row]:
    """The rows in windows of `window`, each regrouped by question in order of first appearance, so the
    requests for one question go out together and a server's prefix cache (one slot on llama.cpp) reuses
    the question's prompt. Rows are written as they finish anyway, so nothing depends on input order;
    the window keeps memory flat on a large input."""
    batch: list[Row] = []

    def flush() -> Iterator[Row]:
        order: dict[str, int] = {}
        for row in batch:
            order.setdefault(row.question, len(order))
        yield from sorted(batch, key=lambda r: order[r.question])  # stable: input order within a question
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= window:
            yield from flush()
    yield from flush()


async def run_batch(
    rows: Iterable[Row],
    *,
    backend: Backend,
    rubric: Rubric,
    writer: Writer,
    limit: AdaptiveLimit,
    cache: GradeCache | None = None,
    skip_ids: set[str] | None = None,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    stats: BatchStats | None = None,
    on_done: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    stats = stats or BatchStats()
    skip_ids = skip_ids or set()
    backend_key = backend.cache_key()
    inflight: dict[str, asyncio.Future[Grade]] = {}
    queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=limit.maximum * 2)

    async def grade_row(row: Row) -> Grade:
        question = rubric.find(row.question)
        check_answer(row.answer, max_chars=max_answer_chars, where=f"the answer of row {row.id}")
        key = grade_key(backend_key, question.fingerprint(), list(question.references.items()), row.answer)
        if cache is not None and (hit := cache.get(key)) is not None:
            stats.cached += 1
            return hit
        if key in inflight:  # the same answer to the same question, already being graded
            stats.duplicates += 1
            return await asyncio.shield(inflight[key])
        future: asyncio.Future[Grade] = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            async with limit:
                grade = await grade_answer(backend, question, row.answer, review_threshold=review_threshold)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: waiters re-raise it, nobody logs it as lost
            inflight.pop(key, None)
            raise
        stats.model_calls += grade.attempts
        stats.prompt_tokens += grade.usage.prompt_tokens
        stats.completion_tokens += grade.usage.completion_tokens
        stats.cached_tokens += grade.usage.cached_tokens
        future.set_result(grade)
        if cache is not None:  # later duplicates find it in the cache: keep memory flat
            cache.put(key, grade)
            del inflight[key]
        return grade

    async def worker() -> None:
        while (row := await queue.get()) is not None:
            grade, error = None, None
            try:
                grade = await grade_row(row)
            except GradingFailedError as exc:
                error = (str(exc), exc.kind)
                stats.model_calls += exc.attempts
            except GraderError as exc:
                error = (str(exc), type(exc).__name__)
            writer.write(output_record(row, grade, error))
            stats.record(grade, error)
            if on_done is not None:
                on_done(stats)

    try:
        # A task group: should a worker die of an unexpected error (a bug, not a row's GraderError), the
        # producer blocked on a full queue is cancelled with it instead of waiting for it forever.
        async with asyncio.TaskGroup() as group:
            for _ in range(limit.maximum):
                group.create_task(worker())
            for row in by_question(rows, window=max(QUESTION_WINDOW, limit.maximum * 4)):
                if row.id in skip_ids:
                    stats.skipped += 1
                    continue
                await queue.put(row)
            for _ in range(limit.maximum):
                await queue.put(None)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return stats
