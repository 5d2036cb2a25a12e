"""The one row codec: a grade or a failure as a flat row (a JSON object, or CSV cells) and back.

The columns are derived from the models, never listed by hand: every field of `Grade`, in its order, then
the fields of `GradeFailure` that a Grade lacks, prefixed `error_` (`error_kind`, `error_message`,
`error_last_output`); the fields both share (`question_id`, `attempts`, `usage`) use one column. A field
added to either model reaches every output (batch JSONL and CSV, exports) and every reader (calibration)
with nothing to update. A row carries its input columns first; an outcome column whose name an input
column already has is written `grade_<name>`.

In CSV, text fields are written as they are, other values as JSON (`true`, `0.93`, `["q01.logs"]`), and
an empty cell is a missing value; `decode_cells` reverses it from the fields' types. Text that a
spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a
leading `'`, as OWASP recommends against CSV injection; a plain number such as `-1` is not a formula and
stays as it is, and `decode_cells` takes the quote off again.
"""

from __future__ import annotations

import csv
import json
import re
import types
import typing
from collections.abc import Collection, Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.grading.contract import Grade, GradeFailure, Outcome
from grader.textfiles import encoding_error, open_text

GRADE_COLUMNS: tuple[str, ...] = tuple(Grade.model_fields)
FAILURE_PREFIX = "error_"
#: GradeFailure field -> its column (shared fields use the Grade's column).
FAILURE_COLUMNS: dict[str, str] = {
    name: name if name in Grade.model_fields else FAILURE_PREFIX + name for name in GradeFailure.model_fields
}
OUTCOME_COLUMNS: tuple[str, ...] = (
    *GRADE_COLUMNS,
    *(column for column in FAILURE_COLUMNS.values() if column not in Grade.model_fields),
)
PREFIX = "grade_"


def column_names(input_columns: list[str]) -> list[str]:
    """The output header: the input's columns, then every outcome column (`grade_` where a name collides)."""
    taken = set(input_columns)
    return [*input_columns, *(PREFIX + c if c in taken else c for c in OUTCOME_COLUMNS)]


def to_record(outcome: Outcome, carried: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The row for one outcome: the carried input columns unchanged, then every outcome column (None where
    the outcome has no value), JSON-ready."""
    record = dict(carried or {})
    values: dict[str, Any] = dict.fromkeys(OUTCOME_COLUMNS)
    dumped = outcome.model_dump(mode="json")
    if isinstance(outcome, Grade):
        values.update(dumped)
    else:
        values.update({FAILURE_COLUMNS[name]: value for name, value in dumped.items()})
    for column, value in values.items():
        record[PREFIX + column if carried is not None and column in carried else column] = value
    return record


def from_record(record: Mapping[str, Any]) -> Outcome | None:
    """The outcome in a row (a JSON object, or `decode_cells` of a CSV row); None when the row holds
    neither a grade nor a failure. Raises pydantic's ValidationError for a malformed one."""
    values = {column: _value(record, column) for column in OUTCOME_COLUMNS}
    kind = values.get(FAILURE_COLUMNS["kind"])
    if kind not in (None, ""):
        return GradeFailure.model_validate(
            {name: values[column] for name, column in FAILURE_COLUMNS.items() if values[column] is not None}
        )
    if values.get("tier") in (None, ""):
        return None
    return Grade.model_validate({name: values[name] for name in GRADE_COLUMNS if values[name] is not None})


def _value(record: Mapping[str, Any], column: str) -> Any:
    return record[PREFIX + column] if PREFIX + column in record else record.get(column)


# --- CSV cells ------------------------------------------------------------------------------------------


#: First characters that make a spreadsheet evaluate a cell (OWASP, "CSV Injection").
_FORMULA_START = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def encode_cell(value: Any) -> str:
    """One CSV cell: text as it is (a formula neutralised), None as empty, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _neutralised(value)
    return json.dumps(value, ensure_ascii=False)  # a JSON number (-1) is no formula: never quoted


def _neutralised(text: str) -> str:
    """Text that starts (after any quotes) with a formula character gets one more leading quote, so
    decoding takes exactly one off; a plain number is left alone."""
    body = text.lstrip("'")
    if body[:1] in _FORMULA_START and not (len(body) == len(text) and _NUMBER.fullmatch(text)):
        return "'" + text
    return text


def _restored(cell: str) -> str:
    """`_neutralised` reversed: a quote followed (after more quotes) by a formula character comes off."""
    if cell[:1] == "'" and cell.lstrip("'")[:1] in _FORMULA_START:
        return cell[1:]
    return cell


def decode_cells(row: Mapping[str, str], inputs: Collection[str] = ()) -> dict[str, Any]:
    """A CSV row read back: every text cell with its formula quote taken off, and the outcome columns
    decoded to values (by each field's type); other columns stay text. An empty cell is None. A cell
    that should hold JSON and does not raises ValueError naming the column. An outcome's name among
    `inputs`, the input's columns where the caller knows them, is an input column, whether or not the row
    has the outcome's `grade_` column (a file an earlier version wrote lacks a field added since)."""
    out: dict[str, Any] = {k: _restored(v) if isinstance(v, str) else v for k, v in row.items()}
    for column, text_typed in _TEXT_COLUMNS.items():
        # an unprefixed twin is an input column
        name = PREFIX + column if PREFIX + column in row or column in inputs else column
        if name not in row:
            continue
        cell = out[name]
        if cell is None or cell == "":
            out[name] = None
        elif not text_typed:
            try:
                out[name] = json.loads(cell)
            except json.JSONDecodeError:
                raise ValueError(f"{name}: not a JSON value: {cell[:60]!r}") from None
    return out


def read_jsonl(
    path: Path, error: type[GraderError], *, first_line_hint: str | None = None
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """JSON lines, one object a line (blank lines skipped): (`path:line`, line, object). A line that is no
    JSON object is an `error` naming it; `first_line_hint` goes with such an error on line 1 (a file of
    another format)."""
    with open_text(path, encoding="utf-8-sig") as stream:
        try:
            for line, text in enumerate(stream, start=1):
                if not text.strip():
                    continue
                where = f"{path}:{line}"
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    hint = first_line_hint if line == 1 else None
                    raise error(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})", hint=hint) from None
                except RecursionError:
                    raise error(f"{where}: JSON nested too deeply") from None
                if not isinstance(obj, dict):
                    raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
                yield where, line, obj
        except UnicodeDecodeError:
            raise encoding_error(path) from None


def read_csv(path: Path, error: type[GraderError]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """`grader batch`'s CSV output, each row decoded by this codec: (`path:line`, line, record). A file
    that is no such output is an `error` naming the line (a bad byte: EncodingError, with its own line)."""
    with open_text(path, encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream, strict=True)
        try:
            if not reader.fieldnames:
                raise error(f"{path}: empty file; expected `grader batch` output with a header row")
            for record in reader:
                line = reader.line_num
                where = f"{path}:{line}"
                if None in record:
                    raise error(f"{where}: more cells than the header has columns")
                try:
                    decoded = decode_cells(record)
                except ValueError as exc:
                    raise error(f"{where}: {exc}") from None
                yield where, line, decoded
        except UnicodeDecodeError:
            raise encoding_error(path) from None
        except csv.Error as exc:
            raise error(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None


def _is_text(annotation: Any) -> bool:
    """Whether a field holds text (a str, a string enum, a Literal of strings), optionally None."""
    if annotation is str:
        return True
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return all(isinstance(m.value, str) for m in annotation)
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in args)
    if origin in (typing.Union, types.UnionType):
        return all(_is_text(a) for a in args)
    return False


def _column_types() -> dict[str, bool]:
    found = {name: _is_text(info.annotation) for name, info in Grade.model_fields.items()}
    for name, info in GradeFailure.model_fields.items():
        found.setdefault(FAILURE_COLUMNS[name], _is_text(info.annotation))
    return found


#: Outcome column -> whether its CSV cell is plain text (else JSON).
_TEXT_COLUMNS: dict[str, bool] = _column_types()

__all__ = [
    "OUTCOME_COLUMNS",
    "column_names",
    "decode_cells",
    "encode_cell",
    "from_record",
    "to_record",
]
