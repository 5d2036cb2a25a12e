"""Opening the user's text files, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from grader.errors import EncodingError, InputFileError


def open_text(path: Path, *, encoding: str = "utf-8") -> IO[str]:
    """Open a text file for streaming (newlines kept as written, for the csv module).

    A file that is not UTF-8 fails while it is read: catch UnicodeDecodeError there.
    """
    try:
        return path.open(encoding=encoding, newline="")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory") from None
    except PermissionError:
        raise InputFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None


def read_text(path: Path) -> str:
    """A whole UTF-8 file."""
    with open_text(path) as handle:
        try:
            return handle.read()
        except UnicodeDecodeError as exc:
            raise EncodingError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
