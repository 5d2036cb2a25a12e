"""The service's pages: log in, the review queue, the overview. Jinja templates shipped in the package
(`grader/service/templates/`), autoescaped: an answer is candidate text and is only ever shown as text.

Each page takes the session cookie the login page sets, or the API's `Authorization: Bearer` header
(for scripts). Without either, the page is the login form, with status 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from grader.grading.contract import TIERS, Grade
from grader.rubric import Question
from grader.service.store import GradeRow, Principal

QUEUE_SIZE = 200


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("grader.service", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page(name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(name).render(**context)
    # The pages run one script of their own and load nothing from anywhere else.
    policy = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data:"
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def login_page(_request: Request, *, error: str | None = None, status_code: int = 401) -> HTMLResponse:
    return page("login.html.jinja", status_code=status_code, error=error)


@dataclass(frozen=True)
class Segment:
    """A piece of the answer: plain text, or the evidence of a covered point (`point` its id)."""

    text: str
    point: str | None = None


def highlight(answer: str, grade: Grade) -> list[Segment]:
    """The answer cut into segments, each covered point's evidence marked where it occurs (the first
    occurrence; an evidence overlapping one already marked is left unmarked)."""
    spans: list[tuple[int, int, str]] = []
    lowered = answer.lower()
    for point in grade.covered_points:
        quote = (point.evidence or "").strip()
        if not quote:
            continue
        start = answer.find(quote)
        if start < 0:
            start = lowered.find(quote.lower())
        if start < 0:
            continue
        end = start + len(quote)
        if all(end <= s or start >= e for s, e, _ in spans):
            spans.append((start, end, point.id))
    out, cursor = [], 0
    for start, end, point_id in sorted(spans):
        if start > cursor:
            out.append(Segment(answer[cursor:start]))
        out.append(Segment(answer[start:end], point_id))
        cursor = end
    if cursor < len(answer):
        out.append(Segment(answer[cursor:]))
    return out


@dataclass(frozen=True)
class Item:
    """One grade on the review page."""

    row: GradeRow
    grade: Grade
    question: Question | None
    segments: list[Segment]
    reviews: int


def install(app: FastAPI) -> None:
    from grader.service.app import SESSION_COOKIE, service_of

    def who(request: Request) -> Principal | None:
        service = service_of(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return service.store.authenticate(token.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return service.store.session_principal(cookie) if cookie else None

    @app.get("/login", include_in_schema=False)
    async def login(request: Request) -> HTMLResponse:
        return login_page(request, status_code=200)

    @app.get("/review", include_in_schema=False)
    async def review(
        request: Request,
        question: str | None = None,
        candidate: str | None = None,
        tier: str | None = None,
        show: str = "unreviewed",
    ) -> HTMLResponse:
        principal = who(request)
        if principal is None:
            return login_page(request)
        service = service_of(request)
        reviewed = {"unreviewed": False, "reviewed": True}.get(show)
        rows = service.store.queue(
            question=question or None,
            candidate=candidate or None,
            tier=tier if tier in TIERS else None,
            reviewed=reviewed,
            limit=QUEUE_SIZE,
        )
        items = []
        for row, count in rows:
            grade = row.result()
            if not isinstance(grade, Grade):
                continue
            try:
                q: Question | None = service.question(row.question_id)
            except Exception:  # a grade of a question no longer in the rubric: shown without its rubric
                q = None
            items.append(Item(row, grade, q, highlight(row.answer, grade), count))
        return page(
            "review.html.jinja",
            user=principal.name,
            items=items,
            tiers=TIERS,
            questions=[(q.id, q.number) for q in service.rubric],
            filters={"question": question or "", "candidate": candidate or "", "tier": tier or "", "show": show},
            limit=QUEUE_SIZE,
        )

    @app.get("/", include_in_schema=False)
    async def overview(request: Request) -> HTMLResponse:
        principal = who(request)
        if principal is None:
            return login_page(request)
        service = service_of(request)
        counts = service.store.overview()
        agreement = service.store.agreement()
        return page("overview.html.jinja", user=principal.name, counts=counts, agreement=agreement, tiers=TIERS)

    @app.get("/static/review.js", include_in_schema=False)
    async def script() -> HTMLResponse:
        text = environment().loader.get_source(environment(), "review.js")[0]  # type: ignore[union-attr]
        return HTMLResponse(text, media_type="text/javascript", headers={"Cache-Control": "no-cache"})
