"""`grader audit`: a bias audit of the model's grades (and of the interviewers'), in the form NYC's Local
Law 144 rules ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grader.cli._common import FormatOpt, RubricOpt, TableFormat, console, err_console
from grader.grading.contract import Tier


def audit(
    grades: Annotated[
        str,
        typer.Argument(
            help="`grader batch` output (.jsonl or .csv, with a candidate column) or a `grader serve` database "
            "(a SQLite file or a postgresql:// URL; its reviews are the interviewers' grades).",
            show_default=False,
        ),
    ],
    demographics: Annotated[
        Path,
        typer.Option(
            "--demographics", "-d", help="CSV: a candidate column and one column per category.", show_default=False
        ),
    ],
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category",
            "-c",
            help="A category column of the demographics (repeat it); default: sex and race_ethnicity. With two "
            "or more, their intersection is audited too.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Write audit.json, .md and .html here.")] = Path("audit"),
    per_answer: Annotated[
        bool, typer.Option("--per-answer", help="Each answer is a unit, instead of each candidate's mean score.")
    ] = False,
    selected: Annotated[
        Tier | None,
        typer.Option(
            "--selected", help="Also audit selection at this tier: a unit is selected when its score reaches it."
        ),
    ] = None,
    interviewers: Annotated[
        Path | None,
        typer.Option(
            "--interviewers",
            help="`grader calibrate`'s human.csv (interviewer, question, tier, id): each interviewer's rates next "
            "to the model's on the same answers. A database's reviews are used without it.",
        ),
    ] = None,
    rubric: RubricOpt = None,
    output_format: FormatOpt = TableFormat.text,
) -> None:
    """Audit grades for adverse impact: scoring rates and impact ratios per category and intersection."""
    from grader.audit.data import Spellings, read_grades, read_interviewers, read_people
    from grader.audit.report import build_report, summary_lines, write_reports
    from grader.errors import UsageError
    from grader.wording import counted

    if category and any(not c.strip() for c in category):
        raise UsageError("--category: an empty column name", hint="name a column of the demographics file")
    people = read_people(demographics, tuple(dict.fromkeys(c.strip() for c in category)) if category else None)
    if rubric is not None:  # read now, used or not: a wrong path is an error, never ignored
        from grader.rubric import load_rubric

        load_rubric(rubric)
    spell = Spellings(people)  # "grace kim" in GRADES is the demographics' "Grace Kim": one person, said so
    source = spell.grades(read_grades(grades))
    human, unmatched, warnings = source.interviewers, 0, []
    if interviewers is not None:
        if source.interviewers:  # a database's reviews: replaced, and said so
            n = len(source.interviewers)
            warnings.append(
                f"the {counted(n, 'review')} in {source.label} {'is' if n == 1 else 'are'} not audited: "
                f"--interviewers {interviewers} takes {'its' if n == 1 else 'their'} place"
            )
        human, unmatched = read_interviewers(interviewers, source, rubric)
        human = spell.interviewers(human)
    report = build_report(
        source,
        people,
        per_answer=per_answer,
        selected=selected,
        interviewers=human or None,
        unmatched=unmatched,
        respelt=spell.respelt,
        warnings=warnings,
    )
    paths = write_reports(report, out)
    if output_format is TableFormat.json:
        console.out(report.to_json(), end="", highlight=False)
        notes = err_console
    else:
        for line in summary_lines(report):
            console.print(f"- {line}", markup=False, highlight=False)
        notes = console
    notes.print(paths.line(), markup=False, highlight=False)
