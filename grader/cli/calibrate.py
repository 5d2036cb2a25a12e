"""`grader calibrate`: interviewers' grades against the model's, with a report to read."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from grader.backends import BackendOptions, get_backend
from grader.calibration import pair_with_model_grades
from grader.calibration.data import Pair, read_human_grades
from grader.calibration.runner import AnswerResult, grade_plan, plan
from grader.calibration.settings import MIN_N, RESAMPLES, SEED, Settings
from grader.cli._common import (
    DEFAULT_OPTIONS,
    BackendOpt,
    FormatOpt,
    MaxAnswerCharsOpt,
    RubricOpt,
    TableFormat,
    console,
    err_console,
    print_table,
    progress_bar,
    with_backend_options,
)
from grader.config import DEFAULT_MAX_ANSWER_CHARS
from grader.errors import CalibrationDataError, UsageError
from grader.grading.cache import GradeCache
from grader.rubric import load_rubric
from grader.wording import counted

if TYPE_CHECKING:
    from grader.calibration.report import CalibrationReport


@with_backend_options
def calibrate(
    human: Annotated[
        Path | None,
        typer.Argument(
            help="CSV of interviewer grades: interviewer, question, tier, and id (with --model-grades) or answer; "
            "optional candidate. Not with --db.",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="A `grader serve` database: its reviews are the interviewer grades, its grades the model's "
            "(a SQLite file, or a postgresql:// URL).",
        ),
    ] = None,
    model_grades: Annotated[
        Path | None,
        typer.Option(
            "--model-grades",
            "-g",
            help="JSON lines of model grades joined on id. Without it, the CSV's answers are graded first.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write calibration.json, .md and .html here.")] = None,
    min_n: Annotated[
        int, typer.Option("--min-n", min=2, help="Groups with fewer grades are flagged as too few to conclude.")
    ] = MIN_N,
    resamples: Annotated[
        int, typer.Option("--resamples", min=100, max=100_000, help="Bootstrap resamples per interval.")
    ] = RESAMPLES,
    bootstrap_seed: Annotated[int, typer.Option("--bootstrap-seed", help="Seed of the bootstrap.")] = SEED,
    backend: BackendOpt = "auto",
    rubric: RubricOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Grades in flight.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse grades from earlier runs.")] = True,
    max_answer_chars: MaxAnswerCharsOpt = DEFAULT_MAX_ANSWER_CHARS,
    output_format: FormatOpt = TableFormat.text,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """Compare interviewers' grades with the model's: agreement, kappa, leniency and disagreements."""
    from grader.calibration.report import build_report, write_reports  # numpy: only when this command runs

    settings = Settings(min_n=min_n, resamples=resamples, seed=bootstrap_seed)
    if (human is None) == (db is None):
        raise UsageError("give the interviewer grades as a CSV file or with --db (one of them)")
    if db is not None:
        if model_grades is not None:
            raise UsageError("--db holds the model's grades too: drop --model-grades")
        from grader.service.store import Store

        store = Store(db, create=False)
        try:
            pairs = store.calibration_pairs()
        finally:
            store.close()
        source = f"reviews in {store.label}"
        stored_in = f"the grades stored in {store.label}"
        if not pairs:
            raise CalibrationDataError(
                f"{store.label}: no reviews yet", hint="review grades on the service's /review page"
            )
    elif model_grades is not None:
        assert human is not None
        pairs, source = pair_with_model_grades(human, model_grades, rubric), str(human)
        stored_in = str(model_grades)
    else:
        assert human is not None
        pairs = asyncio.run(_grade(human, rubric, backend, options, concurrency, cache, max_answer_chars))
        source, stored_in = str(human), None
    if not any(p.status == "paired" for p in pairs):  # nothing to compare: not a report of n/a
        unmatched = sum(p.status == "unmatched" for p in pairs)
        raise CalibrationDataError(
            f"{source}: none of its {len(pairs)} grade(s) could be paired with a model grade "
            f"({unmatched} with no model grade of their id, {len(pairs) - unmatched} whose model grade failed)",
            hint="check that the ids match the model grades' ids" if unmatched else "grade the answers again",
        )
    report = build_report(
        pairs,
        settings=settings,
        human_path=source,
        model_grades_path=stored_in,
    )
    if output_format is TableFormat.json:  # standard output is the JSON alone
        console.out(report.to_json(), end="", highlight=False)
    else:
        _print(report, out)
    if out is not None:
        paths = write_reports(report, out)
        notes = err_console if output_format is TableFormat.json else console
        notes.print(paths.line(), markup=False, highlight=False)


async def _grade(
    human: Path,
    rubric_path: Path | None,
    backend_name: str,
    options: BackendOptions,
    concurrency: int | None,
    use_cache: bool,
    max_chars: int,
) -> list[Pair]:
    work = plan(human, read_human_grades(human, join="answer"), load_rubric(rubric_path))
    backend = get_backend(backend_name, options)
    grade_cache = GradeCache() if use_cache else None
    try:
        with progress_bar() as progress:
            task = progress.add_task("grading answers", total=len(work.answers), failed=0)
            failed = 0

            def tick(result: AnswerResult) -> None:
                nonlocal failed
                failed += result.grade is None
                progress.update(task, advance=1, failed=failed)

            pairs = await grade_plan(
                work,
                backend,
                cache=grade_cache,
                concurrency=concurrency,
                max_chars=max_chars,
                on_result=tick,
            )
    finally:
        await backend.aclose()
        if grade_cache is not None:
            grade_cache.close()
    cached = sum(r.cached for r in work.answers.values())
    err_console.print(
        f"graded {len(work.answers)} distinct answers ({cached} from cache, {failed} failed)",
        markup=False,
        highlight=False,
    )
    return pairs


def _print(report: CalibrationReport, out: Path | None) -> None:
    from grader.calibration.report import (
        confidence_lines,
        disagreement_count,
        in_short,
        metric_cells,
        summary_lines,
        warning_rows,
    )

    for line in summary_lines(report):
        console.print(line, markup=False)
    for title, first, groups, overall in (
        ("interviewers against the model (95 % intervals)", "interviewer", report.interviewers, report.overall),
        ("questions: the interviewers against the model", "question", report.questions, None),
    ):
        table = Table(title=title, title_justify="left")
        # a name is never cut: two long names that begin alike were cut to the same text
        width = min(40, max([len(first), *(len(name) for name in groups)]))
        for name in (first, "n", "exact agreement", "kappa", "QWK", "leniency", "bias"):
            left = name in (first, "bias")
            table.add_column(
                name,
                justify="left" if left else "right",
                no_wrap=name == first,
                min_width=width if name == first else None,
            )
        for name, m in groups.items():
            table.add_row(name, *metric_cells(m))
        if overall is not None:
            table.add_section()
            table.add_row("all", *metric_cells(overall))
        print_table(table)
    h = report.human_agreement
    if h.answers:
        alpha = h.alpha.value if h.alpha else None
        with_model = h.alpha_with_model.value if h.alpha_with_model else None
        console.print(
            f"between interviewers: {counted(h.answers, 'shared answer')}, Krippendorff's alpha "
            f"{'n/a' if alpha is None else f'{alpha:.3f}'}, with the model "
            f"{'n/a' if with_model is None else f'{with_model:.3f}'}",
            markup=False,
        )
    for line in confidence_lines(report.model_confidence):
        console.print(f"model confidence: {line}", markup=False)
    warnings = warning_rows(report.interviewers) + [f"overall: {w}" for w in report.overall.warnings]
    for w in warnings:
        err_console.print(f"grader: warning: {w}", markup=False, highlight=False)
    console.print(f"disagreements: {disagreement_count(report)}", markup=False)
    where = f" in {out / 'calibration.md'}" if out is not None else " (-o DIR writes them to calibration.md)"
    for line in in_short(report, where):
        console.print(f"in short: {line}", markup=False, highlight=False)
