"""`grader eval`: run eval suites and write reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from grader.backends import BackendOptions, get_backend
from grader.backends.base import Backend
from grader.cli._common import (
    DEFAULT_OPTIONS,
    BackendOpt,
    FormatOpt,
    RubricOpt,
    TableFormat,
    console,
    err_console,
    print_table,
    progress_bar,
    with_backend_options,
)
from grader.errors import GraderError, UsageError
from grader.grading.cache import GradeCache
from grader.reports.files import report_folder
from grader.wording import counted, named

if TYPE_CHECKING:
    from grader.eval.cases import Suite
    from grader.eval.report import EvalReport
    from grader.eval.runner import CaseResult
    from grader.eval.thresholds import Thresholds
from grader.resources import data_dir


@with_backend_options
def eval_(
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite",
            "-s",
            help="answers, answers-dev, references, perturbations, adversarial, injections, counterfactual, "
            "counterfactual-dev, counterfactual-stories, stories-dev, saf-ua or saf-uq (repeat or comma-separate).",
        ),
    ] = None,
    cases: Annotated[
        list[Path] | None,
        typer.Option(
            "--cases",
            help="A YAML file of your own answers graded by hand, graded against --rubric with every metric of "
            "the answers suite (repeatable; alone, it is all that runs).",
        ),
    ] = None,
    backend: BackendOpt = "auto",
    rubric: RubricOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSON, Markdown and HTML reports here.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Grade the first N cases of each suite.")] = None,
    holdout: Annotated[
        bool, typer.Option("--holdout/--no-holdout", help="Hide a graded reference from the exemplars.")
    ] = True,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Grades in flight.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse grades from earlier runs.")] = True,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a threshold is broken (or none is set for what was run).")
    ] = False,
    thresholds: Annotated[
        Path | None,
        typer.Option("--thresholds", help="Thresholds for --check (default: the packaged evals/thresholds.yaml)."),
    ] = None,
    floor: Annotated[
        bool,
        typer.Option(
            "--floor/--no-floor", help="Also grade each suite with the nearest-reference floor, in the same run."
        ),
    ] = True,
    price_in: Annotated[float | None, typer.Option(help="USD per million input tokens.")] = None,
    price_out: Annotated[float | None, typer.Option(help="USD per million output tokens.")] = None,
    output_format: FormatOpt = TableFormat.text,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """Grade eval suites and report accuracy, kappa, flips and cost. Default: answers, references,
    perturbations, adversarial and injections; with --rubric, the suites built from it (references,
    perturbations, adversarial); with --cases, those files alone."""
    from grader.eval import suites
    from grader.eval.report import check_thresholds, write_reports
    from grader.rubric import load_rubric

    if rubric is not None and suites.is_packaged(rubric):
        rubric = None  # every suite runs with the packaged rubric, named or not
    # With a rubric of your own, the suites built from it: the self-test of your bank.
    default: tuple[str, ...] = () if cases else suites.DEFAULT_SUITES if rubric is None else suites.RUBRIC_SUITES
    names = [n.strip() for item in (suite or list(default)) for n in item.split(",") if n.strip()]
    choose = "choose from " + ", ".join(suites.SUITES) + ", or give your own answers with --cases FILE"
    if not names and not cases:
        raise UsageError("--suite names no suite", hint=choose)
    if unknown := [n for n in names if n not in suites.SUITES]:
        raise UsageError(f"unknown suite {unknown[0]!r}", hint=choose)
    # What can be wrong before grading is found before grading: the cases, a thresholds file, a report folder.
    own: list[Suite] = []
    if cases:
        bank = load_rubric(rubric)  # read once for every cases file
        own = [suites.cases_suite(path, bank) for path in cases]
    if len({s.name for s in own}) < len(own):
        twice = next(s.name for s in own if [o.name for o in own].count(s.name) > 1)
        raise UsageError(f"two --cases files make a suite named {twice!r}", hint="give each file its own `name:`")
    gate = _thresholds(thresholds, extra=tuple(s.name for s in own)) if check else None
    if thresholds is not None and not check:
        err_console.print(f"grader: warning: --thresholds {thresholds} is read only with --check", markup=False)
    if out is not None:
        report_folder(out)
    loaded = [suites.load(n, rubric, holdout=holdout) for n in names] + own
    the_backend = get_backend(backend, options)
    limits = gate.get(the_backend.name, {}) if gate is not None else {}
    if gate is not None and (ungated := [x.name for x in loaded if not limits.get(x.name)]):
        # A gate with nothing to hold is not a gate that holds: said before a paid run, not after it.
        where = f"under {the_backend.name}" if limits else f"for the {the_backend.name} backend"
        asyncio.run(the_backend.aclose())
        raise GraderError(  # exit 1, as a broken threshold: the gate does not hold
            f"--check: no thresholds {where} for {named(ungated, len(ungated))} in {_source(thresholds)}",
            hint=(
                "add them to that file (backend -> suite -> metric)"
                if thresholds is not None
                else "write your own (backend -> suite -> metric) and pass it as --thresholds FILE"
            )
            + ", or run without --check",
        )
    broken: list[str] = []
    as_json = output_format is TableFormat.json
    notes = err_console if as_json else console  # with --format json, standard output is the JSON alone
    reports: list[EvalReport] = []

    def done(report: EvalReport) -> None:
        """Each suite's report the moment it is graded: Ctrl-C keeps the suites finished before it."""
        reports.append(report)
        if not as_json:
            _print(report)
        if out is not None:
            paths = write_reports(report, out)
            notes.print(paths.line(), markup=False, highlight=False)
        if check:
            broken.extend(check_thresholds(report, limits[report.suite]))

    try:
        asyncio.run(_run(loaded, the_backend, options, concurrency, cache, limit, price_in, price_out, floor, done))
    except KeyboardInterrupt:
        finished = f"{len(reports)} of {counted(len(loaded), 'suite')} finished" + (
            f" and written to {out}" if out is not None and reports else ""
        )
        kept = "; the grades made are cached: the same command again grades only what is left" if cache else ""
        err_console.print(f"grader: interrupted: {finished}{kept}", markup=False, highlight=False)
        raise typer.Exit(130) from None
    if as_json:
        console.out("[\n" + ",\n".join(r.to_json().rstrip() for r in reports) + "\n]", highlight=False)
    if check:
        if broken:
            for line in broken:
                err_console.print(f"grader: threshold broken: {line}", markup=False)
            raise typer.Exit(1)
        notes.print("thresholds hold")


#: Why the references suite has no floor: with a reference held out, no exemplar of its tier is left.
NO_FLOOR_ON_REFERENCES = (
    "no floor on this suite: the nearest-reference floor would be 0 by construction (each reference is graded "
    "with itself hidden, so no exemplar of its tier is left) or 1 with --no-holdout (it finds itself)"
)


async def _run(
    loaded: list[Suite],
    backend: Backend,
    options: BackendOptions,
    concurrency: int | None,
    use_cache: bool,
    limit: int | None,
    price_in: float | None,
    price_out: float | None,
    with_floor: bool,
    done: Callable[[EvalReport], None],
) -> None:
    """Grade each suite (and its floor, in the same run) and hand its report to `done` as it finishes."""
    from grader.eval.report import summarize  # scikit-learn: only when evaluating
    from grader.eval.runner import run_suite

    floor = get_backend("nearest", options) if with_floor and backend.name != "nearest" else None
    cache = GradeCache() if use_cache else None
    try:
        for suite in loaded:
            floor_results = None
            notes = []
            if suite.name == "references" and floor is not None:
                notes.append(NO_FLOOR_ON_REFERENCES)
            elif floor is not None:
                floor_results = await run_suite(
                    suite, floor, cache=cache, limit=limit, concurrency=floor.default_concurrency
                )
            total = min(limit, len(suite.cases)) if limit else len(suite.cases)
            with progress_bar() as progress:
                task = progress.add_task(suite.name, total=total, failed=0)
                failed = 0

                def tick(result: CaseResult, task: TaskID = task, progress: Progress = progress) -> None:
                    nonlocal failed
                    failed += result.failed
                    progress.update(task, advance=1, failed=failed)

                results = await run_suite(
                    suite,
                    backend,
                    cache=cache,
                    limit=limit,
                    on_result=tick,
                    concurrency=concurrency or backend.default_concurrency,
                )
            done(
                summarize(
                    suite.name,
                    results,
                    backend=backend.name,
                    model=backend.model,
                    price_in=price_in,
                    price_out=price_out,
                    floor=(floor.name, floor_results) if floor is not None and floor_results is not None else None,
                    rubric=suite.rubric,
                    notes=notes,
                )
            )
    finally:
        await backend.aclose()
        if floor is not None:
            await floor.aclose()
        if cache is not None:
            cache.close()


def _source(path: Path | None) -> Path:
    return path if path is not None else data_dir("evals") / "thresholds.yaml"


def _thresholds(path: Path | None, extra: tuple[str, ...] = ()) -> Thresholds:
    """Backend -> suite -> {threshold: value}, from `path` or the packaged file, every key and value checked;
    `extra` names the --cases suites it may hold too."""
    from grader.backends import REGISTRY
    from grader.eval import suites
    from grader.eval.thresholds import load_thresholds

    return load_thresholds(_source(path), backends=tuple(REGISTRY), suites=(*suites.SUITES, *extra))


def _print(report: EvalReport) -> None:
    from grader.eval.report import fmt as _num

    o, c, usage = report.overall, report.counts, report.usage
    title = f"{report.suite} · {report.backend} · {report.model}"
    if report.rubric is not None:
        title += f" · rubric {report.rubric.name}"
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        (
            "cases (scored / rejected / failed)",
            f"{report.cases} ({report.scored} / {report.rejected} / {report.failed})",
        ),
        ("passed", f"{report.passed} ({report.pass_rate:.1%})" if report.pass_rate is not None else "n/a"),
    ]
    if o.n:
        rows += [
            ("accuracy", _num(o.accuracy)),
            ("macro-F1", _num(o.macro_f1)),
            ("quadratic-weighted kappa", _num(o.qwk)),
            ("recall great / mediocre / poor", " / ".join(_num(v, ".2f") for v in (o.recall or {}).values())),
        ]
    if (m := report.majority_floor) is not None and o.accuracy is not None and m.accuracy < 1:
        # Always answering the most frequent label: on SAF (64 % great) the grader must beat it too.
        rows.append(
            (
                f"majority-class floor (always {m.tier.value}): accuracy",
                f"{_num(m.accuracy)}  (margin {o.accuracy - m.accuracy:+.3f})",
            )
        )
    floor, margin = report.floor, report.margin_over_floor
    if floor and floor.overall.n and margin:
        rows.append(
            (
                f"floor ({floor.backend}): accuracy / kappa",
                f"{_num(floor.overall.accuracy)} / {_num(floor.overall.qwk)}  "
                f"(margin {_num(margin.accuracy, '+.3f')} / {_num(margin.qwk, '+.3f')})",
            )
        )
    for label, pm in (("key points", report.points), ("red flags", report.flags)):
        if pm.cases:
            rows.append(
                (
                    f"{label}: precision / recall / F1",
                    f"{_num(pm.precision)} / {_num(pm.recall)} / {_num(pm.f1)}",
                )
            )
    cal = report.calibration
    if cal.n:
        rows.append(
            (
                "confidence: ECE / accuracy of the most confident 80 %",
                f"{_num(cal.ece)} / {_num(cal.accuracy_top_80)}",
            )
        )
    rv = report.review
    rows += [
        (
            "needs_review (accuracy flagged / not)",
            f"{rv.flagged} ({_num(rv.accuracy_flagged)} / {_num(rv.accuracy_unflagged)})",
        ),
        ("gamed (above the expected tier, not sent for review)", str(c.gamed)),
        (
            "injection flips (not sent for review) / verbosity inflations / fairness flips",
            f"{c.injection_flips} ({c.unreviewed_injection_flips}) / {c.verbosity_inflations} / {c.fairness_flips}",
        ),
    ]
    cf = report.counterfactual
    if cf is not None:
        rows.append(
            (
                "counterfactual flips (not sent for review): " + " / ".join(cf.per_kind),
                f"{cf.flips} of {cf.compared} ({cf.unreviewed_flips}): "
                + " / ".join(str(p.flips) for p in cf.per_kind.values()),
            )
        )
    rows += [
        (
            "tokens in (prefix-cached) / out",
            f"{usage.prompt_tokens} ({usage.cached_tokens}) / {usage.completion_tokens}",
        ),
        ("estimated cost (USD)", str(usage.estimated_cost_usd)),
        ("from cache", str(report.cached)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    print_table(table)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if o.confusion:
        cm = Table(title="confusion (rows: label, columns: graded)", title_justify="left")
        cm.add_column("")
        for t in o.confusion.labels:
            cm.add_column(t, justify="right")
        for t, row in zip(o.confusion.labels, o.confusion.matrix, strict=True):
            cm.add_row(t, *map(str, row))
        print_table(cm)
    if cf is not None:
        probes = Table(title="counterfactual probes: tier flips against the unchanged answer", title_justify="left")
        for name in ("probe", "kind", "compared", "flips", "up", "down", "not sent for review"):
            probes.add_column(name, justify="left" if name in ("probe", "kind") else "right")
        for name, p in cf.per_probe.items():
            probes.add_row(name, p.kind, *map(str, (p.compared, p.flips, p.up, p.down, p.unreviewed)))
        print_table(probes)
