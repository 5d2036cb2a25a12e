"""`grader rubric ...`: list, check, import and draft rubrics."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from grader.backends import BackendOptions, get_backend, resolve_name
from grader.cli._common import (
    AttemptsOpt,
    BackendOpt,
    BaseUrlOpt,
    DeadlineOpt,
    FormatOpt,
    ModelOpt,
    PromptsOpt,
    RubricOpt,
    TableFormat,
    TimeoutOpt,
    backend_options,
    console,
    err_console,
    print_table,
)
from grader.errors import RubricError, UsageError
from grader.rubric import Rubric, default_rubric_path, dump_rubric, load_rubric, save_rubric
from grader.rubric.draft import draft_rubric
from grader.rubric.importer import import_bank
from grader.rubric.model import MAX_KEY_POINTS, MAX_RED_FLAGS, KeyPoint, rubric_target
from grader.textfiles import same_file
from grader.wording import counted

if TYPE_CHECKING:
    from collections.abc import Sequence

    from grader.rubric.selftest import SelfTest

_Item = TypeVar("_Item", bound=KeyPoint)  # a key point or a red flag

app = typer.Typer(help="List, check, import and draft rubrics.", no_args_is_help=True)


@app.command("list")
def list_questions(
    rubric: RubricOpt = None,
    output_format: FormatOpt = TableFormat.text,
) -> None:
    """List the questions of a rubric with their ids."""
    loaded = load_rubric(rubric)
    if output_format is TableFormat.json:
        fields = ("number", "id", "text")
        questions = [
            {
                **{f: getattr(q, f) for f in fields},
                "key_points": q.point_ids,
                "red_flags": q.flag_ids,
                "draft_points": q.draft_ids,
            }
            for q in loaded
        ]
        console.print_json(json.dumps({"rubric": loaded.name, "questions": questions}))
        return
    rows = []
    for q in loaded:
        n_drafts = sum(p.draft for p in q.key_points)  # of the points shown: flags have their own column
        drafts = f" ({n_drafts} draft)" if n_drafts else ""
        rows.append(
            (str(q.number), q.id, f"{len(q.key_points)}{drafts}", str(len(q.red_flags)), " ".join(q.text.split()))
        )
    if not console.is_terminal:  # piped: a table 80 columns wide wrapped each question a word a line
        typer.echo("\n".join("\t".join(row) for row in [("#", "id", "points", "flags", "question"), *rows]))
        return
    table = Table(title=f"{loaded.name} ({counted(len(loaded.questions), 'question')})", title_justify="left")
    for col in ("#", "id", "question", "points", "flags"):
        table.add_column(col, no_wrap=col != "question")
    for number, qid, points, flags, text in rows:
        table.add_row(number, qid, text, points, flags)
    print_table(table)


@app.command("check")
def check(
    files: Annotated[list[Path] | None, typer.Argument(help="Rubric files (default: the packaged rubric).")] = None,
) -> None:
    """Validate rubric files: unknown fields, duplicate ids, empty references. Exits non-zero on error."""
    failed = 0
    for path in files or [default_rubric_path()]:
        try:
            rubric = load_rubric(path)
        except RubricError as exc:
            err_console.print(f"grader: error: {exc}", markup=False, highlight=False)
            failed += 1
            continue
        points = sum(len(q.key_points) for q in rubric)
        flags = sum(len(q.red_flags) for q in rubric)
        console.print(
            f"{path}: ok, {counted(len(rubric.questions), 'question')}, {counted(points, 'key point')}, "
            f"{counted(flags, 'red flag')}"
        )
        bare = [q.id for q in rubric if not q.key_points]
        if bare:
            console.print(
                f"  warning: {counted(len(bare), 'question')} without key points yet (run `grader rubric draft {path}`)"
            )
        drafts = sum(len(q.draft_ids) for q in rubric)
        if drafts:
            console.print(
                f"  warning: {counted(drafts, 'drafted point')} {'is' if drafts == 1 else 'are'} not reviewed yet "
                "(remove `draft: true` once checked)"
            )
    if failed:
        raise typer.Exit(RubricError.exit_code)


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="Question bank in the recruiters' text format.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Rubric YAML file to write.")],
    name: Annotated[str | None, typer.Option(help="Rubric name (default: the file name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Import a question bank into a rubric file (key points come next, with `grader rubric draft`)."""
    _not_the_bank(source, out)
    rubric_target(out)
    if out.exists() and not force:
        raise UsageError(f"{out} exists", hint="pass --force to overwrite it")
    result = import_bank(source, name=name, known=_known(_readable(out)))
    for lineno, text in result.ignored_lines:
        err_console.print(f"{source}:{lineno}: ignored: {text[:70]}", markup=False, highlight=False)
    save_rubric(result.rubric, out)
    console.print(f"wrote {out}: {counted(len(result.rubric.questions), 'question')}; next: grader rubric draft {out}")


@app.command("draft")
def draft(
    rubric: Annotated[Path, typer.Argument(help="Rubric file to fill in (written back in place).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of in place.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    backend: BackendOpt = "auto",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    prompts: PromptsOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 5,
    deadline: DeadlineOpt = None,
) -> None:
    """Propose key points and red flags for questions that lack them, marked as drafts to review.

    Each drafted question is saved as it is done: a killed run keeps them, and running it again drafts
    only the questions still without key points."""
    if out is not None:
        rubric_target(out)
    if out is not None and out.exists() and not force and not same_file(out, rubric):
        raise UsageError(f"{out} exists", hint="pass --force to overwrite it, or draft in place without --out")
    loaded = load_rubric(rubric)
    target = out or rubric
    options = backend_options(
        model=model,
        base_url=base_url,
        temperature=0.0,
        seed=42,
        timeout=timeout,
        max_attempts=max_attempts,
        deadline=deadline,
        reasks=2,
        prompts=prompts,
    )
    drafted, report = asyncio.run(_draft(loaded, backend, options, _saving_to(target)))
    if not report:
        console.print(f"{rubric}: every question already has key points; nothing to draft")
        return
    save_rubric(drafted, target)
    console.print(f"wrote {target}: review the drafted points, then remove their `draft: true`")


def _saving_to(path: Path, carry: Callable[[Rubric], Rubric] = lambda r: r) -> Callable[[Rubric, str], None]:
    """What to do as each question is drafted: say so, and save the rubric as it stands (a chat model
    takes minutes a question; a killed run keeps what it drafted), with `carry` applied: the reviewed
    points a question drafted again keeps are saved with it, not only at the end."""

    def save(rubric: Rubric, line: str) -> None:
        save_rubric(carry(rubric), path)
        console.print(line, markup=False)

    return save


def _known(previous: Rubric | None) -> Rubric:
    """The ids a new import keeps: the rubric being replaced (`previous`, when there is one), then the
    packaged one, so re-importing an edited bank, or the bank the packaged rubric was written from,
    changes no id."""
    packaged = load_rubric()
    if previous is None:
        return packaged
    taken = {q.id for q in previous.questions}
    extra = [q for q in packaged.questions if q.id not in taken]
    return previous.model_copy(update={"questions": [*previous.questions, *extra]})


@app.command("new")
def new(
    source: Annotated[Path, typer.Argument(help="Question bank in the recruiters' text format.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Rubric YAML file to write (or update).")],
    name: Annotated[str | None, typer.Option(help="Rubric name (default: the file name).")] = None,
    self_test: Annotated[
        bool, typer.Option("--self-test/--no-self-test", help="Grade the references and perturbations on it.")
    ] = True,
    backend: BackendOpt = "auto",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    prompts: PromptsOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 5,
    deadline: DeadlineOpt = None,
) -> None:
    """Import a question bank, draft its key points and red flags, check it, and self-test it, in one go.

    Run it again after editing the bank: questions keep their ids, and a question whose references did
    not change keeps its (reviewed) points."""
    from grader.rubric.selftest import Note, flags_on_references, review_notes

    _not_the_bank(source, out)
    rubric_target(out)
    previous = _previous(out)
    result = import_bank(source, name=name, known=_known(previous))
    for lineno, text in result.ignored_lines:
        err_console.print(f"{source}:{lineno}: ignored: {text[:70]}", markup=False, highlight=False)
    rubric, kept, redrafted = _keep_points(result.rubric, previous)
    dropped = [q.id for q in previous.questions if q.id not in {n.id for n in rubric}] if previous else []
    backup = out.with_name(out.name + ".bak")
    if (redrafted or dropped) and previous is not None:
        backup = _backup_for(out, previous)  # read and written only when a question is drafted again or dropped
        save_rubric(previous, backup)
    if dropped:
        err_console.print(
            f"{out}: {counted(len(dropped), 'question')} of it not in {source} and left out: {', '.join(dropped)} "
            f"(kept in {backup})",
            markup=False,
            highlight=False,
        )
    options = backend_options(
        model=model,
        base_url=base_url,
        temperature=0.0,
        seed=42,
        timeout=timeout,
        max_attempts=max_attempts,
        deadline=deadline,
        reasks=2,
        prompts=prompts,
    )

    # Saved after each drafted question: a killed run keeps them, and the next run (same bank) keeps
    # those questions' points, as it keeps any unchanged question's.
    def carry(drafted: Rubric, final: bool = False) -> Rubric:
        if previous is None or not redrafted:
            return drafted
        return _carry_reviewed(drafted, previous, redrafted, out, backup, final=final)

    drafted, report = asyncio.run(_draft(rubric, backend, options, _saving_to(out, carry)))
    drafted = carry(drafted, final=True)
    if kept:
        console.print(f"kept the points of {counted(kept, 'unchanged question')} from {out}")
    save_rubric(drafted, out)
    load_rubric(out)  # the check: what was written reads back valid
    console.print(f"wrote {out}: {counted(len(drafted.questions), 'question')}, checked")
    from grader.backends.local.embedder import Embedder

    notes = review_notes(drafted, Embedder.load().embed)
    tested = _self_test(drafted, backend, options) if self_test else None
    if tested is not None:  # a red flag shown on the bank's own great reference comes first
        notes = sorted(
            [*flags_on_references(tested[0].references), *notes],
            key=lambda n: (Note.ORDER.index(n.kind), drafted.find(n.question).number),
        )
    console.print(f"\nReview first ({len(notes)}):" if notes else "\nNothing flagged for review.")
    for n in notes:
        console.print(f"- {n.question}: {n.message}", markup=False, highlight=False)
    if notes:
        console.print(
            f"Mark a point or flag reviewed by deleting its `draft: true` in {out}; run this again after editing "
            "the bank or the rubric.",
            markup=False,
            highlight=False,
        )
    if tested is not None:
        _print_self_test(*tested)


def _readable(path: Path) -> Rubric | None:
    """The rubric at `path`, or None when there is none that can be read (`import --force` replaces it)."""
    try:
        return load_rubric(path) if path.exists() else None
    except RubricError:
        return None


def _previous(out: Path) -> Rubric | None:
    """The rubric `rubric new` updates. One that exists but does not read is an error, never replaced:
    it may hold a reviewer's work and one typo."""
    if not out.exists():
        return None
    try:
        return load_rubric(out)
    except RubricError as exc:
        raise RubricError(
            exc.message, hint=f"{out} was not written: fix it (grader rubric check {out}) or give another --out"
        ) from None


def _not_the_bank(source: Path, out: Path) -> None:
    if same_file(source, out):
        raise UsageError(f"--out {out} is the question bank {source}", hint="write the rubric to a .yaml file")


def _keep_points(rubric: Rubric, previous: Rubric | None) -> tuple[Rubric, int, dict[str, list[str]]]:
    """Questions whose references are unchanged keep the previous rubric's points and flags; the others
    are drafted again, and those that had reviewed points (not `draft: true`) are returned by id with
    those points' ids, so that the loss is said, not silent."""
    if previous is None:
        return rubric, 0, {}
    before = {q.id: q for q in previous.questions}
    questions, kept, redrafted = [], 0, {}
    for q in rubric.questions:
        old = before.get(q.id)
        if old is not None and old.references == q.references and old.key_points:
            questions.append(q.model_copy(update={"key_points": old.key_points, "red_flags": old.red_flags}))
            kept += 1
        else:
            questions.append(q)
            if old is not None and (reviewed := [i for i in (*old.point_ids, *old.flag_ids) if i not in old.draft_ids]):
                redrafted[q.id] = reviewed
    return rubric.model_copy(update={"questions": questions}), kept, redrafted


def _self_test(rubric: Rubric, backend_name: str, options: BackendOptions) -> tuple[SelfTest, SelfTest]:
    """The self-test of `rubric` and of the packaged bank, by one backend."""
    from grader.rubric.selftest import self_test

    async def both() -> tuple[SelfTest, SelfTest]:
        graded_by = get_backend(backend_name, options)
        try:
            return await self_test(rubric, graded_by), await self_test(load_rubric(), graded_by)
        finally:
            await graded_by.aclose()

    return asyncio.run(both())


def _backup_for(out: Path, previous: Rubric) -> Path:
    """Where the rubric being replaced is kept: `out.bak`, or `out.bak.1`, `out.bak.2`, ... where that file
    holds another rubric: a backup an earlier run named (the only copy of a lost reviewed point) is never
    overwritten."""
    text = dump_rubric(previous)
    for n in itertools.count():
        path = out.with_name(out.name + (".bak" if n == 0 else f".bak.{n}"))
        try:
            if not path.exists() or path.read_text(encoding="utf-8") == text:
                return path
        except (OSError, UnicodeDecodeError):
            continue
    raise AssertionError("unreachable")


def _in_old_order(items: Sequence[_Item], old_items: Sequence[KeyPoint]) -> list[_Item]:
    """A redrafted question's points (or flags) in the order the file had them, so a reviewed file under
    version control does not move: each where the old item of its id (or quote) was, the new ones after, in
    the draft's order."""
    by_id = {p.id: i for i, p in enumerate(old_items)}
    by_quote = {p.quote: i for i, p in enumerate(old_items) if p.quote}

    def place(k: int) -> tuple[int, int]:
        item = items[k]
        at = by_id.get(item.id, by_quote.get(item.quote) if item.quote else None)
        return (0, at) if at is not None else (1, k)

    return [items[k] for k in sorted(range(len(items)), key=place)]


def _carry_reviewed(
    drafted: Rubric,
    previous: Rubric,
    redrafted: dict[str, list[str]],
    out: Path,
    backup: Path,
    *,
    final: bool,
) -> Rubric:
    """A question drafted again because its references changed keeps the reviewed points and flags whose
    ground is still there: written by hand (no `quote`), or drafted from words the new references still
    hold (a point's in the great reference, a flag's in the poor or mediocre one, read as the drafter reads
    a quote). A drafted one that repeats a kept one (its id or quote) is left out, as are drafted ones past
    the question's limits. What could not be kept is named (when `final`), as is a kept id drafted again
    with another text: one edited sentence of a mediocre reference lost a team's hand-written point and
    rewording. Before the end (`final` false: a save after each drafted question), a question drafted
    again is saved as it was, old references and reviewed points, so a killed run loses none of them and the
    next run drafts it again and names what it could not keep."""
    from grader.backends.replies import quote_in_answer

    before = {q.id: q for q in previous.questions}
    limits = {"key_points": MAX_KEY_POINTS, "red_flags": MAX_RED_FLAGS}
    questions = []
    for q in drafted.questions:
        old = before.get(q.id)
        if q.id not in redrafted or old is None:
            questions.append(q)
            continue
        if not final:  # saved as it was until the end: a killed run loses no reviewed point, said or unsaid
            questions.append(old)
            continue
        refs = q.references
        ground = {"key_points": [refs.great], "red_flags": [t for t in (refs.poor, refs.mediocre) if t]}
        fields: dict[str, list] = {}
        carried, lost, retexted, crowded = [], [], [], []
        keep = {
            name: [
                p
                for p in items
                if not p.draft and (p.quote is None or any(quote_in_answer(p.quote, t) for t in ground[name]))
            ]
            for name, items in (("key_points", old.key_points), ("red_flags", old.red_flags))
        }
        by_id = {p.id: p for kept in keep.values() for p in kept}  # an id is one question's, point or flag
        for name, new_items, old_items in (
            ("key_points", q.key_points, old.key_points),
            ("red_flags", q.red_flags, old.red_flags),
        ):
            kept = keep[name]
            lost += [p.id for p in old_items if not p.draft and p not in kept]
            kept_quotes = {p.quote for p in kept if p.quote}
            retexted += [n.id for n in new_items if n.id in by_id and n.text != by_id[n.id].text]
            fresh = [n for n in new_items if n.id not in by_id and n.quote not in kept_quotes]
            room = max(0, limits[name] - len(kept))
            crowded += [n.id for n in fresh[room:]]
            fields[name] = _in_old_order([*kept, *fresh[:room]], old_items)
            carried += [p.id for p in kept]
        questions.append(q.model_copy(update=fields))
        if not final:
            continue
        said = [
            f"{out}: question {q.id}: its references changed, so it was drafted again (the rubric before: {backup})"
        ]
        if carried:
            said.append(
                f"kept its reviewed {', '.join(carried)} (written by hand, or drafted from words it still holds)"
            )
        if lost:
            said.append(f"drafted again in place of {', '.join(lost)}")
        if retexted:
            said.append(f"the draft's own text for {', '.join(retexted)} was left out for the reviewed one")
        if crowded:
            said.append(
                f"left out the drafted {', '.join(crowded)}: no room beside the kept ones ({MAX_KEY_POINTS} points, "
                f"{MAX_RED_FLAGS} flags)"
            )
        err_console.print("; ".join(said), markup=False, highlight=False)
    return drafted.with_questions(questions)


def _print_self_test(mine: SelfTest, packaged: SelfTest) -> None:
    table = Table(title="Self-test (references leave-one-out, generated perturbations)", title_justify="left")
    for col in ("suite", "metric", "this bank", "packaged bank"):
        table.add_column(col, overflow="fold")
    for suite, figures in mine.figures.items():
        theirs = packaged.figures[suite]
        for metric in ("cases", "accuracy", "qwk", "pass_rate", "fairness_flips", "needs_review"):
            if metric == "needs_review":  # of suites of different sizes: "12 of 12" beside "12 of 60", not 12 and 12
                cells = [f"{f['needs_review']} of {f['cases']}" for f in (figures, theirs)]
            else:
                cells = [_fmt(figures.get(metric)), _fmt(theirs.get(metric))]
            table.add_row(suite, metric, *cells)
    print_table(table)
    if mine.misgraded:
        total = mine.figures["references"]["cases"]
        console.print(f"References graded to another tier ({len(mine.misgraded)} of {total}):", markup=False)
        for m in mine.misgraded:
            console.print(f"- {m.line()}", markup=False, highlight=False)


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


async def _draft(
    rubric: Rubric, backend_name: str, options: BackendOptions, on_drafted: Callable[[Rubric, str], None] | None = None
) -> tuple[Rubric, list[str]]:
    if all(q.key_points for q in rubric):
        return rubric, []
    # Only a chat model can propose points; the local backend means "contrast the references offline".
    backend = None if resolve_name(backend_name, options) == "local" else get_backend(backend_name, options)
    try:
        return await draft_rubric(rubric, backend, on_drafted)
    finally:
        if backend is not None:
            await backend.aclose()
