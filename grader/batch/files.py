"""Input rows and output grades as files.

Inputs are CSV or JSON lines, read as a stream (never loaded whole) and validated in a first pass that
names the line of every structural problem before any model call. Outputs are JSON lines or CSV (rows
from `grader.grading.rows`), appended one grade at a time and flushed, so a killed run keeps every
finished grade; `done_ids` reads them back for `--resume`, cutting off a torn last line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grader.errors import EncodingError, GraderError, InputFileError
from grader.grading.rows import encode_cell
from grader.textfiles import open_text

csv.field_size_limit(16 * 1024 * 1024)


class BatchInputError(GraderError):
    """The input file is malformed; the message lists the lines."""

    exit_code = 13


@dataclass(frozen=True)
class Columns:
    id: str = "id"
    question: str = "question"
    answer: str = "answer"


@dataclass
class Row:
    line: int
    id: str
    question: str
    answer: str
    data: dict[str, Any] = field(default_factory=dict)  # every input column, carried to the output


@dataclass
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def input_format(path: Path) -> str:
    return _format(path, "input", InputFileError)


def output_format(path: Path) -> str:
    return _format(path, "output", GraderError)


def _format(path: Path, role: str, error: type[GraderError]) -> str:
    """csv or jsonl, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise error(f"{path}: unknown {role} format {suffix or '(none)'!r}; use .csv or .jsonl")
    return _FORMATS[suffix]


def read_rows(path: Path, columns: Columns) -> Iterator[Row | Problem]:
    """Stream the rows of a CSV or JSONL file; structural problems come back as Problems, in order."""
    fmt = input_format(path)
    try:
        with open_text(path) as handle:
            if fmt == "csv":
                yield from _csv_rows(handle, columns)
            else:
                yield from _jsonl_rows(handle, columns)
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _csv_rows(handle: IO[str], columns: Columns) -> Iterator[Row | Problem]:
    reader = csv.DictReader(handle, strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        yield Problem(1, f"bad CSV: {exc}")
        return
    if not header:
        yield Problem(1, "empty file: expected a header row")
        return
    missing = [c for c in (columns.id, columns.question, columns.answer) if c not in header]
    if missing:
        yield Problem(1, f"missing column(s) {', '.join(missing)} (the header has {', '.join(header)})")
        return
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Problem(start, f"bad CSV quoting: {exc}")
            return  # the csv module cannot resynchronise after a quoting error
        if None in record or any(v is None for v in record.values()):
            yield Problem(start, f"expected {len(header)} fields, found {len(record) - (None not in record)}")
            continue
        yield _row(start, dict(record), columns)


def _jsonl_rows(handle: IO[str], columns: Columns) -> Iterator[Row | Problem]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Problem(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield Problem(number, "expected a JSON object")
            continue
        yield _row(number, record, columns)


def _row(line: int, record: dict[str, Any], columns: Columns) -> Row | Problem:
    # An id and a question are structure; an empty answer is the row's own problem, graded as an error.
    missing = [c for c in (columns.id, columns.question) if record.get(c) in (None, "")]
    missing += [columns.answer] if columns.answer not in record else []
    if missing:
        return Problem(line, f"missing {', '.join(missing)}")
    values = {c: record[c] for c in (columns.id, columns.question, columns.answer)}
    bad = [c for c, v in values.items() if not isinstance(v, str | int | float)]
    if bad:
        return Problem(line, f"{', '.join(bad)} must be text")
    return Row(
        line=line,
        id=str(values[columns.id]),
        question=str(values[columns.question]),
        answer=str(values[columns.answer]),
        data=record,
    )


@dataclass
class Scan:
    """What the validation pass found."""

    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    header: list[str] = field(default_factory=list)

    @property
    def bad_lines(self) -> set[int]:
        return {p.line for p in self.problems}


def scan(path: Path, columns: Columns) -> Scan:
    """Validate the whole file without grading: structure, required fields, duplicate ids."""
    result = Scan()
    first_seen: dict[bytes, int] = {}  # id digests, not ids: memory stays small for big files
    seen_columns: set[str] = set()
    for item in read_rows(path, columns):
        if isinstance(item, Problem):
            result.problems.append(item)
            continue
        for key in item.data:  # JSONL rows may differ: the output carries every column seen
            if key not in seen_columns:
                seen_columns.add(key)
                result.header.append(key)
        digest = hashlib.blake2b(item.id.encode(), digest_size=12).digest()
        if digest in first_seen:
            result.problems.append(Problem(item.line, f"duplicate id {item.id!r} (first at line {first_seen[digest]})"))
            continue
        first_seen[digest] = item.line
        result.rows += 1
    return result


# --- output ------------------------------------------------------------------------------------------


class Writer:
    """Appends one record per finished row with a single write() on an O_APPEND descriptor, so a run
    killed at any moment leaves whole lines and every grade it finished."""

    def __init__(self, path: Path, header: list[str], *, append: bool) -> None:
        self.path = path
        self.format = output_format(path)
        self.header = header
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fresh = not append or not path.exists() or path.stat().st_size == 0
        self._fd = os.open(path, flags, 0o644)
        if append:
            os.lseek(self._fd, 0, os.SEEK_END)
        if self.format == "csv" and fresh:
            self._emit(self._csv_line(header))

    def _csv_line(self, values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (disk nearly full): finish it
            written += os.write(self._fd, data[written:])

    def write(self, record: dict[str, Any]) -> None:
        """One row (`grader.grading.rows.to_record`): a CSV line of the header's cells, or a JSON line."""
        if self.format == "csv":
            self._emit(self._csv_line([encode_cell(record.get(name)) for name in self.header]))
        else:
            self._emit(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


def done_ids(path: Path, id_column: str) -> set[str]:
    """Ids already in an output file. A torn last line (a run killed mid-write) is cut off first."""
    if not path.exists():
        return set()
    _repair_tail(path)
    done: set[str] = set()
    with path.open(encoding="utf-8", newline="") as handle:
        if output_format(path) == "csv":
            for record in csv.DictReader(handle):
                if record.get(id_column):
                    done.add(record[id_column])
        else:
            for number, line in enumerate(handle, start=1):
                try:
                    done.add(str(json.loads(line)[id_column]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise GraderError(f"{path}:{number}: not a grade record; is this the right output file?") from None
    return done


def _repair_tail(path: Path) -> None:
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the last newline and cut the partial record after it.
        step, pos = 4096, size
        while pos > 0:
            pos = max(0, pos - step)
            handle.seek(pos)
            chunk = handle.read(size - pos)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(pos + cut + 1)
                return
        handle.truncate(0)
