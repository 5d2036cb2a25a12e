"""The service's pages: log in, the review queue, the overview. Jinja templates shipped in the package
(`grader/service/templates/`), autoescaped: an answer is candidate text and is only ever shown as text,
its Unicode direction controls as visible markers (`shown`).

Each page takes the session cookie the login page sets, or the API's `Authorization: Bearer` header
(for scripts). Without either, the page is the login form, with status 401.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from grader.errors import UnknownQuestionError, UsageError
from grader.grading.contract import TIERS, Grade
from grader.rubric import Question
from grader.service.store import GradeRow, Principal, ReviewRow

QUEUE_SIZE = 200
#: The review page's `show` filter: which grades, by whether anyone has reviewed them.
SHOW = {"unreviewed": False, "reviewed": True, "all": None}

#: The Unicode direction controls (embeddings, overrides, isolates, marks): drawn as they are, one reorders
#: the text after it, so that a candidate could make the reviewer read other words than the model graded.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _marker(match: re.Match[str]) -> str:
    char = match.group()
    return f"⟨U+{ord(char):04X}⟩"


def shown(value: object) -> Markup:
    """User text for a page: escaped, each direction control a visible marker that names it and does nothing."""

    def span(match: re.Match[str]) -> str:
        name = f"U+{ord(match.group()):04X} {unicodedata.name(match.group(), '')}".strip()
        return f'<span class="ctrl" title="{name}">{_marker(match)}</span>'

    return Markup(BIDI_CONTROLS.sub(span, str(escape(value))))


def shown_attr(value: object) -> str:
    """User text for an attribute (a tooltip): each direction control a visible marker; autoescape escapes it."""
    return BIDI_CONTROLS.sub(_marker, str(value))


def when(moment: datetime, *, iso: bool = False) -> str:
    """A stored time in UTC, to the minute, or in full for a `<time datetime>` (SQLite drops the zone: UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat() if iso else moment.strftime("%Y-%m-%d %H:%M UTC")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grader.service", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(shown=shown, shown_attr=shown_attr, when=when, thousands="{:,}".format)
    return env


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
    """A piece of the answer: plain text, or evidence. `items` are the ids of the covered points and red flags
    whose quotes hold it, `flag` whether one of them is a red flag, and `ends` the ids whose quotes end here
    (the page labels a quote at its end)."""

    text: str
    items: tuple[str, ...] = ()
    flag: bool = False
    ends: tuple[str, ...] = ()


def highlight(answer: str, grade: Grade) -> list[Segment]:
    """The answer cut into segments, each red flag's and covered point's evidence marked where it first
    occurs. Quotes may overlap (two points quoting one sentence, a flag's two sentences around another's one):
    each is marked whole, the overlap as both."""
    flags = set(grade.red_flag_evidence)
    quotes = [*grade.red_flag_evidence.items(), *((p.id, p.evidence) for p in grade.covered_points)]
    spans: list[tuple[int, int, str]] = []
    lowered = answer.lower()
    for item_id, evidence in quotes:
        quote = (evidence or "").strip()
        start = answer.find(quote) if quote else -1
        if quote and start < 0:
            start = lowered.find(quote.lower())
        if start >= 0:
            spans.append((start, start + len(quote), item_id))
    cuts = sorted({0, len(answer), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out: list[Segment] = []
    for a, b in itertools.pairwise(cuts):
        items = tuple(i for s, e, i in spans if s <= a and b <= e)
        ends = tuple(i for _, e, i in spans if e == b)
        out.append(Segment(answer[a:b], items, any(i in flags for i in items), ends))
    return out


@dataclass(frozen=True)
class Item:
    """One grade on the review page, with each reviewer's latest review of it (the newest first). Its form
    starts from the newest review, else from the model's grade; Agree saves that again."""

    row: GradeRow
    grade: Grade
    question: Question
    segments: list[Segment]
    reviews: int
    latest: list[ReviewRow] = field(default_factory=list)

    @property
    def tier(self) -> str:
        return self.latest[0].tier if self.latest else self.grade.tier.value

    @property
    def covered(self) -> list[str]:
        if self.latest and self.latest[0].covered is not None:
            return self.latest[0].covered
        return [p.id for p in self.grade.covered_points]

    @property
    def red_flags(self) -> list[str]:
        if self.latest and self.latest[0].red_flags is not None:
            return self.latest[0].red_flags
        return self.grade.red_flags

    @property
    def agree(self) -> dict[str, Any]:
        """What Agree posts: the tier, and the points and flags when a review changed the model's (those still
        in the rubric: a point removed since cannot be reviewed, and the form shows no box for it)."""
        body: dict[str, Any] = {"tier": self.tier}
        if self.latest and self.latest[0].covered is not None:
            body["covered"] = [p for p in self.latest[0].covered if p in self.question.point_ids]
        if self.latest and self.latest[0].red_flags is not None:
            body["red_flags"] = [f for f in self.latest[0].red_flags if f in self.question.flag_ids]
        return body

    @property
    def model(self) -> dict[str, Any]:
        """The model's points and flags, which the page compares a saved review with ("agreed" or not)."""
        return {"covered": [p.id for p in self.grade.covered_points], "red_flags": self.grade.red_flags}

    @property
    def seen(self) -> int | None:
        """The newest review shown: saving tells whether another came since the page was loaded."""
        return max((r.id for r in self.latest), default=None)


def page_link(filters: dict[str, str], **cursor: str) -> str:
    """The review page with these filters (blank ones left out) and a place in the queue."""
    return "/review?" + urlencode({k: v for k, v in {**filters, **cursor}.items() if v})


def install(app: FastAPI) -> None:
    from grader.service.app import principal_of, service_of

    def who(request: Request) -> Principal | None:
        principal = principal_of(request)
        return principal if principal is not None and principal.may_review else None  # the pages are people's

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
        after: str | None = None,
        before: str | None = None,
    ) -> HTMLResponse:
        principal = who(request)
        if principal is None:
            return login_page(request)
        service = service_of(request)
        filters = {"question": question or "", "candidate": candidate or "", "tier": tier or "", "show": show}
        context: dict[str, Any] = {
            "user": principal.name,
            "tiers": TIERS,
            "questions": [(q.id, q.number) for q in service.rubric],
            "filters": filters,
            "limit": QUEUE_SIZE,
            "items": [],
            "total": 0,
            "start": 0,
            "retired": {},
            "next_link": None,
            "previous_link": None,
            "first_link": None,
        }
        # A value the page does not know is a 400 that says so, never a filter silently dropped.
        problems = []
        if show not in SHOW:
            problems.append(f"Show {show!r}: not one of {', '.join(SHOW)}.")
        if tier and tier not in TIERS:
            problems.append(f"Model's tier {tier!r}: not one of {', '.join(TIERS)}.")
        if question:
            try:
                filters["question"] = service.question(question).id
            except UnknownQuestionError as exc:
                guess = f" (did you mean {', '.join(exc.suggestions)}?)" if exc.suggestions else ""
                problems.append(
                    f"Question {question!r} is not in the rubric{guess}: pick one from the list, or give an id"
                    f" or a number from 1 to {max((q.number for q in service.rubric), default=0)}."
                )
        if after and before:
            problems.append("Give `after` or `before`, not both.")
        if not problems:
            try:
                queue = service.store.queue(
                    questions=[q.id for q in service.rubric],
                    question=filters["question"] or None,
                    candidate=candidate or None,
                    tier=tier or None,
                    reviewed=SHOW[show],
                    after=after or None,
                    before=before or None,
                    limit=QUEUE_SIZE,
                )
            except UsageError as exc:
                problems.append(f"{exc}.")
        if problems:
            return page("review.html.jinja", status_code=400, problems=problems, **context)

        reviews = service.store.latest_reviews([row.id for row, _ in queue.rows])
        items = []
        for row, count in queue.rows:
            grade = row.result()
            if isinstance(grade, Grade):  # a graded row always holds one
                segments = highlight(row.answer, grade)
                items.append(
                    Item(row, grade, service.question(row.question_id), segments, count, reviews.get(row.id, []))
                )
        end = queue.start + len(queue.rows)
        context.update(
            items=items,
            total=queue.total,
            start=queue.start,
            retired=queue.retired,
            next_link=page_link(filters, after=queue.rows[-1][0].id) if queue.rows and end < queue.total else None,
            previous_link=(
                page_link(filters, before=queue.rows[0][0].id if queue.rows else after or "")
                if queue.start > 0
                else None
            ),
            first_link=page_link(filters) if queue.start > 0 else None,
        )
        return page("review.html.jinja", problems=[], **context)

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
