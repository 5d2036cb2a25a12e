"""`grader grade`: grade one answer."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from grader.backends import BackendOptions, get_backend
from grader.cli._common import (
    DEFAULT_OPTIONS,
    BackendOpt,
    LearnFromOpt,
    MaxAnswerCharsOpt,
    ReviewThresholdOpt,
    RubricOpt,
    console,
    read_input,
    review_bank,
    with_backend_options,
)
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import UsageError, error_for
from grader.grading.cache import GradeCache
from grader.grading.contract import Grade
from grader.grading.engine import FROM_CACHE as CACHED
from grader.grading.engine import Engine, Job, ReviewSource
from grader.grading.review import check_answer
from grader.rubric import Question, Rubric, load_rubric
from grader.textfiles import check_text


class Format(StrEnum):
    text = "text"
    json = "json"


TIER_STYLE = {"great": "bold green", "mediocre": "bold yellow", "poor": "bold red"}


@with_backend_options
def grade(
    question: Annotated[
        str, typer.Option("--question", "-q", help="Question id or number (see `grader rubric list`).")
    ],
    answer: Annotated[str | None, typer.Option("--answer", "-a", help="The answer text.")] = None,
    answer_file: Annotated[
        Path | None, typer.Option("--answer-file", "-f", help="File holding the answer; - reads standard input.")
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
    backend: BackendOpt = "auto",
    rubric: RubricOpt = None,
    samples: Annotated[
        int, typer.Option("--samples", min=1, max=20, help="Grade k times; confidence = share that agrees.")
    ] = 1,
    review_threshold: ReviewThresholdOpt = DEFAULT_REVIEW_THRESHOLD,
    max_answer_chars: MaxAnswerCharsOpt = DEFAULT_MAX_ANSWER_CHARS,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse a grade from an earlier run.")] = True,
    learn_from: LearnFromOpt = None,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """Grade one answer against a rubric question and print the grade."""
    if (answer is None) == (answer_file is None):
        raise UsageError("give the answer with exactly one of --answer or --answer-file")
    if answer is not None:
        text, where = check_text(answer, "the answer given with --answer"), "the answer"
    else:
        assert answer_file is not None
        text = read_input(answer_file, limit=max_answer_chars)
        where = str(answer_file) if str(answer_file) != "-" else "standard input"
    check_answer(text, max_chars=max_answer_chars, where=where)
    bank = load_rubric(rubric)
    the_question = bank.find(question)
    job = Job(the_question, text, tag=None, where=where)
    reviews = review_bank(learn_from)
    result = asyncio.run(
        _grade(backend, options, job, samples, review_threshold, max_answer_chars, cache, reviews, bank)
    )
    if output_format is Format.json:
        console.print_json(result.model_dump_json())
    else:
        print_grade(result, the_question)


async def _grade(
    backend_name: str,
    options: BackendOptions,
    job: Job[None],
    samples: int,
    threshold: float,
    max_chars: int,
    use_cache: bool,
    reviews: ReviewSource | None = None,
    rubric: Rubric | None = None,
) -> Grade:
    backend = get_backend(backend_name, options)
    cache = GradeCache() if use_cache else None
    try:
        engine = Engine(
            backend,
            rubric=rubric,
            cache=cache,
            samples=samples,
            temperature=options.temperature,
            review_threshold=threshold,
            max_answer_chars=max_chars,
            reviews=reviews,
        )
        graded = await engine.grade(job)
    finally:
        await backend.aclose()
        if cache is not None:
            cache.close()
    if graded.failure is not None:
        raise error_for(graded.failure)
    assert graded.grade is not None
    noted = graded.noted(FROM_CACHE)  # said on what is printed: its usage is the first grading's, not a new cost
    assert isinstance(noted, Grade)
    return noted


#: The note on a grade `grader grade` read from the grade cache.
FROM_CACHE = CACHED.removesuffix(")") + "; --no-cache grades afresh)"


def print_grade(grade: Grade, question: Question) -> None:
    """A readable grade for the terminal."""
    texts = {p.id: p.text for p in [*question.key_points, *question.red_flags]}
    tier = grade.tier.value
    conf = f"{grade.confidence:.2f} ({grade.confidence_source})" if grade.confidence is not None else "n/a"
    head = f"[{TIER_STYLE[tier]}]{tier.upper()}[/]  {escape(question.id)}  confidence {conf}"
    lines = [escape(grade.justification), ""]
    for p in grade.covered_points:
        quote = f'"{escape(p.evidence)}"' if p.evidence else "[dim](quote dropped)[/]"
        lines.append(f"[green]✓[/] {escape(p.id)}: {escape(texts.get(p.id, ''))}\n    {quote}")
    for pid in grade.missed_points:
        lines.append(f"[red]✗[/] {escape(pid)}: {escape(texts.get(pid, ''))}")
    for fid in grade.red_flags:
        lines.append(f"[bold red]! red flag[/] {escape(fid)}: {escape(texts.get(fid, ''))}")
        if fid in grade.red_flag_evidence:
            lines.append(f'    "{escape(grade.red_flag_evidence[fid])}"')
    if grade.needs_review:
        lines += ["", "[bold magenta]needs review:[/] " + escape("; ".join(grade.review_reasons))]
    for note in grade.notes:
        lines.append(f"[dim]note: {escape(note)}[/]")
    usage = grade.usage
    footer = (
        f"{grade.backend} · {grade.model} · {grade.attempts} call(s) · "
        f"{usage.prompt_tokens}+{usage.completion_tokens} tokens"
    )
    panel = Panel("\n".join(lines), title=head, subtitle=escape(footer), title_align="left")
    console.print(panel, soft_wrap=False)
