"""What an audit reads: the model's grades, who the candidates are, and the interviewers' grades.

- GRADES: `grader batch` output (`.jsonl`/`.ndjson` or `.csv`; the input's `candidate` column is carried
  through next to the grade's fields), or a `grader serve` database (a SQLite file or a URL), whose
  grades carry the candidate the API was given and whose reviews are the interviewers' grades.
- Demographics: a CSV with a `candidate` column and one column per category (`sex`, `race_ethnicity`, or
  any named with `--category`; headers match whatever their case, spacing or punctuation: `Race/Ethnicity`
  is `race_ethnicity`). Comma-separated, or semicolon- or tab-separated as spreadsheets export in some
  locales. A blank cell, or a non-answer (`unknown`, `declined`, `Decline to state`, `prefer not to say`,
  `I don't wish to answer`, `n/a`...: `is_unknown`) is an unknown category: counted, never compared.
  `None` is a value like any other (no disability, no veteran status), not an unknown one. Spellings of
  one value that differ only in case or spacing are one category, shown as its most common spelling, and
  said so; a one- or two-letter value that is the start of another (`F` and `Female`) is compared as a
  category of its own, and the report warns of it.
- Interviewers (`--interviewers`): `grader calibrate`'s human.csv (`interviewer`, `question`, `tier`, `id`),
  joined to GRADES by `id`.

Nothing is dropped without a count: failed grades, rows with no candidate, candidates missing from the
demographics (unknown in every category), people in the demographics with no grade, and interviewer
grades whose id GRADES lacks are all counted in the report. Malformed input is an `AuditDataError` naming
the file and line.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grader.calibration import question_resolver
from grader.calibration.data import check_question, check_same_answer, check_unique, person_key, read_human_grades
from grader.errors import AuditDataError, UsageError
from grader.grading import rows
from grader.grading.contract import Grade, Tier
from grader.textfiles import check_cells, encoding_error, open_table

#: Cells that say the category is not known (compared after `_plain`: lower case, letters and digits).
UNKNOWN_VALUES = frozenset(
    {
        "",
        "unknown",
        "not known",
        "declined",
        "decline",
        "n a",
        "na",
        "no answer",
        "no response",
        "undisclosed",
        "undeclared",
        "unanswered",
        "not reported",
        "withheld",
        "not applicable",
    }
)
#: Non-answers as HR systems word them: "Decline to state", "Declined to self-identify", "I don't wish to
#: answer" (Greenhouse), "Prefer not to say", "Choose not to disclose", "Not declared". Not "Prefer to
#: self-describe": that is an answer.
_NON_ANSWER = re.compile(
    r"(?:i )?(?:decline[sd]?|refuse[sd]?|choose not|chose not|(?:i d |i would |would )?prefer not|preferred not"
    r"|(?:do not|don t|dont|did not|didn t) (?:wish|want)|did not|didn t|would rather not|rather not|not willing)"
    r"(?: to)?(?: (?:say|state|answer|disclose|self identify|identify|specify|provide|respond|reply|report))?"
    r"(?: (?:this|it|that|my \w+))?"
    r"|not (?:disclosed|declared|specified|provided|stated|answered|reported|given|identified|self identified"
    r"|recorded)"
)


def _plain(cell: str) -> str:
    """A cell as compared with the non-answers: lower case, apostrophes and punctuation as spaces."""
    text = unicodedata.normalize("NFKC", cell).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def is_unknown(cell: str) -> bool:
    """Whether a demographics cell says the category is not known: blank, or a non-answer, or non-answers
    joined (`Unknown or Not Reported`, `Unknown/Not Reported`, the NIH and OMB wording)."""
    if _unknown_part(_plain(cell)):
        return True
    parts = re.split(r"\s*/\s*|\s+or\s+|\s+-\s+", unicodedata.normalize("NFKC", cell).strip())
    return len(parts) > 1 and all(_unknown_part(_plain(part)) for part in parts)


def _unknown_part(plain: str) -> bool:
    return plain in UNKNOWN_VALUES or _NON_ANSWER.fullmatch(plain) is not None


#: Values that are a category in some columns and a non-answer in others: compared, with a warning.
_AMBIGUOUS = frozenset({"unspecified", "x"})


def column_key(name: str) -> str:
    """A header as matched: `Race/Ethnicity`, ` race-ethnicity ` and `RACE ETHNICITY` are `race_ethnicity`."""
    return _plain(name).replace(" ", "_")


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
    #: Warnings for the report: a default column missing, values that may be one category written two ways.
    notes: list[str] = field(default_factory=list)
    #: Per column, each value read from several spellings (case, spacing): {shown as: [the spellings]}.
    merged: dict[str, dict[str, list[str]]] = field(default_factory=dict)


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
        # `Candidate`, ` candidate `: the batch input's column as a spreadsheet wrote it, carried through
        spelt = next((k for k in record if isinstance(k, str) and column_key(k) == "candidate"), None)
        if spelt is None:
            raise AuditDataError(
                f"{where}: no `candidate` field",
                hint="`grader batch` carries input columns through: add a candidate column to its input",
            )
        record = {**record, "candidate": record[spelt]}
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
    with open_table(path) as (lines, delimiter):
        reader = csv.reader(lines, strict=True, delimiter=delimiter)
        try:
            header = next(reader, None)
            if not header:
                raise AuditDataError(f"{path}: empty file; expected a header row with candidate and categories")
            shown = _shown_header(header)
            if header[0].lstrip().startswith(("{", "[")):
                raise AuditDataError(
                    f"{path}:1: reads as JSON, not a CSV of candidates and categories",
                    hint="give the grades first and the demographics CSV with --demographics",
                )
            names = [column_key(h) for h in header]
            twice = next((h for i, h in enumerate(header) if names[i] and names[i] in names[:i]), None)
            if twice is not None:
                raise AuditDataError(f"{path}:1: column {twice.strip()!r} appears twice")
            if "candidate" not in names:
                raise AuditDataError(f"{path}:1: no `candidate` column (the header has {shown})")
            notes: list[str] = []
            if columns is None:
                wanted = tuple(c for c in DEFAULT_CATEGORIES if c in names)
                if not wanted:
                    raise AuditDataError(
                        f"{path}:1: no category column", hint=f"name them with --category (the header has {shown})"
                    )
                if absent := [c for c in DEFAULT_CATEGORIES if c not in wanted]:
                    notes.append(
                        f"no {' or '.join(absent)} column in {path.name}: audited by {', '.join(wanted)} only "
                        f"(Local Law 144 asks for sex, race/ethnicity and their intersection; the header has {shown})"
                    )
            else:
                wanted = columns
                if "candidate" in (column_key(c) for c in wanted):
                    raise UsageError(
                        "--category candidate: that column names the candidates, it is no category",
                        hint="name a column of categories (sex, race_ethnicity...)",
                    )
            missing = [c for c in wanted if column_key(c) not in names]
            if missing:
                raise AuditDataError(f"{path}:1: no column {', '.join(missing)} (the header has {shown})")
            index = {c: names.index(column_key(c)) for c in ("candidate", *wanted)}
            people = People(str(path), tuple(wanted), notes=notes)
            seen: dict[str, tuple[str, int]] = {}  # each person's first spelling and line, by `person_key`
            spellings: dict[tuple[str, str], Counter[str]] = {}  # per column and value: how it was spelt
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise AuditDataError(f"{path}:{line}: {len(cells)} cells but the header has {len(header)} columns")
                check_cells(cells, f"{path}:{line}")
                candidate = cells[index["candidate"]].strip()
                if not candidate:
                    raise AuditDataError(f"{path}:{line}: empty candidate")
                if (key := person_key(candidate)) in seen:
                    first_spelt, at = seen[key]
                    also = "" if first_spelt == candidate else f" (as {first_spelt!r})"
                    raise AuditDataError(f"{path}:{line}: candidate {candidate!r} already on line {at}{also}")
                seen[key] = (candidate, line)
                values: dict[str, str | None] = {}
                for column in wanted:
                    cell = " ".join(cells[index[column]].split())
                    if is_unknown(cell):
                        values[column] = None
                    else:
                        value = unicodedata.normalize("NFKC", cell).casefold()
                        spellings.setdefault((column, value), Counter())[cell] += 1
                        values[column] = value
                people.categories[candidate] = values
        except UnicodeDecodeError:
            raise encoding_error(path) from None
        except csv.Error as exc:
            raise AuditDataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    if not people.categories:
        raise AuditDataError(f"{path}: no candidates (only a header)")
    _name_values(people, spellings)
    for column in wanted:
        if all(v[column] is None for v in people.categories.values()):
            others = [c for c in wanted if c != column]
            raise AuditDataError(
                f"{path}: column {column!r} is empty: no candidate has a known value",
                hint="fill it in, or audit the others alone (" + " ".join(f"--category {c}" for c in others) + ")"
                if others
                else "fill it in, or name another column with --category",
            )
    return people


def _name_values(people: People, spellings: dict[tuple[str, str], Counter[str]]) -> None:
    """Each value shown as its most common spelling (the first of equals): `Female`, `female` and `FEMALE `
    are one category, and the report says which spellings were read as one. A value of one or two letters
    that begins another of its column (`F`, `Female`) may be the same category written short: warned of."""
    label = {key: counts.most_common(1)[0][0] for key, counts in spellings.items()}
    for values in people.categories.values():
        for column, value in values.items():
            if value is not None:
                values[column] = label[(column, value)]
    for (column, value), counts in spellings.items():
        if len(counts) > 1:
            people.merged.setdefault(column, {})[label[(column, value)]] = list(counts)
    for column, value in spellings:
        if _plain(value) in _AMBIGUOUS:
            people.notes.append(
                f"{column}: {label[(column, value)]!r} is compared as a category (an 'X' or 'Unspecified' sex "
                "marker is one); if it means not known, leave the cells blank"
            )
    for column in people.columns:
        keys = [value for c, value in spellings if c == column]
        for short in keys:
            letters = re.sub(r"\W", "", short)
            if 0 < len(letters) <= 2:
                for long in keys:
                    if long != short and re.sub(r"\W", "", long).startswith(letters):
                        people.notes.append(
                            f"{column}: {label[(column, short)]!r} and {label[(column, long)]!r} are compared as two "
                            f"categories; if {label[(column, short)]!r} is {label[(column, long)]!r} written short, "
                            "write them one way in the demographics"
                        )


def _shown_header(header: list[str], limit: int = 200) -> str:
    text = ", ".join(header)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_interviewers(path: Path, grades: Grades, rubric: Path | None = None) -> tuple[list[InterviewerGrade], int]:
    """human.csv joined to GRADES by id: the interviewer grades, and how many named an id GRADES lacks.

    Checked as `grader calibrate` checks it (exit 20, naming the line): one grade per interviewer and
    answer, one question per id, and that question the one GRADES graded under that id."""
    resolve = question_resolver(rubric)  # `3` or a slug read through the rubric, as calibrate --rubric reads it
    human = read_human_grades(path, join="id")
    check_same_answer(path, human, resolve)
    check_unique(path, human, [r.id or "" for r in human])
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
