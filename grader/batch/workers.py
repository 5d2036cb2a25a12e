"""Shard one batch across worker processes.

One Python event loop spends about a millisecond and a half of CPU per grade over HTTP (request building,
the HTTP client, validation), so a fast server at high concurrency keeps one process busy long before the
server is: at 64 in flight and 100 ms per reply the loop is the bottleneck. Forked workers each grade
a shard of the rows with their own event loop, HTTP client, cache connection and concurrency limit,
and report their counts to the parent, which draws the progress bar and the summary.

What makes this safe without any coordination between workers:
- rows are sharded by (question, answer), so duplicate answers land in the same worker and are graded once;
- every output line is one `write()` to a file opened with O_APPEND, so lines from workers never interleave
  (under a record lock, so a write undone after a full disk never cuts another worker's line);
- the parent holds the run's lock on the output (`OutputLock`) and the workers inherit its descriptor, so
  the lock is held until the last of them exits and no second run can write the same file meanwhile;
- the grade cache is SQLite in WAL mode, which takes concurrent writers from several processes;
- a worker dies with its parent (PR_SET_PDEATHSIG on Linux; a closed pipe elsewhere), so a killed run
  leaves nothing running behind it, and `--resume` finds every finished line.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.batch.files import Row, Writer
from grader.batch.runner import BatchStats, run_batch
from grader.errors import GraderError, UnknownQuestionError
from grader.grading.engine import Engine
from grader.rubric import Rubric

#: Worker processes need fork(): the children inherit the loaded rubric, the validated input and the
#: imported modules instead of starting Python again.
CAN_FORK = "fork" in multiprocessing.get_all_start_methods()
#: In-flight requests one worker handles comfortably before its event loop becomes the bottleneck.
PER_WORKER = 32
_REPORT_EVERY = 0.1  # seconds between a worker's progress reports
_GRACE = 10.0  # seconds workers get to stop after Ctrl-C before they are killed
_PR_SET_PDEATHSIG = 1


def auto_workers(concurrency: int, cpus: int | None = None, platform: str = sys.platform) -> int:
    """One worker per PER_WORKER requests in flight, at most one per CPU. Only on Linux by default: macOS
    offers fork() but system frameworks loaded before it (proxy lookup, for one) can crash the child, so
    there it takes an explicit --workers."""
    if not (CAN_FORK and platform.startswith("linux")):
        return 1
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(cpus, concurrency // PER_WORKER))


def shard_of(row: Row, rubric: Rubric, count: int) -> int:
    """Which worker grades a row: by question and answer, so duplicates meet in one worker."""
    try:
        question = rubric.find(row.question).id
    except UnknownQuestionError:
        question = row.question  # an error row either way; any worker can write it
    digest = hashlib.blake2b(f"{question}\0{row.answer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


class WorkerFailed(GraderError):
    """A worker stopped on an error that stops a run (the others are stopped with it)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message, hint="the rows finished so far are written; rerun with --resume")
        self.exit_code = exit_code


@dataclass
class ShardedJob:
    """What every worker needs. Inherited through fork(), never pickled."""

    rows: Callable[[], Iterable[Row]]
    #: An engine for one worker, `concurrency` in flight, with its own backend and cache connection
    #: (none may cross fork()), counting into a BatchStats.
    make_engine: Callable[[int], Engine]
    rubric: Rubric
    output: Path
    header: list[str]
    skip_ids: set[str]
    concurrency: int  # in flight across all workers


@dataclass
class Outcome:
    stats: BatchStats
    concurrency: int  # the sum of the workers' limits
    lowest: int  # the sum of the lowest limits they fell to after rate limits
    interrupted: bool = False


class Workers:
    """Forked workers grading one job. Start them before any thread exists in this process (a progress
    bar's refresh thread included), then `collect()` their counts until all have exited."""

    def __init__(self, job: ShardedJob, count: int) -> None:
        if not CAN_FORK:
            raise GraderError("--workers needs fork(), which this platform lacks", hint="use --workers 1")
        ctx = multiprocessing.get_context("fork")
        self.job = job
        self.count = count
        self.started = time.perf_counter()
        self._reports: dict[int, tuple[dict[str, Any], int, int]] = {}
        self._errors: list[tuple[str, int]] = []
        self._conns: dict[Any, int] = {}
        self._procs = []
        per_worker = -(-job.concurrency // count)
        for index in range(count):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker,
                args=(job, index, count, per_worker, send, os.getpid()),
                daemon=True,
                name=f"grader-worker-{index}",
            )
            proc.start()
            send.close()
            self._conns[receive] = index
            self._procs.append(proc)

    def summed(self, total: int = 0) -> BatchStats:
        stats = BatchStats(total=total, started=self.started)
        for counts, _, _ in self._reports.values():
            stats.add(counts)
        return stats

    def collect(self, *, total: int = 0, on_progress: Callable[[BatchStats], None] | None = None) -> Outcome:
        """Wait for every worker, passing the summed counts to `on_progress` as they come. Ctrl-C stops
        the workers (what they finished stays written) and returns with `interrupted` set."""
        interrupted_at: float | None = None
        while self._conns:
            try:
                if interrupted_at is not None and time.monotonic() - interrupted_at > _GRACE:
                    for proc in self._procs:
                        proc.kill()
                self._receive()
                if on_progress is not None:
                    on_progress(self.summed(total))
            except KeyboardInterrupt:  # the workers got the same Ctrl-C: collect their last counts
                interrupted_at = interrupted_at or time.monotonic()
        for proc in self._procs:
            proc.join()
        interrupted = interrupted_at is not None
        if self._errors and not interrupted:
            raise WorkerFailed(*self._errors[0])
        for index, proc in enumerate(self._procs):
            if proc.exitcode != 0 and not interrupted:
                raise WorkerFailed(f"worker {index} exited with code {proc.exitcode}", 70)
        reports = self._reports.values()
        return Outcome(
            stats=self.summed(total),
            concurrency=sum(r[1] for r in reports) or self.job.concurrency,
            lowest=sum(r[2] for r in reports) or self.job.concurrency,
            interrupted=interrupted,
        )

    def _receive(self) -> None:
        for conn in multiprocessing.connection.wait(list(self._conns), timeout=_REPORT_EVERY):
            assert isinstance(conn, multiprocessing.connection.Connection)
            try:
                kind, *payload = conn.recv()
            except EOFError:  # that worker has exited
                del self._conns[conn]
                continue
            if kind == "stats":
                self._reports[self._conns[conn]] = (payload[0], payload[1], payload[2])
            else:  # one worker failed: the run stops, as it would in one process
                self._errors.append((f"worker {self._conns[conn]}: {payload[0]}", payload[1]))
                for proc in self._procs:
                    proc.kill()  # mid-run is safe: every output line is a single write


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this worker when its parent dies (Linux); elsewhere a closed pipe is
    noticed at the next progress report."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _worker(job: ShardedJob, index: int, count: int, concurrency: int, conn: Any, parent: int) -> None:
    _die_with_parent(parent)
    stats = BatchStats()
    engine: Engine | None = None
    last = 0.0

    def report(current: BatchStats, *, final: bool = False) -> None:
        nonlocal last
        now = time.monotonic()
        if final or now - last >= _REPORT_EVERY:
            last = now
            limit = engine.limit if engine is not None else None
            conn.send(("stats", current.counts(), limit.maximum if limit else 0, limit.lowest if limit else 0))

    rows = (row for row in job.rows() if shard_of(row, job.rubric, count) == index)
    writer: Writer | None = None

    async def grade_shard() -> None:
        assert writer is not None and engine is not None
        try:
            await run_batch(rows, engine=engine, writer=writer, skip_ids=job.skip_ids, on_done=report)
        finally:
            await engine.backend.aclose()

    code = 0
    try:  # everything in here: a worker reports its failure as one line, never a traceback
        engine = job.make_engine(concurrency)
        assert isinstance(engine.stats, BatchStats)
        stats = engine.stats
        writer = Writer(job.output, job.header, append=True, shared=True)
        asyncio.run(grade_shard())
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # the parent is gone: stop
        code = 1
    except GraderError as exc:
        conn.send(("error", str(exc), exc.exit_code))
        code = 1
    except Exception as exc:  # noqa: BLE001 - a bug: reported to the parent as one line, like the CLI does
        conn.send(
            (
                "error",
                f"internal error: {type(exc).__name__}: {exc} (set GRADER_DEBUG=1 and --workers 1 for the traceback)",
                70,
            )
        )
        code = 1
    finally:
        if writer is not None:
            writer.close()
        if engine is not None and engine.cache is not None:
            engine.cache.close()
    try:
        report(stats, final=True)
    except (BrokenPipeError, OSError):
        code = code or 1
    conn.close()
    sys.exit(code)
