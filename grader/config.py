"""Settings read from the environment, with the ecosystem's names where one exists.

Precedence everywhere: explicit argument > CLI flag > environment variable > default.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Final

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"
DEFAULT_REVIEW_THRESHOLD = 0.6
#: How chat backends grade: checklist (per-point verdicts, the tier by rule), holistic or tier.
DEFAULT_MODE: Final = "checklist"
DEFAULT_MAX_ANSWER_CHARS = 20_000
#: Cosine similarity an asked question needs to its rubric question (measured: README, "Transcripts").
DEFAULT_MATCH_THRESHOLD = 0.40


def cache_dir() -> Path:
    """Where grader keeps what it learns between runs ($GRADER_CACHE_DIR, else ~/.cache/grader).

    The cache holds candidate answers: the folder is created 0700 (private to the user, whatever the
    files inside are), and the default one is tightened to 0700 if an older version left it open."""
    chosen = os.environ.get("GRADER_CACHE_DIR")
    path = Path(chosen or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "grader"))
    try:
        if not path.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=0o700, exist_ok=True)
        elif (
            not chosen and os.name == "posix" and (found := path.stat()).st_mode & 0o077 and found.st_uid == os.getuid()
        ):
            path.chmod(0o700)
    except OSError as exc:
        from grader.errors import OutputError  # here: this module is read before the models are

        if isinstance(exc, FileExistsError):  # a file where a folder should be
            exc = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        raise OutputError.of(path, exc, hint="set GRADER_CACHE_DIR to a writable folder") from None
    return path


def optional_cache_dir() -> Path | None:
    """`cache_dir()` for what is only a speed-up (embedded vectors, what a server accepts): None when the
    default folder cannot be made (a read-only home, as in many containers), so grading goes on without it;
    a folder chosen with GRADER_CACHE_DIR that cannot be made is still an error (OutputError)."""
    from grader.errors import OutputError

    try:
        return cache_dir()
    except OutputError:
        if os.environ.get("GRADER_CACHE_DIR"):
            raise
        return None


def private_sqlite(path: Path) -> None:
    """Create the database file 0600 (and tighten one an older version left readable, with its -wal and
    -shm), so that SQLite, which gives those the database's mode, never makes them readable to others."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)
        except OSError:  # absent, or another user's shared cache: theirs to set
            pass


def openai_configured() -> bool:
    """True when the environment points at an OpenAI-compatible server."""
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
