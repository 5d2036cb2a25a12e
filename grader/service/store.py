"""The service's database: tokens, sessions, grades (one per answer, batch rows included), batches and
reviews, through SQLAlchemy 2.0. A SQLite file by default; PostgreSQL by URL for a team's deployment.

Everything the service keeps is here, so a killed server loses nothing: a batch's rows are stored
`pending` before it is acknowledged, each outcome is committed the moment it is graded, and a restarted
server grades the rows still pending. Tokens are stored as SHA-256 hashes (a token is 32 random bytes:
no salt or slow hash is needed against guessing), session cookies likewise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine as SQLEngine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import Subquery

from grader.errors import DatabaseError, GraderError, UsageError
from grader.grading.contract import Grade, GradeFailure, Outcome, Reviewed, Tier

if TYPE_CHECKING:
    from grader.calibration.data import Pair
    from grader.calibration.report import CalibrationReport
    from grader.grading.reviews import ReviewBank
    from grader.rubric import Rubric

TOKEN_PREFIX = "grd_"
SESSION_DAYS = 7


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


def _now() -> datetime:
    return datetime.now(UTC)


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # the reviewer the token speaks for
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class TokenRoleRow(Base):
    """A token that is not a reviewer's: `service`, a program's (a hiring system's), which grades, reads and
    erases but never reviews. A token without a row here is a reviewer's (every token made before roles)."""

    __tablename__ = "token_roles"

    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


#: The roles a token can have: a person who reviews, or a program that only grades and reads.
ROLES = ("reviewer", "service")


class SessionRow(Base):
    __tablename__ = "sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BatchRow(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    total: Mapped[int] = mapped_column(Integer)


class GradeRow(Base):
    """One answer and what grading it ended in: `pending` (a batch row not graded yet), `graded` or
    `failed`. `outcome` is the Grade's or the GradeFailure's JSON."""

    __tablename__ = "grades"
    __table_args__ = (UniqueConstraint("batch_id", "seq"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    question_id: Mapped[str] = mapped_column(String(200), index=True)
    answer: Mapped[str] = mapped_column(Text)
    candidate: Mapped[str | None] = mapped_column(String(200), index=True, default=None)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True, default=None)
    seq: Mapped[int | None] = mapped_column(Integer, default=None)  # order within its batch
    status: Mapped[str] = mapped_column(String(16), index=True)
    tier: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    graded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    def result(self) -> Outcome | None:
        if self.outcome is None:
            return None
        if self.status == "graded":
            return Grade.model_validate(self.outcome)
        return GradeFailure.model_validate(self.outcome)


class ReviewRow(Base):
    """A person's grade of a stored grade: their tier, the points they ticked, the flags they saw."""

    __tablename__ = "reviews"
    # Ids never reused, even after an erasure deleted the newest: they are the review feed's cursor.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grade_id: Mapped[str] = mapped_column(ForeignKey("grades.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(16))
    covered: Mapped[list[str] | None] = mapped_column(default=None)  # None: the reviewer kept the model's
    red_flags: Mapped[list[str] | None] = mapped_column(default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class KeyRow(Base):
    """An `Idempotency-Key` a caller sent: what it names (a grade or a batch) and the request it came with,
    hashed, so the same key with another request is refused rather than answered with the first one's."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(200), primary_key=True)  # keys are each caller's own
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "grade" or "batch"
    target: Mapped[str] = mapped_column(String(200))  # the grade's or the batch's id
    request: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request it came with
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# What every API call runs, built once: building a statement costs more than SQLite takes to run it, and the
# same object (values bound, not baked in) also hits SQLAlchemy's compiled-SQL cache (issue 15).
_LIVE_TOKEN = (
    select(TokenRow.id, TokenRow.name, TokenRoleRow.role)
    .outerjoin(TokenRoleRow, TokenRoleRow.token_id == TokenRow.id)
    .where(TokenRow.digest == bindparam("digest"), TokenRow.revoked_at.is_(None))
)
_GRADE_STORED = select(GradeRow.id).where(GradeRow.id == bindparam("grade_id"))
_INSERT_GRADE = insert(GradeRow)
_SET_OUTCOME = update(GradeRow).where(GradeRow.id == bindparam("grade_id"))


class _DriverQuery:
    """A SELECT compiled once for the database's driver, and run on a pooled connection's own cursor: for the
    two queries every API call runs, whose columns are plain strings and numbers, SQLAlchemy's execution
    and result machinery took 0.025 of the 0.04 ms each cost on SQLite (issue 15)."""

    def __init__(self, statement: ClauseElement, engine: SQLEngine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self.order = compiled.positiontup  # the parameters' order for a driver that takes them by position

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        return tuple(values[name] for name in self.order) if self.order is not None else values


@dataclass(frozen=True)
class NewGrade:
    """A graded answer to store (`Store.add_grades`)."""

    id: str
    question_id: str
    answer: str
    candidate: str | None
    outcome: Outcome
    by: str

    def values(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question_id": self.question_id,
            "answer": self.answer,
            "candidate": self.candidate,
            "batch_id": None,
            "seq": None,
            "created_by": self.by,
            "created_at": _now(),
            **_outcome_values(self.outcome),
        }


@dataclass(frozen=True)
class NewKey:
    """An `Idempotency-Key` header's value and the hash of the request it came with."""

    key: str
    request: str

    @classmethod
    def of(cls, key: str, request: Any) -> NewKey:
        canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return cls(key, hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id and the reviewer name it was created for."""

    token_id: int
    name: str
    role: str = "reviewer"

    @property
    def may_review(self) -> bool:
        """Whether it may review (a person's token), not only grade and read (a program's)."""
        return self.role == "reviewer"


@dataclass(frozen=True)
class ReviewedGrade:
    """A stored grade and a review of it, joined: what calibration and learning read."""

    review_id: int
    grade_id: str
    question_id: str
    answer: str
    candidate: str | None
    reviewer: str
    tier: Tier
    covered: tuple[str, ...]
    red_flags: tuple[str, ...]
    model: Outcome | None

    def as_reviewed(self) -> Reviewed:
        return Reviewed(self.grade_id, self.answer, self.tier, self.covered, self.red_flags)


@dataclass(frozen=True)
class Erased:
    """What `Store.erase` deleted: grades (each with its answer) and reviews."""

    grades: int
    reviews: int
    answers: list[str]


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL from `--db`: a URL as it is (postgresql://..., sqlite:///...), else a file path."""
    text = str(db)
    if "://" in text:
        if text.startswith("postgresql://"):  # the psycopg 3 driver, not psycopg2
            text = "postgresql+psycopg://" + text[len("postgresql://") :]
        return text
    return f"sqlite:///{Path(text).expanduser()}"


class Store:
    """The database, opened (and its tables created) once per process."""

    def __init__(self, db: str | Path, *, create: bool = True) -> None:
        """Open the database at `db`; `create=False` (reading reviews, listing tokens) refuses a SQLite file
        that does not exist instead of making an empty one."""
        url = database_url(db)
        self.url = url
        self.label = url.split("@")[-1] if "@" in url else url  # never print a password
        try:
            if url.startswith("sqlite:///"):
                path = Path(url[len("sqlite:///") :])
                if not path.exists() and not create:
                    raise DatabaseError(f"no database at {path}", hint="give the file `grader serve --db` writes")
                if path.is_dir():
                    raise DatabaseError(f"{path}: is a folder, not a database file")
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch(mode=0o600)  # it holds candidates' answers
                self.engine: SQLEngine = create_engine(url, connect_args={"timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            Base.metadata.create_all(self.engine)
            if self.engine.dialect.name == "sqlite":
                _never_reuse_review_ids(self.engine)
        except (ArgumentError, OperationalError, OSError) as exc:
            raise DatabaseError(f"cannot open the database {self.label}: {_reason(exc)}") from None
        except Exception as exc:  # a driver's own error (psycopg), a file that is not a database
            if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
                raise
            raise DatabaseError(f"cannot open the database {self.label}: {_reason(exc)}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._live_token = _DriverQuery(_LIVE_TOKEN, self.engine)
        self._grade_stored = _DriverQuery(_GRADE_STORED, self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self.sessions()

    def _first(self, query: _DriverQuery, **params: Any) -> tuple[Any, ...] | None:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(query.sql, query.parameters(params))
                row: tuple[Any, ...] | None = cursor.fetchone()
                return row
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool

    # --- tokens and sessions -------------------------------------------------------------------------

    def create_token(self, name: str, role: str = "reviewer") -> str:
        """A new token for `name`; only its hash is stored, so this is the one time it can be read."""
        name = name.strip()
        if not name:
            raise UsageError("a token needs a non-empty NAME (the reviewer it speaks for)")
        if role not in ROLES:
            raise UsageError(f"no token role {role!r}", hint=f"one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.session() as s, s.begin():
            row = TokenRow(name=name, digest=_digest(token))
            s.add(row)
            if role != "reviewer":
                s.flush()
                s.add(TokenRoleRow(token_id=row.id, role=role))
        return token

    def roles(self) -> dict[int, str]:
        """Each token's role that is not `reviewer`, by token id."""
        with self.session() as s:
            return {int(i): str(r) for i, r in s.execute(select(TokenRoleRow.token_id, TokenRoleRow.role))}

    def grades_outside(self, rubric: Rubric) -> dict[str, int]:
        """The stored grades of questions `rubric` does not have, counted by question id: a server started
        with another rubric than the one its grades were made by."""
        with self.session() as s:
            return _outside(s, [q.id for q in rubric.questions])

    def tokens(self) -> list[TokenRow]:
        with self.session() as s:
            return list(s.scalars(select(TokenRow).order_by(TokenRow.id)))

    def revoke(self, ref: str) -> int:
        """Revoke the live tokens named `ref` (or the token numbered `ref`); how many were revoked."""
        with self.session() as s, s.begin():
            match = TokenRow.id == int(ref) if ref.isdigit() else TokenRow.name == ref
            found = s.execute(update(TokenRow).where(match, TokenRow.revoked_at.is_(None)).values(revoked_at=_now()))
        return int(getattr(found, "rowcount", 0))

    def authenticate(self, token: str) -> Principal | None:
        # Every API call asks this: two columns through the driver, not an entity through an ORM session
        # (0.6 ms on SQLite) nor SQLAlchemy's execution (0.04 ms). Never cached: a revoked token fails at once.
        row = self._first(self._live_token, digest=_digest(token))
        return Principal(row[0], row[1], row[2] or "reviewer") if row is not None else None

    def open_session(self, principal: Principal) -> str:
        cookie = secrets.token_urlsafe(32)
        with self.session() as s, s.begin():
            s.add(
                SessionRow(
                    digest=_digest(cookie),
                    token_id=principal.token_id,
                    expires_at=_now() + timedelta(days=SESSION_DAYS),
                )
            )
        return cookie

    def session_principal(self, cookie: str) -> Principal | None:
        """The caller a session cookie stands for; None when it is unknown, expired or its token revoked."""
        with self.session() as s:
            row = s.execute(
                select(TokenRow.id, TokenRow.name, SessionRow.expires_at, TokenRoleRow.role)
                .join(SessionRow, SessionRow.token_id == TokenRow.id)
                .outerjoin(TokenRoleRow, TokenRoleRow.token_id == TokenRow.id)
                .where(SessionRow.digest == _digest(cookie), TokenRow.revoked_at.is_(None))
            ).first()
        if row is None or aware(row.expires_at) < _now():
            return None
        return Principal(row.id, row.name, row.role or "reviewer")

    def close_session(self, cookie: str) -> None:
        with self.session() as s, s.begin():
            row = s.get(SessionRow, _digest(cookie))
            if row is not None:
                s.delete(row)

    # --- grades and batches --------------------------------------------------------------------------

    def add_grade(
        self, grade_id: str, question_id: str, answer: str, candidate: str | None, outcome: Outcome, by: str
    ) -> GradeRow | None:
        """Store one graded answer; None once it is stored. A grade id already stored for the same question
        and answer is the same request again: the stored row is returned (and nothing stored). Another
        answer under that id is a `Conflict`."""
        return self._add_one(NewGrade(grade_id, question_id, answer, candidate, outcome, by))

    def add_grades(self, grades: Sequence[NewGrade]) -> list[GradeRow | Exception | None]:
        """Store graded answers in one transaction (the API's requests that finished grading together); for
        each, what `add_grade` returns, or what it raises (a `Conflict`). When an id is taken, each is stored
        on its own instead, in order."""
        try:
            # A plain INSERT over a pooled connection, not the ORM's unit of work, and no ORM row built
            # for the caller (who has the outcome): once per API grade (issue 15).
            with self.engine.begin() as connection:
                connection.execute(_INSERT_GRADE, [g.values() for g in grades])
        except IntegrityError:
            results: list[GradeRow | Exception | None] = []
            for grade in grades:
                try:
                    results.append(self._add_one(grade))
                except Exception as exc:  # this request's error, not the others'
                    results.append(exc)
            return results
        return [None] * len(grades)

    def _add_one(self, grade: NewGrade) -> GradeRow | None:
        try:
            with self.engine.begin() as connection:
                connection.execute(_INSERT_GRADE, grade.values())
        except IntegrityError:
            existing = self.grade(grade.id)
            if existing is None:
                raise
            if differs := differences(existing, grade.question_id, grade.answer, grade.candidate):
                raise conflict(grade.id, differs) from None
            return existing
        return None

    def existing(self, grade_ids: Iterable[str]) -> dict[str, GradeRow]:
        ids = list(grade_ids)
        found: dict[str, GradeRow] = {}
        with self.session() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.update({r.id: r for r in s.scalars(select(GradeRow).where(GradeRow.id.in_(chunk)))})
        return found

    def add_batch(self, batch_id: str, rows: list[dict[str, Any]], by: str, key: NewKey | None = None) -> None:
        """Store a batch and its rows (`id`, `question_id`, `answer`, `candidate`), all pending, in one
        transaction: once this returns, the batch survives a restart. With `key`, the caller's idempotency key
        is stored in the same transaction (an `IntegrityError` if it was taken meanwhile)."""
        with self.session() as s, s.begin():
            s.add(BatchRow(id=batch_id, created_by=by, total=len(rows)))
            if key is not None:
                s.add(KeyRow(caller=by, key=key.key, kind="batch", target=batch_id, request=key.request))
            s.flush()
            s.add_all(
                GradeRow(
                    id=r["id"],
                    question_id=r["question_id"],
                    answer=r["answer"],
                    candidate=r.get("candidate"),
                    batch_id=batch_id,
                    seq=i,
                    status="pending",
                    created_by=by,
                )
                for i, r in enumerate(rows)
            )

    # --- idempotency keys ---------------------------------------------------------------------------------

    def idempotency_key(self, caller: str, key: str) -> KeyRow | None:
        with self.session() as s:
            return s.get(KeyRow, (caller, key))

    def claim_key(self, caller: str, key: NewKey, kind: str, target: str) -> KeyRow:
        """The caller's key, stored for `target` if it was new; else as it was stored (by an earlier request,
        or one sent at the same time)."""
        try:
            with self.session() as s, s.begin():
                s.add(KeyRow(caller=caller, key=key.key, kind=kind, target=target, request=key.request))
        except IntegrityError:
            stored = self.idempotency_key(caller, key.key)
            if stored is None:
                raise
            return stored
        return KeyRow(caller=caller, key=key.key, kind=kind, target=target, request=key.request)

    def batch(self, batch_id: str) -> BatchRow | None:
        with self.session() as s:
            return s.get(BatchRow, batch_id)

    def batch_counts(self, batch_id: str) -> dict[str, int]:
        with self.session() as s:
            counts = s.execute(
                select(GradeRow.status, func.count()).where(GradeRow.batch_id == batch_id).group_by(GradeRow.status)
            ).all()
        return {status: int(n) for status, n in counts}

    def batch_rows(self, batch_id: str, *, after: int = -1, limit: int = 1000) -> list[GradeRow]:
        """A batch's rows in order, from position `after + 1` on (the results endpoint pages through)."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(GradeRow)
                    .where(GradeRow.batch_id == batch_id, GradeRow.seq > after)
                    .order_by(GradeRow.seq)
                    .limit(limit)
                )
            )

    def pending(self, *, limit: int = 1000) -> list[GradeRow]:
        """Rows still to grade, oldest batch first (what a restarted server picks up)."""
        query = (
            select(GradeRow)
            .join(BatchRow, BatchRow.id == GradeRow.batch_id)
            .where(GradeRow.status == "pending")
            .order_by(BatchRow.created_at, BatchRow.id, GradeRow.seq)
        )
        with self.session() as s:
            return list(s.scalars(query.limit(limit)))

    def set_outcome(self, grade_id: str, outcome: Outcome) -> None:
        with self.session() as s, s.begin():
            row = s.get(GradeRow, grade_id)
            if row is not None:
                _set_outcome(row, outcome)

    def set_outcomes(self, outcomes: list[tuple[str, Outcome]]) -> None:
        """Commit many batch outcomes in one transaction."""
        if not outcomes:
            return
        # One executemany over a connection: an ORM UPDATE per row cost 0.9 ms a row, this 0.05 ms.
        with self.engine.begin() as connection:
            connection.execute(_SET_OUTCOME, [{"grade_id": i, **_outcome_values(o)} for i, o in outcomes])

    def grade(self, grade_id: str) -> GradeRow | None:
        if self._first(self._grade_stored, grade_id=grade_id) is None:
            return None  # POST /v1/grades asks this of every new id: no ORM session for a miss
        with self.session() as s:
            return s.get(GradeRow, grade_id)

    def queue(
        self,
        *,
        questions: Sequence[str],
        question: str | None = None,
        candidate: str | None = None,
        tier: str | None = None,
        reviewed: bool | None = False,
        after: str | None = None,
        before: str | None = None,
        limit: int = 200,
    ) -> QueuePage:
        """`limit` graded answers of the rubric's `questions` in the queue's order: the first, those after the grade
        `after`, or those before the grade `before` (the first page when fewer are left before it). Paged by the
        grades' place in the order, not by an offset: reviewing a page does not make the next one skip grades."""
        counts = select(ReviewRow.grade_id, func.count().label("n")).group_by(ReviewRow.grade_id).subquery("counts")
        n = func.coalesce(counts.c.n, 0)
        where: list[ColumnElement[bool]] = [GradeRow.status == "graded"]
        if question:
            where.append(GradeRow.question_id == question)
        if candidate:
            where.append(GradeRow.candidate == candidate)
        if tier:
            where.append(GradeRow.tier == tier)
        if reviewed is False:
            where.append(n == 0)
        elif reviewed is True:
            where.append(n > 0)
        known = GradeRow.question_id.in_(list(questions))
        listed = select(GradeRow, n).outerjoin(counts, counts.c.grade_id == GradeRow.id).where(*where, known)
        first = listed.order_by(*_QUEUE_ORDER).limit(limit)

        def count(s: Session, *more: ColumnElement[bool]) -> int:
            query = select(func.count()).select_from(GradeRow).outerjoin(counts, counts.c.grade_id == GradeRow.id)
            return int(s.scalar(query.where(*where, known, *more)) or 0)

        with self.session() as s:
            key = None
            if after or before:
                row = s.get(GradeRow, after or before)
                if row is None:
                    raise UsageError(f"no grade {after or before!r} to page from", hint="start from the first page")
                key = _key(row)
            if key is None:
                rows = s.execute(first).all()
            elif after:
                rows = s.execute(first.where(_beside(key, later=True))).all()
            else:
                earlier = listed.where(_beside(key, later=False)).order_by(*_QUEUE_ORDER_REVERSED).limit(limit)
                rows = s.execute(earlier).all()[::-1]
                if len(rows) < limit:  # grades were reviewed since: the first page, full
                    rows = s.execute(first).all()
            total = count(s)
            start = count(s, _beside(_key(rows[0][0]), later=False)) if rows else total
            retired = _outside(s, questions, *where, counts=counts)
        return QueuePage([(r, int(k)) for r, k in rows], total, start, retired)

    def latest_reviews(self, grade_ids: Sequence[str]) -> dict[str, list[ReviewRow]]:
        """Each reviewer's latest review of each of these grades, the newest first: what the review page shows of
        a reviewed grade (the first is what its form starts from)."""
        latest = (
            select(func.max(ReviewRow.id))
            .where(ReviewRow.grade_id.in_(list(grade_ids)))
            .group_by(ReviewRow.grade_id, ReviewRow.reviewer)
        )
        found: dict[str, list[ReviewRow]] = {}
        with self.session() as s:
            for review in s.scalars(select(ReviewRow).where(ReviewRow.id.in_(latest)).order_by(ReviewRow.id.desc())):
                found.setdefault(review.grade_id, []).append(review)
        return found

    def overview(self) -> dict[str, Any]:
        with self.session() as s:
            tiers = dict(
                s.execute(
                    select(GradeRow.tier, func.count()).where(GradeRow.status == "graded").group_by(GradeRow.tier)
                ).all()
            )
            statuses = dict(s.execute(select(GradeRow.status, func.count()).group_by(GradeRow.status)).all())
            reviewed = s.scalar(select(func.count(func.distinct(ReviewRow.grade_id)))) or 0
            flagged = (
                s.scalar(
                    select(func.count())
                    .select_from(GradeRow)
                    .where(
                        GradeRow.status == "graded",
                        GradeRow.needs_review.is_(True),
                        ~GradeRow.id.in_(select(ReviewRow.grade_id)),
                    )
                )
                or 0
            )
        graded = int(statuses.get("graded", 0))
        return {
            "tiers": {t.value: int(tiers.get(t.value, 0)) for t in Tier},
            "graded": graded,
            "failed": int(statuses.get("failed", 0)),
            "pending": int(statuses.get("pending", 0)),
            "reviewed": int(reviewed),
            "backlog": graded - int(reviewed),
            "backlog_needs_review": int(flagged),
        }

    # --- reviews -------------------------------------------------------------------------------------

    def add_review(
        self,
        grade_id: str,
        reviewer: str,
        tier: Tier,
        covered: list[str] | None,
        red_flags: list[str] | None,
        note: str | None,
    ) -> ReviewRow:
        row = ReviewRow(
            grade_id=grade_id, reviewer=reviewer, tier=tier.value, covered=covered, red_flags=red_flags, note=note
        )
        with self.session() as s, s.begin():
            s.add(row)
        return row

    def grade_ids_of(self, candidate: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(GradeRow.id).where(GradeRow.candidate == candidate).order_by(GradeRow.id)))

    def erase(self, grade_ids: Collection[str]) -> Erased:
        """Delete these grades, their answers and reviews, and the idempotency keys that name them, in one
        transaction. A batch keeps its other rows (its total counts them); a batch left with none goes, and
        its key with it."""
        ids = sorted(set(grade_ids))
        answers: list[str] = []
        reviews = 0
        with self.session() as s, s.begin():
            batches: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for answer, batch_id in s.execute(
                    select(GradeRow.answer, GradeRow.batch_id).where(GradeRow.id.in_(chunk))
                ):
                    answers.append(answer)
                    if batch_id is not None:
                        batches.add(batch_id)
                reviews += _count(s.execute(delete(ReviewRow).where(ReviewRow.grade_id.in_(chunk))))
                s.execute(delete(KeyRow).where(KeyRow.kind == "grade", KeyRow.target.in_(chunk)))
                s.execute(delete(GradeRow).where(GradeRow.id.in_(chunk)))
            for batch_id in sorted(batches):
                left = int(
                    s.scalar(select(func.count()).select_from(GradeRow).where(GradeRow.batch_id == batch_id)) or 0
                )
                if left:
                    s.execute(update(BatchRow).where(BatchRow.id == batch_id).values(total=left))
                else:
                    s.execute(delete(KeyRow).where(KeyRow.kind == "batch", KeyRow.target == batch_id))
                    s.execute(delete(BatchRow).where(BatchRow.id == batch_id))
        return Erased(grades=len(answers), reviews=reviews, answers=answers)

    def reviews_of(self, grade_id: str) -> list[ReviewRow]:
        with self.session() as s:
            return list(s.scalars(select(ReviewRow).where(ReviewRow.grade_id == grade_id).order_by(ReviewRow.id)))

    def reviews_after(
        self, after: int, limit: int | None, grade_id: str | None = None
    ) -> list[tuple[ReviewRow, GradeRow]]:
        """Reviews with ids above `after` (of one grade, or of every grade), oldest first, each with its grade:
        the feed a hiring system polls to learn of corrections."""
        query = select(ReviewRow, GradeRow).join(GradeRow, GradeRow.id == ReviewRow.grade_id)
        if grade_id is not None:
            query = query.where(ReviewRow.grade_id == grade_id)
        with self.session() as s:
            found = s.execute(query.where(ReviewRow.id > after).order_by(ReviewRow.id).limit(limit)).all()
        return [(review, grade) for review, grade in found]

    def reviewed_grades(self) -> Iterator[ReviewedGrade]:
        """Every reviewer's latest review of each grade, joined with the grade: calibration's interviewer
        grades, and the reviewed answers later grades learn from. A review that keeps the model's points
        (`covered` not given) takes them from the stored grade."""
        latest = (
            select(func.max(ReviewRow.id).label("id"))
            .group_by(ReviewRow.grade_id, ReviewRow.reviewer)
            .subquery("latest")
        )
        query = (
            select(ReviewRow, GradeRow)
            .join(latest, latest.c.id == ReviewRow.id)
            .join(GradeRow, GradeRow.id == ReviewRow.grade_id)
            .order_by(ReviewRow.id)
        )
        with self.session() as s:
            for review, grade in s.execute(query).all():
                model = grade.result()
                yield joined(review, grade, model)

    def outcomes(self) -> Iterator[tuple[str, str | None, str, Tier | None]]:
        """Every graded or failed answer, in the order stored: id, candidate, question id, and the tier
        (None for a failure). What `grader audit` reads."""
        query = (
            select(GradeRow.id, GradeRow.candidate, GradeRow.question_id, GradeRow.tier)
            .where(GradeRow.status.in_(("graded", "failed")))
            .order_by(GradeRow.created_at, GradeRow.batch_id, GradeRow.seq)
        )
        with self.session() as s:
            for gid, candidate, question, tier in s.execute(query):
                yield gid, candidate, question, Tier(tier) if tier else None

    def calibration_pairs(self) -> list[Pair]:
        """Every reviewer's latest review of each grade as an interviewer's grade of that answer, paired
        with the model's grade: what `grader calibrate --db` and the overview page measure."""
        from grader.calibration.data import HumanGrade, Pair, one_spelling, person_key

        reviewed = list(self.reviewed_grades())
        humans = one_spelling(
            [
                HumanGrade(
                    line=r.review_id,
                    interviewer=r.reviewer,
                    question=r.question_id,
                    tier=r.tier,
                    id=r.grade_id,
                    answer=r.answer,
                    candidate=r.candidate,
                )
                for r in reviewed
            ]
        )
        # Tokens named `alice` and `Alice` are one reviewer, as in a CSV: their latest review of a grade counts.
        latest = {(r.grade_id, person_key(r.reviewer)): r.review_id for r in reviewed}  # in review order
        pairs = []
        for r, human in zip(reviewed, humans, strict=True):
            if latest[r.grade_id, person_key(r.reviewer)] != r.review_id:
                continue
            if isinstance(r.model, Grade):
                pairs.append(Pair(human, r.question_id, r.grade_id, "paired", model=r.model, answer=r.answer))
            else:
                failure = r.model if isinstance(r.model, GradeFailure) else None
                pairs.append(Pair(human, r.question_id, r.grade_id, "failed", failure=failure, answer=r.answer))
        return pairs

    def agreement(self, *, resamples: int = 500) -> CalibrationReport | None:
        """The calibration report of the stored reviews against the model's grades; None before any review."""
        from grader.calibration.report import build_report
        from grader.calibration.settings import Settings

        pairs = self.calibration_pairs()
        if not any(p.status == "paired" for p in pairs):
            return None
        return build_report(pairs, settings=Settings(resamples=resamples), human_path=f"reviews in {self.label}")


def differences(row: GradeRow, question_id: str, answer: str, candidate: str | None) -> list[str]:
    """What of a request differs from the row stored under its id: `question`, `answer`, `candidate`. A
    request that leaves the candidate out is the same request; one that names another is not."""
    same = (
        ("question", row.question_id == question_id),
        ("answer", row.answer == answer),
        ("candidate", candidate is None or row.candidate == candidate),
    )
    return [name for name, equal in same if not equal]


def conflict(grade_id: str, differs: list[str]) -> Conflict:
    verb = "differs" if len(differs) == 1 else "differ"
    return Conflict(f"grade id {grade_id!r} is already stored for another answer (its {' and '.join(differs)} {verb})")


def joined(review: ReviewRow, grade: GradeRow, model: Outcome | None) -> ReviewedGrade:
    """A review with the grade it reviews (`model` is that grade's outcome)."""
    covered = review.covered
    flags = review.red_flags
    if isinstance(model, Grade):
        if covered is None:
            covered = [p.id for p in model.covered_points]
        if flags is None:
            flags = list(model.red_flags)
    return ReviewedGrade(
        review_id=review.id,
        grade_id=grade.id,
        question_id=grade.question_id,
        answer=grade.answer,
        candidate=grade.candidate,
        reviewer=review.reviewer,
        tier=Tier(review.tier),
        covered=tuple(covered or ()),
        red_flags=tuple(flags or ()),
        model=model,
    )


class Conflict(GraderError):
    """An id already stored for something else."""


def _outcome_values(outcome: Outcome) -> dict[str, Any]:
    data = json.loads(outcome.model_dump_json())
    if isinstance(outcome, Grade):
        return {
            "status": "graded",
            "tier": outcome.tier.value,
            "needs_review": outcome.needs_review,
            "confidence": outcome.confidence,
            "outcome": data,
            "graded_at": _now(),
        }
    return {
        "status": "failed",
        "tier": None,
        "needs_review": False,
        "confidence": None,
        "outcome": data,
        "graded_at": _now(),
    }


def _set_outcome(row: GradeRow, outcome: Outcome) -> None:
    for name, value in _outcome_values(outcome).items():
        setattr(row, name, value)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def _never_reuse_review_ids(engine: SQLEngine) -> None:
    """A SQLite database made before review ids were AUTOINCREMENT gets the table rebuilt with it (SQLite
    cannot alter a column): without it, a new review takes the id of the newest one erased, and a client
    reading the feed from that id on never sees it. A database this process may not write (a read-only file,
    another process rebuilding it at the same moment) is left to the next one that can."""
    with contextlib.suppress(OperationalError), engine.begin() as connection:
        made = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'reviews'")
        if "AUTOINCREMENT" in (made.scalar() or "").upper():
            return
        connection.exec_driver_sql("ALTER TABLE reviews RENAME TO reviews_before")
        connection.exec_driver_sql("DROP INDEX IF EXISTS ix_reviews_grade_id")
        Base.metadata.tables["reviews"].create(connection)
        connection.exec_driver_sql("INSERT INTO reviews SELECT * FROM reviews_before")
        connection.exec_driver_sql("DROP TABLE reviews_before")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait on the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process (not a power cut)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def review_bank(db: str | Path) -> ReviewBank:
    """The reviewed answers stored in a service database, for `--learn-from DB`."""
    from grader.grading.reviews import ReviewBank

    store = Store(db, create=False)
    try:
        return ReviewBank((r.question_id, r.as_reviewed()) for r in store.reviewed_grades())
    finally:
        store.close()


# --- the review page's queue, a page at a time (grader/service/pages.py) -----------------------------

#: The queue's order, as `Store.queue` has it, with the id last so that no two grades tie.
_QUEUE_ORDER = (
    GradeRow.needs_review.desc(),
    GradeRow.confidence.asc().nulls_first(),
    GradeRow.created_at.asc(),
    GradeRow.id.asc(),
)
_QUEUE_ORDER_REVERSED = (
    GradeRow.needs_review.asc(),
    GradeRow.confidence.desc().nulls_last(),
    GradeRow.created_at.desc(),
    GradeRow.id.desc(),
)


def _outside(
    s: Session, questions: Sequence[str], *where: ColumnElement[bool], counts: Subquery | None = None
) -> dict[str, int]:
    """The grades (matching `where`, which may read the review `counts`) of questions not among `questions`,
    counted by question id: a rubric's retired questions, whose grades no review can be saved for."""
    query = select(GradeRow.question_id, func.count())
    if counts is not None:
        query = query.outerjoin(counts, counts.c.grade_id == GradeRow.id)
    found = s.execute(
        query.where(*where, GradeRow.question_id.not_in(list(questions)))
        .group_by(GradeRow.question_id)
        .order_by(GradeRow.question_id)
    ).all()
    return {q: int(n) for q, n in found if q is not None}


@dataclass(frozen=True)
class QueuePage:
    """A page of the review queue (`queue_page`): its grades, each with its number of reviews; how many grades
    match the filters (`total`) and how many of them come before this page (`start`); and the grades left out
    because their question is no longer in the rubric (no review of them could be saved), by question id."""

    rows: list[tuple[GradeRow, int]]
    total: int
    start: int
    retired: dict[str, int]


def _key(row: GradeRow) -> tuple[bool, float | None, datetime, str]:
    return row.needs_review, row.confidence, row.created_at, row.id


def _beside(key: tuple[bool, float | None, datetime, str], *, later: bool) -> ColumnElement[bool]:
    """The grades after (`later`) or before the grade whose `_key` is `key` in the queue's order: flagged
    first, then those with no confidence, the least confident, the oldest, and by id."""
    flagged, confidence, created, grade_id = key
    if later:
        tie = or_(GradeRow.created_at > created, and_(GradeRow.created_at == created, GradeRow.id > grade_id))
    else:
        tie = or_(GradeRow.created_at < created, and_(GradeRow.created_at == created, GradeRow.id < grade_id))
    same: ColumnElement[bool]
    past: ColumnElement[bool]
    if confidence is None:
        same = GradeRow.confidence.is_(None)
        past = GradeRow.confidence.is_not(None) if later else false()
    else:
        same = GradeRow.confidence == confidence
        if later:
            past = GradeRow.confidence > confidence
        else:
            past = or_(GradeRow.confidence.is_(None), GradeRow.confidence < confidence)
    within = or_(past, and_(same, tie))
    if flagged is later:  # after a flagged grade come the unflagged ones; before an unflagged one, the flagged
        return or_(GradeRow.needs_review.is_(not flagged), and_(GradeRow.needs_review.is_(flagged), within))
    return and_(GradeRow.needs_review.is_(flagged), within)
