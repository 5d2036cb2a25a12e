"""Options and helpers shared by the command modules."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from grader.backends import REGISTRY, BackendOptions
from grader.backends.retry import RetryPolicy
from grader.config import DEFAULT_MODE
from grader.errors import AnswerTooLongError, InputFileError, UsageError
from grader.grading.engine import ReviewSource
from grader.textfiles import read_stream, read_text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """A table on standard output: fitted to a terminal's width, and at its own full width where the output
    is a file or a pipe (80 columns, as rich assumes there, cut a log's QWK of -0.333 to "-0.3…")."""
    if console.is_terminal or "COLUMNS" in os.environ:  # a width someone chose is kept
        console.print(table)
        return
    width = max(console.width, console.measure(table, options=console.options.update(width=10_000)).maximum)
    Console(file=console.file, width=width, highlight=False, soft_wrap=True).print(table)


def progress_bar(*columns: ProgressColumn) -> Progress:
    """The progress bar of every long command: on stderr, only on a terminal, gone when done. Without
    `columns`: description, bar, done/total, failures so far (a `failed` task field) and time left."""
    if not columns:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TimeRemainingColumn(),
        )
    return Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal)


def _known_backend(name: str) -> str:
    """An unknown --backend is a usage error, found before anything is read or loaded."""
    if name != "auto" and name not in REGISTRY:
        raise UsageError(f"unknown backend {name!r}", hint="choose one of: auto, " + ", ".join(REGISTRY))
    return name


BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        "-b",
        envvar="GRADER_BACKEND",
        help="auto, openai, ollama, local, nearest or fake.",
        show_default=True,
        callback=_known_backend,
    ),
]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", envvar="GRADER_MODEL", help="Model name.")]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="Server URL (default: $OPENAI_BASE_URL; $OLLAMA_HOST for ollama).")
]
RubricOpt = Annotated[
    Path | None, typer.Option("--rubric", "-r", envvar="GRADER_RUBRIC", help="Rubric file (default: packaged).")
]
PromptsOpt = Annotated[
    Path | None, typer.Option("--prompts", envvar="GRADER_PROMPTS", help="Folder with your own prompt templates.")
]
TemperatureOpt = Annotated[float, typer.Option("--temperature", envvar="GRADER_TEMPERATURE", min=0.0, max=2.0)]
SeedOpt = Annotated[int | None, typer.Option("--seed", envvar="GRADER_SEED", help="Sampling seed.")]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        envvar="GRADER_TIMEOUT",
        min=0.1,
        help="Seconds the server may keep a request waiting, to connect and between the parts of its answer "
        "(--deadline bounds a whole grade).",
    ),
]
AttemptsOpt = Annotated[
    int, typer.Option("--max-attempts", envvar="GRADER_MAX_ATTEMPTS", min=1, help="Requests per model call.")
]
DeadlineOpt = Annotated[
    float | None,
    typer.Option(
        "--deadline",
        envvar="GRADER_DEADLINE",
        min=1.0,
        help="Seconds a grade may take with the model, every request, pause and re-ask included "
        "(none by default: each request is bounded by --timeout).",
        show_default=False,
    ),
]
ReasksOpt = Annotated[
    int, typer.Option("--reasks", envvar="GRADER_REASKS", min=0, max=5, help="Re-asks after an invalid reply.")
]
ReviewThresholdOpt = Annotated[
    float,
    typer.Option(
        "--review-threshold",
        envvar="GRADER_REVIEW_THRESHOLD",
        min=0.0,
        max=1.0,
        help="Flag grades whose confidence is below this for human review.",
    ),
]
MaxAnswerCharsOpt = Annotated[
    int, typer.Option("--max-answer-chars", envvar="GRADER_MAX_ANSWER_CHARS", min=1, help="Longest answer graded.")
]
LearnFromOpt = Annotated[
    str | None,
    typer.Option(
        "--learn-from",
        envvar="GRADER_LEARN_FROM",
        help="A `grader serve` database: show each grade the most similar answers interviewers reviewed there.",
    ),
]
ModelPathOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-path", envvar="GRADER_LOCAL_MODEL", help="Local backend: a sentence-transformers ONNX export."
    ),
]

LocalRuleOpt = Annotated[
    str | None,
    typer.Option(
        "--local-rule",
        envvar="GRADER_LOCAL_RULE",
        help="Local backend: the packaged decision rule, default or saf (fitted on SAF's training split).",
    ),
]

ModeOpt = Annotated[
    str,
    typer.Option(
        "--mode",
        envvar="GRADER_MODE",
        help="Chat backends: checklist (a yes/no verdict per key point and red flag, the tier by a written rule), "
        "holistic (the model's own tier with per-point quotes) or tier (a tier-only judge).",
    ),
]
ChecklistRuleOpt = Annotated[
    str | None,
    typer.Option(
        "--checklist-rule",
        envvar="GRADER_CHECKLIST_RULE",
        help="Checklist mode: the packaged rule (policy, or one fitted for a model) or a JSON file.",
    ),
]
ProseOpt = Annotated[
    bool, typer.Option("--prose/--no-prose", help="Checklist mode: ask the model for a written justification.")
]
AskTierOpt = Annotated[
    bool,
    typer.Option(
        "--ask-tier/--no-ask-tier",
        help="Checklist mode: also ask the model's own tier; disagreeing with the rule's tier sets needs_review.",
    ),
]
ChecklistCallsOpt = Annotated[
    str,
    typer.Option(
        "--checklist-calls",
        envvar="GRADER_CHECKLIST_CALLS",
        help="Checklist mode: one call for all items, or per-item (one short call per item; the server's "
        "prefix cache reuses the rubric and the answer).",
    ),
]

#: What a `with_backend_options` command's `options` defaults to (the decorator always passes it).
DEFAULT_OPTIONS = BackendOptions()

# The backend flags every grading command takes, in the order `--help` lists them.
_BACKEND_FLAGS: tuple[tuple[str, Any, Any], ...] = (
    ("model", ModelOpt, None),
    ("base_url", BaseUrlOpt, None),
    ("prompts", PromptsOpt, None),
    ("temperature", TemperatureOpt, 0.0),
    ("seed", SeedOpt, 42),
    ("timeout", TimeoutOpt, 120.0),
    ("max_attempts", AttemptsOpt, 5),
    ("reasks", ReasksOpt, 2),
    ("deadline", DeadlineOpt, None),
    ("model_path", ModelPathOpt, None),
    ("local_rule", LocalRuleOpt, None),
    ("mode", ModeOpt, DEFAULT_MODE),
    ("checklist_rule", ChecklistRuleOpt, None),
    ("prose", ProseOpt, False),
    ("ask_tier", AskTierOpt, False),
    ("checklist_calls", ChecklistCallsOpt, "one"),
)


def with_backend_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the shared backend flags; it receives them built into its `options` parameter.

    typer has no option groups, so the flags are added to the command's signature here once instead of
    being declared, and passed along, in every command.
    """
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name != "options"
    ]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in _BACKEND_FLAGS
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name, _, _ in _BACKEND_FLAGS}
        return command(**kwargs, options=backend_options(**flags))

    wrapper.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
    return wrapper


def backend_options(
    *,
    model: str | None = None,
    base_url: str | None = None,
    temperature: float = 0.0,
    seed: int | None = 42,
    timeout: float = 120.0,
    max_attempts: int = 5,
    reasks: int = 2,
    deadline: float | None = None,
    prompts: Path | None = None,
    model_path: Path | None = None,
    local_rule: str | None = None,
    mode: str = DEFAULT_MODE,
    checklist_rule: str | None = None,
    prose: bool = False,
    ask_tier: bool = False,
    checklist_calls: str = "one",
) -> BackendOptions:
    return BackendOptions(
        model=model,
        base_url=base_url,
        temperature=temperature,
        seed=seed,
        timeout=timeout,
        prompts_dir=prompts,
        model_path=model_path,
        local_rule=local_rule,
        mode=mode,
        checklist_rule=checklist_rule,
        prose=prose,
        ask_tier=ask_tier,
        checklist_calls=checklist_calls,
        policy=RetryPolicy(attempts=max_attempts, reasks=reasks, deadline=deadline),
    )


def read_input(path: Path, *, limit: int | None = None) -> str:
    """Read a UTF-8 text file, or standard input for `-`; with a `limit` (characters), never more than one
    character past it, and an AnswerTooLongError when it is over."""
    if str(path) == "-":
        label = "standard input"
        text = read_stream(sys.stdin.buffer, label, limit=limit)
    else:
        if path.is_dir():
            raise InputFileError(
                f"{path}: is a directory",
                hint="grade many answers with `grader batch` on a .csv or .jsonl file of them",
            )
        label = str(path)
        text = read_text(path, limit=limit)
    if limit is not None and len(text) > limit:
        raise AnswerTooLongError(
            f"{label} is over the limit of {limit:,} characters",
            hint="raise it with --max-answer-chars or GRADER_MAX_ANSWER_CHARS",
        )
    return text


class TableFormat(StrEnum):
    """How a command that prints a table prints it."""

    text = "text"
    json = "json"


FormatOpt = Annotated[TableFormat, typer.Option("--format", help="text (a table) or json.")]


def review_bank(db: str | None) -> ReviewSource | None:
    """The reviewed answers `--learn-from DB` names (None without it)."""
    if db is None:
        return None
    from grader.service.store import review_bank as load

    return load(db)
