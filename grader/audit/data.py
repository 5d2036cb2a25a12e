"""What an audit reads: the model's grades, who the candidates are, and the interviewers' grades.

- GRADES: `grader batch` output (`.jsonl`/`.ndjson` or `.csv`; the input's `candidate` column is carried
  through next to the grade's fields), or a `grader serve` database (a SQLite file or a URL), whose
  grades carry the candidate the API was given and whose reviews are the interviewers' grades.
- Demographics: a CSV with a `candidate` column and one column per category (`sex`, `race_ethnicity`, or
  any named with `--category`). A blank cell, or `unknown`, `declined`, `prefer not to say`, `n/a`,
  is an unknown category: counted, never compared. `None` is a value like any other (no disability, no
  veteran status), not an unknown one.
- Interviewers (`--interviewers`): `grader calibrate`'s human.csv (`interviewer`, `question`, `tier`, `id`),
  joined to GRADES by `id`.

Nothing is dropped without a count: failed grades, rows with no candidate, candidates missing from the
demographics (unknown in every category), people in the demographics with no grade, and interviewer
grades whose id GRADES lacks are all counted in the report. Malformed input is an `AuditDataError` naming
the file and line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grader.calibration import question_resolver
from grader.calibration.data import check_question, check_same_answer, check_unique, person_key, read_human_grades
from grader.errors import AuditDataError
from grader.grading import rows
from grader.grading.contract import Grade, Tier
from grader.textfiles import encoding_error, open_text

#: Cells that say the category is not known (compared after trimming and lower-casing).
UNKNOWN_VALUES = frozenset(
    {
        "",
        "unknown",
        "not known",
        "declined",
        "decline",
        "decline to self-identify",
        "prefer not to say",
        "prefer not to answer",
        "not disclosed",
        "not specified",
        "n/a",
        "na",
    }
)
DEFAULT_CATEGORIES = ("sex", "race_ethnicity")
_GRADE_FILES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass(frozen=True)
class GradedAnswer:
    """One answer's grade in GRADES: its tier, or None when grading it failed."""

    where: str
    id: str | None
    candidate: str | None
    question: str | None
    tier: Tier | None
    asked: str | None = None  # the question as the batch input wrote it (`1`, a slug): its `question` column


@dataclass(frozen=True)
class InterviewerGrade:
    """One interviewer's tier for one answer, and the model's tier for it (None when the model's failed)."""

    interviewer: str
    id: str
    candidate: str | None
    tier: Tier
    model: Tier | None
    written: str | None = None  # the interviewer as spelt on this row, where read as an earlier spelling


@dataclass
class Grades:
    """GRADES read: every graded answer, and the interviewer grades a database holds."""

    label: str
    answers: list[GradedAnswer]
    interviewers: list[InterviewerGrade] | None = None


@dataclass
class People:
    """The demographics file: each candidate's value in each category column (None: unknown)."""

    path: str
    columns: tuple[str, ...]
    categories: dict[str, dict[str, str | None]] = field(default_factory=dict)


class Spellings:
    """Candidates spelt as the demographics spell them, where only Unicode form, case or spacing differ
    (`spell(name)`); `respelt` keeps each spelling read so, {the other file's: the demographics'}."""

    def __init__(self, people: People) -> None:
        self.people = people
        self.listed = {person_key(name): name for name in people.categories}
        self.respelt: dict[str, str] = {}

    def __call__(self, name: str | None) -> str | None:
        if name is None or name in self.people.categories:
            return name
        if (found := self.listed.get(person_key(name))) is not None:
            self.respelt[name] = found
            return found
        return name

    def grades(self, grades: Grades) -> Grades:
        """`grades` with every candidate (the answers', a database's reviews') spelt as listed."""
        return Grades(
            grades.label,
            [replace(a, candidate=self(a.candidate)) for a in grades.answers],
            None if grades.interviewers is None else self.interviewers(grades.interviewers),
        )

    def interviewers(self, rows: list[InterviewerGrade]) -> list[InterviewerGrade]:
        return [replace(g, candidate=self(g.candidate)) for g in rows]


def is_database(source: str) -> bool:
    return "://" in source or Path(source).suffix.lower() in (".db", ".sqlite", ".sqlite3")


def read_grades(source: str) -> Grades:
    """GRADES from a batch output file or a service database."""
    if is_database(source):
        return _from_database(source)
    path = Path(source)
    kind = _GRADE_FILES.get(path.suffix.lower())
    if kind is None:
        raise AuditDataError(
            f"{path}: unknown grades format {path.suffix or '(none)'!r}",
            hint="give `grader batch` output (.jsonl or .csv) or a `grader serve` database (.sqlite, or a URL)",
        )
    answers = list(_jsonl_answers(path) if kind == "jsonl" else _csv_answers(path))
    if not answers:
        raise AuditDataError(f"{path}: no grades")
    seen: dict[str, str] = {}
    for answer in answers:  # an answer counted twice would weigh twice in its candidate's score
        if answer.id is None:
            continue
        if answer.id in seen:
            raise AuditDataError(
                f"{answer.where}: id {answer.id!r} already on line {seen[answer.id].rsplit(':', 1)[1]}",
                hint="keep one grade per answer",
            )
        seen[answer.id] = answer.where
    return Grades(str(path), answers)


def _jsonl_answers(path: Path) -> Iterator[GradedAnswer]:
    for where, _, record in rows.read_jsonl(path, AuditDataError):
        yield _answer(where, record)


def _csv_answers(path: Path) -> Iterator[GradedAnswer]:
    for where, _, record in rows.read_csv(path, AuditDataError):
        yield _answer(where, record)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value).strip() or None


def _answer(where: str, record: dict[str, Any]) -> GradedAnswer:
    if "candidate" not in record:
        raise AuditDataError(
            f"{where}: no `candidate` field",
            hint="`grader batch` carries input columns through: add a candidate column to its input",
        )
    try:
        outcome = rows.from_record(record)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(p) for p in err["loc"])
        raise AuditDataError(f"{where}: {field_name}: {err['msg']}") from None
    if outcome is None:
        raise AuditDataError(f"{where}: no grade (no `tier` and no error): not `grader batch` output")
    question = outcome.question_id
    tier = outcome.tier if isinstance(outcome, Grade) else None
    asked = _text(record.get("question"))
    return GradedAnswer(where, _text(record.get("id")), _text(record.get("candidate")), question, tier, asked)


def _from_database(source: str) -> Grades:
    from grader.service.store import Store

    store = Store(source, create=False)
    try:
        answers = [
            GradedAnswer(f"{store.label}: grade {gid}", gid, candidate, question, tier)
            for gid, candidate, question, tier in store.outcomes()
        ]
        reviews = [
            InterviewerGrade(
                p.human.interviewer,
                p.answer_id,
                p.human.candidate,
                p.human.tier,
                p.model.tier if p.model is not None else None,
            )
            for p in store.calibration_pairs()
        ]
    finally:
        store.close()
    if not answers:
        raise AuditDataError(f"{store.label}: no grades in the database")
    return Grades(store.label, answers, reviews)


def read_people(path: Path, columns: tuple[str, ...] | None) -> People:
    """The demographics file. `columns` None: `sex` and `race_ethnicity`, whichever the file has."""
    with open_text(path, encoding="utf-8-sig") as stream:
        reader = csv.reader(stream, strict=True)
        try:
            header = next(reader, None)
            if not header:
                raise AuditDataError(f"{path}: empty file; expected a header row with candidate and categories")
            names = [h.strip().lower() for h in header]
            twice = next((h for i, h in enumerate(header) if names[i] in names[:i]), None)
            if twice is not None:
                raise AuditDataError(f"{path}:1: column {twice.strip()!r} appears twice")
            if "candidate" not in names:
                raise AuditDataError(f"{path}:1: no `candidate` column (the header has {', '.join(header)})")
            wanted = columns or tuple(c for c in DEFAULT_CATEGORIES if c in names)
            if not wanted:
                raise AuditDataError(
                    f"{path}:1: no category column",
                    hint="name them with --category (the header has " + ", ".join(header) + ")",
                )
            missing = [c for c in wanted if c.lower() not in names]
            if missing:
                raise AuditDataError(f"{path}:1: no column {', '.join(missing)} (the header has {', '.join(header)})")
            index = {c: names.index(c.lower()) for c in ("candidate", *wanted)}
            people = People(str(path), tuple(wanted))
            seen: dict[str, tuple[str, int]] = {}  # each person's first spelling and line, by `person_key`
            spelled: dict[tuple[str, str], str] = {}  # one spelling per value: `female` and `Female` are one
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise AuditDataError(f"{path}:{line}: {len(cells)} cells but the header has {len(header)} columns")
                candidate = cells[index["candidate"]].strip()
                if not candidate:
                    raise AuditDataError(f"{path}:{line}: empty candidate")
                if (key := person_key(candidate)) in seen:
                    first, at = seen[key]
                    also = "" if first == candidate else f" (as {first!r})"
                    raise AuditDataError(f"{path}:{line}: candidate {candidate!r} already on line {at}{also}")
                seen[key] = (candidate, line)
                values: dict[str, str | None] = {}
                for column in wanted:
                    cell = " ".join(cells[index[column]].split())
                    values[column] = (
                        None if cell.lower() in UNKNOWN_VALUES else spelled.setdefault((column, cell.lower()), cell)
                    )
                people.categories[candidate] = values
        except UnicodeDecodeError:
            raise encoding_error(path) from None
        except csv.Error as exc:
            raise AuditDataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    if not people.categories:
        raise AuditDataError(f"{path}: no candidates (only a header)")
    for column in wanted:
        if all(v[column] is None for v in people.categories.values()):
            raise AuditDataError(
                f"{path}: column {column!r} is empty: no candidate has a known value",
                hint="fill it in, or leave it out of --category",
            )
    return people


def read_interviewers(path: Path, grades: Grades, rubric: Path | None = None) -> tuple[list[InterviewerGrade], int]:
    """human.csv joined to GRADES by id: the interviewer grades, and how many named an id GRADES lacks.

    Checked as `grader calibrate` checks it (exit 20, naming the line): one grade per interviewer and
    answer, one question per id, and that question the one GRADES graded under that id."""
    human = read_human_grades(path, join="id")
    check_same_answer(path, human)
    check_unique(path, human, [r.id or "" for r in human])
    resolve = question_resolver(rubric)  # `3` or a slug read through the rubric, as calibrate --rubric reads it
    by_id = {a.id: a for a in grades.answers if a.id is not None}
    out: list[InterviewerGrade] = []
    unmatched = 0
    for row in human:
        found = by_id.get(row.id or "")
        if found is None:
            unmatched += 1
            continue
        if found.question:
            hint = "check the ids, or write the question as GRADES does" + (
                "" if rubric else " or give the rubric (--rubric)"
            )
            check_question(path, row, found.question, found.where, resolve, what="grade", hint=hint, asked=found.asked)
        candidate = row.candidate or found.candidate
        out.append(InterviewerGrade(row.interviewer, row.id or "", candidate, row.tier, found.tier, row.written))
    return out, unmatched
