"""`grader rubric ...`: list, check, import and draft rubrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from grader.backends import BackendOptions, get_backend, resolve_name
from grader.cli._common import (
    BackendOpt,
    BaseUrlOpt,
    FormatOpt,
    ModelOpt,
    PromptsOpt,
    RubricOpt,
    TableFormat,
    backend_options,
    console,
    err_console,
)
from grader.errors import RubricError, UsageError
from grader.rubric import Rubric, default_rubric_path, load_rubric, save_rubric
from grader.rubric.draft import draft_rubric
from grader.rubric.importer import import_bank

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
    table = Table(title=f"{loaded.name} ({len(loaded.questions)} questions)", title_justify="left")
    for col in ("#", "id", "question", "points", "flags"):
        table.add_column(col, no_wrap=col != "question")
    for q in loaded:
        drafts = f" ({len(q.draft_ids)} draft)" if q.draft_ids else ""
        table.add_row(str(q.number), q.id, q.text, f"{len(q.key_points)}{drafts}", str(len(q.red_flags)))
    console.print(table)


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
        console.print(f"{path}: ok, {len(rubric.questions)} questions, {points} key points, {flags} red flags")
        bare = [q.id for q in rubric if not q.key_points]
        if bare:
            console.print(f"  warning: {len(bare)} questions have no key points yet (run `grader rubric draft {path}`)")
        drafts = sum(len(q.draft_ids) for q in rubric)
        if drafts:
            console.print(
                f"  warning: {drafts} drafted points are not reviewed yet (remove `draft: true` once checked)"
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
    if out.exists() and not force:
        raise UsageError(f"{out} exists", hint="pass --force to overwrite it")
    result = import_bank(source, name=name)
    for lineno, text in result.ignored_lines:
        err_console.print(f"{source}:{lineno}: ignored: {text[:70]}", markup=False, highlight=False)
    save_rubric(result.rubric, out)
    console.print(f"wrote {out}: {len(result.rubric.questions)} questions; next: grader rubric draft {out}")


@app.command("draft")
def draft(
    rubric: Annotated[Path, typer.Argument(help="Rubric file to fill in (written back in place).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of in place.")] = None,
    backend: BackendOpt = "auto",
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    prompts: PromptsOpt = None,
) -> None:
    """Propose key points and red flags for questions that lack them, marked as drafts to review."""
    loaded = load_rubric(rubric)
    options = backend_options(
        model=model,
        base_url=base_url,
        temperature=0.0,
        seed=42,
        timeout=120.0,
        max_attempts=5,
        reasks=2,
        prompts=prompts,
    )
    drafted, report = asyncio.run(_draft(loaded, backend, options))
    if not report:
        console.print(f"{rubric}: every question already has key points; nothing to draft")
        return
    for line in report:
        console.print(line, markup=False)
    target = out or rubric
    save_rubric(drafted, target)
    console.print(f"wrote {target}: review the drafted points, then remove their `draft: true`")


async def _draft(rubric: Rubric, backend_name: str, options: BackendOptions) -> tuple[Rubric, list[str]]:
    if all(q.key_points for q in rubric):
        return rubric, []
    # Only a chat model can propose points; the local backend means "split the great reference".
    backend = None if resolve_name(backend_name) == "local" else get_backend(backend_name, options)
    try:
        return await draft_rubric(rubric, backend)
    finally:
        if backend is not None:
            await backend.aclose()
