"""Input rows and output grades as files.

Inputs are CSV or JSON lines (a UTF-8 byte-order mark allowed), read as a stream (never loaded whole)
and validated in a first pass that names the line of every structural problem before any model call
(a JSON row holding a lone UTF-16 surrogate, which no UTF-8 file can hold, is one).
Outputs are JSON lines or CSV (rows from `grader.grading.rows`), appended one grade at a time with one
write, undone if it fails, so a killed run or a full disk keeps every finished grade and no partial
record; `resume_output` reads them back record by record (CSV records span lines), cuts off a torn last
record, refuses another program's file or another input's rows (`Origin`) and takes out the failed rows
to grade again. `OutputLock`
keeps a second run off the same output.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from grader.errors import GraderError, OutputError, OutputLockedError, UsageError
from grader.grading.rows import FAILURE_COLUMNS, PREFIX, column_names, decode_cells, encode_cell
from grader.textfiles import encoding_error, not_text, open_text

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one run per output is then the user's to keep
    fcntl = None  # type: ignore[assignment]

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
    return _format(path, "input")


def output_format(path: Path) -> str:
    return _format(path, "output")


def _format(path: Path, role: str) -> str:
    """csv or jsonl, by the file's extension; any other is a usage error (exit 2), found before anything
    is read or written."""
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise UsageError(f"{path}: unknown {role} format {suffix or '(none)'!r}; use .csv or .jsonl (or .ndjson)")
    return _FORMATS[suffix]


def read_rows(path: Path, columns: Columns) -> Iterator[Row | Problem]:
    """Stream the rows of a CSV or JSONL file; structural problems come back as Problems, in order."""
    fmt = input_format(path)
    try:
        with open_text(path, encoding="utf-8-sig") as handle:  # a byte-order mark (Excel's CSV) is no data
            if fmt == "csv":
                yield from _csv_rows(handle, columns)
            else:
                yield from _jsonl_rows(handle, columns)
    except UnicodeDecodeError:
        raise encoding_error(path) from None


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
            record = json.loads(line, object_pairs_hook=_no_key_twice)
        except json.JSONDecodeError as exc:
            yield Problem(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except _KeyTwice as exc:
            yield Problem(number, f"key {exc.key!r} given twice (which one is meant?)")
            continue
        except RecursionError:
            yield Problem(number, "JSON nested too deeply")
            continue
        if not isinstance(record, dict):
            yield Problem(number, "expected a JSON object")
            continue
        if "\\u" in line and (bad := _not_text(record)):  # only an escape can make a lone surrogate or a NUL
            yield Problem(number, bad)
            continue
        yield _row(number, record, columns)


class _KeyTwice(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_key_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it gives a key twice: `json` would keep the last silently."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyTwice(key)
            seen.add(key)
    return record


def _not_text(record: dict[str, Any]) -> str | None:
    """What in a JSON row is not text: a lone UTF-16 surrogate (`"\\ud83d"`, half of an emoji an exporter
    cut), which JSON can carry but UTF-8 cannot encode, so neither the grade cache's key nor the output
    could hold the row; or a NUL character (`"\\u0000"`), binary data, refused in a file as it is here. In
    any column, nested values and column names too (every column is written out)."""
    for key, value in record.items():
        if found := not_text(key):
            return f"a column name ({ascii(key)}) contains {found[0]} (not text)"
        stack = [value]
        while stack:  # a loop, not recursion: the JSON may nest as deep as the parser allowed
            item = stack.pop()
            if isinstance(item, str):
                if found := not_text(item):
                    at = f" at character {found[1]}" if item is value else ""
                    return f"{key} contains {found[0]} (not text){at}"
            elif isinstance(item, dict):
                stack += [*item.keys(), *item.values()]
            elif isinstance(item, list):
                stack += item
    return None


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
    #: With `scan(..., fingerprints=True)`: each valid row's `row_fingerprint` (what `--resume` checks).
    fingerprints: set[int] = field(default_factory=set)

    @property
    def bad_lines(self) -> set[int]:
        return {p.line for p in self.problems}


def _canonical(value: Any) -> str:
    """A cell as text, the same whichever file carried it: an input's JSON number and the CSV output's
    cell for it (`encode_cell`, JSON) compare equal."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return repr(value)  # what JSON writes, without the encoder's cost (a question number on every row)
    return json.dumps(value, ensure_ascii=False)


def row_fingerprint(record: dict[str, Any], columns: Columns) -> int:
    """A short digest of a row's id, question and answer, from an input row or from an output row that
    carries them: Python's own 64-bit hash, whatever the answer's size. It is salted per process, so it
    is compared within one run only (the validation pass against `--resume`'s reading), never stored."""
    question, answer = record.get(columns.question), record.get(columns.answer)
    return hash((str(record.get(columns.id)), _canonical(question), _canonical(answer)))


def scan(path: Path, columns: Columns, *, fingerprints: bool = False) -> Scan:
    """Validate the whole file without grading: structure, required fields, duplicate ids. With
    `fingerprints`, also keep each valid row's `row_fingerprint` (for `--resume`'s `Origin`)."""
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
        if fingerprints:
            result.fingerprints.add(row_fingerprint(item.data, columns))
    return result


# --- output ------------------------------------------------------------------------------------------


def make_parent(path: Path) -> None:
    """Create the folder an output goes in (as eval and calibrate do); one line when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be
        raise OutputError.of(path, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))) from None
    except OSError as exc:
        raise OutputError.of(path, exc) from None


class Writer:
    """Appends one record per finished row with a single write() on an O_APPEND descriptor, so a run
    killed at any moment leaves whole records and every grade it finished. A write that fails or comes
    up short (a full disk, an I/O error) is undone, the file cut back to its size before it, and stops
    the run with `OutputError`. `shared`: other processes append to the same file (worker processes);
    each record is then written under a POSIX record lock, so undoing one never cuts another's."""

    def __init__(self, path: Path, header: list[str], *, append: bool, shared: bool = False) -> None:
        self.path = path
        self.format = output_format(path)
        self.header = header
        self._shared = shared and fcntl is not None
        make_parent(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        try:
            self._fd = os.open(path, flags, 0o666)  # the user's umask decides who may read it
        except OSError as exc:
            raise OutputError.of(path, exc) from None
        try:
            fresh = os.fstat(self._fd).st_size == 0
            if self.format == "csv" and fresh:
                self._emit(self._csv_line(header))
        except BaseException:
            os.close(self._fd)
            raise

    def _csv_line(self, values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._shared:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            before = os.fstat(self._fd).st_size
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                self._undo(before)
                raise OutputError.of(self.path, exc) from None
            if written != len(data):
                self._undo(before)
                raise OutputError(
                    f"cannot write {self.path}: wrote {written} of {len(data)} bytes", hint="is the disk full?"
                )
        finally:
            if self._shared:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _undo(self, size: int) -> None:
        """Cut off what a failed write left behind (nothing to cut on a device such as /dev/full)."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            pass

    def write(self, record: dict[str, Any]) -> None:
        """One row (`grader.grading.rows.to_record`): a CSV line of the header's cells, or a JSON line."""
        if self.format == "csv":
            self._emit(self._csv_line([encode_cell(record.get(name)) for name in self.header]))
        else:
            self._emit(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):  # a device or pipe: nothing to sync
                raise OutputError.of(self.path, exc) from None
        finally:
            os.close(fd)


class OutputLock:
    """One run per output file: an exclusive `flock` on the sidecar `OUTPUT.lock`, which holds the pid of
    the run, taken before the output is read or written and held to the end. Worker processes forked
    during the run inherit the descriptor, and with it the lock: it is free again when the last process
    of the run exits, however it ends (a killed run leaves the file, unlocked, for the next to take)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = output.with_name(output.name + ".lock")
        self._fd = -1

    def __enter__(self) -> OutputLock:
        if fcntl is None:
            return self
        make_parent(self.output)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputError.of(self.path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise OutputLockedError(
                    f"{self.output} is being written by another grader batch (pid {holder})",
                    hint="wait for it to finish or stop it, then --resume",
                ) from None
            except OSError as exc:
                os.close(fd)
                raise OutputError(f"cannot lock {self.path}: {exc.strerror}") from None
            if self._still_there(fd):
                break
            os.close(fd)  # the run that held it removed the file meanwhile: lock the one there now
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def _still_there(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def __exit__(self, *exc: object) -> None:
        if self._fd < 0:
            return
        try:
            os.unlink(self.path)  # while still holding it: a run that opened it meanwhile retries
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1


@dataclass(frozen=True)
class Origin:
    """The input an output is resumed from: every row `resume_output` reads back must carry the id, question
    and answer of one of its rows (by `row_fingerprint`, so a big input costs a small int a row, not its
    text), or the output was made from another input, whatever its header says."""

    source: Path
    columns: Columns
    fingerprints: set[int]

    def holds(self, record: dict[str, Any]) -> bool:
        return row_fingerprint(record, self.columns) in self.fingerprints


@dataclass
class Resumed:
    """What `--resume` found in an output file."""

    done: set[str] = field(default_factory=set)  # ids graded (or failed on their input) and kept
    failed: int = 0  # failed rows taken out of the file, to be graded again
    #: The kept grades by (question id, rubric version): what they were graded against
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The kept grades by tier: with this run's, what the whole file holds when it is done
    tiers: Counter[str] = field(default_factory=Counter)
    #: A CSV written by another version of grader, rewritten under this one's columns: (added, dropped)
    upgraded: tuple[list[str], list[str]] | None = None
    #: Bytes cut off the end: a last record torn by a run stopped mid-write, or one with no newline after it
    torn: int = 0


@dataclass
class _Span:
    start: int
    end: int
    id: str
    failed: bool
    version: tuple[str, str] | None = None  # a grade's (question id, rubric version)
    tier: str | None = None  # a grade's tier


def resume_output(path: Path, id_column: str, header: list[str] | None = None, origin: Origin | None = None) -> Resumed:
    """Read an output back for `--resume`: cut off a torn last record (a run killed mid-write), refuse a
    file that is not this input's output (`header`, the columns this run writes; `origin`, the rows each
    record must come from), and take the rows whose last outcome was a failure out of the file (rewritten
    atomically), so that they are graded again and every id stays in it once."""
    if not path.exists() or not stat.S_ISREG(path.stat().st_mode):
        return Resumed()  # nothing yet, or a device (/dev/null): nothing to read back
    fmt = output_format(path)
    upgraded = _upgrade_csv(path, header, id_column, origin) if fmt == "csv" and header is not None else None
    torn = upgraded[2] if upgraded else 0
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if fmt == "csv":
                head, spans, end = _csv_spans(handle, path, size, id_column, header, origin)
            else:
                head = 0
                spans, end = _jsonl_spans(handle, path, id_column, origin)
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    result = Resumed(upgraded=upgraded[:2] if upgraded else None, torn=torn + size - end)
    if end < size:  # a torn last record
        try:
            os.truncate(path, end)
        except OSError as exc:
            raise OutputError.of(path, exc) from None
    last = {span.id: span.failed for span in spans}  # each id's last outcome
    again = {id_ for id_, failed in last.items() if failed}
    result.done = set(last) - again
    result.versions = Counter(s.version for s in spans if s.version and not (s.failed or s.id in again))
    result.tiers = Counter(s.tier for s in spans if s.tier and not (s.failed or s.id in again))
    drop = [span for span in spans if span.failed or span.id in again]
    if drop:
        result.failed = sum(span.failed for span in drop)
        kept = [(0, head)] + [(s.start, s.end) for s in spans if not (s.failed or s.id in again)]
        _rewrite(path, kept)
    return result


def done_ids(path: Path, id_column: str, header: list[str] | None = None) -> set[str]:
    """The ids `--resume` skips (`resume_output`, which also repairs the file)."""
    return resume_output(path, id_column, header).done


def _not_ours(path: Path, where: str, what: str) -> BatchInputError:
    return BatchInputError(
        f"{path}{where}: {what}",
        hint="is this the right output file? To grade this input into it afresh, pass --force (which replaces it); "
        "or write to another -o",
    )


def _lines(handle: BinaryIO, state: dict[str, int]) -> Iterator[str]:
    """The file's lines for the csv module, counting the bytes it has taken (`state["pos"]`) and whether
    the last one ended with a newline (`state["ended"]`)."""
    for raw in handle:
        state["pos"] += len(raw)
        state["ended"] = raw.endswith(b"\n")
        state["line"] += 1
        yield raw.decode("utf-8")


def _upgrade_csv(
    path: Path, header: list[str], id_column: str, origin: Origin | None
) -> tuple[list[str], list[str], int] | None:
    """An output of this input written by another version of grader (the input's columns the same, the grade's
    columns not: a field added to `Grade` since) is rewritten under this version's header, atomically, so
    `--resume` goes on instead of grading every row again: a column added is left empty, a column this
    version no longer writes is dropped (and named); a torn last record is left out, as `--resume` leaves it.
    Returns (added, dropped, the bytes of a torn record left out), or None when there is nothing to rewrite
    (the same header, or not such a file: `_csv_spans` then says what it is). Only the header is read when
    it is this version's."""
    try:
        with path.open("rb") as handle:  # line by line: a torn character further on is no concern here
            columns = next(csv.reader(_lines(handle, {"pos": 0, "ended": 1, "line": 0}), strict=True), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not columns or columns == header:
        return None
    bom = "\ufeff" if columns[0].startswith("\ufeff") else ""
    columns[0] = columns[0].removeprefix("\ufeff")
    inputs = header[: len(header) - len(column_names([]))]
    ours = "tier" in {c.removeprefix(PREFIX) for c in columns[len(inputs) :]}
    if columns == header or columns[: len(inputs)] != inputs or not ours:
        return None
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            # every row this input's, before anything is rewritten: another input's output is refused as it is
            _, _, end = _csv_spans(handle, path, size, id_column, None, origin, inputs=inputs)
    except (OSError, GraderError):
        return None  # `_csv_spans` says what is wrong when resume reads it
    with _replacing(path, text=True) as out, path.open("rb") as source:
        writer = csv.writer(out, lineterminator="\n")
        state = {"pos": 0, "ended": 1, "line": 0}
        records = csv.reader(_lines(source, state), strict=True)
        next(records)  # the old header
        out.write(bom)
        writer.writerow(header)
        while True:
            try:
                fields = next(records)
            except (StopIteration, csv.Error, UnicodeDecodeError):  # the end, or torn inside quotes or a character
                break
            if state["pos"] > end:
                break  # the torn last record
            if fields:  # a blank line is left out
                cells = dict(zip(columns, fields, strict=True))
                writer.writerow([cells.get(column, "") for column in header])
    return [c for c in header if c not in columns], [c for c in columns if c not in header], size - end


def _csv_spans(
    handle: BinaryIO,
    path: Path,
    size: int,
    id_column: str,
    header: list[str] | None,
    origin: Origin | None,
    inputs: Collection[str] = (),
) -> tuple[int, list[_Span], int]:
    """The header's end, each whole record's byte span, and where the whole records end. The records are
    parsed by the csv module (strict), not split at newlines: a quoted answer holds newlines of its own.
    A record is whole when it parses and its newline follows it; anything else at the end of the file is
    a torn write and is left out; anything else before the end means another program's file. `inputs`
    names the input's columns where the header cannot tell them (`decode_cells`)."""
    state = {"pos": 0, "ended": 1, "line": 0}
    reader = csv.reader(_lines(handle, state), strict=True)
    spans: list[_Span] = []
    columns: list[str] | None = None
    start = head = 0
    while True:
        line = state["line"] + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except (csv.Error, UnicodeDecodeError) as exc:
            if state["pos"] < size:
                raise _not_ours(path, f":{line}", f"not a CSV record ({exc})") from None
            break  # torn by a crash or a full disk
        if not state["ended"]:  # the last record, cut before its newline
            break
        if not fields:  # a blank line
            pass
        elif columns is None:
            columns = fields
            if columns[:1] and columns[0].startswith("\ufeff"):
                columns[0] = columns[0][1:]
            if header is not None and columns != header:
                raise _not_ours(path, "", f"is not an output of this input ({_difference(columns, header)})")
            if id_column not in columns:
                raise _not_ours(path, "", f"has no {id_column!r} column")
            head = state["pos"]
        elif len(fields) != len(columns):
            raise _not_ours(path, f":{line}", f"expected {len(columns)} fields, found {len(fields)}")
        else:
            try:
                record = decode_cells(dict(zip(columns, fields, strict=True)), inputs)
            except ValueError as exc:
                raise _not_ours(path, f":{line}", str(exc)) from None
            spans.append(_Span(start, state["pos"], *_outcome_of(record, id_column, path, line, origin)))
        start = state["pos"]
    if columns is None:
        return 0, [], 0  # not even a whole header: the writer starts the file again
    return head, spans, start


def _difference(found: list[str], expected: list[str]) -> str:
    for index, (have, want) in enumerate(zip(found, expected, strict=False), start=1):
        if have != want:
            return f"column {index} is {have!r}, this run writes {want!r}"
    if len(found) < len(expected):
        return f"it lacks column(s) {', '.join(expected[len(found) :][:3])}"
    return f"it has extra column(s) {', '.join(found[len(expected) :][:3])}"


def _jsonl_spans(handle: BinaryIO, path: Path, id_column: str, origin: Origin | None) -> tuple[list[_Span], int]:
    """Each record's byte span, and where the whole lines end (a last line without its newline is torn)."""
    spans: list[_Span] = []
    pos = end = 0
    for number, raw in enumerate(handle, start=1):
        start, pos = pos, pos + len(raw)
        if not raw.endswith(b"\n"):
            break
        end = pos
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _not_ours(path, f":{number}", "not a grade record") from None
        if not isinstance(record, dict):
            raise _not_ours(path, f":{number}", "not a grade record")
        spans.append(_Span(start, pos, *_outcome_of(record, id_column, path, number, origin)))
    return spans, end


#: The outcome column that says a row is a failure (`grade_error_kind` where an input column has the name).
_KIND = FAILURE_COLUMNS["kind"]


def _outcome_of(
    record: dict[str, Any], id_column: str, path: Path, line: int, origin: Origin | None = None
) -> tuple[str, bool, tuple[str, str] | None, str | None]:
    """A row's id, whether its outcome is a failure, a grade's question and rubric version, and its tier; a row with
    neither a grade nor a failure is not one of ours, nor one whose id, question and answer are no row of
    `origin`."""
    kind = record[PREFIX + _KIND] if PREFIX + _KIND in record else record.get(_KIND)
    tier = record["grade_tier"] if "grade_tier" in record else record.get("tier")
    if record.get(id_column) in (None, "") or (kind in (None, "") and tier in (None, "")):
        raise _not_ours(path, f":{line}", "not a grade record")
    if origin is not None and not origin.holds(record):
        raise _not_ours(
            path,
            f":{line}",
            f"is not an output of this input (no row of {origin.source} has its id {record[id_column]!r} "
            "with its question and answer)",
        )
    question, version = (record.get(PREFIX + c, record.get(c)) for c in ("question_id", "rubric_version"))
    graded = kind in (None, "") and question not in (None, "") and version not in (None, "")
    failed = kind not in (None, "")
    return (
        str(record[id_column]),
        failed,
        (str(question), str(version)) if graded else None,
        None if failed or tier in (None, "") else str(tier),
    )


def _rewrite(path: Path, spans: list[tuple[int, int]]) -> None:
    """Replace the file by the given byte ranges of itself, atomically (`_replacing`)."""
    with _replacing(path) as out, path.open("rb") as source:
        for start, end in spans:
            source.seek(start)
            left = end - start
            while left > 0:
                chunk = source.read(min(left, 1 << 20))
                out.write(chunk)
                left -= len(chunk)


@contextmanager
def _replacing(path: Path, *, text: bool = False) -> Iterator[IO[Any]]:
    """A new content for `path`, written to a temporary file in the same folder (its mode `path`'s), flushed
    to disk and renamed over it when the block ends: a crash leaves the old file or the new, never half.
    Whatever stops the block (an error, Ctrl-C) removes the temporary file; the system's errors are
    `OutputError` naming the file."""
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError.of(path.parent, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException as exc:
        Path(name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError.of(path, exc) from None
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
