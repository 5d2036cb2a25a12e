"""Grade a stream of input rows through the engine, writing each outcome the moment it is done.

All the grading work (cache, de-duplication, concurrency, failures as data, the review policy) is the
engine's; this layer turns rows into jobs, skips the ids already written (`--resume`) and writes rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from grader.batch.files import Row, Writer
from grader.grading.engine import Engine, Graded, Job, Stats
from grader.grading.rows import to_record


@dataclass
class BatchStats(Stats):
    """The engine's counters, plus the rows a batch skipped (already in the output) and its total."""

    total: int = 0
    skipped: int = 0

    def counts(self) -> dict[str, object]:
        counts = super().counts()
        counts.pop("total")
        return counts


def jobs_of(
    rows: Iterable[Row], skip_ids: set[str] | None = None, stats: BatchStats | None = None
) -> Iterator[Job[Row]]:
    """A job for every row not already in the output (counted in `stats.skipped`)."""
    for row in rows:
        if skip_ids and row.id in skip_ids:
            if stats is not None:
                stats.skipped += 1
            continue
        yield Job(row.question, row.answer, tag=row, where=f"the answer of row {row.id}")


async def run_batch(
    rows: Iterable[Row],
    *,
    engine: Engine,
    writer: Writer,
    skip_ids: set[str] | None = None,
    on_done: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Grade the rows through `engine` (whose `stats` must be a BatchStats), one output row each."""
    stats = engine.stats
    assert isinstance(stats, BatchStats)

    def emit(graded: Graded[Row]) -> None:
        writer.write(to_record(graded.outcome, graded.job.tag.data))
        if on_done is not None:
            on_done(stats)

    await engine.run(jobs_of(rows, skip_ids or set(), stats), emit)
    return stats
