"""`grader transcript`: grade an interview transcript's answers into a per-candidate scorecard."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Sequence
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
    err_console,
    progress_bar,
    review_bank,
    with_backend_options,
)
from grader.config import DEFAULT_MATCH_THRESHOLD, DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import (
    EncodingError,
    GraderError,
    InputFileError,
    OutputError,
    TranscriptError,
    UsageError,
    error_for,
)
from grader.grading.cache import GradeCache
from grader.rubric import load_rubric
from grader.textfiles import write_whole
from grader.transcripts.parse import TRANSCRIPT_SUFFIXES, Transcript, read_transcript
from grader.transcripts.scorecard import RENDERERS, Area, Scorecard
from grader.transcripts.segment import Roles, detect_roles
from grader.wording import named


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"


TIER_STYLE = {"great": "bold green", "mediocre": "bold yellow", "poor": "bold red"}


@with_backend_options
def transcript(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Transcript files (.txt, .vtt, .srt, .json) or folders of them.", show_default=False),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write one scorecard file per transcript into this folder.")
    ] = None,
    output_format: Annotated[
        Format, typer.Option("--format", help="text (terminal; Markdown in files), json, markdown or html.")
    ] = Format.text,
    interviewer: Annotated[
        list[str] | None,
        typer.Option("--interviewer", "-i", help="Speaker who interviews (repeat for a panel). Default: detected."),
    ] = None,
    candidate: Annotated[
        str | None, typer.Option("--candidate", "-c", help="Speaker who is the candidate. Default: detected.")
    ] = None,
    redact: Annotated[
        bool,
        typer.Option(
            "--redact/--no-redact",
            help="Hide the speakers' names (not others'), e-mails, phones and URLs from the backend; restored locally.",
        ),
    ] = False,
    match_threshold: Annotated[
        float,
        typer.Option(
            "--match-threshold",
            envvar="GRADER_MATCH_THRESHOLD",
            min=0.0,
            max=1.0,
            help="Similarity a question needs to match a rubric question; below it, it is listed as unmatched.",
        ),
    ] = DEFAULT_MATCH_THRESHOLD,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse grades from earlier runs.")] = True,
    backend: BackendOpt = "auto",
    rubric: RubricOpt = None,
    review_threshold: ReviewThresholdOpt = DEFAULT_REVIEW_THRESHOLD,
    max_answer_chars: MaxAnswerCharsOpt = DEFAULT_MAX_ANSWER_CHARS,
    learn_from: LearnFromOpt = None,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """Grade the candidate's answers in interview transcripts and print or write a scorecard per transcript.

    Exits 0 when at least one answer was graded (failed answers are reported on their question and on
    stderr), and with the failure's own code when not a single answer of any transcript could be graded.
    Of several files, one that is not a transcript is named on stderr and skipped, the others are graded,
    and the command then exits 14.
    """
    files = _collect(paths)
    if out is None and output_format is Format.html and len(files) > 1:
        raise UsageError("several transcripts as HTML need a folder to write to", hint="add -o FOLDER")
    # Named from every file given, read or not: a file skipped this time does not rename the others' cards.
    named = {}
    if out is not None:
        named = dict(zip(files, _output_names(files, out, _suffix(output_format)), strict=True))
    files, transcripts, roles, skipped = _read_all(files, interviewer or (), candidate)
    names = [named[file] for file in files] if out is not None else []
    if out is not None:
        _name_stale(out, {file: name for file, name in named.items() if file not in files})
    from grader.transcripts.pipeline import Settings  # numpy and the embedder: only when this command runs

    the_rubric = load_rubric(rubric)
    grade_cache = GradeCache() if cache else None
    settings = Settings(
        redact=redact,
        review_threshold=review_threshold,
        max_answer_chars=max_answer_chars,
        cache=grade_cache,
        reviews=review_bank(learn_from),
    )
    several_json = output_format is Format.json and len(transcripts) > 1  # one JSON array, printed at the end
    cards: list[Scorecard] = []

    def finished(card: Scorecard) -> None:
        """Each scorecard the moment its transcript is graded: written (or printed) then, so what was done
        before a Ctrl-C or a fatal failure is kept, and its grades are in the grade cache for the rerun."""
        _warn(card)
        if out is not None:
            _write(card, out / names[len(cards)], output_format)
        elif output_format is Format.text:
            print_scorecard(card)
        elif not several_json:
            render, _ = RENDERERS[output_format.value]
            console.out(render(card), end="", highlight=False)
        cards.append(card)

    try:
        asyncio.run(_score(transcripts, roles, the_rubric, backend, options, match_threshold, settings, finished))
    except KeyboardInterrupt:
        if out is not None:
            err_console.print(
                f"grader: note: {len(cards)} of {len(transcripts)} scorecard(s) written to {out} before the interrupt"
                + ("; a rerun takes the grades done from the cache" if grade_cache is not None else ""),
                markup=False,
                highlight=False,
            )
        raise
    finally:
        if grade_cache is not None:
            grade_cache.close()
    if several_json:
        console.out("[\n" + ",\n".join(c.model_dump_json(indent=2) for c in cards) + "\n]", highlight=False)
    _fail_if_nothing_graded(cards)
    if skipped:
        raise TranscriptError(
            f"{len(skipped)} of {len(skipped) + len(cards)} files skipped (listed above); the others were graded"
        )


#: What makes one file of several no transcript to grade: it is skipped, named on stderr, and the run goes on.
_NOT_A_TRANSCRIPT = (TranscriptError, EncodingError, InputFileError)


def _read_all(
    files: list[Path], interviewers: Sequence[str], candidate: str | None
) -> tuple[list[Path], list[Transcript], list[Roles], list[GraderError]]:
    """Every file read and its roles found before anything is graded. Of several files, one that is not a
    transcript (unknown format, no speakers, no such --candidate, not UTF-8, unreadable) is reported on
    stderr and skipped (the command exits 14 in the end); a single file stops the run with its own error,
    and so does finding no transcript at all (exit 14)."""
    kept: list[Path] = []
    transcripts: list[Transcript] = []
    roles: list[Roles] = []
    skipped: list[GraderError] = []
    for file in files:
        try:
            transcript = read_transcript(file, speakers=[*interviewers, *([candidate] if candidate else [])])
            found = detect_roles(transcript, interviewers=interviewers, candidate=candidate)
        except _NOT_A_TRANSCRIPT as exc:
            if len(files) == 1:
                raise
            skipped.append(exc)
            err_console.print(f"grader: warning: {exc} (skipped)", markup=False, highlight=False)
            continue
        for note in transcript.notes:
            err_console.print(f"grader: note: {note}", markup=False, highlight=False)
        kept.append(file)
        transcripts.append(transcript)
        roles.append(found)
    if not kept:
        raise TranscriptError(f"none of the {len(files)} files is a transcript (listed above)")
    return kept, transcripts, roles, skipped


def _name_stale(out: Path, skipped: dict[Path, str]) -> None:
    """A skipped transcript's scorecard from an earlier run into the same folder stays there: say so, as a
    reader of the folder would take it for this run's."""
    for file, name in skipped.items():
        if (out / name).exists():
            err_console.print(
                f"grader: warning: {out / name}: a scorecard from an earlier run, left as it was ({file} was skipped)",
                markup=False,
                highlight=False,
            )


def _fail_if_nothing_graded(cards: list[Scorecard]) -> None:
    """When answers were there to grade and not one could be, the run failed: after what there is has
    been written, exit with the first failure's code (a server that is down is not a scorecard)."""
    questions = [q for card in cards for q in card.questions]
    if not questions or any(q.grade is not None for q in questions):
        return
    failure = next((q.failure for q in questions if q.failure is not None), None)
    if failure is None:
        return
    message = f"no answer in any transcript could be graded ({len(questions)} tried); the first: {failure.message}"
    raise error_for(failure.model_copy(update={"message": message}))


def _collect(paths: list[Path]) -> list[Path]:
    """The files to read: each path given, and a folder's files with a transcript's suffix. A folder's
    subfolders are not searched, each with a note on stderr."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            entries = sorted(path.iterdir())
            for sub in (p for p in entries if p.is_dir()):
                err_console.print(
                    f"grader: note: {sub}: a folder inside {path}, not searched (name it to grade its transcripts)",
                    markup=False,
                    highlight=False,
                )
            found = [p for p in entries if p.is_file() and p.suffix.lower() in TRANSCRIPT_SUFFIXES]
            others = [p.name for p in entries if p.is_file() and p not in found and not p.name.startswith(".")]
            listed = named(others[:5], len(others))
            if not found:
                held = f" (it holds {listed})" if others else ""
                raise InputFileError(f"{path}: no transcripts ({', '.join(TRANSCRIPT_SUFFIXES)}) in this folder{held}")
            if others:
                err_console.print(
                    f"grader: note: {path}: {listed} not read (a transcript ends in {', '.join(TRANSCRIPT_SUFFIXES)})",
                    markup=False,
                    highlight=False,
                )
            files += found
        else:
            files.append(path)
    seen: dict[tuple[int, int], Path] = {}
    for file in files:  # another path to it, or a link (hard or symbolic), is the same file: graded once
        try:
            info = file.stat()
        except OSError:
            continue  # reading it names the problem
        first = seen.setdefault((info.st_dev, info.st_ino), file)
        if first is not file:
            also = "" if str(first) == str(file) else f" (also as {file})"
            raise UsageError(f"{first} is given twice{also}", hint="name each transcript once")
    return files


def _suffix(output_format: Format) -> str:
    return RENDERERS["markdown" if output_format is Format.text else output_format.value][1]


def _output_names(files: list[Path], out: Path, suffix: str) -> list[str]:
    """Each transcript's scorecard file name in `out`, all different (case aside, for file systems that
    ignore it): the file's stem (`call.md`); where stems clash, its name (`call.txt.md` next to
    `call.vtt.md`); where names clash too, its parent folder's name before it (`a-call.md`, `b-call.md`
    for `a/call.txt` and `b/call.txt`), then the grandparent's, as far as it takes. Two paths to one file
    (it was named twice), or names in one folder that differ only in case, can never differ: a usage error,
    before anything is graded."""
    options = [_name_options(file) for file in files]
    level = [0] * len(files)
    while True:
        names = [options[i][level[i]] for i in range(len(files))]
        taken = Counter(name.casefold() for name in names)
        clashing = [i for i, name in enumerate(names) if taken[name.casefold()] > 1]
        if not clashing:
            return [name + suffix for name in names]
        for i in clashing:
            if level[i] + 1 == len(options[i]):
                j = next(j for j in clashing if j != i and names[j].casefold() == names[i].casefold())
                first, second = files[min(i, j)], files[max(i, j)]  # in the order they were given
                if os.path.abspath(first) == os.path.abspath(second):
                    also = "" if str(first) == str(second) else f" (also as {second})"
                    raise UsageError(f"{first} is given twice{also}", hint="name each transcript once")
                raise UsageError(  # names that differ only in case: one file on some systems
                    f"{first} and {second} would both be written to {out / (first.name + suffix)}",
                    hint="rename one of them",
                )
        for i in clashing:
            level[i] += 1


def _name_options(file: Path) -> list[str]:
    """A file's possible scorecard names, shortest first: stem, name, then each with more parent folders."""
    parts = Path(os.path.abspath(file)).parts[1:-1]  # the folders, without the root
    options = [file.stem, file.name]
    for depth in range(1, len(parts) + 1):
        prefix = "-".join(parts[-depth:])
        options += [f"{prefix}-{file.stem}", f"{prefix}-{file.name}"]
    return options


async def _score(transcripts, roles, rubric, backend_name, options, threshold, settings, finished) -> None:  # noqa: ANN001
    from grader.backends.local.embedder import Embedder
    from grader.transcripts.match import QuestionMatcher
    from grader.transcripts.pipeline import score_transcript

    the_backend = get_backend(backend_name, options)
    try:
        # Matching always uses the packaged MiniLM: the threshold was measured with it.
        matcher = QuestionMatcher(rubric, Embedder.load(), threshold)
        failed = 0
        with progress_bar() as progress:  # shown on a terminal only, and only for several transcripts
            task = progress.add_task("transcripts", total=len(transcripts), failed=0, visible=len(transcripts) > 1)
            for t, r in zip(transcripts, roles, strict=True):
                card = await score_transcript(
                    t, r, rubric=rubric, backend=the_backend, matcher=matcher, settings=settings
                )
                finished(card)
                failed += card.summary.failed
                progress.update(task, advance=1, failed=failed)
    finally:
        await the_backend.aclose()


def _warn(card: Scorecard) -> None:
    if card.summary.failed:
        err_console.print(
            f"grader: warning: {card.source}: {card.summary.failed} answer(s) could not be graded (see the scorecard)",
            markup=False,
        )
    if not card.questions:
        err_console.print(
            f"grader: warning: {card.source}: no question matched the rubric ({len(card.unmatched)} unmatched)",
            markup=False,
        )


def _write(card: Scorecard, target: Path, output_format: Format) -> None:
    """One transcript's scorecard file (its name from `_output_names`, all different)."""
    render, _ = RENDERERS["markdown" if output_format is Format.text else output_format.value]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_whole(target, render(card))
    except OSError as exc:  # a full disk, a file where the folder should be: exit 15, as every writer
        raise OutputError.of(target, exc) from None
    console.print(f"wrote {escape(str(target))}")


def _area(area: Area) -> str:
    return area.question + (" (needs review)" if area.needs_review else "")


def print_scorecard(card: Scorecard) -> None:
    """A readable scorecard for the terminal."""
    s = card.summary
    counts = " · ".join(f"[{TIER_STYLE[t]}]{n} {t}[/]" for t, n in s.tier_counts.items())
    extra = [f"{s.failed} not graded"] * bool(s.failed) + [f"{s.unmatched} unmatched"] * bool(s.unmatched)
    head = [
        f"[bold]{escape(card.candidate)}[/]  ·  {escape(card.source)}  ·  interviewer(s) "
        f"{escape(', '.join(card.interviewers))}",
        counts + ("  ·  " + escape(", ".join(extra)) if extra else ""),
        "strongest: " + (escape(", ".join(_area(a) for a in s.strongest)) or "none"),
        "weakest: " + (escape(", ".join(_area(a) for a in s.weakest)) or "none"),
    ]
    console.print(Panel("\n".join(head), title="scorecard", title_align="left"), soft_wrap=False)
    for q in card.questions:
        at = f" at {q.asked_at}" if q.asked_at else ""
        if q.grade is None:
            title = f"[bold magenta]NOT GRADED[/]  Q{q.number} {escape(q.question_id)}"
            answer = escape(" ".join(q.answer.split()))
            body = f"{escape(q.failure.message if q.failure else '')}\n[dim]answer: {answer}[/]"
            console.print(Panel(body, title=title, title_align="left"), soft_wrap=False)
            continue
        tier = q.grade.tier.value
        sure = f"  [dim]confidence {q.grade.confidence:.2f}[/]" if q.grade.confidence is not None else ""
        title = f"[{TIER_STYLE[tier]}]{tier.upper()}[/]  Q{q.number} {escape(q.question_id)}{sure}"
        lines = [f"[dim]asked{escape(at)}: “{escape(q.asked)}” (match {q.match_score:.2f})[/]"]
        if q.also_close:
            lines.append(f"[yellow]also close:[/] {escape(q.also_close)} [dim](check the match)[/]")
        lines += [
            f"[dim]answer ({q.answer_turns} turn(s)): {escape(' '.join(q.answer.split()))}[/]",
            "",
            escape(q.grade.justification),
        ]
        for e in q.evidence:
            quote = f'"{escape(e.quote)}"' if e.quote else "[dim](quote dropped)[/]"
            stamp = f" [dim]@ {e.timestamp}[/]" if e.timestamp else ""
            lines.append(f"[green]✓[/] {escape(e.point)}\n    {quote}{stamp}")
        lines += [f"[red]✗[/] {escape(m.text)}" for m in q.missed]
        for f in q.red_flags:
            stamp = f" [dim]@ {f.timestamp}[/]" if f.timestamp else ""
            quote = f'\n    "{escape(f.quote)}"{stamp}' if f.quote else ""
            lines.append(f"[bold red]! red flag[/] {escape(f.text)}{quote}")
        lines += [f"[dim]follow-up: “{escape(f)}”[/]" for f in q.followups]
        if q.grade.needs_review:
            lines += ["", "[bold magenta]needs review:[/] " + escape("; ".join(q.grade.review_reasons))]
        panel = Panel("\n".join(lines), title=title, title_align="left", subtitle=escape(q.question))
        console.print(panel, soft_wrap=False)
    for u in card.unmatched:
        at = f" at {u.asked_at}" if u.asked_at else ""
        console.print(
            f"[yellow]unmatched[/]{escape(at)}: “{escape(u.asked)}” (closest {escape(u.closest or '-')} {u.score:.2f})"
        )
        for followup in u.followups:
            console.print(f"    [dim]follow-up: “{escape(followup)}”[/]")
    for talk in card.small_talk:
        at = f" at {talk.asked_at}" if talk.asked_at else ""
        replies = f", {talk.reply_turns} candidate turn(s) in reply skipped" if talk.reply_turns else ""
        console.print(f"[dim]small talk{escape(at)}: “{escape(talk.asked)}” (not graded{replies})[/]")
