"""An on-disk cache of the rubric side's sentence vectors (key points, phrasings, references, the contrast
bank), so a new process does not re-embed the same rubric: a cold `grader grade` would otherwise spend
most of its time there. Candidate answers being graded are never stored; reviewed answers (learning from
reviews) are, as they are shown again and again: vectors only, keyed by a hash of the model and the text,
in one SQLite file in the cache directory (0600); a read or write problem only costs the time to embed
again."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence

import numpy as np

from grader.config import optional_cache_dir, private_sqlite

#: Texts embedded between two writes: a cold cache embeds the whole bank (thousands of texts, several
#: seconds), and what a run stopped by Ctrl-C had embedded is kept.
SAVE_EVERY = 512

_SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)"


class VectorCache:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._unavailable = False  # no cache folder can be made (a read-only home): embed without one

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._unavailable:
            folder = optional_cache_dir()
            if folder is None:  # the default folder cannot be made: the vectors are only a speed-up
                self._unavailable = True
                return None
            try:
                # Grading runs in a worker thread (LocalBackend._flush), closing in the event loop's.
                path = folder / "vectors.sqlite"
                private_sqlite(path)
                self._db = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(_SCHEMA)
            except (OSError, sqlite3.Error):
                return None
        return self._db

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\x00{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        """Vectors for `texts`, from the cache where it has them and from `embed` for the rest."""
        with self._lock:
            return self._embed(texts, embed)

    def _embed(self, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        db = self._connect()
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        if db is not None:
            try:
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    rows = db.execute(
                        f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                    ).fetchall()
                    found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
            except sqlite3.Error:
                found = {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        for start in range(0, len(missing), SAVE_EVERY):  # stored as it goes: an interrupted run keeps them
            part = missing[start : start + SAVE_EVERY]
            fresh = embed([texts[i] for i in part])
            for i, vec in zip(part, fresh, strict=True):
                found[keys[i]] = np.asarray(vec, dtype=np.float32)
            if db is not None:
                try:
                    db.executemany(
                        "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                        [(keys[i], found[keys[i]].tobytes()) for i in part],
                    )
                except sqlite3.Error:
                    pass
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([found[k] for k in keys])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
