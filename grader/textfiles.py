"""Opening the user's text files, with one-line errors that name the file, and writing ours whole.

Reads are bounded where a limit applies: a file or standard input is read to one character past the
limit and no further, so `/dev/zero` or a huge file costs what the limit allows, not the machine's
memory; the caller refuses what is over. Text holding NUL characters (UTF-16 without a BOM, a binary
file) is refused as not UTF-8 text, like any other bytes that are not UTF-8.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import itertools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from grader.errors import EncodingError, InputFileError

#: A lone UTF-16 surrogate: JSON can carry one (`"\ud83d"`, half of an emoji an exporter cut), UTF-8 cannot
#: encode it, so no file, cache key or prompt can hold it. In a decoded str a surrogate is always a lone one.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: What JSON can carry that no text file holds: a lone surrogate, or a NUL character (binary data).
NOT_TEXT = re.compile("[\ud800-\udfff\x00]")


def not_text(text: str) -> tuple[str, int] | None:
    """The first thing in `text` that no text file holds, named, and where: `("a NUL character", 7)` or
    `("a lone UTF-16 surrogate", 3)`; None for text. Every place JSON or Python hands text in asks this."""
    bad = NOT_TEXT.search(text)
    if bad is None:
        return None
    return ("a NUL character" if bad.group() == "\x00" else "a lone UTF-16 surrogate"), bad.start()


#: Bytes read at a time when there is no limit to stop at.
_CHUNK = 1 << 16


def open_text(path: Path, *, encoding: str = "utf-8") -> IO[str]:
    """Open a text file for streaming (newlines kept as written, for the csv module).

    A file that is not UTF-8 fails while it is read: catch UnicodeDecodeError there.
    """
    try:
        return path.open(encoding=encoding, newline="")
    except OSError as exc:
        raise _unreadable(path, exc) from None


#: A zip file's first characters: a spreadsheet workbook (.xlsx, .ods) given where CSV text is read.
_ZIP = "PK\x03\x04"


@contextlib.contextmanager
def open_table(path: Path) -> Iterator[tuple[Iterator[str], str]]:
    """A CSV a spreadsheet saved, read once (a pipe works), as lines for the csv module (a byte-order mark
    skipped) and its delimiter: the one of comma, semicolon (Excel where the decimal mark is a comma) and
    tab that cuts the header into the most cells, a comma on a tie (`candidate;Race, Ethnicity;sex` is
    semicolons). A workbook (.xlsx, .ods) is refused as not text, saying how to save it as CSV."""
    with open_text(path, encoding="utf-8-sig") as stream:
        try:
            first = stream.readline()
        except UnicodeDecodeError:
            raise encoding_error(path) from None
        if first.startswith(_ZIP):
            raise EncodingError(
                f"{path}: a spreadsheet workbook (.xlsx, .ods) or another zip file, not CSV text",
                hint="save it as 'CSV UTF-8'",
            )
        delimiter = max((",", ";", "\t"), key=lambda d: len(next(csv.reader([first], delimiter=d), [])))
        yield (itertools.chain([first], stream) if first else iter(())), delimiter  # an empty file has no lines


def check_cells(cells: list[str], where: str) -> None:
    """A CSV row's cells must hold no NUL character (binary data: csv reads it as text, and a name holding
    one would be a person of its own)."""
    for cell in cells:
        if "\0" in cell:
            raise EncodingError(f"{where}: not UTF-8 text (a NUL character in a cell: a binary file?)")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (another spelling, a symbolic or hard link); False while either
    does not exist yet."""
    try:
        return a.samefile(b)
    except OSError:
        return False


def _unreadable(path: Path, exc: OSError) -> InputFileError:
    if isinstance(exc, FileNotFoundError):
        return InputFileError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return InputFileError(f"{path}: is a directory")
    if isinstance(exc, PermissionError):
        return InputFileError(f"{path}: permission denied")
    return InputFileError(f"{path}: cannot read: {exc.strerror}")


def read_text(path: Path, *, limit: int | None = None) -> str:
    """A whole UTF-8 file; with a `limit`, at most `limit + 1` characters of it (more means too long)."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    with handle:
        try:
            return read_stream(handle, str(path), limit=limit)
        except OSError as exc:  # a read that fails after the open (EIO, a directory on some systems)
            raise _unreadable(path, exc) from None


def read_stream(stream: BinaryIO, label: str, *, limit: int | None = None) -> str:
    """Decode a binary stream as UTF-8; with a `limit`, stop after `limit + 1` characters.

    Never asks for more bytes than characters still wanted, so past the limit not one byte more is read
    than those characters take (a single-byte text: `limit + 1` bytes). Errors name `label`."""
    return "".join(_decoded(stream, label, limit=limit))


def encoding_error(path: Path) -> EncodingError:
    """The error for a file that failed to decode while it was streamed, naming the line and byte offset
    of the first bad byte (a text stream's UnicodeDecodeError knows only an offset within its last read,
    ahead of the line being parsed). Reads the file once more, keeping nothing."""
    try:
        with path.open("rb") as handle:
            for _ in _decoded(handle, str(path)):
                pass
    except EncodingError as exc:
        return exc
    except OSError:
        pass
    return EncodingError(f"{path}: not UTF-8 text")


def _decoded(stream: BinaryIO, label: str, *, limit: int | None = None) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # a BOM (Windows editors) is no part of the text
    chars = consumed = lines = 0  # characters decoded, bytes read, newlines passed
    while limit is None or chars <= limit:
        data = stream.read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - chars))
        pending = len(decoder.getstate()[0])  # bytes of a character split across reads
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            offset = consumed - pending + exc.start
            if offset == 0 and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                raise EncodingError(
                    f"{label}: UTF-16 text, not UTF-8",
                    hint="save it as UTF-8 (a spreadsheet's 'CSV UTF-8'), or convert it: iconv -f UTF-16 -t UTF-8",
                ) from None
            line = lines + exc.object[: exc.start].count(b"\n") + 1
            raise EncodingError(
                f"{label}:{line}: not UTF-8 text (invalid byte {exc.object[exc.start]:#04x} at offset {offset})"
            ) from None
        if "\0" in text:
            offset = chars + text.index("\0")
            raise EncodingError(
                f"{label}: not UTF-8 text (a NUL character at character {offset}: UTF-16, or a binary file?)"
            )
        consumed += len(data)
        chars += len(text)
        lines += text.count("\n")
        yield text
        if not data:
            break


def check_text(text: str, label: str) -> str:
    """Refuse text that did not come from UTF-8: surrogate escapes (bytes that are not UTF-8, as Python
    keeps them from the command line) and NUL characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodingError(f"{label}: not UTF-8 text (bytes that are not UTF-8 on the command line)") from None
    if "\0" in text:
        raise EncodingError(f"{label}: not UTF-8 text (a NUL character at character {text.index(chr(0))})")
    return text


def write_whole(path: Path, text: str) -> None:
    """`text` into `path` whole or not at all: written beside it, then renamed over it, so a run killed
    while writing (Ctrl-C, a full disk) leaves the earlier file or none, never half of one. A file written
    over keeps its permissions, and a symbolic link is written through, as an ordinary write would."""
    target = path.resolve() if path.is_symlink() else path
    part = target.with_name(f".{target.name}.part")
    try:
        part.write_text(text, encoding="utf-8")
        if target.exists():
            shutil.copymode(target, part)
        part.replace(target)
    finally:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
