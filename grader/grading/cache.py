"""A SQLite cache of grades, keyed by everything that decides a grade (`grader.grading.engine.cache_key`).

It holds what the backend returned, before the review policy (the engine applies that after a hit, so a
changed threshold applies to cached grades too); a rerun of an unchanged suite or batch costs nothing,
and any change grades afresh. WAL mode lets several readers and one writer share the file. API keys
are never part of the key or the value. The file is created 0600 before SQLite opens it (SQLite gives
its -wal and -shm files the database's mode), in a 0700 folder (`cache_dir`): it holds candidate
answers. A cache that cannot be opened or written is `OutputError` naming the file, not a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from grader.config import cache_dir, private_sqlite
from grader.errors import OutputError
from grader.grading.contract import Grade

_SCHEMA = "CREATE TABLE IF NOT EXISTS grades (key TEXT PRIMARY KEY, grade TEXT NOT NULL, created REAL NOT NULL)"
#: Which answer a cached grade is of (its SHA-256), so that erasing an answer erases its cached grade too:
#: the grade quotes it. Added to a cache an earlier version made; its older rows have none.
_SUBJECT = "ALTER TABLE grades ADD COLUMN subject TEXT"
_SUBJECT_INDEX = "CREATE INDEX IF NOT EXISTS grades_subject ON grades (subject)"


def subject(answer: str) -> str:
    """The digest a cached grade's answer is known by (`forget`)."""
    return hashlib.sha256(answer.encode("utf-8", "surrogatepass")).hexdigest()


class GradeCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / "grades.sqlite"
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        with self._errors():
            private_sqlite(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            if "subject" not in {row[1] for row in self._db.execute("PRAGMA table_info(grades)")}:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                    self._db.execute(_SUBJECT)
            self._db.execute(_SUBJECT_INDEX)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's and the system's errors as one line naming the file (a full disk, a read-only folder)."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise OutputError.of(self.path, exc, hint="pass --no-cache, or set GRADER_CACHE_DIR") from None

    def get(self, key: str) -> Grade | None:
        with self._lock, self._errors():
            row = self._db.execute("SELECT grade FROM grades WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Grade.model_validate_json(row[0])

    def put(self, key: str, grade: Grade, answer: str | None = None) -> None:
        with self._lock, self._errors():
            self._db.execute(
                "INSERT OR REPLACE INTO grades (key, grade, created, subject) VALUES (?, ?, julianday('now'), ?)",
                (key, grade.model_dump_json(), subject(answer) if answer is not None else None),
            )

    def forget(self, answers: Iterable[str]) -> int:
        """Erase the cached grades of these answers; how many there were. A grade cached by a version before
        this one is not known by its answer: only clearing the cache erases it."""
        digests = sorted({subject(a) for a in answers})
        erased = 0
        with self._lock, self._errors():
            for start in range(0, len(digests), 500):
                chunk = digests[start : start + 500]
                marks = ",".join("?" * len(chunk))
                erased += self._db.execute(f"DELETE FROM grades WHERE subject IN ({marks})", chunk).rowcount
        return erased

    def close(self) -> None:
        self._db.close()
