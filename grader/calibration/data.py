"""Calibration inputs: interviewers' grades (CSV) and model grades (JSON lines), read and validated.

`human.csv` has one row per grade an interviewer gave: `interviewer`, `question`, `tier`, and `id` (to
join with model grades) or `answer` (to grade it here); `candidate` is optional and other columns are
ignored. Header names are matched case-insensitively. Every error names the file and line.

Model grades are JSON lines, one answer each, in any of three shapes:

- a `Grade` object with an `id` field next to its fields: `{"id": "a1", "question_id": ..., "tier": ...}`;
- a wrapped grade: `{"id": "a1", "grade": {...Grade...}}`;
- a batch-grading row (`grader batch`): the input columns (`id`, `question`, `answer`, ...) with the
  outcome's columns next to them (`grader.grading.rows`: `grade_<field>` where a name collides with an
  input column; `error_kind` and `error_message` when that answer could not be graded; the `error`
  column of older outputs is read too).

A row with an error is a failed grade: counted, kept out of every metric. An `answer` field, when
present, is shown next to disagreements.
"""

from __future__ import annotations

import csv
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from grader.errors import CalibrationDataError
from grader.grading import rows
from grader.grading.contract import FailureKind, Grade, GradeFailure, HoldsOutcome, Outcome, Tier
from grader.textfiles import check_cells, encoding_error, open_table
from grader.wording import same_letters

#: Accepted spellings of each tier (compared after trimming and lower-casing). Anything else is an error.
TIER_SYNONYMS: dict[str, Tier] = {
    **dict.fromkeys(("great", "strong", "excellent", "3"), Tier.great),
    **dict.fromkeys(("mediocre", "average", "fair", "ok", "okay", "medium", "2"), Tier.mediocre),
    **dict.fromkeys(("poor", "weak", "bad", "1"), Tier.poor),
}

REQUIRED_COLUMNS = ("interviewer", "question", "tier")
OPTIONAL_COLUMNS = ("id", "answer", "candidate")

Join = Literal["id", "answer"]


def parse_tier(value: str) -> Tier | None:
    """The tier a cell names (`Strong`, `3`, `poor`...), or None when it names none."""
    return TIER_SYNONYMS.get(value.strip().lower())


@dataclass(frozen=True)
class HumanGrade:
    """One row of human.csv: a tier an interviewer gave one answer."""

    line: int
    interviewer: str
    question: str
    tier: Tier
    id: str | None = None
    answer: str | None = None
    candidate: str | None = None
    #: The interviewer as this row spells it, where the same name is more often spelt another way (`alice`
    #: among more `Alice`, `Alice  Smith` among more `Alice Smith`): `interviewer` is then that spelling.
    written: str | None = None


@dataclass(frozen=True)
class ModelGrade(HoldsOutcome):
    """One line of the model-grades file: a grade, or the failure that stopped it."""

    line: int
    id: str
    outcome: Outcome
    answer: str | None = None
    asked: str | None = None  # a `grader batch` row's own `question` column: the question as its input wrote it


def iter_human_grades(
    path: str | Path, *, join: Join, problems: list[CalibrationDataError] | None = None
) -> Iterator[HumanGrade]:
    """Stream human.csv row by row, checking each row on its own (columns, blanks, tiers).

    `join="id"` needs an `id` column (model grades are looked up by it); `join="answer"` needs `answer`.
    With `problems`, a row that cannot be read is added to it and the rest are read on (a hand-kept sheet
    is fixed in one pass, not one run per row); without, it is raised.
    """
    path = Path(path)
    with open_table(path) as (lines, delimiter):  # commas, or a spreadsheet's semicolons or tabs
        reader = csv.reader(lines, strict=True, delimiter=delimiter)  # a quote left open is an error
        line = 1
        try:
            header = next(reader, None)
            if header is None:
                raise CalibrationDataError(
                    f"{path}: empty file; expected a header row with interviewer, question, tier"
                )
            columns = _columns(path, header, join)
            width = len(header)
            line = reader.line_num + 1
            for cells in reader:
                start, line = line, reader.line_num + 1
                if not cells or not any(c.strip() for c in cells):
                    continue
                try:
                    row = _row(path, start, cells, columns, width, join)
                except CalibrationDataError as exc:
                    if problems is None:
                        raise
                    problems.append(exc)
                    continue
                yield row
        except UnicodeDecodeError:
            raise encoding_error(path) from None
        except csv.Error as exc:
            raise CalibrationDataError(f"{path}:{line}: malformed CSV: {exc}") from None


def _columns(path: Path, header: list[str], join: Join) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    columns: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            if name in columns:
                raise CalibrationDataError(f"{path}:1: column {name!r} appears twice")
            columns[name] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise CalibrationDataError(
            f"{path}:1: missing column{'s' if len(missing) > 1 else ''} " + ", ".join(missing),
            hint="the header needs interviewer, question, tier, and id or answer",
        )
    if join not in columns:
        hint = (
            "each interviewer grade is joined to the model's grade of the same answer by `id`"
            if join == "id"
            else "without --model-grades the answers are graded here; add an `answer` column or pass --model-grades"
        )
        raise CalibrationDataError(f"{path}:1: missing column {join}", hint=hint)
    return columns


def _row(path: Path, line: int, cells: list[str], columns: dict[str, int], width: int, join: Join) -> HumanGrade:
    where = f"{path}:{line}"
    check_cells(cells, where)
    if len(cells) > width:
        raise CalibrationDataError(f"{where}: {len(cells)} cells but the header has {width} columns")

    def cell(name: str) -> str | None:
        i = columns.get(name)
        if i is None or i >= len(cells):
            return None
        return cells[i]

    # A row may stop before trailing columns it leaves blank (candidate), never before one it needs.
    needed = [*REQUIRED_COLUMNS, join]
    short = next((name for name in needed if name in columns and columns[name] >= len(cells)), None)
    if short is not None:
        raise CalibrationDataError(
            f"{where}: the row ends before the {short} column ({len(cells)} cells, the header has {width})"
        )
    values: dict[str, str] = {}
    for name in REQUIRED_COLUMNS:
        value = (cell(name) or "").strip()
        if not value:
            raise CalibrationDataError(f"{where}: empty {name}")
        values[name] = value
    tier = parse_tier(values["tier"])
    if tier is None:
        raise CalibrationDataError(
            f"{where}: unknown tier {values['tier']!r}",
            hint="use great/mediocre/poor, strong/average/weak or 3/2/1; see the README's synonym table",
        )
    row_id = cell("id")
    if "id" in columns and not (row_id or "").strip():
        raise CalibrationDataError(f"{where}: empty id")
    answer = cell("answer")
    candidate = (cell("candidate") or "").strip() or None
    return HumanGrade(
        line=line,
        interviewer=values["interviewer"],
        question=values["question"],
        tier=tier,
        id=row_id.strip() if row_id is not None else None,
        answer=answer,
        candidate=candidate,
    )


#: Rows that cannot be read, listed in one error before "and N more".
SHOWN_PROBLEMS = 20


def read_human_grades(path: str | Path, *, join: Join) -> list[HumanGrade]:
    """All rows of human.csv; an error when it holds no grade at all, or listing every row that cannot be
    read (an unknown tier, an empty cell), each with its line."""
    problems: list[CalibrationDataError] = []
    rows = list(iter_human_grades(path, join=join, problems=problems))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        listed = "\n".join(f"  {p.message}" for p in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        hints = list(dict.fromkeys(p.hint for p in problems if p.hint))
        raise CalibrationDataError(
            f"{path}: {len(problems)} rows cannot be read, nothing was scored:\n{listed}{more}",
            hint="; ".join(hints) or None,
        )
    if not rows:
        raise CalibrationDataError(f"{path}: no grades (only a header)")
    return one_spelling(rows)


def person_key(name: str) -> str:
    """A name as compared: Unicode-normalised (an exporter's decomposed "í" is the composed one), spacing
    and case folded. Two spellings with one key are one person (an interviewer, a candidate)."""
    return " ".join(unicodedata.normalize("NFC", name).split()).casefold()


def one_spelling(rows: list[HumanGrade]) -> list[HumanGrade]:
    """Interviewer names that differ only in Unicode form, case or spacing read as one person, spelt as most
    often written (the first written of equals), as `grader audit` shows a category's values; each other
    spelling is kept in `written`, and reports say so: a spreadsheet's `alice` is the `Alice` of the other
    rows, not a second interviewer with half her grades."""
    spellings: dict[str, Counter[str]] = {}
    for row in rows:
        spellings.setdefault(person_key(row.interviewer), Counter())[row.interviewer] += 1
    shown = {key: counts.most_common(1)[0][0] for key, counts in spellings.items()}
    out = []
    for row in rows:
        name = shown[person_key(row.interviewer)]
        out.append(row if name == row.interviewer else replace(row, interviewer=name, written=row.interviewer))
    return out


def respelt(rows: Iterable[HumanGrade]) -> str | None:
    """A sentence naming the interviewer spellings read as another's, or None when there were none."""
    first: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.written is not None:
            first.setdefault((row.written, row.interviewer), row.line)
    if not first:
        return None
    named = [
        f"{written!r} (line {line}) as {name!r}" + same_letters(written, name)
        for (written, name), line in first.items()
    ]
    return "interviewer names that differ only in Unicode form, case or spacing are read as one person: " + ", ".join(
        named
    )


# --- model grades ----------------------------------------------------------------------------------


def iter_model_grades(path: str | Path) -> Iterator[ModelGrade]:
    """Stream the model grades, one ModelGrade a line (blank lines skipped): JSON lines, or `grader
    batch`'s CSV output (`.csv`)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        yield from _csv_model_grades(path)
        return
    hint = "model grades are JSON lines or `grader batch`'s CSV output"
    for where, line, obj in rows.read_jsonl(path, CalibrationDataError, first_line_hint=hint):
        yield _model_record(where, line, obj)


def _csv_model_grades(path: Path) -> Iterator[ModelGrade]:
    """`grader batch`'s CSV output, read by the row codec that wrote it (as `grader audit` reads it)."""
    for where, line, record in rows.read_csv(path, CalibrationDataError):
        yield _model_record(where, line, record)


def _model_record(where: str, number: int, obj: dict[str, Any]) -> ModelGrade:
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        raise CalibrationDataError(f"{where}: no `id` (a string or number that human.csv's id column refers to)")
    grade_id = str(raw_id).strip()
    answer = obj.get("answer") if isinstance(obj.get("answer"), str) else None
    asked = obj.get("question")
    asked = str(asked).strip() if isinstance(asked, str | int) and not isinstance(asked, bool) else None
    if "grade" in obj:
        payload, prefix = obj["grade"], "grade."
        if not isinstance(payload, dict):
            raise CalibrationDataError(f"{where}: `grade` must be a Grade object")
    else:  # a grade's fields next to the id, or a `grader batch` row (the row codec reads both)
        payload, prefix = _legacy_error(obj), ""
    try:
        outcome = Grade.model_validate(payload) if prefix else rows.from_record(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        message = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise CalibrationDataError(f"{where}: {prefix}{field}: {message}" if field else f"{where}: {message}") from None
    if outcome is None:
        raise CalibrationDataError(f"{where}: tier: missing (neither a grade nor an error)")
    return ModelGrade(number, grade_id, outcome, answer=answer, asked=asked)


def _legacy_error(obj: dict[str, Any]) -> dict[str, Any]:
    """Rows written before the row codec named a failure's message `error`, and its kind freely."""
    error = obj.get("error")
    if error in (None, "") or obj.get("error_message") not in (None, ""):
        return obj
    kind = obj.get("error_kind")
    known = kind in FailureKind.__members__
    return {**obj, "error_message": str(error), "error_kind": kind if known else FailureKind.error.value}


def read_model_grades(path: str | Path) -> dict[str, ModelGrade]:
    """Model grades by id; an id that appears twice is an error naming both lines."""
    grades: dict[str, ModelGrade] = {}
    for grade in iter_model_grades(path):
        if grade.id in grades:
            raise CalibrationDataError(f"{path}:{grade.line}: id {grade.id!r} already on line {grades[grade.id].line}")
        grades[grade.id] = grade
    if not grades:
        raise CalibrationDataError(f"{path}: no model grades")
    return grades


# --- pairing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """A human grade next to the model's grade of the same answer (or why there is none).

    `status` is `paired`, `failed` (the model grade has an error) or `unmatched` (no model grade for the
    id). Only paired rows enter the metrics; the others are counted.
    """

    human: HumanGrade
    question: str
    answer_id: str
    status: Literal["paired", "failed", "unmatched"]
    model: Grade | None = None
    failure: GradeFailure | None = None
    answer: str | None = None


def check_unique(path: str | Path, rows: list[HumanGrade], answer_ids: list[str]) -> None:
    """One grade per interviewer per answer: a second one is an error naming both lines."""
    seen: dict[tuple[str, str], int] = {}
    for row, answer_id in zip(rows, answer_ids, strict=True):
        key = (row.interviewer, answer_id)
        if key in seen:
            raise CalibrationDataError(
                f"{path}:{row.line}: {row.interviewer!r} already graded answer {answer_id!r} on line {seen[key]}",
                hint="keep one grade per interviewer and answer",
            )
        seen[key] = row.line


def check_same_answer(
    path: str | Path, rows: list[HumanGrade], resolve: Callable[[str], str | None] | None = None
) -> None:
    """Rows that share an id must be the same answer to the same question: `1` on one row and its slug on
    another are one question when `resolve` (the rubric) reads them so."""
    first: dict[str, HumanGrade] = {}

    def question(row: HumanGrade) -> str:
        return (resolve(row.question) if resolve is not None else None) or row.question

    for row in rows:
        if row.id is None:
            continue
        other = first.setdefault(row.id, row)
        if other is row:
            continue
        if question(other) != question(row):
            raise CalibrationDataError(
                f"{path}:{row.line}: id {row.id!r} is question {row.question!r} here but "
                f"{other.question!r} on line {other.line}"
            )
        if row.answer is not None and other.answer is not None and row.answer.strip() != other.answer.strip():
            raise CalibrationDataError(f"{path}:{row.line}: id {row.id!r} has a different answer on line {other.line}")


def check_question(
    path: str | Path,
    row: HumanGrade,
    graded: str,
    where: str,
    resolve: Callable[[str], str | None],
    *,
    what: str,
    hint: str,
    asked: str | None = None,
) -> None:
    """The CSV's question (`row.question`: an id, a number) must be `graded`, the question the grade of its
    id (`what`, at `where`) was made for, or be written as the batch input that grade came from wrote it
    (`asked`): a wrong join is caught rather than scored."""
    if row.question not in (graded, asked) and resolve(row.question) != graded:
        raise CalibrationDataError(
            f"{path}:{row.line}: question {row.question!r} does not match the {what} of id {row.id!r} "
            f"(question {graded!r}, {where})",
            hint=hint,
        )


def join_model_grades(
    path: str | Path,
    rows: list[HumanGrade],
    grades: dict[str, ModelGrade],
    grades_path: str | Path,
    resolve: Callable[[str], str | None],
    *,
    rubric_given: bool = False,
) -> list[Pair]:
    """Pair each human grade with the model grade of its id.

    `resolve` turns the CSV's question (a slug, `3`, `q03`) into a rubric question id, or None; the
    question must match the model grade's `question_id`, so a wrong join is caught rather than scored.
    """
    check_same_answer(path, rows, resolve)
    check_unique(path, rows, [r.id or "" for r in rows])
    pairs = []
    for row in rows:
        assert row.id is not None  # the id column is required for this join
        found = grades.get(row.id)
        if found is None:
            pairs.append(Pair(row, resolve(row.question) or row.question, row.id, "unmatched"))
            continue
        if found.grade is None:
            question = resolve(row.question) or row.question
            answer = row.answer or found.answer
            pairs.append(Pair(row, question, row.id, "failed", failure=found.failure, answer=answer))
            continue
        question = found.grade.question_id
        check_question(
            path,
            row,
            question,
            f"{grades_path}:{found.line}",
            resolve,
            what="model grade",
            hint="check the ids"
            + ("" if rubric_given else ", or pass the rubric the grades were made with (--rubric)"),
            asked=found.asked,
        )
        pairs.append(Pair(row, question, row.id, "paired", model=found.grade, answer=row.answer or found.answer))
    return pairs


def answer_ids(rows: list[HumanGrade], questions: list[str]) -> list[str]:
    """An id for each row's answer: its `id` when the CSV has one, else `<question>#<n>`, numbering the
    distinct answers to each question in order of first appearance."""
    numbers: dict[tuple[str, str, str], str] = {}
    per_question: dict[str, int] = {}
    out = []
    for row, question in zip(rows, questions, strict=True):
        if row.id is not None:
            out.append(row.id)
            continue
        # one answer: the same text to the same question, from the same candidate where the file names them
        # ("idk" from two candidates is two answers, not one graded by both interviewers)
        key = (question, (row.answer or "").strip(), person_key(row.candidate) if row.candidate else "")
        if key not in numbers:
            per_question[question] = per_question.get(question, 0) + 1
            numbers[key] = f"{question}#{per_question[question]}"
        out.append(numbers[key])
    return out
