"""A SQLite cache of grades, keyed by everything that decides a grade (`grader.grading.engine.cache_key`).

It holds what the backend returned, before the review policy (the engine applies that after a hit, so a
changed threshold applies to cached grades too); a rerun of an unchanged suite or batch costs nothing,
and any change grades afresh. WAL mode lets several readers and one writer share the file. API keys
are never part of the key or the value.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from grader.config import cache_dir
from grader.grading.contract import Grade

_SCHEMA = "CREATE TABLE IF NOT EXISTS grades (key TEXT PRIMARY KEY, grade TEXT NOT NULL, created REAL NOT NULL)"


class GradeCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / "grades.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Grade | None:
        with self._lock:
            row = self._db.execute("SELECT grade FROM grades WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Grade.model_validate_json(row[0])

    def put(self, key: str, grade: Grade) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO grades (key, grade, created) VALUES (?, ?, julianday('now'))",
                (key, grade.model_dump_json()),
            )

    def close(self) -> None:
        self._db.close()
