"""`grader serve`: the HTTP API hiring systems call, and the pages interviewers review grades on.

One more thin layer over the grading engine: a request becomes a `Job`, the engine grades it (cache,
adaptive limit, review policy, the reviewed answers most like it), and the outcome is stored. The API's
schema is the `Grade` / `GradeFailure` contract itself, so the OpenAPI document and the CLI's JSON agree.

Every call needs a token (`Authorization: Bearer ...`, or the session cookie the login page sets); a
review's reviewer is the token's name, never a field of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError, to_json
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from grader.backends import Backend, BackendOptions, get_backend
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import GraderError, UnknownQuestionError
from grader.grading.cache import GradeCache
from grader.grading.contract import Grade, GradeFailure, Outcome, Tier
from grader.grading.engine import Engine, Graded, Job
from grader.grading.review import check_answer
from grader.grading.reviews import ReviewBank
from grader.rubric import Question, Rubric, load_rubric
from grader.service.store import (
    Conflict,
    GradeRow,
    KeyRow,
    NewGrade,
    NewKey,
    Principal,
    ReviewRow,
    Store,
    aware,
    conflict,
    differences,
    joined,
)
from grader.textfiles import not_text

log = logging.getLogger("grader.service")

SESSION_COOKIE = "grader_session"
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_BATCH_ROWS = 10_000
#: Batch outcomes are committed in groups this often (seconds) or this large: a killed server loses at
#: most this window, and those rows are graded again after the restart (from the grade cache).
FLUSH_SECONDS = 0.05
FLUSH_ROWS = 256

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@\-]+$")]


@dataclass
class Settings:
    """What `grader serve` was started with."""

    db: str | Path
    backend: str = "auto"
    options: BackendOptions = field(default_factory=BackendOptions)
    rubric: Path | None = None
    cache: bool = True
    concurrency: int | None = None
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS
    max_body_bytes: int = MAX_BODY_BYTES
    learn: bool = True  # reviewed grades are shown with later grades of the same question
    backend_instance: Backend | None = None  # tests and embedders pass one they built


# --- the API's bodies: the grade contract plus what the service adds ---------------------------------


class Body(BaseModel):
    """A request body: no field it does not know, and every string in it text that can be stored."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            # JSON can carry what no text file can: a lone surrogate (`"\ud800"`), a NUL (`textfiles.not_text`)
            if isinstance(item, str) and (found := not_text(item)):
                raise PydanticCustomError(
                    "not_text", "contains {what} (not text) at character {at}", {"what": found[0], "at": found[1]}
                )
        return value


def _str_or_int(schema: dict[str, Any]) -> None:
    """The schema of a question reference: what `_question_text` accepts, for OpenAPI's clients."""
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "string"}, {"type": "integer"}]


class GradeIn(Body):
    question: str = Field(description="The rubric question: its id or number.", json_schema_extra=_str_or_int)
    answer: str = Field(description="The candidate's answer (plain text; shown escaped everywhere).")
    id: Id | None = Field(default=None, description="Your id for this answer (default: one is made).")
    candidate: str | None = Field(default=None, max_length=200, description="Who wrote it (blank: nobody named).")

    @field_validator("question", mode="before")
    @classmethod
    def _question_text(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):  # `true` is no question 1
            raise PydanticCustomError(
                "question_type", "Input should be a question's id (a string) or number (an integer)"
            )
        return str(value)

    @field_validator("candidate")
    @classmethod
    def _candidate(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class StoredGrade(Grade):
    """A stored grade: the Grade's fields, with the grade's id and who it is about."""

    id: str
    status: Literal["graded"] = "graded"
    candidate: str | None = None


class StoredFailure(GradeFailure):
    """An answer the model could not grade (the server kept failing, its replies were invalid): stored
    and counted like a grade, never silently dropped."""

    id: str
    status: Literal["failed"] = "failed"
    candidate: str | None = None


class Pending(BaseModel):
    """A batch row not graded yet (`GET /v1/grades/{id}` answers it with 202, and a batch's results list it)."""

    id: str
    status: Literal["pending"] = "pending"
    candidate: str | None = None
    question_id: str
    batch_id: str | None = Field(default=None, description="The batch grading it: its progress says when it is done.")


class BatchIn(Body):
    rows: list[GradeIn] = Field(min_length=1, max_length=MAX_BATCH_ROWS)


class BatchOut(BaseModel):
    id: str
    total: int
    graded: int = 0
    failed: int = 0
    pending: int = 0
    done: bool = False
    results: str = Field(description="Where the rows' outcomes are streamed as JSON lines.")


class ReviewIn(Body):
    grade_id: str = Field(min_length=1, max_length=200)
    tier: Tier
    covered: list[str] | None = Field(
        default=None, description="Key-point ids the answer makes (default: the model's)."
    )
    red_flags: list[str] | None = Field(default=None, description="Red-flag ids it shows (default: the model's).")
    note: str | None = Field(default=None, max_length=4000)
    reviewer: str | None = Field(
        default=None, description="Ignored: a review's reviewer is always the name of the token that sent it."
    )
    seen: int | None = Field(
        default=None,
        ge=0,
        description="The id of the newest review of this grade you were shown (0: none). The answer's `newer` then "
        "lists other reviewers' reviews made since, which this one now follows.",
    )


class NewerReview(BaseModel):
    id: int
    reviewer: str
    tier: Tier


class ReviewOut(BaseModel):
    id: int
    grade_id: str
    reviewer: str
    tier: Tier
    covered: list[str] | None
    red_flags: list[str] | None
    note: str | None
    agrees: bool = Field(description="Whether the reviewer's tier is the model's.")
    created_at: datetime
    newer: list[NewerReview] = Field(
        default_factory=list,
        description="Other reviewers' reviews made after the one given as `seen` (empty without `seen`).",
    )


class ReviewRecord(BaseModel):
    """A stored review, with the grade it reviews: what a hiring system reads to learn of corrections."""

    id: int = Field(description="Reviews are numbered in the order they were saved.")
    grade_id: str
    candidate: str | None
    question_id: str
    reviewer: str
    tier: Tier = Field(description="The reviewer's tier.")
    model_tier: Tier | None = Field(description="The grade's tier, as the model gave it (stored grades never change).")
    agrees: bool = Field(description="Whether the reviewer's tier is the model's.")
    covered: list[str] | None = Field(description="Key-point ids the reviewer ticked (null: kept the model's).")
    red_flags: list[str] | None = Field(description="Red-flag ids the reviewer saw (null: kept the model's).")
    note: str | None
    created_at: datetime


class ReviewFeed(BaseModel):
    reviews: list[ReviewRecord] = Field(description="Reviews with ids above `after`, oldest first.")
    next: int = Field(description="`after` for the next call: the last review's id here (or `after` when none).")


class ErrorOut(BaseModel):
    """Every error's body: one line saying what is wrong (naming the field), and for a 422 each problem."""

    detail: str = Field(description="`rows.3.answer: Field required`; several problems joined by `; `.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="A 422's problems one by one: `loc`, `msg`, `type` (the input is not echoed)."
    )


#: Documented on every API call that reads (FastAPI's own 422 schema is not the body this service sends).
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid token."},
    422: {"model": ErrorOut, "description": "A parameter is invalid: `detail` names it."},
}
#: ...and on every call that sends a body.
ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    413: {"model": ErrorOut, "description": "The body is over `--max-body-bytes`."},
    422: {"model": ErrorOut, "description": "The body is invalid: `detail` names each bad field."},
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, found after its types were checked (an unknown question, an empty
    answer, an id already stored): `loc`, `msg` and `type` as a 422's `errors` give pydantic's problems,
    and the `line` its `detail` shows."""

    loc: tuple[str | int, ...]
    msg: str
    type: str
    line: str

    @classmethod
    def of(cls, loc: tuple[str | int, ...], msg: str, kind: str) -> Problem:
        return cls(loc, msg, kind, ".".join(str(p) for p in loc if p not in ("body", "header")) + f": {msg}")

    @classmethod
    def answer(cls, exc: GraderError, loc: tuple[str | int, ...], where: str) -> Problem:
        """`check_answer`'s error, which names `where` itself: its message without the operator's hint (an API
        client cannot raise the server's limit; the message says what it is)."""
        msg = exc.message.removeprefix(where).removeprefix(":").strip()
        return cls(loc, msg, exc.failure_kind.value, exc.message)

    @classmethod
    def unknown(cls, exc: UnknownQuestionError, loc: tuple[str | int, ...]) -> Problem:
        return cls.of(loc, _unknown(exc), exc.failure_kind.value)

    @property
    def error(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class Rejected(Exception):
    """A 422 of `Problem`s: every one in one answer."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.line for p in problems))
        self.problems = list(problems)


#: The most problems a 422's `detail` spells out (its `errors` has every one).
DETAIL_LINES = 20


def _unprocessable(lines: Sequence[str], errors: Sequence[dict[str, Any]]) -> JSONResponse:
    more = f" (and {len(lines) - DETAIL_LINES} more)" if len(lines) > DETAIL_LINES else ""
    detail = "; ".join(lines[:DETAIL_LINES]) + more
    return JSONResponse({"detail": detail or "invalid request", "errors": list(errors)}, 422)


class RubricInfo(BaseModel):
    name: str
    questions: int
    fingerprint: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    backend: str
    model: str
    rubric: RubricInfo


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


class ErasedOut(BaseModel):
    grades: int = Field(description="Grades erased, each with its answer.")
    reviews: int = Field(description="Reviews of them erased.")
    cached: int = Field(description="Cached grades of their answers erased.")


class QuestionOut(BaseModel):
    id: str
    number: int
    text: str
    key_points: dict[str, str]
    red_flags: dict[str, str]


# --- the running service ------------------------------------------------------------------------------


class Service:
    """What the app holds while it runs: the store, the rubric, the engine and the batch worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.db)
        self.rubric: Rubric = load_rubric(settings.rubric)
        self.health = RubricInfo(
            name=self.rubric.name, questions=len(self.rubric.questions), fingerprint=self.rubric.fingerprint()
        )
        self.backend = settings.backend_instance or get_backend(settings.backend, settings.options)
        self.cache = GradeCache() if settings.cache else None
        self.reviews = ReviewBank(
            (r.question_id, r.as_reviewed()) for r in self.store.reviewed_grades() if settings.learn
        )
        self.engine = Engine(
            self.backend,
            rubric=self.rubric,
            cache=self.cache,
            concurrency=settings.concurrency,
            review_threshold=settings.review_threshold,
            max_answer_chars=settings.max_answer_chars,
            reviews=self.reviews if settings.learn else None,
        )
        self.writer = GradeWriter(self.store)
        self.wake = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None
        #: The ids `POST /v1/grades` is grading now (a failed grade graded again): not to be erased meanwhile,
        #: or its grade would be stored and cached after the erasure.
        self.grading: Counter[str] = Counter()  # requests sent at the same time grade one id twice

    async def start(self) -> None:
        self.worker = asyncio.create_task(self._grade_batches())
        self.wake.set()  # rows left pending by a stopped server are graded first

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        if self.settings.backend_instance is None:
            await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()
        self.store.close()

    def question(self, ref: str) -> Question:
        return self.rubric.find(ref)

    def erase(self, rows: Sequence[GradeRow], who: str) -> ErasedOut:
        """Erase these grades everywhere the service keeps them: the database (answers, reviews, keys), the
        reviewed answers later grades are shown, and the grade cache. A row still grading is refused: its
        grade would be cached after the erasure."""
        if pending := [r for r in rows if r.status == "pending"]:
            raise Conflict(
                f"grade {pending[0].id!r} is a row of batch {pending[0].batch_id}, still grading: erase it when the "
                "batch is done"
            )
        if busy := [r for r in rows if self.grading[r.id]]:
            raise Conflict(f"grade {busy[0].id!r} is being graded again right now: erase it when that is answered")
        ids = {r.id for r in rows}
        # The cache first: should it fail, nothing is erased yet, and the same request can be sent again.
        cached = self.cache.forget(r.answer for r in rows) if self.cache is not None else 0
        erased = self.store.erase(ids)
        self.reviews.remove(ids)
        log.warning("erased %d grade(s) and %d review(s) at the request of %s", erased.grades, erased.reviews, who)
        return ErasedOut(grades=erased.grades, reviews=erased.reviews, cached=cached)

    async def _grade_batches(self) -> None:
        """Grade pending batch rows until there are none, then wait for the next batch."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while rows := self.store.pending(limit=4096):
                try:
                    await self._grade_rows(rows)
                except GraderError as exc:  # a refused key: stop, keep the rows pending, say why
                    log.error("batch grading stopped: %s", exc)
                    break
                except Exception:  # a bug: the rows stay pending for the next start
                    log.exception("batch grading stopped")
                    break

    async def _grade_rows(self, rows: list[GradeRow]) -> None:
        done: list[tuple[str, Outcome]] = []

        def flush() -> None:
            if done:
                self.store.set_outcomes(done)
                done.clear()

        def keep(graded: Graded[str]) -> None:
            done.append((graded.job.tag, graded.outcome))
            if len(done) >= FLUSH_ROWS:
                flush()

        async def flush_often() -> None:
            # On a timer, not on the next outcome: while the model is slow (or stalls) the outcomes already
            # in hand are committed, and the batch's progress shows them.
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                flush()

        flusher = asyncio.create_task(flush_often())
        jobs = (Job(r.question_id, r.answer, tag=r.id, where=f"batch {r.batch_id}, row {r.id}") for r in rows)
        try:
            await self.engine.run(jobs, keep)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            flush()


class GradeWriter:
    """Stores the grades of POST /v1/grades, those whose grading ended in the same turn of the event loop in
    one transaction: under load the commit cost more than the insert (issue 15). A request still answers
    only once its own row is committed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queued: list[tuple[NewGrade, asyncio.Future[GradeRow | None]]] = []

    async def add(self, grade: NewGrade) -> GradeRow | None:
        """What `Store.add_grade` returns, once committed; raises its `Conflict`."""
        future: asyncio.Future[GradeRow | None] = asyncio.get_running_loop().create_future()
        self.queued.append((grade, future))
        if len(self.queued) == 1:  # the first of this turn: commit once the turn's others are queued too
            future.get_loop().call_soon(self._commit)
        return await future

    def _commit(self) -> None:
        queued, self.queued = self.queued, []
        results: Sequence[GradeRow | Exception | None]
        try:
            results = self.store.add_grades([grade for grade, _ in queued])
        except Exception as exc:  # the database failed (nothing was stored): every request of the group says so
            results = [exc] * len(queued)
        for (_, future), result in zip(queued, results, strict=True):
            if future.done():  # the request was cancelled (its client went away); its row is stored all the same
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    """The ASGI app (`grader serve` runs it under uvicorn). `grader serve` builds the `Service` first, so
    a database or backend that cannot be opened is one line and an exit code, not a server log."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal service
        service = service or Service(settings)
        app.state.service = service
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    # Swagger UI and ReDoc served from the installed package (fastapi-offline), not a CDN: `/docs`
    # works on a machine with no internet access.
    app = FastAPIOffline(
        title="grader",
        version="1",
        summary="Grade written interview answers against a rubric; review and correct the grades.",
        lifespan=lifespan,
        # A generated client's method names: `post_grade`, `batch_results`, not `get_grade_v1_grades__grade_id__get`.
        generate_unique_id_function=lambda route: route.name,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(NoStore)

    @app.exception_handler(GraderError)
    async def _grader_error(_request: Request, exc: GraderError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownQuestionError) else 409 if isinstance(exc, Conflict) else 422
        if exc.failure_kind.fatal:
            status = 503  # the backend refuses every request (a bad key): not the caller's fault
        detail = f"question: {_unknown(exc)}" if isinstance(exc, UnknownQuestionError) else str(exc)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line per problem, naming the field: `rows.3.answer: Field required`. The input is
        # not echoed: it can be megabytes, or a NaN that JSON cannot carry back.
        if any(e.get("type") == "json_invalid" for e in exc.errors()) and (refused := _anonymous(request)):
            return refused
        errors = [{"loc": list(e.get("loc", ())), "msg": _msg(e), "type": e.get("type", "")} for e in exc.errors()]
        lines = [_problem(e) for e in exc.errors()]
        if request.method == "POST" and request.url.path == "/v1/batches":
            # The rows whose types were right are checked too, so one answer names every row to fix.
            more = await _batch_problems(request, errors)
            ordered = _by_row([*zip(errors, lines, strict=True), *((p.error, p.line) for p in more)])
            errors, lines = [e for e, _ in ordered], [line for _, line in ordered]
        return _unprocessable(lines, errors)

    @app.exception_handler(Rejected)
    async def _rejected(_request: Request, exc: Rejected) -> JSONResponse:
        return _unprocessable([p.line for p in exc.problems], [p.error for p in exc.problems])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode with a bare 400 ("There was an error parsing the body"):
        # a body that is not UTF-8 is invalid JSON like any other, a 422 naming where.
        if exc.status_code == 400 and request.headers.get("content-type", "").startswith("application/json"):
            if refused := _anonymous(request):
                return refused
            try:
                (await request.body()).decode("utf-8")
            except UnicodeDecodeError as bad:
                msg = f"not UTF-8 text (byte {bad.start} is 0x{bad.object[bad.start]:02x}); JSON is sent as UTF-8"
                error = {"loc": ["body", bad.start], "msg": msg, "type": "utf8_invalid"}
                return JSONResponse({"detail": f"body: {msg}", "errors": [error]}, 422)
        return await http_exception_handler(request, exc)

    from grader.service import pages

    pages.install(app)
    _install_api(app)
    return app


def _unknown(exc: UnknownQuestionError) -> str:
    """An unknown question in the API's words: the closest ids, or where the questions are listed (the
    CLI's hint names a command an API client cannot run)."""
    hint = f"did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else "GET /v1/questions lists them"
    return f"unknown question {exc.ref!r} ({hint})"


def _problem(error: Any) -> str:
    """One validation error as a line: the field's path, then what is wrong with it."""
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "header")]
    kind = error.get("type", "")
    if kind == "json_invalid":  # the loc's number is a character offset, not a field
        reason = (error.get("ctx") or {}).get("error", "")
        return f"body: invalid JSON at character {loc[0] if loc else '?'}" + (f": {reason}" if reason else "")
    if kind == "missing" and not loc:
        return "body: no JSON object (send one, with Content-Type: application/json)"
    if kind == "model_attributes_type" and not loc:
        return "body: expected a JSON object (and Content-Type: application/json)"
    return ".".join(loc) + f": {_msg(error)}"


def _msg(error: Any) -> str:
    """A problem's message; an id's pattern said in words."""
    if error.get("type") == "string_pattern_mismatch" and list(error.get("loc", ()))[-1:] == ["id"]:
        return "an id holds only letters, digits and . _ : @ - (no spaces or slashes)"
    return str(error.get("msg", ""))


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


_bearer = HTTPBearer(auto_error=False, description="A token made by `grader tokens create NAME`.")


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The token or session a request comes with; 401 without one that is valid (and live). The bearer
    scheme is declared to OpenAPI, so /docs has an Authorize button.

    Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, and under load those
    threads fought the event loop for the GIL and for the database's connection pool (issue 15)."""
    principal = _principal(request, credentials.credentials if credentials is not None else None)
    if principal is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return principal


UNAUTHORIZED = "a valid token is required"


def _principal(request: Request, token: str | None) -> Principal | None:
    """Who a bearer token (when one is given) or else the session cookie speaks for; None: nobody valid."""
    store = service_of(request).store
    if token is not None and token.strip():
        return store.authenticate(token.strip())
    if cookie := request.cookies.get(SESSION_COOKIE):
        return store.session_principal(cookie)
    return None


def principal_of(request: Request) -> Principal | None:
    """`_principal` of a request read by hand, where no `caller` dependency ran (the pages, an error handler)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return _principal(request, token if scheme.lower() == "bearer" else None)


def _anonymous(request: Request) -> JSONResponse | None:
    """The 401 of an API call with no valid token whose body could not be read (not JSON, not UTF-8):
    FastAPI decodes a body before it asks for the token, and nothing about a body is told to a stranger."""
    if not request.url.path.startswith("/v1/") or principal_of(request) is not None:
        return None
    return JSONResponse({"detail": UNAUTHORIZED}, 401, headers={"WWW-Authenticate": "Bearer"})


Caller = Annotated[Principal, Depends(caller)]


async def reviewer(who: Caller) -> Principal:
    """A caller who may review: a person's token, not a program's (`--service`). A dependency, so a program's
    review is a 403 whatever its body holds."""
    if not who.may_review:
        raise HTTPException(
            403,
            f"the token of {who.name!r} is a program's (made with --service): a review is a person's grade, "
            "made with a reviewer's token",
        )
    return who


Reviewer = Annotated[Principal, Depends(reviewer)]

#: Printable ASCII, no spaces: what the IETF draft's sf-string allows, at the length Stripe allows.
_KEY = re.compile(r"[!-~]{1,255}")


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Your key for this request (up to 255 printable ASCII characters, no spaces): sent "
            "again with the same body, it returns what the first request made (200) instead of making it "
            "twice; with another body it is a 422. Keys are each token name's own and are kept.",
        ),
    ] = None,
) -> str | None:
    if key is not None and not _KEY.fullmatch(key):
        msg = "must be 1 to 255 printable ASCII characters without spaces (a UUID will do)"
        raise invalid(("header", "Idempotency-Key"), msg, "idempotency_key")
    return key


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


def invalid(loc: Sequence[str | int], msg: str, kind: str) -> RequestValidationError:
    """A 422 found after validation (an id the rubric does not know, a header), in the shape of every 422:
    `detail` naming the field, and `errors` with its `loc`."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": kind}])


def _same_request(stored: KeyRow, key: NewKey, kind: str) -> None:
    """A key sent again must come with the request it was first sent with (the IETF draft's 422)."""
    if stored.kind != kind or stored.request != key.request:
        first = f"{stored.kind} {stored.target}"
        msg = (
            f"Idempotency-Key {key.key!r} was sent before with another request, which made {first}; "
            "a new request needs a new key"
        )
        raise Rejected([Problem(("header", "Idempotency-Key"), msg, "idempotency_key_reused", msg)])


def stored(row: GradeRow) -> StoredGrade | StoredFailure | Pending:
    outcome = row.result()
    if isinstance(outcome, Grade):
        return StoredGrade(id=row.id, candidate=row.candidate, **outcome.model_dump())
    if isinstance(outcome, GradeFailure):
        return StoredFailure(id=row.id, candidate=row.candidate, **outcome.model_dump())
    return Pending(id=row.id, candidate=row.candidate, question_id=row.question_id, batch_id=row.batch_id)


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def _install_api(app: FastAPI) -> None:
    @app.get("/healthz", tags=["service"])
    async def healthz(request: Request) -> Health:
        """200 once the service is ready (no token needed). Says which backend, model and rubric grade (a
        server restarted without its --rubric grades against the packaged one), nothing of the grades."""
        service = service_of(request)
        return Health(backend=service.backend.name, model=service.backend.model, rubric=service.health)

    @app.head("/healthz", tags=["service"])  # its own operation id (the route's name): `healthz_head`
    async def healthz_head(request: Request) -> Health:
        """`GET /healthz` without its body."""
        return await healthz(request)

    @app.get("/v1/questions", tags=["grades"], responses={401: READ_ERRORS[401]})  # no parameter to be invalid
    async def questions(request: Request, _who: Caller) -> list[QuestionOut]:
        """The rubric's questions, with their key points and red flags."""
        return [
            QuestionOut(
                id=q.id,
                number=q.number,
                text=q.text,
                key_points={p.id: p.text for p in q.key_points},
                red_flags={f.id: f.text for f in q.red_flags},
            )
            for q in service_of(request).rubric
        ]

    @app.post(
        "/v1/grades",
        status_code=201,
        tags=["grades"],
        response_model=StoredGrade | StoredFailure,
        responses={
            **ERRORS,
            200: {"model": StoredGrade | StoredFailure, "description": "This id and answer were graded before."},
            409: {"model": ErrorOut, "description": "The id is stored for another answer, or is still grading."},
        },
    )
    async def post_grade(body: GradeIn, request: Request, who: Caller, key: IdempotencyKey) -> Response:
        """Grade one answer now and store the grade (or the failure that stopped it). The same id and answer
        again returns the stored grade; if that was a failure (the model's server was down), it is graded
        again and the new outcome replaces it. An `Idempotency-Key` does the same for a request without an id."""
        service = service_of(request)
        try:
            question = service.question(str(body.question))
        except UnknownQuestionError as exc:
            raise Rejected([Problem.unknown(exc, ("body", "question"))]) from None
        try:
            check_answer(body.answer, max_chars=service.settings.max_answer_chars, where="answer")
        except GraderError as exc:
            raise Rejected([Problem.answer(exc, ("body", "answer"), "answer")]) from None
        grade_id = body.id or _new_id("g_")
        known = body.id  # an id that may be stored already
        if key is not None:
            sent = NewKey.of(key, {"grade": [question.id, body.answer, body.candidate, body.id]})
            claimed = service.store.claim_key(who.name, sent, "grade", grade_id)
            _same_request(claimed, sent, "grade")
            grade_id = known = claimed.target  # an earlier request's id, when it sent this key first
        retry = False
        if known is not None and (old := service.store.grade(known)) is not None:
            if differs := differences(old, question.id, body.answer, body.candidate):
                raise conflict(known, differs)
            if old.status == "pending":
                raise Conflict(f"grade id {known!r} is a row of batch {old.batch_id}, still grading")
            if old.status != "failed":
                return _stored_json(old, status_code=200)  # the same request again: the stored grade
            retry = True  # a failure is no answer: grade it again
        service.grading[grade_id] += 1
        try:
            graded = await service.engine.grade(Job(question, body.answer, tag=grade_id, where="answer"))
            if graded.source == "input" and isinstance(graded.outcome, GradeFailure):
                failure = graded.outcome
                raise Rejected([Problem.of(("body", "answer"), failure.message, failure.kind.value)])
            if retry:
                service.store.set_outcome(grade_id, graded.outcome)
                return _outcome_json(graded.outcome, grade_id, body.candidate, status_code=200)
            new = NewGrade(grade_id, question.id, body.answer, body.candidate, graded.outcome, who.name)
            if (stored_before := await service.writer.add(new)) is not None:
                # The same request, stored meanwhile by another (one sent at the same time): that one created it.
                return _stored_json(stored_before, status_code=200)
            return _outcome_json(graded.outcome, grade_id, body.candidate, status_code=201)
        finally:
            service.grading[grade_id] -= 1
            if not service.grading[grade_id]:
                del service.grading[grade_id]

    @app.get(
        "/v1/grades/{grade_id}",
        tags=["grades"],
        response_model=StoredGrade | StoredFailure,
        responses={
            **READ_ERRORS,
            202: {"model": Pending, "description": "A row of a batch still grading: ask again later."},
            404: {"model": ErrorOut, "description": "No such grade."},
        },
    )
    async def get_grade(grade_id: str, request: Request, _who: Caller) -> StoredGrade | StoredFailure | Response:
        row = service_of(request).store.grade(grade_id)
        if row is None:
            raise HTTPException(404, f"no grade {grade_id!r}")
        item = stored(row)
        if isinstance(item, Pending):  # what the batch's results say of it, and "not yet"
            return JSONResponse(item.model_dump(mode="json"), 202)
        return item

    @app.delete(
        "/v1/grades/{grade_id}",
        tags=["grades"],
        responses={
            **READ_ERRORS,
            404: {"model": ErrorOut, "description": "No such grade."},
            409: {"model": ErrorOut, "description": "The grade's batch is still grading it."},
        },
    )
    async def erase_grade(grade_id: str, request: Request, who: Caller) -> ErasedOut:
        """Erase a grade: its answer, its reviews, and its cached grade (a candidate's request to be forgotten).
        The same id can be graded again afterwards."""
        service = service_of(request)
        row = service.store.grade(grade_id)
        if row is None:
            raise HTTPException(404, f"no grade {grade_id!r}")
        return service.erase([row], who.name)

    @app.delete(
        "/v1/grades",
        tags=["grades"],
        responses={
            **READ_ERRORS,
            404: {"model": ErrorOut, "description": "No grade of that candidate."},
            409: {"model": ErrorOut, "description": "A batch is still grading one of them: nothing was erased."},
        },
    )
    async def erase_candidate(
        request: Request,
        who: Caller,
        candidate: Annotated[str, Query(min_length=1, max_length=200, description="Whose grades to erase.")],
    ) -> ErasedOut:
        """Erase every grade of a candidate, as `DELETE /v1/grades/{id}` erases one."""
        service = service_of(request)
        rows = list(service.store.existing(service.store.grade_ids_of(candidate.strip())).values())
        if not rows:
            raise HTTPException(404, f"no grade of candidate {candidate!r}")
        return service.erase(rows, who.name)

    @app.post(
        "/v1/batches",
        status_code=202,
        tags=["batches"],
        responses={
            **ERRORS,
            200: {"model": BatchOut, "description": "This batch was posted before (the same ids, rows and order)."},
        },
    )
    async def post_batch(
        body: BatchIn, request: Request, response: Response, who: Caller, key: IdempotencyKey
    ) -> BatchOut:
        """Store many answers and grade them in the background; the batch survives a restart. The same batch
        again (every row with its id, as before: say its 202 was lost) returns the stored batch, with 200; so
        does the same body sent again with the same `Idempotency-Key`, ids or not."""
        service = service_of(request)
        rows, sent, problems, seen = _checked_rows(service, list(enumerate(body.rows)))
        new_key = NewKey.of(key, {"batch": sent}) if key is not None else None
        if new_key is not None and not problems and (known := service.store.idempotency_key(who.name, new_key.key)):
            _same_request(known, new_key, "batch")
            response.status_code = 200
            return _batch_out(service, known.target)
        # In the same pass as the rows' own problems: one round trip shows everything to fix.
        taken = service.store.existing(seen)
        if taken and not problems and (before := _posted_before(service.store, rows, taken)) is not None:
            response.status_code = 200
            return _batch_out(service, before)
        if problems or taken:
            raise Rejected(_by_row_problems([*problems, *_taken(taken, seen)]))
        batch_id = _new_id("b_")
        try:
            service.store.add_batch(batch_id, rows, who.name, key=new_key)
        except IntegrityError:  # the same batch (or key), stored meanwhile by a request sent at the same time
            if new_key is not None and (known := service.store.idempotency_key(who.name, new_key.key)):
                _same_request(known, new_key, "batch")
                response.status_code = 200
                return _batch_out(service, known.target)
            taken = service.store.existing(seen)
            if (before := _posted_before(service.store, rows, taken)) is not None:
                response.status_code = 200
                return _batch_out(service, before)
            raise Rejected(_taken(taken, seen)) from None
        service.wake.set()
        response.headers["Location"] = f"/v1/batches/{batch_id}"  # its progress
        return _batch_out(service, batch_id)

    @app.get(
        "/v1/batches/{batch_id}",
        tags=["batches"],
        responses={**READ_ERRORS, 404: {"model": ErrorOut, "description": "No such batch."}},
    )
    async def get_batch(batch_id: str, request: Request, _who: Caller) -> BatchOut:
        service = service_of(request)
        if service.store.batch(batch_id) is None:
            raise HTTPException(404, f"no batch {batch_id!r}")
        return _batch_out(service, batch_id)

    @app.get(
        "/v1/batches/{batch_id}/results",
        tags=["batches"],
        response_class=StreamingResponse,
        responses={
            **READ_ERRORS,
            200: {
                "content": {
                    "application/x-ndjson": {
                        "schema": {"oneOf": [_ref(StoredGrade), _ref(StoredFailure), _ref(Pending)]}
                    }
                },
                "description": "One JSON object per line, in the batch's order: a stored grade, a failure, or a "
                "row still pending.",
            },
            404: {"model": ErrorOut, "description": "No such batch."},
        },
    )
    async def batch_results(batch_id: str, request: Request, _who: Caller) -> StreamingResponse:
        """The batch's rows in order, one JSON object per line: the stored grade (as `POST /v1/grades`
        returns it), the failure, or `{"status": "pending"}` for a row not graded yet."""
        store = service_of(request).store
        if store.batch(batch_id) is None:
            raise HTTPException(404, f"no batch {batch_id!r}")

        def lines() -> Iterator[bytes]:
            after = -1
            while page := store.batch_rows(batch_id, after=after):
                for row in page:
                    data = stored(row).model_dump(mode="json")
                    yield (json.dumps(data, ensure_ascii=False) + "\n").encode()
                after = page[-1].seq if page[-1].seq is not None else after
                if len(page) < 1000:
                    break

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post(
        "/v1/reviews",
        status_code=201,
        tags=["reviews"],
        responses={
            **ERRORS,
            403: {"model": ErrorOut, "description": "A program's token (`--service`): only people review."},
            404: {"model": ErrorOut, "description": "No graded answer with that id."},
            409: {"model": ErrorOut, "description": "The grade's question is not in the rubric the server runs with."},
        },
    )
    async def post_review(body: ReviewIn, request: Request, who: Reviewer) -> ReviewOut:
        """Agree with a grade or correct it. The reviewer is the token's name."""
        service = service_of(request)
        row = service.store.grade(body.grade_id)
        if row is None or row.status != "graded":
            raise HTTPException(404, f"no graded answer {body.grade_id!r} to review")
        try:
            question = service.question(row.question_id)
        except UnknownQuestionError:
            raise Conflict(
                f"grade {row.id!r} answers question {row.question_id!r}, which is not in the rubric this server "
                "runs with: its review could not name its points (serve with a rubric that has it)"
            ) from None
        for name, given, known, what in (
            ("covered", body.covered, question.point_ids, "key point"),
            ("red_flags", body.red_flags, question.flag_ids, "red flag"),
        ):
            unknown = [(i, x) for i, x in enumerate(given or ()) if x not in known]
            if unknown:
                raise RequestValidationError(
                    [
                        {
                            "loc": ("body", name, i),
                            "msg": f"{x!r} is no {what} of question {question.id}",
                            "type": "unknown_id",
                        }
                        for i, x in unknown
                    ]
                )
        if body.seen and body.seen not in {r.id for r in service.store.reviews_of(row.id)}:
            # Another grade's review, or none: `newer` would be wrong, and a conflict go unsaid.
            raise invalid(
                ("body", "seen"),
                f"{body.seen} is no review of grade {row.id!r} (GET /v1/grades/{row.id}/reviews lists them; "
                "0 when you were shown none)",
                "unknown_review",
            )
        covered, flags = (
            list(dict.fromkeys(ids)) if ids is not None else None for ids in (body.covered, body.red_flags)
        )
        review = service.store.add_review(body.grade_id, who.name, body.tier, covered, flags, body.note)
        newer = [
            NewerReview(id=r.id, reviewer=r.reviewer, tier=Tier(r.tier))
            for r in service.store.reviews_of(row.id)
            if body.seen is not None and body.seen < r.id < review.id and r.reviewer != who.name
        ]
        model = row.result()
        if service.settings.learn:
            service.reviews.add(row.question_id, joined(review, row, model).as_reviewed())
        return ReviewOut(
            id=review.id,
            grade_id=row.id,
            reviewer=who.name,
            tier=body.tier,
            covered=covered,
            red_flags=flags,
            note=body.note,
            agrees=isinstance(model, Grade) and model.tier is body.tier,
            created_at=aware(review.created_at),
            newer=newer,
        )

    @app.get("/v1/reviews", tags=["reviews"], responses=READ_ERRORS)
    async def review_feed(
        request: Request,
        _who: Caller,
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="The `next` of your last call (0: from the first).")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ReviewFeed:
        """Every review saved after the one numbered `after`, oldest first: poll it (keeping `next`) to learn
        which grades people have corrected. Stored grades never change; a correction is a review."""
        found = service_of(request).store.reviews_after(after, limit)
        return ReviewFeed(reviews=[_record(r, g) for r, g in found], next=found[-1][0].id if found else after)

    @app.get(
        "/v1/grades/{grade_id}/reviews",
        tags=["reviews"],
        responses={**READ_ERRORS, 404: {"model": ErrorOut, "description": "No such grade."}},
    )
    async def grade_reviews(grade_id: str, request: Request, _who: Caller) -> list[ReviewRecord]:
        """A grade's reviews, oldest first (the last one's id is the `seen` of a review made after reading them)."""
        store = service_of(request).store
        if store.grade(grade_id) is None:
            raise HTTPException(404, f"no grade {grade_id!r}")
        return [_record(r, g) for r, g in store.reviews_after(0, None, grade_id)]

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: Annotated[str, Form()]) -> Response:
        service = service_of(request)
        principal = service.store.authenticate(token.strip())
        if principal is None or not principal.may_review:
            from grader.service.pages import login_page

            error = (
                "That token is not valid (or was revoked)."
                if principal is None
                else "That token is a program's (made with --service): the review pages are for people's tokens."
            )
            return login_page(request, error=error, status_code=401 if principal is None else 403)
        response = RedirectResponse("/review", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            service.store.open_session(principal),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=7 * 24 * 3600,
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if cookie := request.cookies.get(SESSION_COOKIE):
            service_of(request).store.close_session(cookie)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response


def _outcome_json(outcome: Outcome, grade_id: str, candidate: str | None, *, status_code: int) -> Response:
    """The `StoredGrade` (or `StoredFailure`) of an outcome as FastAPI would send it, byte for byte, without
    building one for FastAPI to validate and serialise again: the outcome's JSON with the three fields the
    service adds appended, in the order the subclass declares them (issue 15)."""
    status = "graded" if isinstance(outcome, Grade) else "failed"
    head = outcome.model_dump_json().encode()
    tail = to_json({"id": grade_id, "status": status, "candidate": candidate})
    headers = {"Location": f"/v1/grades/{grade_id}"}  # where it is read again
    return Response(head[:-1] + b"," + tail[1:], status_code, headers, media_type="application/json")


def _stored_json(row: GradeRow, *, status_code: int) -> Response:
    outcome = row.result()
    if outcome is None:
        raise HTTPException(404, f"no grade {row.id!r} yet (its batch is still grading)")
    return _outcome_json(outcome, row.id, row.candidate, status_code=status_code)


def _record(review: ReviewRow, grade: GradeRow) -> ReviewRecord:
    model = grade.result()
    model_tier = model.tier if isinstance(model, Grade) else None
    return ReviewRecord(
        id=review.id,
        grade_id=grade.id,
        candidate=grade.candidate,
        question_id=grade.question_id,
        reviewer=review.reviewer,
        tier=Tier(review.tier),
        model_tier=model_tier,
        agrees=model_tier is not None and model_tier.value == review.tier,
        covered=review.covered,
        red_flags=review.red_flags,
        note=review.note,
        created_at=aware(review.created_at),
    )


def _checked_rows(
    service: Service, items: Sequence[tuple[int, GradeIn]]
) -> tuple[list[dict[str, Any]], list[list[str | None]], list[Problem], dict[str, int]]:
    """A batch's rows (each with its place in the body) checked: the rows to store, the rows as sent (for the
    idempotency key), the problems of the rows, and each id's first place."""
    rows: list[dict[str, Any]] = []
    sent: list[list[str | None]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, item in items:
        try:
            question = service.question(str(item.question))
        except UnknownQuestionError as exc:
            problems.append(Problem.unknown(exc, ("body", "rows", i, "question")))
            continue
        try:
            check_answer(item.answer, max_chars=service.settings.max_answer_chars, where=f"rows.{i}.answer")
        except GraderError as exc:
            problems.append(Problem.answer(exc, ("body", "rows", i, "answer"), f"rows.{i}.answer"))
            continue
        row_id = item.id or _new_id("g_")
        if row_id in seen:
            msg = f"{row_id!r} is used twice in this batch (rows.{seen[row_id]})"
            problems.append(Problem(("body", "rows", i, "id"), msg, "duplicate_id", f"rows.{i}: id {msg}"))
        seen.setdefault(row_id, i)
        rows.append({"id": row_id, "question_id": question.id, "answer": item.answer, "candidate": item.candidate})
        sent.append([question.id, item.answer, item.candidate, item.id])
    return rows, sent, problems, seen


def _taken(taken: Collection[str], seen: dict[str, int]) -> list[Problem]:
    """The rows whose ids are stored already, in the batch's order."""
    ids = sorted(taken, key=seen.__getitem__)
    return [Problem.of(("body", "rows", seen[i], "id"), f"{i!r} is already stored", "id_taken") for i in ids]


def _row_of(loc: Sequence[Any]) -> int:
    return loc[2] if len(loc) > 2 and loc[:2] == ["body", "rows"] and isinstance(loc[2], int) else -1


def _by_row_problems(problems: list[Problem]) -> list[Problem]:
    return [p for _, p in _by_row([(p.error, p) for p in problems])]


def _by_row(found: list[tuple[dict[str, Any], Any]]) -> list[tuple[dict[str, Any], Any]]:
    """Problems in the order of the rows they are of (stable: a row's own in the order found)."""
    return sorted(found, key=lambda pair: _row_of(pair[0]["loc"]))


async def _batch_problems(request: Request, errors: list[dict[str, Any]]) -> list[Problem]:
    """The problems of a batch's rows whose types were right, when other rows' were not (the body parsed):
    what the batch would have said of them, ids already stored included."""
    bad = {_row_of(e["loc"]) for e in errors}
    if -1 in bad:
        return []  # the body itself is wrong (not JSON, no rows...): nothing to go on
    try:
        body = json.loads(await request.body())
        given = body["rows"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return []
    items = []
    for i, raw in enumerate(given if isinstance(given, list) else []):
        if i not in bad:
            try:
                items.append((i, GradeIn.model_validate(raw)))
            except ValueError:
                pass
    service = service_of(request)
    _, _, problems, seen = _checked_rows(service, items)
    return [*problems, *_taken(service.store.existing(seen), seen)]


def _posted_before(store: Store, rows: list[dict[str, Any]], taken: dict[str, GradeRow]) -> str | None:
    """The stored batch these rows are, every one with its id, question, answer and place; else None."""
    batches = {row.batch_id for row in taken.values()}
    if len(taken) != len(rows) or len(batches) != 1 or (batch_id := batches.pop()) is None:
        return None
    stored = store.batch(batch_id)
    if stored is None or stored.total != len(rows):
        return None
    for i, row in enumerate(rows):
        old = taken[row["id"]]
        if old.seq != i or differences(old, row["question_id"], row["answer"], row["candidate"]):
            return None
    return batch_id


def _batch_out(service: Service, batch_id: str) -> BatchOut:
    batch = service.store.batch(batch_id)
    assert batch is not None
    counts = service.store.batch_counts(batch_id)
    pending = counts.get("pending", 0)
    return BatchOut(
        id=batch_id,
        total=batch.total,
        graded=counts.get("graded", 0),
        failed=counts.get("failed", 0),
        pending=pending,
        done=pending == 0,
        results=f"/v1/batches/{batch_id}/results",
    )


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, whether it says its length or streams it."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(self.limit, send)
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class NoStore:
    """`Cache-Control: no-store` on every response that sets no cache policy of its own: pages and API answers
    hold candidates' answers, and a page the browser kept would show them after logging out (Back), or show
    a queue from before its latest reviews."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_no_store(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, send_no_store)


class _TooLarge(HTTPException):
    """A streamed body went over the limit while the route read it. An HTTPException, because FastAPI passes
    those through its body parsing (anything else there becomes a 400 "error parsing the body")."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_detail(limit))


def _too_large_detail(limit: int) -> str:
    return f"request body over the limit of {limit:,} bytes"


async def _too_large(limit: int, send: Any) -> None:
    body = json.dumps({"detail": _too_large_detail(limit)}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
