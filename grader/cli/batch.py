"""`grader batch`: grade a file of answers, streamed, concurrent, cached and resumable."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from grader.backends import Backend, BackendOptions, get_backend
from grader.batch.files import (
    BatchInputError,
    Columns,
    Origin,
    OutputLock,
    Resumed,
    Row,
    Scan,
    Writer,
    input_format,
    output_format,
    read_rows,
    resume_output,
    scan,
)
from grader.batch.runner import BatchStats, run_batch
from grader.batch.workers import ShardedJob, Workers, auto_workers
from grader.cli._common import (
    DEFAULT_OPTIONS,
    BackendOpt,
    LearnFromOpt,
    MaxAnswerCharsOpt,
    ReviewThresholdOpt,
    RubricOpt,
    console,
    err_console,
    progress_bar,
    review_bank,
    with_backend_options,
)
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import UsageError
from grader.grading.cache import GradeCache
from grader.grading.engine import Engine, ReviewSource
from grader.grading.rows import column_names
from grader.reports.pricing import BATCH_DISCOUNT, estimate_cost
from grader.rubric import Rubric, load_rubric
from grader.textfiles import same_file
from grader.wording import counted

MAX_PROBLEMS_SHOWN = 20


class Via(StrEnum):
    direct = "direct"
    batch_api = "batch-api"


@with_backend_options
def batch(
    source: Annotated[Path, typer.Argument(help="Answers: .csv or .jsonl with id, question, answer columns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Grades: .jsonl or .csv (by extension).")],
    resume: Annotated[bool, typer.Option("--resume", help="Grade only the ids not yet in --output.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Grade the valid rows of a bad file.")] = False,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, help="Grades in flight.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes sharing the requests (default on Linux: one per 32 in flight, at most one per "
            "CPU; an HTTP backend only).",
        ),
    ] = None,
    id_column: Annotated[str, typer.Option(help="Input column holding the row id.")] = "id",
    question_column: Annotated[str, typer.Option(help="Input column holding the question id or number.")] = "question",
    answer_column: Annotated[str, typer.Option(help="Input column holding the answer.")] = "answer",
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse grades from earlier runs.")] = True,
    via: Annotated[Via, typer.Option("--via", help="direct requests, or the provider's batch-api.")] = Via.direct,
    export_requests_to: Annotated[
        Path | None, typer.Option("--export-requests", help="Only write the Batch API request file here.")
    ] = None,
    import_results_from: Annotated[
        Path | None, typer.Option("--import-results", help="Grade from a Batch API results file (no requests).")
    ] = None,
    backend: BackendOpt = "auto",
    rubric: RubricOpt = None,
    review_threshold: ReviewThresholdOpt = DEFAULT_REVIEW_THRESHOLD,
    max_answer_chars: MaxAnswerCharsOpt = DEFAULT_MAX_ANSWER_CHARS,
    price_in: Annotated[float | None, typer.Option(help="USD per million input tokens.")] = None,
    price_out: Annotated[float | None, typer.Option(help="USD per million output tokens.")] = None,
    learn_from: LearnFromOpt = None,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """Grade every answer in a CSV or JSONL file; each grade is written the moment it is done."""
    columns = Columns(id=id_column, question=question_column, answer=answer_column)
    input_format(source)
    output_format(output)
    _not_the_input(source, output, "--output")
    if export_requests_to is not None:
        _not_the_input(source, export_requests_to, "--export-requests")
    if output.exists() and not (resume or force):
        raise UsageError(f"{output} exists", hint="pass --resume to finish it, or --force to start over")
    if resume and force:
        raise UsageError("--resume and --force contradict each other")

    # One run per output, from before it is read (--resume) to the last worker's last line. Exporting requests
    # writes no grade, but with --resume it reads the output and may repair it (a torn record, failed rows,
    # an earlier version's columns): not under a run that is appending to it.
    locked = export_requests_to is None or resume
    lock: AbstractContextManager[object] = OutputLock(output) if locked else nullcontext()
    with lock:
        found = scan(source, columns, fingerprints=resume)
        if found.problems:
            for problem in found.problems[:MAX_PROBLEMS_SHOWN]:
                err_console.print(f"{source}:{problem.line}: {problem.message}", markup=False, highlight=False)
            more = len(found.problems) - MAX_PROBLEMS_SHOWN
            if more > 0:
                err_console.print(f"... and {more} more", markup=False)
            if not skip_invalid:
                raise BatchInputError(
                    f"{source}: {len(found.problems)} malformed row(s), nothing graded",
                    hint="fix them, or pass --skip-invalid to grade the rest",
                )
            err_console.print(f"skipping {len(found.problems)} malformed row(s)", markup=False)

        rubric_ = load_rubric(rubric)
        backend_ = get_backend(backend, options)
        origin = Origin(source, columns, found.fingerprints)
        resumed = resume_output(output, id_column, column_names(found.header), origin) if resume else Resumed()
        if resumed.upgraded:
            added, dropped = resumed.upgraded
            changes = [f"added {', '.join(added)} (empty in its rows)"] if added else []
            changes += [f"dropped {', '.join(dropped)}"] if dropped else []
            err_console.print(
                f"--resume: {output} was written by another version of grader; its rows are kept, rewritten "
                f"with this version's columns ({'; '.join(changes)})",
                markup=False,
            )
        if resumed.torn:
            err_console.print(
                f"--resume: cut the last {counted(resumed.torn, 'byte')} off {output}: a record torn by a run stopped "
                "mid-write (or one with no newline after it, which cannot be told from one); its row is graded again",
                markup=False,
            )
        if resumed.failed:
            err_console.print(
                f"--resume: {resumed.failed} failed row(s) taken out of {output}, to be graded again", markup=False
            )
        if stale := _graded_against_another_rubric(resumed, rubric_):
            known = {q.id for q in rubric_}
            gone = sorted({q for q, _ in stale if q not in known})  # renamed or removed since
            changed = sorted({q for q, _ in stale if q in known})
            parts = [f"{_some(changed)} changed since"] if changed else []
            if gone:
                parts.append(f"{_some(gone)} no longer in the rubric (renamed or removed: their rows keep the old id)")
            err_console.print(
                f"--resume: {counted(stale.total(), 'row')} of {output} {'was' if stale.total() == 1 else 'were'} "
                f"graded against another version of the rubric ({'; '.join(parts)}); kept as graded: the file "
                "mixes two rubrics (--force grades every row again)",
                markup=False,
                highlight=False,
            )
        job = _Job(
            source=source,
            output=output,
            columns=columns,
            found=found,
            rubric=rubric_,
            rubric_path=rubric,
            backend=backend_,
            options=options,
            skip=resumed.done,
            kept=resumed.tiers,
            regrade=resumed.failed,
            resume=resume,
            max_chars=max_answer_chars,
            threshold=review_threshold,
            price_in=price_in,
            price_out=price_out,
        )
        job.concurrency = concurrency or job.backend.default_concurrency
        offline_halves = via is Via.batch_api or export_requests_to or import_results_from
        job.workers = _worker_count(job.backend, workers, job.concurrency, direct=not offline_halves)
        job.cache = GradeCache() if cache else None
        job.reviews = review_bank(learn_from)
        try:
            if offline_halves:
                stats = _via_batch_api(job, export_requests_to, import_results_from)
            else:
                stats = _direct(job)
        finally:
            if job.cache is not None:
                job.cache.close()
    if stats is not None and stats.failed:
        raise typer.Exit(1)


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (" and more" if len(ids) > 5 else "")


def _graded_against_another_rubric(resumed: Resumed, rubric: Rubric) -> Counter[tuple[str, str]]:
    """The kept grades (by question and rubric version) whose question is no longer in the rubric, or has
    changed since: a resumed file would hold grades of two rubrics without a word."""
    current = {q.id: q.fingerprint() for q in rubric}
    return Counter({key: n for key, n in resumed.versions.items() if current.get(key[0]) != key[1]})


def _not_the_input(source: Path, path: Path, option: str) -> None:
    """A file this run writes must not be its input (another spelling, a symlink or a hard link to it
    included): opening it for writing would wipe the answers before a single one is read."""
    if same_file(source, path):
        raise UsageError(
            f"{option} {path} is the input file {source}: writing it would wipe the answers",
            hint="write the grades to another file",
        )


@dataclass
class _Job:
    """One `grader batch` run: where rows come from and go, and how they are graded."""

    source: Path
    output: Path
    columns: Columns
    found: Scan
    rubric: Rubric
    backend: Backend
    options: BackendOptions
    skip: set[str]
    regrade: int  # failed rows --resume took out of the output, graded again
    resume: bool
    max_chars: int
    threshold: float
    price_in: float | None
    price_out: float | None
    cache: GradeCache | None = None
    concurrency: int = 1
    workers: int = 1
    reviews: ReviewSource | None = None  # --learn-from: reviewed answers shown with each grade
    rubric_path: Path | None = None  # None: the packaged rubric
    kept: Counter[str] = field(default_factory=Counter)  # --resume: the tiers of the grades kept from before

    def rows(self) -> Iterator[Row]:
        """The input's valid rows, streamed again (the scan kept only the bad line numbers)."""
        bad = self.found.bad_lines
        for item in read_rows(self.source, self.columns):
            if isinstance(item, Row) and item.line not in bad:
                yield item

    def writer(self) -> Writer:
        return Writer(self.output, column_names(self.found.header), append=self.resume)

    def engine(self, backend: Backend, cache: GradeCache | None, concurrency: int | None = None) -> Engine:
        return Engine(
            backend,
            rubric=self.rubric,
            cache=cache,
            concurrency=concurrency or self.concurrency,
            review_threshold=self.threshold,
            max_answer_chars=self.max_chars,
            stats=BatchStats(total=self.found.rows),
            reviews=self.reviews,
        )


def _worker_count(backend: Backend, asked: int | None, concurrency: int, *, direct: bool) -> int:
    if asked is not None and asked > 1:
        if not direct:
            raise UsageError("--workers applies to direct requests, not to --via batch-api or its halves")
        if not backend.multiprocess:
            raise UsageError(f"--workers: the {backend.name} backend grades in one process", hint="drop --workers")
    if asked is None:
        asked = auto_workers(concurrency) if direct and backend.multiprocess else 1
    return max(1, min(asked, concurrency))


def _direct(job: _Job) -> BatchStats:
    if job.workers > 1:
        return _sharded(job)
    writer = job.writer()
    engine = job.engine(job.backend, job.cache)
    stats = engine.stats
    assert isinstance(stats, BatchStats)
    try:
        gc.freeze()  # start-up's objects (the SDK's types, the rubric) are never garbage: stop rescanning them
        asyncio.run(_run(job, engine, writer))
    except KeyboardInterrupt:
        _interrupted(job, stats)
    finally:
        writer.close()
    _summary(job, stats, concurrency=engine.limit.maximum, lowest=engine.limit.lowest)
    return stats


def _sharded(job: _Job) -> BatchStats:
    job.writer().close()  # create or truncate the output (and write a CSV header) once, before workers append
    if job.cache is not None:
        job.cache.close()  # each worker opens its own: no SQLite connection may cross fork()

    use_cache = job.cache is not None

    def make_engine(concurrency: int) -> Engine:
        backend = get_backend(job.backend.name, job.options)
        return job.engine(backend, GradeCache() if use_cache else None, concurrency)

    sharded = ShardedJob(
        rows=job.rows,
        make_engine=make_engine,
        rubric=job.rubric,
        output=job.output,
        header=column_names(job.found.header),
        skip_ids=job.skip,
        concurrency=job.concurrency,
    )
    gc.freeze()  # also keeps the workers' inherited pages shared (the collector no longer writes to them)
    pool = Workers(sharded, job.workers)  # forked before the progress bar starts its thread
    with _progress(job.found.rows) as tick:
        outcome = pool.collect(total=job.found.rows, on_progress=tick)
    if outcome.interrupted:
        _interrupted(job, outcome.stats)
    _summary(job, outcome.stats, concurrency=outcome.concurrency, lowest=outcome.lowest)
    return outcome.stats


def _interrupted(job: _Job, stats: BatchStats) -> NoReturn:
    err_console.print(f"interrupted: {stats.done} row(s) written to {job.output}; finish with --resume", markup=False)
    raise typer.Exit(130) from None


def _via_batch_api(job: _Job, export_to: Path | None, import_from: Path | None) -> BatchStats | None:
    from grader.batch import batch_api  # the SDK's batch types only when this path is taken

    backend = job.backend
    if not isinstance(backend, batch_api.BatchAPIBackend):
        raise UsageError(f"--via batch-api needs a backend with a Batch API (openai), not {backend.name}")
    if export_to is not None:
        count = batch_api.export_requests(job.rows(), backend, job.engine(backend, job.cache), export_to)
        console.print(f"wrote {count} request(s) to {export_to}; run them, then --import-results", markup=False)
        return None
    if import_from is not None:
        results_path = import_from
    else:
        output = job.output
        requests = output.with_name(output.name + ".requests.jsonl")
        state = output.with_name(output.name + ".batch.json")
        results_path = output.with_name(output.name + ".results.jsonl")
        if job.resume and state.exists():
            count = 1  # a batch is already running: pick it up
        else:
            count = batch_api.export_requests(job.rows(), backend, job.engine(backend, job.cache), requests)
        if count:

            def show(batch: Any) -> None:
                counts = batch.request_counts
                done = f"{counts.completed}/{counts.total}" if counts is not None else "?"
                err_console.print(f"batch {batch.id}: {batch.status} ({done})", markup=False)

            async def submit() -> None:
                try:
                    await batch_api.submit_and_wait(backend, requests, results_path, state, on_status=show)
                finally:
                    await backend.aclose()

            asyncio.run(submit())
            state.unlink(missing_ok=True)
        else:
            results_path.write_text("")
    results = batch_api.load_results(results_path)
    writer = job.writer()
    try:
        stats = asyncio.run(
            batch_api.import_results(job.rows(), backend, results, lambda b: job.engine(b, job.cache), writer, job.skip)
        )
    finally:
        writer.close()
    _summary(job, stats, discount=BATCH_DISCOUNT)
    return stats


@contextmanager
def _progress(total: int) -> Iterator[Callable[[BatchStats], None]]:
    """A progress bar on a terminal (nothing otherwise), updated by calling the yielded function."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("{task.fields[tokens]} tokens"),
    ]
    with progress_bar(*columns) as progress:
        task = progress.add_task("grading", total=total, rate=0.0, failed=0, tokens=0)

        def tick(s: BatchStats) -> None:
            progress.update(
                task,
                completed=s.done + s.skipped,
                rate=s.done / max(s.elapsed, 1e-9),
                failed=s.failed,
                tokens=s.prompt_tokens + s.completion_tokens,
            )

        yield tick


async def _run(job: _Job, engine: Engine, writer: Writer) -> None:
    with _progress(job.found.rows) as tick:
        try:
            await run_batch(job.rows(), engine=engine, writer=writer, skip_ids=job.skip, on_done=tick)
        finally:
            await job.backend.aclose()


def _summary(
    job: _Job, stats: BatchStats, discount: float = 1.0, concurrency: int | None = None, lowest: int | None = None
) -> None:
    model = job.backend.model
    cost = estimate_cost(
        model, stats.prompt_tokens, stats.completion_tokens, job.price_in, job.price_out, discount=discount
    )
    tiers = ", ".join(f"{t} {stats.tiers[t]}" for t in ("great", "mediocre", "poor"))
    ranked = sorted(stats.failures.items(), key=lambda kv: (-kv[1], kv[0]))  # most frequent first, then by name
    failures = f" ({', '.join(f'{k} {v}' for k, v in ranked)})" if stats.failures else ""
    lines = [
        f"graded {stats.graded} ({tiers}); failed {stats.failed}{failures}; by {job.rubric.label(job.rubric_path)}",
        f"skipped {stats.skipped} already in {job.output}"
        + (f" ({job.regrade} failed row(s) graded again)" if job.regrade else "")
        + f"; {stats.cached} from cache; {stats.duplicates} duplicate "
        f"answer(s) graded once; {stats.model_calls} request(s) to the model",
        f"tokens {stats.prompt_tokens} in ({stats.cached_tokens} from the server's prefix cache) / "
        f"{stats.completion_tokens} out; estimated cost "
        + ("unknown (pass --price-in/--price-out)" if cost is None else f"{cost} USD"),
        f"wall {stats.elapsed:.1f} s; "
        + (f"{stats.done / max(stats.elapsed, 1e-9):.1f} grades/s; " if stats.done else "")  # no rate of nothing
        + f"concurrency {concurrency or job.concurrency} (lowest {lowest or job.concurrency} after rate limits)"
        + (f" over {job.workers} worker processes" if job.workers > 1 else ""),
    ]
    if job.skip:  # after a Ctrl-C and --resume, this run's counts alone never showed the whole file's
        whole = {t: job.kept[t] + stats.tiers[t] for t in ("great", "mediocre", "poor")}
        # kept rows are grades (--resume grades failed rows again), so the failed are this run's, and any kept
        # row that carries no tier
        failed = len(job.skip) - sum(job.kept.values()) + stats.failed
        lines.insert(
            1,
            f"with the {counted(len(job.skip), 'row')} kept from before, {job.output} holds "
            f"{counted(sum(whole.values()) + failed, 'row')}: {counted(sum(whole.values()), 'grade')} "
            f"({', '.join(f'{t} {n}' for t, n in whole.items())}) and {failed} failed",
        )
    for line in lines:
        console.print(line, markup=False, highlight=False)
