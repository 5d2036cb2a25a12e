"""`grader serve` end to end: the real server process on loopback, driven over HTTP.

Auth (tokens, revocation, session cookies, the reviewer of a review), the grade endpoints and their
errors, hostile answers (data in JSON, escaped on the review page), a batch surviving SIGKILL and a
restart, reviews flowing into `grader calibrate --db`, 64 clients at once, and learning from reviews.

Most tests share one server graded by a `LoopbackLLM` (`--backend openai`: starts in a few seconds and
counts model calls); the learning test loads the local backend once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape

from grader.grading.contract import Grade, Tier
from grader.rubric import load_rubric
from grader.service.store import NewGrade, Store
from tests.support.loopback import ANSWER, LoopbackLLM
from tests.support.service import Server

SECRET = "sk-test-service-not-a-key"
MAX_ANSWER_CHARS = 2000
MAX_BODY_BYTES = 64 * 1024
SESSION_COOKIE = "grader_session"
QUESTIONS = load_rubric().questions
Q1 = QUESTIONS[0]
GRADE_FIELDS = set(Grade.model_fields)


def wait_for(ready: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Poll the server's visible state until `ready()`; fail naming `what` if it never gets there."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.02)


def rows_of(db: Path | str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the service's SQLite file directly (another connection, as a second process would)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(sql, params).fetchall()


def llm_env(llm: LoopbackLLM) -> dict[str, str]:
    return {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": SECRET}


def answer_text(n: int | str) -> str:
    return f"Answer {n}: I first look at the logs and recent deployments, reproduce it, then roll back and document it."


def sent_answers(llm: LoopbackLLM) -> list[str]:
    """The candidate answer of every chat request the model was sent, in order."""
    out = []
    for body in llm.requests:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        out.append(ANSWER.search(user).group(1))
    return out


@dataclass
class Api:
    """A running server and the tokens of two reviewers."""

    server: Server
    llm: LoopbackLLM
    alice: str
    bob: str

    @property
    def db(self) -> str:
        return self.server.db

    def url(self, path: str) -> str:
        return self.server.url + path

    def post(self, path: str, body: Any, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = Server.auth(token or self.alice)
        return httpx.post(self.url(path), json=body, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url(path), headers=Server.auth(token or self.alice), timeout=60, **kwargs)

    def wait_batch(self, batch_id: str, seconds: float = 60) -> dict[str, Any]:
        state: dict[str, Any] = {}

        def done() -> bool:
            state.update(self.get(f"/v1/batches/{batch_id}").json())
            return bool(state["done"])

        wait_for(done, seconds=seconds, what=f"batch {batch_id} done")
        return state

    def results(self, batch_id: str) -> list[dict[str, Any]]:
        response = self.get(f"/v1/batches/{batch_id}/results")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.text.splitlines()]


@contextmanager
def running_api(db: Path, llm: LoopbackLLM, cache: Path, *args: str) -> Iterator[Api]:
    with Server(db, backend="openai", env=llm_env(llm), cache_dir=cache, args=args) as server:
        yield Api(server, llm, server.token("alice"), server.token("bob"))


@pytest.fixture(scope="module")
def llm() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as server:
        yield server


@pytest.fixture(scope="module")
def api(llm: LoopbackLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The shared server: graded by the loopback LLM, small limits so that going over them is cheap."""
    tmp = tmp_path_factory.mktemp("api")
    limits = ("--max-answer-chars", str(MAX_ANSWER_CHARS), "--max-body-bytes", str(MAX_BODY_BYTES))
    with running_api(tmp / "api.sqlite", llm, tmp / "cache", *limits, "--concurrency", "64") as api:
        yield api


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def a_grade(api: Api, grade_id: str | None = None, *, question: int | str = 1, **extra: Any) -> dict[str, Any]:
    body = {"question": question, "answer": answer_text(grade_id or uuid.uuid4().hex), **extra}
    if grade_id is not None:
        body["id"] = grade_id
    response = api.post("/v1/grades", body)
    assert response.status_code == 201, response.text
    return response.json()


# --- auth ----------------------------------------------------------------------------------------------


def test_healthz_needs_no_token(api):
    response = httpx.get(api.url("/healthz"))
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["backend"] == "openai"
    packaged = load_rubric()  # which rubric grades: a team's question 1 is not the packaged question 1
    assert response.json()["rubric"] == {"name": packaged.name, "questions": 20, "fingerprint": packaged.fingerprint()}


def test_serve_names_its_rubric_and_warns_of_stored_grades_of_questions_it_lacks(tmp_path, llm):
    """Restarted without --rubric on a team's database, the server graded a rate-limiting answer as the packaged
    question 1 and hid the team's 20 grades from the queue, and its start-up line said nothing of either."""
    from grader.service.store import Store

    db = tmp_path / "team.sqlite"
    store = Store(db)
    theirs = Grade(question_id="rate-limiting-for-a-public", tier="great", justification="j", backend="f", model="m")
    for i in range(3):
        store.add_grade(f"g{i}", "rate-limiting-for-a-public", f"answer {i}", f"c{i}", theirs, by="dana")
    store.close()
    with Server(db, backend="openai", env=llm_env(llm), cache_dir=tmp_path / "cache") as server:
        log = server.log()
    assert (
        "(backend openai, the packaged rubric " in log
        and "(20 questions; --rubric or GRADER_RUBRIC for your own)" in log
    )
    assert (
        f"{db} holds 3 grades of 1 question this rubric lacks (rate-limiting-for-a-public): they are kept, but "
        "not listed for review; started with another --rubric?" in log
    )


BAD_AUTH = [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": "Bearer grd_not-a-token-anyone-was-given"}, id="wrong-token"),
    pytest.param({"Authorization": "Bearer"}, id="scheme-without-token"),
    pytest.param({"Authorization": "Bearer null"}, id="bearer-null"),
    pytest.param({"Authorization": "{token}"}, id="real-token-without-scheme"),
    pytest.param({"Authorization": "Basic {token}"}, id="real-token-basic-scheme"),
    pytest.param({"Authorization": "Bearer {token}x"}, id="real-token-one-char-longer"),
    pytest.param({"Authorization": "Bearer {token} {token}"}, id="real-token-twice"),
    pytest.param({"Cookie": f"{SESSION_COOKIE}=forged-session"}, id="forged-session-cookie"),
    pytest.param({"Cookie": f"{SESSION_COOKIE}={{token}}"}, id="real-token-as-session-cookie"),
]


@pytest.mark.parametrize("headers", BAD_AUTH)
def test_a_missing_wrong_or_malformed_token_is_401_and_stores_nothing(api, headers):
    headers = {k: v.replace("{token}", api.alice) for k, v in headers.items()}
    existing = a_grade(api, uid("auth-target"))
    calls = api.llm.calls
    grade_id, batch_row = uid("unauth"), uid("unauth-row")
    batches_before = rows_of(api.db, "select count(*) from batches")

    attempts = {
        "post grade": httpx.post(
            api.url("/v1/grades"),
            json={"question": 1, "answer": answer_text(grade_id), "id": grade_id},
            headers=headers,
        ),
        "post batch": httpx.post(
            api.url("/v1/batches"),
            json={"rows": [{"question": 1, "answer": answer_text(batch_row), "id": batch_row}]},
            headers=headers,
        ),
        "post review": httpx.post(
            api.url("/v1/reviews"), json={"grade_id": existing["id"], "tier": "great"}, headers=headers
        ),
        "get grade": httpx.get(api.url(f"/v1/grades/{existing['id']}"), headers=headers),
        "get questions": httpx.get(api.url("/v1/questions"), headers=headers),
    }
    for what, response in attempts.items():
        assert response.status_code == 401, (what, response.status_code, response.text)
        assert response.headers["www-authenticate"] == "Bearer", what
        assert existing["justification"] not in response.text, what  # no data leaks with the refusal

    assert api.llm.calls == calls  # nothing was graded
    assert rows_of(api.db, "select id from grades where id in (?, ?)", grade_id, batch_row) == []
    assert rows_of(api.db, "select count(*) from batches") == batches_before
    assert rows_of(api.db, "select count(*) from reviews where grade_id = ?", existing["id"]) == [(0,)]
    assert api.get(f"/v1/grades/{grade_id}").status_code == 404  # and a valid token sees nothing either


def login(api: Api, token: str) -> str:
    """Log in on the form; the session cookie's value."""
    response = httpx.post(api.url("/login"), data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/review"
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().lower() for part in set_cookie.split(";")}
    assert "httponly" in attributes and "samesite=strict" in attributes
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie and token not in set_cookie  # the session is not the token itself
    return cookie


def test_a_revoked_token_is_refused_afterwards_with_its_sessions(api):
    name = uid("mallory")
    token = api.server.token(name)
    graded = a_grade(api, uid("before-revoke"))
    mine = api.post("/v1/grades", {"question": 2, "answer": answer_text(name), "id": uid("by-mallory")}, token)
    assert mine.status_code == 201, mine.text
    cookie = login(api, token)
    with_cookie = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    assert httpx.get(api.url(f"/v1/grades/{graded['id']}"), headers=with_cookie).status_code == 200
    page = httpx.get(api.url("/review"), headers=with_cookie)
    assert page.status_code == 200 and name in page.text

    done = subprocess.run(
        [sys.executable, "-m", "grader", "tokens", "revoke", name, "--db", api.db],
        env=api.server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    calls = api.llm.calls
    by_token = Server.auth(token)
    for headers in (by_token, with_cookie):
        assert httpx.get(api.url(f"/v1/grades/{graded['id']}"), headers=headers).status_code == 401
        review = httpx.post(api.url("/v1/reviews"), json={"grade_id": graded["id"], "tier": "poor"}, headers=headers)
        assert review.status_code == 401
        late = uid("after-revoke")
        post = httpx.post(
            api.url("/v1/grades"), json={"question": 1, "answer": answer_text(late), "id": late}, headers=headers
        )
        assert post.status_code == 401
        assert rows_of(api.db, "select count(*) from grades where id = ?", late) == [(0,)]
    page = httpx.get(api.url("/review"), headers=with_cookie)
    assert page.status_code == 401 and name not in page.text  # the login form, not the queue
    again = httpx.post(api.url("/login"), data={"token": token}, follow_redirects=False)
    assert again.status_code == 401 and SESSION_COOKIE not in again.headers.get("set-cookie", "")
    assert rows_of(api.db, "select count(*) from reviews where grade_id = ?", graded["id"]) == [(0,)]
    assert api.llm.calls == calls
    assert api.get(f"/v1/grades/{graded['id']}").status_code == 200  # other tokens are untouched


def test_the_reviewer_is_the_tokens_name_whatever_the_body_says(api):
    graded = a_grade(api, uid("reviewed"))
    by_alice = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "great", "reviewer": "someone-else"})
    assert by_alice.status_code == 201, by_alice.text
    assert by_alice.json()["reviewer"] == "alice"
    assert by_alice.json()["agrees"] is (graded["tier"] == "great")

    cookie = login(api, api.bob)  # a session speaks for its token's name too
    by_bob = httpx.post(
        api.url("/v1/reviews"),
        json={"grade_id": graded["id"], "tier": graded["tier"], "reviewer": "alice"},
        headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
    )
    assert by_bob.status_code == 201, by_bob.text
    assert by_bob.json()["reviewer"] == "bob" and by_bob.json()["agrees"] is True

    stored = rows_of(api.db, "select reviewer, tier from reviews where grade_id = ? order by id", graded["id"])
    assert stored == [("alice", "great"), ("bob", graded["tier"])]


def test_a_hiring_system_reads_corrections_from_the_review_feed_and_each_grades_reviews(api):
    """Trial P #1: a correction was invisible through the API (stored grades never change, and nothing listed
    reviews), so the hiring system kept the model's tier while later grades learnt the person's."""
    start = api.get("/v1/reviews", params={"after": 0, "limit": 1000})
    assert start.status_code == 200, start.text
    after = start.json()["next"]
    while (more := api.get("/v1/reviews", params={"after": after, "limit": 1000}).json())["reviews"]:
        after = more["next"]  # other tests' reviews: read to the end
    graded = a_grade(api, uid("fed"), candidate="cand-feed")
    other = "great" if graded["tier"] != "great" else "poor"
    first = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": other, "note": "missed the rollback"}, api.bob)
    agree = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": graded["tier"], "seen": first.json()["id"]})
    assert first.status_code == agree.status_code == 201, (first.text, agree.text)

    feed = api.get("/v1/reviews", params={"after": after}).json()
    mine = [r for r in feed["reviews"] if r["grade_id"] == graded["id"]]
    assert [(r["reviewer"], r["tier"], r["agrees"]) for r in mine] == [
        ("bob", other, False),
        ("alice", graded["tier"], True),
    ]
    assert mine[0]["model_tier"] == graded["tier"] and mine[0]["candidate"] == "cand-feed"
    assert mine[0]["question_id"] == graded["question_id"] and mine[0]["note"] == "missed the rollback"
    assert mine[0]["created_at"] == first.json()["created_at"] and mine[0]["created_at"].endswith(("Z", "+00:00"))
    assert feed["next"] == feed["reviews"][-1]["id"] >= agree.json()["id"]
    assert [r["id"] for r in feed["reviews"]] == sorted(r["id"] for r in feed["reviews"])
    huge = api.get("/v1/reviews", params={"after": 2**63})  # past SQLite's integers: a 422, not a 500
    assert huge.status_code == 422 and huge.json()["errors"][0]["loc"] == ["query", "after"]
    later = api.get("/v1/reviews", params={"after": feed["next"]}).json()
    assert later == {"reviews": [], "next": feed["next"]}  # nothing new: the cursor stays
    paged = api.get("/v1/reviews", params={"after": after, "limit": 1}).json()
    assert len(paged["reviews"]) == 1 and paged["next"] == paged["reviews"][0]["id"]

    listed = api.get(f"/v1/grades/{graded['id']}/reviews")
    assert listed.status_code == 200 and listed.json() == mine
    assert api.get(f"/v1/grades/{uid('none')}/reviews").status_code == 404
    assert api.get(f"/v1/grades/{graded['id']}").json() == graded  # the grade itself is as the model gave it


def test_a_programs_token_grades_and_reads_but_never_reviews(api):
    """Trial P #6: the hiring system's token could post reviews, which calibration then counted as a
    reviewer's grades. A token made with --service grades, reads and erases; people review."""
    ats = api.server.token(uid("ats"), "--service")
    graded = api.post("/v1/grades", {"question": 1, "answer": answer_text(uid("ats-answer"))}, ats)
    assert graded.status_code == 201, graded.text
    assert api.get(f"/v1/grades/{graded.json()['id']}", ats).status_code == 200
    assert api.get("/v1/reviews", ats).status_code == 200
    review = api.post("/v1/reviews", {"grade_id": graded.json()["id"], "tier": "great"}, ats)
    assert review.status_code == 403 and "a review is a person's grade" in review.json()["detail"]
    assert api.post("/v1/reviews", {"grade_id": graded.json()["id"], "tier": "superb"}, ats).status_code == 403
    page = httpx.get(api.url("/review"), headers=Server.auth(ats))
    assert page.status_code == 401 and "Log in" in page.text  # the pages are people's: the login form
    assert api.get(f"/v1/grades/{graded.json()['id']}/reviews").json() == []  # nothing saved
    login = httpx.post(api.url("/login"), data={"token": ats}, follow_redirects=False)
    assert login.status_code == 403 and SESSION_COOKIE not in login.headers.get("set-cookie", "")
    assert api.post("/v1/reviews", {"grade_id": graded.json()["id"], "tier": "great"}).status_code == 201  # alice
    listed = subprocess.run(
        [sys.executable, "-m", "grader", "tokens", "list", "--db", api.db, "--format", "json"],
        env=api.server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    roles = {t["name"]: t["role"] for t in json.loads(listed.stdout)}
    assert roles["alice"] == "reviewer" and [r for n, r in roles.items() if n.startswith("ats-")] == ["service"]
    erased = httpx.delete(api.url(f"/v1/grades/{graded.json()['id']}"), headers=Server.auth(ats))
    assert erased.status_code == 200 and erased.json()["reviews"] == 1  # a program may erase (the README says so)


def test_a_database_made_before_review_ids_were_never_reused_is_rebuilt_with_its_reviews(tmp_path):
    """SQLite reuses the id of the newest row deleted unless the table says AUTOINCREMENT, which it cannot
    be altered to: an older database's reviews table is rebuilt with it, its rows and ids kept."""
    path = tmp_path / "old.sqlite"
    store = Store(path)
    store.add_grades(
        [
            NewGrade(
                "g-old",
                Q1.id,
                "I check the logs.",
                None,
                Grade(question_id=Q1.id, tier="poor", justification="j", backend="fake", model="m"),
                "alice",
            )
        ]
    )
    store.add_review("g-old", "alice", Tier.great, None, None, "a note")
    store.close()
    with sqlite3.connect(path) as db:  # as an earlier version made it: no AUTOINCREMENT
        made = db.execute("SELECT sql FROM sqlite_master WHERE name = 'reviews'").fetchone()[0]
        db.executescript(
            "ALTER TABLE reviews RENAME TO r0; DROP INDEX ix_reviews_grade_id;"
            + made.replace(" AUTOINCREMENT", "")
            + "; CREATE INDEX ix_reviews_grade_id ON reviews (grade_id); INSERT INTO reviews SELECT * FROM r0;"
            " DROP TABLE r0;"
        )
    store = Store(path)
    try:
        with sqlite3.connect(path) as db:
            assert "AUTOINCREMENT" in db.execute("SELECT sql FROM sqlite_master WHERE name = 'reviews'").fetchone()[0]
        (kept,) = store.reviews_of("g-old")
        assert (kept.id, kept.reviewer, kept.note) == (1, "alice", "a note")
        store.add_review("g-old", "bob", Tier.poor, None, None, None)
        store.erase(["g-old"])
        store.add_grades(
            [
                NewGrade(
                    "g-new",
                    Q1.id,
                    "Other words.",
                    None,
                    Grade(question_id=Q1.id, tier="poor", justification="j", backend="fake", model="m"),
                    "alice",
                )
            ]
        )
        assert store.add_review("g-new", "alice", Tier.great, None, None, None).id == 3  # not 1 again
    finally:
        store.close()


def test_seen_must_be_a_review_of_the_grade_reviewed(api):
    """Trial P #2: another grade's review id, or none at all, was taken as `seen`, and `newer` then hid a
    conflicting review."""
    graded, elsewhere = a_grade(api, uid("seen")), a_grade(api, uid("seen-other"))
    theirs = api.post("/v1/reviews", {"grade_id": elsewhere["id"], "tier": "poor"}, api.bob).json()["id"]
    bobs = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "poor"}, api.bob).json()["id"]
    for seen in (theirs, bobs + 10_000):
        refused = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "great", "seen": seen})
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["body", "seen"]
        assert f"{seen} is no review of grade {graded['id']!r}" in refused.json()["detail"]
    assert api.get(f"/v1/grades/{graded['id']}/reviews").json()[-1]["id"] == bobs  # nothing saved
    fresh = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "great", "seen": 0})
    assert fresh.status_code == 201 and [n["id"] for n in fresh.json()["newer"]] == [bobs]
    after = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "great", "seen": bobs})
    assert after.status_code == 201 and after.json()["newer"] == []


def test_a_candidate_is_erased_everywhere_the_service_keeps_them(llm, tmp_path):
    """Trial P #9: nothing could delete a candidate's answers (a hiring system must honour erasure): their
    grades, reviews, the reviewed answers later grades are shown, and the grade cache, which quotes them."""
    with running_api(tmp_path / "db.sqlite", llm, tmp_path / "cache") as api:
        mine = [a_grade(api, uid("erase"), candidate="cand-erase", question=q) for q in (1, 2)]
        other = a_grade(api, uid("keep"), candidate="cand-keep")
        newest = api.post("/v1/reviews", {"grade_id": mine[0]["id"], "tier": "great"}, api.bob)
        assert newest.status_code == 201
        cursor = api.get("/v1/reviews").json()["next"]
        assert cursor == newest.json()["id"]
        answer = rows_of(tmp_path / "db.sqlite", "select answer from grades where id = ?", mine[0]["id"])[0][0]
        batch = api.post(
            "/v1/batches", {"rows": [{"question": 3, "answer": answer_text(uid(f"b{i}"))} for i in range(2)]}
        )
        done = api.wait_batch(batch.json()["id"])
        assert done["graded"] == 2
        auth = Server.auth(api.alice)

        erased = httpx.delete(api.url("/v1/grades"), params={"candidate": "cand-erase"}, headers=auth)
        assert erased.status_code == 200, erased.text
        assert erased.json() == {"grades": 2, "reviews": 1, "cached": 2}
        for grade in mine:
            assert api.get(f"/v1/grades/{grade['id']}").status_code == 404
        assert api.get(f"/v1/grades/{other['id']}").status_code == 200  # another candidate's is kept
        assert rows_of(tmp_path / "db.sqlite", "select count(*) from grades where answer = ?", answer) == [(0,)]
        assert rows_of(tmp_path / "db.sqlite", "select count(*) from reviews where grade_id = ?", mine[0]["id"]) == [
            (0,)
        ]
        assert all(r["grade_id"] != mine[0]["id"] for r in api.get("/v1/reviews").json()["reviews"])
        again = httpx.delete(api.url("/v1/grades"), params={"candidate": "cand-erase"}, headers=auth)
        assert again.status_code == 404

        # Graded afresh: its cached grade went with it, and no erased review is shown to the model.
        calls = api.llm.calls
        regraded = api.post("/v1/grades", {"question": 1, "answer": answer, "id": mine[0]["id"]})
        assert regraded.status_code == 201 and api.llm.calls == calls + 1
        assert not any("shown reviewed answers" in n for n in regraded.json()["notes"])
        # Review ids are never reused (review: the newest was erased, and the next review took its id, which
        # a client reading the feed from its cursor never saw).
        later = api.post("/v1/reviews", {"grade_id": other["id"], "tier": "poor"}, api.bob)
        assert later.json()["id"] > cursor
        assert [r["id"] for r in api.get("/v1/reviews", params={"after": cursor}).json()["reviews"]] == [
            later.json()["id"]
        ]

        # A batch keeps its other rows; erased of every row, it goes.
        first, second = (line["id"] for line in api.results(batch.json()["id"]))
        one = httpx.delete(api.url(f"/v1/grades/{first}"), headers=auth)
        assert one.status_code == 200 and one.json()["grades"] == 1
        assert api.get(f"/v1/batches/{batch.json()['id']}").json()["total"] == 1
        assert httpx.delete(api.url(f"/v1/grades/{second}"), headers=auth).status_code == 200
        assert api.get(f"/v1/batches/{batch.json()['id']}").status_code == 404
        assert httpx.delete(api.url(f"/v1/grades/{second}"), headers=auth).status_code == 404
        assert httpx.delete(api.url(f"/v1/grades/{other['id']}")).status_code == 401  # a token, as every call
        assert "grader: erased 2 grade(s) and 1 review(s) at the request of alice" in api.server.log()

        # Its idempotency key goes with it: the same key and body again make a new grade, not the erased one.
        body, key = {"question": 1, "answer": answer_text(uid("keyed"))}, {"Idempotency-Key": uid("key")}
        keyed = httpx.post(api.url("/v1/grades"), json=body, headers={**auth, **key})
        assert keyed.status_code == 201
        assert httpx.delete(api.url(f"/v1/grades/{keyed.json()['id']}"), headers=auth).status_code == 200
        assert rows_of(tmp_path / "db.sqlite", "select count(*) from idempotency_keys") == [(0,)]
        again = httpx.post(api.url("/v1/grades"), json=body, headers={**auth, **key})
        assert again.status_code == 201 and again.json()["id"] != keyed.json()["id"]


# --- grades --------------------------------------------------------------------------------------------


def test_a_grade_is_the_grade_contract_plus_its_id_and_is_stored_once(api):
    grade_id = uid("g")
    body = {"question": Q1.id, "answer": answer_text(grade_id), "id": grade_id, "candidate": "cand-7"}
    calls = api.llm.calls
    first = api.post("/v1/grades", body)
    assert first.status_code == 201, first.text
    assert api.llm.calls == calls + 1
    data = first.json()
    assert GRADE_FIELDS <= set(data)  # the Grade's fields at top level, not nested
    assert data["id"] == grade_id and data["status"] == "graded" and data["candidate"] == "cand-7"
    grade = Grade.model_validate({k: v for k, v in data.items() if k in GRADE_FIELDS})
    assert grade.question_id == Q1.id and grade.backend == "openai"
    assert grade.covered_points and grade.covered_points[0].evidence in body["answer"]

    fetched = api.get(f"/v1/grades/{grade_id}")
    assert fetched.status_code == 200 and fetched.json() == data
    assert first.headers["location"] == f"/v1/grades/{grade_id}"  # trial P #13: where to read it again

    again = api.post("/v1/grades", body)  # the same request again: the stored grade, no model call
    assert again.status_code == 200 and again.json() == data
    by_number = api.post("/v1/grades", {**body, "question": Q1.number})  # the same question by its number
    assert by_number.status_code == 200 and by_number.json() == data
    assert api.llm.calls == calls + 1

    for other in ({**body, "answer": body["answer"] + " And more."}, {**body, "question": QUESTIONS[1].id}):
        conflict = api.post("/v1/grades", other)
        assert conflict.status_code == 409, conflict.text
        assert grade_id in conflict.json()["detail"] and "another answer" in conflict.json()["detail"]
    assert api.llm.calls == calls + 1
    assert api.get(f"/v1/grades/{grade_id}").json() == data  # the conflict changed nothing
    assert rows_of(api.db, "select count(*) from grades where id = ?", grade_id) == [(1,)]


def test_a_grade_without_an_id_gets_one(api):
    data = a_grade(api)
    assert data["id"] and api.get(f"/v1/grades/{data['id']}").json() == data
    missing = api.get("/v1/grades/no-such-grade")
    assert missing.status_code == 404 and "no-such-grade" in missing.json()["detail"]


def test_an_unknown_question_is_422_with_the_closest_ids(api):
    """A 422 naming the field, as in a batch (trial P #5: it was a 404 here, which reads as no such endpoint)."""
    calls = api.llm.calls
    grade_id = uid("unknown-q")
    response = api.post(
        "/v1/grades", {"question": "debuging-a-production-isue", "answer": "I check logs.", "id": grade_id}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "debuging-a-production-isue" in detail and Q1.id in detail
    unknown = api.post("/v1/grades", {"question": 999, "answer": "I check logs."})
    assert unknown.status_code == 422
    assert unknown.json() == {
        "detail": "question: unknown question '999' (GET /v1/questions lists them)",
        "errors": [
            {
                "loc": ["body", "question"],
                "msg": "unknown question '999' (GET /v1/questions lists them)",
                "type": "unknown_question",
            }
        ],
    }
    batch = api.post("/v1/batches", {"rows": [{"question": 1, "answer": "fine"}, {"question": 999, "answer": "x"}]})
    assert batch.status_code == 422 and batch.json()["detail"].startswith("rows.1.question: unknown question")
    assert [e["loc"] for e in batch.json()["errors"]] == [["body", "rows", 1, "question"]]
    assert api.llm.calls == calls
    assert rows_of(api.db, "select count(*) from grades where id = ?", grade_id) == [(0,)]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param("", "answer is empty", id="empty"),
        pytest.param(" \n\t ", "answer is empty", id="whitespace"),
        pytest.param(
            "x" * (MAX_ANSWER_CHARS + 1),
            f"answer is {MAX_ANSWER_CHARS + 1:,} characters; the limit is {MAX_ANSWER_CHARS:,}",
            id="one-over-the-limit",
        ),
    ],
)
def test_an_empty_or_too_long_answer_is_422_with_a_clear_message(api, answer, message):
    calls = api.llm.calls
    grade_id = uid("bad-answer")
    response = api.post("/v1/grades", {"question": 1, "answer": answer, "id": grade_id})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert "--max-answer-chars" not in response.json()["detail"]  # the operator's setting: no help to a client
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "answer"] and message.removeprefix("answer ") == error["msg"]
    batch = api.post("/v1/batches", {"rows": [{"question": 1, "answer": "fine"}, {"question": 1, "answer": answer}]})
    assert batch.status_code == 422 and f"rows.1.{message}" in batch.json()["detail"]  # the row, then the problem
    assert [e["loc"] for e in batch.json()["errors"]] == [["body", "rows", 1, "answer"]]
    assert api.llm.calls == calls
    assert rows_of(api.db, "select count(*) from grades where id = ?", grade_id) == [(0,)]


def test_an_answer_at_the_limit_is_graded(api):
    answer = ("I check the logs. " * MAX_ANSWER_CHARS)[:MAX_ANSWER_CHARS]
    response = api.post("/v1/grades", {"question": 1, "answer": answer})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_a_body_over_max_body_bytes_is_413(api, chunked):
    calls = api.llm.calls
    grade_id = uid("huge")
    payload = json.dumps({"question": 1, "answer": "x" * MAX_BODY_BYTES, "id": grade_id}).encode()
    if chunked:  # no Content-Length: the limit is counted while reading

        def pieces() -> Iterator[bytes]:
            for start in range(0, len(payload), 4096):
                yield payload[start : start + 4096]

        content: Any = pieces()
    else:
        content = payload
    headers = {**Server.auth(api.alice), "Content-Type": "application/json"}
    response = httpx.post(api.url("/v1/grades"), content=content, headers=headers, timeout=60)
    assert response.status_code == 413, response.text
    assert f"{MAX_BODY_BYTES:,} bytes" in response.json()["detail"]
    assert api.llm.calls == calls
    assert rows_of(api.db, "select count(*) from grades where id = ?", grade_id) == [(0,)]
    assert httpx.get(api.url("/healthz")).status_code == 200  # the server is fine afterwards


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param("/v1/grades", {"answer": "I check logs."}, "question: Field required", id="no-question"),
        pytest.param("/v1/grades", {"question": 1}, "answer: Field required", id="no-answer"),
        pytest.param(
            "/v1/grades", {"question": 1, "answer": 42}, "answer: Input should be a valid string", id="answer-int"
        ),
        pytest.param("/v1/grades", {"question": [1], "answer": "a"}, "question", id="question-list"),
        pytest.param(
            "/v1/grades",
            {"question": 1, "answer": "a", "tier": "great"},
            "tier: Extra inputs are not permitted",
            id="extra",
        ),
        pytest.param(
            "/v1/grades",
            {"question": 1, "answer": "a", "id": "has space"},
            "id: an id holds only letters, digits and . _ : @ - (no spaces or slashes)",
            id="bad-id",
        ),
        pytest.param(
            "/v1/grades", {"question": 1, "answer": "a", "id": ""}, "id: String should have at least", id="empty-id"
        ),
        pytest.param(
            "/v1/grades",
            {"question": 1, "answer": "a", "candidate": "c" * 201},
            "candidate: String should have at most",
            id="long-candidate",
        ),
        pytest.param("/v1/grades", [1, 2], "body: expected a JSON object", id="not-an-object"),
        pytest.param("/v1/grades", {"question": True, "answer": "a"}, "question: Input should be", id="question-bool"),
        pytest.param("/v1/grades", {"question": 1, "answer": "a\x00b"}, "answer: contains a NUL", id="nul-answer"),
        pytest.param("/v1/batches", {"rows": []}, "rows: List should have at least 1 item", id="batch-no-rows"),
        pytest.param(
            "/v1/batches",
            {"rows": [{"question": 1, "answer": "a"}, {"question": 1}]},
            "rows.1.answer: Field required",
            id="batch-row",
        ),
        pytest.param("/v1/reviews", {"grade_id": "x", "tier": "superb"}, "tier: Input should be", id="review-tier"),
        pytest.param("/v1/reviews", {"tier": "great"}, "grade_id: Field required", id="review-no-grade"),
    ],
)
def test_invalid_json_fields_are_422_naming_the_field(api, path, body, field):
    calls = api.llm.calls
    response = api.post(path, body)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert api.llm.calls == calls
    if "an id holds only" in field:  # in words for a program too, not as the pattern (review)
        assert [e["msg"] for e in response.json()["errors"]] == [field.removeprefix("id: ")]


def test_a_body_that_is_not_json_is_422(api):
    headers = {**Server.auth(api.alice), "Content-Type": "application/json"}
    response = httpx.post(api.url("/v1/grades"), content=b'{"question": 1, "answer": ', headers=headers)
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "raw", "detail"),
    [
        pytest.param("/v1/grades", b"", "body: no JSON object (send one, with Content-Type", id="empty-body"),
        pytest.param("/v1/grades", b'{"question": 1, "answer": }', "body: invalid JSON at character 26", id="broken"),
        # JSON can carry what no text can: a lone surrogate. It was a 500 (the cache key could not encode it).
        pytest.param(
            "/v1/grades",
            b'{"question": 1, "answer": "I check \\ud800 the logs"}',
            "answer: contains a lone UTF-16 surrogate (not text) at character 8",
            id="surrogate-answer",
        ),
        pytest.param(
            "/v1/batches",
            b'{"rows": [{"question": 1, "answer": "ok", "candidate": "\\udfff"}]}',
            "rows.0.candidate: ",
            id="surrogate-in-a-batch",
        ),
        pytest.param("/v1/reviews", b'{"grade_id": "x", "tier": "great", "note": "\\ud83d"}', "note: ", id="note"),
        # A NaN in an invalid body was echoed back in the 422, which JSON cannot encode: a 500.
        pytest.param("/v1/grades", b'{"question": NaN, "answer": "a"}', "question: Input should be", id="nan"),
        pytest.param("/v1/grades", b'{"question": 1, "answer": "a", "x": NaN}', "x: Extra inputs", id="nan-extra"),
        # Not UTF-8 (Latin-1 from an old client): FastAPI's own bare 400 "There was an error parsing the body".
        pytest.param(
            "/v1/batches",
            b'{"rows": [{"question": 1, "answer": "caf\xe9"}]}',
            "body: not UTF-8 text (byte 40 is 0xe9)",
            id="latin-1",
        ),
    ],
)
def test_bodies_json_allows_but_text_does_not_are_422_never_500(api, path, raw, detail):
    headers = {**Server.auth(api.alice), "Content-Type": "application/json"}
    response = httpx.post(api.url(path), content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]
    assert all("input" not in e for e in response.json()["errors"])  # the body is not echoed back
    if "(not text)" in detail:  # the README's error type for it (review: it was pydantic's value_error)
        assert [e["type"] for e in response.json()["errors"]] == ["not_text"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"question": 1, "answer": }', id="broken"),
        pytest.param(b'{"rows": [{"question": 1, "answer": "caf\xe9"}]}', id="latin-1"),
        pytest.param(b'{"question": true, "answer": "x"}', id="wrong-type"),
        pytest.param(b"", id="empty"),
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_a_body_without_a_valid_token_is_401_whatever_it_holds(api, raw, token):
    """Trial P #7: a body that was no JSON, or no UTF-8, got its 422 (saying where it broke) before the token
    was asked for."""
    headers = {"Content-Type": "application/json", **(Server.auth(token) if token else {})}
    for path in ("/v1/grades", "/v1/batches"):
        response = httpx.post(api.url(path), content=raw, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json() == {"detail": "a valid token is required"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_review_of_an_unknown_grade_or_point_is_refused(api):
    graded = a_grade(api, uid("review-checks"))
    missing = api.post("/v1/reviews", {"grade_id": "no-such-grade", "tier": "great"})
    assert missing.status_code == 404 and "no-such-grade" in missing.json()["detail"]
    point = Q1.key_points[0].id
    bad = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "great", "covered": [point, "q99.nope"]})
    assert bad.status_code == 422
    assert bad.json()["detail"] == f"covered.1: 'q99.nope' is no key point of question {Q1.id}"
    assert [e["loc"] for e in bad.json()["errors"]] == [["body", "covered", 1]]  # as every 422: a field to mark
    flags = api.post("/v1/reviews", {"grade_id": graded["id"], "tier": "great", "red_flags": ["x", "y"]})
    assert [e["loc"] for e in flags.json()["errors"]] == [["body", "red_flags", 0], ["body", "red_flags", 1]]
    assert rows_of(api.db, "select count(*) from reviews where grade_id = ?", graded["id"]) == [(0,)]


def test_a_review_of_a_grade_whose_question_left_the_rubric_is_409_saying_so(api):
    from grader.grading.contract import Grade
    from grader.service.store import Store

    grade_id = uid("left")
    outcome = Grade(question_id="gone-question", tier="poor", justification="x", backend="fake", model="m")
    store = Store(api.db)
    try:
        store.add_grade(grade_id, "gone-question", "an answer", None, outcome, by="alice")
    finally:
        store.close()
    assert api.get(f"/v1/grades/{grade_id}").status_code == 200
    response = api.post("/v1/reviews", {"grade_id": grade_id, "tier": "great"})
    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith(f"grade {grade_id!r} answers question 'gone-question', which is not in")


# --- hostile answers -------------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(document.cookie)</script>",
    "<img/src=x/onerror=alert(1)>",
    "<svg/onload=alert(2)>",
    '"><iframe/src=javascript:alert(3)></iframe>',
    "</textarea><a/href=javascript:alert(4)>x</a>",
]


def test_hostile_answers_are_data_in_json_and_escaped_on_the_review_page(api):
    candidate = f"<b/onmouseover=alert(5)>{uuid.uuid4().hex[:6]}"
    ids = {}
    for payload in HOSTILE:
        answer = f"{payload} I check the logs first, then roll back the deploy and write a post-mortem."
        data = a_grade(api, uid("hostile"), candidate=candidate, answer=answer)
        ids[payload] = data["id"]
        assert data["candidate"] == candidate
        # The model quotes the answer's first words: the quote comes back verbatim, not escaped or stripped.
        assert data["covered_points"][0]["evidence"].startswith(payload)
        assert api.get(f"/v1/grades/{data['id']}").json()["covered_points"][0]["evidence"].startswith(payload)
    batch = api.post("/v1/batches", {"rows": [{"question": 2, "answer": f"{p} and I write tests"} for p in HOSTILE]})
    assert batch.status_code == 202, batch.text
    api.wait_batch(batch.json()["id"])
    quotes = [r["covered_points"][0]["evidence"] for r in api.results(batch.json()["id"])]
    assert [q.split()[0] for q in quotes] == HOSTILE

    page = api.get("/review", params={"candidate": candidate, "show": "all"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert html.count('data-grade-id="') >= 2 * len(HOSTILE)  # every hostile grade is on the page (article + form)
    for payload, grade_id in ids.items():
        assert grade_id in html
        assert payload not in html, payload
        assert str(escape(payload)) in html, payload
    assert candidate not in html and str(escape(candidate)) in html  # shown, and echoed in the filter, escaped


# --- a batch surviving SIGKILL --------------------------------------------------------------------------


#: Turns committed batch rows back into rows graded but not committed (what a kill inside the commit
#: window leaves): pending in the database, their grades only in the grade cache.
UNCOMMIT = "update grades set status = 'pending', tier = null, confidence = null, outcome = null, graded_at = null"


def test_a_batch_survives_a_kill_and_restart_without_regrading_what_was_graded(tmp_path):
    """60 rows, 4 in flight; the model answers the first 20 requests, then holds the next ones. SIGKILL
    with 4 requests held, restart on the same database and cache: the rows graded before the kill
    (committed, or only in the grade cache) are not sent to the model again; only the 4 lost in flight are."""
    answered, width, total = 20, 4, 60
    db, cache = tmp_path / "db.sqlite", tmp_path / "cache"
    with LoopbackLLM(hold_from=answered) as llm:
        with Server(
            db, backend="openai", env=llm_env(llm), cache_dir=cache, args=("--concurrency", str(width))
        ) as server:
            api = Api(server, llm, server.token("alice"), "")
            rows = [
                {
                    "id": f"row-{i:02d}",
                    "question": QUESTIONS[i % 3].id,
                    "answer": answer_text(i),
                    "candidate": f"c{i % 5}",
                }
                for i in range(total)
            ]
            posted = api.post("/v1/batches", {"rows": rows})
            assert posted.status_code == 202, posted.text
            batch_id = posted.json()["id"]
            assert posted.json()["total"] == total
            # Every worker now waits on a held request, so each of the first 20 was graded (and cached).
            wait_for(lambda: llm.calls >= answered + width, seconds=60, what="the model holding 4 requests")
            server.kill()
        calls_at_kill = llm.calls
        llm.release()
        assert calls_at_kill == answered + width
        committed = rows_of(db, "select id, outcome from grades where status = 'graded' order by seq")
        assert len(committed) <= answered
        # However many the last commit caught, make sure some graded rows are known only to the cache.
        forced = dict(committed[-5:])
        with sqlite3.connect(db) as con:
            con.executemany(UNCOMMIT + " where id = ?", [(i,) for i in forced])
        assert answered - len(committed) + len(forced) >= 1

        with Server(db, backend="openai", env=llm_env(llm), cache_dir=cache) as restarted:
            api = Api(restarted, llm, api.alice, "")
            state = api.wait_batch(batch_id)
            assert state == {**state, "total": total, "graded": total, "failed": 0, "pending": 0}
            results = api.results(batch_id)

    assert [r["id"] for r in results] == [r["id"] for r in rows]  # each row once, in order
    assert all(
        r["status"] == "graded" and r["tier"] and r["question_id"] == row["question"]
        for r, row in zip(results, rows, strict=True)
    )
    assert [r["candidate"] for r in results] == [r["candidate"] for r in rows]
    for r in results:  # the uncommitted rows got their grade back from the cache, unchanged
        if r["id"] in forced:
            graded = json.loads(forced[r["id"]])
            assert {k: r[k] for k in graded} == graded
    sent = sent_answers(llm)
    counts = Counter(sent)
    assert set(counts) == {r["answer"] for r in rows}
    before, lost = sent[:answered], sent[answered:calls_at_kill]
    assert all(counts[a] == 1 for a in before), f"graded before the kill, sent again ({len(committed)} committed)"
    assert all(counts[a] == 2 for a in lost)  # held when the server died: graded again, once
    assert llm.calls == total + width


def test_batch_progress_is_committed_while_the_model_stalls(tmp_path):
    """Outcomes are committed on a timer: a batch's count moves even when the next answer never comes."""
    answered = 5
    with LoopbackLLM(hold_from=answered) as llm:
        server = Server(
            tmp_path / "db.sqlite",
            backend="openai",
            env=llm_env(llm),
            cache_dir=tmp_path / "cache",
            args=("--concurrency", "2"),
        )
        with server:
            api = Api(server, llm, server.token("alice"), "")
            rows = [{"id": f"stall-{i}", "question": 1, "answer": answer_text(i)} for i in range(10)]
            batch_id = api.post("/v1/batches", {"rows": rows}).json()["id"]
            wait_for(lambda: llm.calls >= answered + 2, seconds=60, what="the model holding 2 requests")
            try:
                wait_for(
                    lambda: api.get(f"/v1/batches/{batch_id}").json()["graded"] == answered,
                    seconds=10,
                    what=f"the {answered} graded rows committed while the model stalls",
                )
                assert rows_of(tmp_path / "db.sqlite", "select count(*) from grades where status = 'graded'") == [
                    (answered,)
                ]
                # A row still waiting for the model is no grade yet (202, as its batch's results say: trial P
                # #10, where a 404 read as "no such grade"), and its id is taken.
                pending = api.get("/v1/grades/stall-9")
                assert pending.status_code == 202, pending.text
                assert pending.json() == {
                    "id": "stall-9",
                    "status": "pending",
                    "candidate": None,
                    "question_id": Q1.id,
                    "batch_id": batch_id,
                }
                taken = api.post("/v1/grades", rows[9])
                assert taken.status_code == 409 and "still grading" in taken.json()["detail"]
                erased = httpx.delete(api.url("/v1/grades/stall-9"), headers=Server.auth(api.alice))
                assert erased.status_code == 409 and "still grading" in erased.json()["detail"]  # it would be cached
                lines = api.results(batch_id)
                assert [r["status"] for r in lines] == ["graded"] * answered + ["pending"] * (10 - answered)
            finally:
                llm.release()
            assert api.wait_batch(batch_id)["graded"] == 10


# --- reviews into calibration ----------------------------------------------------------------------------


def test_reviews_from_two_tokens_are_the_interviewer_grades_of_calibrate_db(llm, tmp_path):
    """alice agrees with the model on three grades (after first correcting one of them: only her latest
    review of a grade counts), bob corrects two: five interviewer grades, paired with the model's."""
    with running_api(tmp_path / "db.sqlite", llm, tmp_path / "cache") as api:
        model = {g["id"]: g["tier"] for g in (a_grade(api, f"cal-{i}", question=i % 3 + 1) for i in range(4))}
        other = {gid: "poor" if tier != "poor" else "great" for gid, tier in model.items()}
        reviews = [
            (api.alice, "cal-0", other["cal-0"]),
            (api.alice, "cal-0", model["cal-0"]),  # changed her mind: this one counts
            (api.alice, "cal-1", model["cal-1"]),
            (api.alice, "cal-2", model["cal-2"]),
            (api.bob, "cal-0", other["cal-0"]),
            (api.bob, "cal-3", other["cal-3"]),
        ]
        for token, grade_id, tier in reviews:
            response = api.post("/v1/reviews", {"grade_id": grade_id, "tier": tier, "reviewer": "carol"}, token)
            assert response.status_code == 201, response.text
        env = api.server.env
    done = subprocess.run(
        [sys.executable, "-m", "grader", "calibrate", "--db", str(tmp_path / "db.sqlite")]
        + ["--format", "json", "--resamples", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["paired"] == 5 and report["counts"]["rows"] == 5
    assert report["counts"]["interviewers"] == 2 and report["counts"]["failed"] == 0
    assert set(report["interviewers"]) == {"alice", "bob"}  # never the body's "carol"
    alice, bob = report["interviewers"]["alice"], report["interviewers"]["bob"]
    assert alice["n"] == 3 and bob["n"] == 2 and report["overall"]["n"] == 5
    assert alice["exact_agreement"]["value"] == 1.0 and bob["exact_agreement"]["value"] == 0.0
    assert {d["id"] for d in report["disagreements"]} == {"cal-0", "cal-3"}
    assert all(d["interviewer"] == "bob" for d in report["disagreements"])


# --- many clients at once --------------------------------------------------------------------------------


def test_64_clients_at_once_every_grade_stored_once(api):
    clients, total = 64, 300
    prefix = uid("conc")
    ids = [f"{prefix}-{n}" for n in range(total)]
    batches = [
        [
            {"id": f"{prefix}-b{b}-{r}", "question": r % 3 + 1, "answer": answer_text(f"{prefix}-b{b}-{r}")}
            for r in range(15)
        ]
        for b in range(4)
    ]
    calls = api.llm.calls

    async def client_posts(my_ids: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.server.url, headers=Server.auth(api.alice), timeout=120) as client:
            return [
                await client.post(
                    "/v1/grades", json={"question": int(g.rsplit("-", 1)[1]) % 3 + 1, "answer": answer_text(g), "id": g}
                )
                for g in my_ids
            ]

    async def post_batch(rows: list[dict[str, Any]]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=api.server.url, headers=Server.auth(api.bob), timeout=120) as client:
            return await client.post("/v1/batches", json={"rows": rows})

    async def everyone() -> tuple[list[list[httpx.Response]], list[httpx.Response]]:
        posts = asyncio.gather(*(client_posts(ids[i::clients]) for i in range(clients)))
        posted_batches = asyncio.gather(*(post_batch(rows) for rows in batches))
        return await asyncio.gather(posts, posted_batches)

    async def fetch_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(
            base_url=api.server.url, headers=Server.auth(api.bob), timeout=120, limits=limits
        ) as client:
            return await asyncio.gather(*(client.get(f"/v1/grades/{g}") for g in ids))

    per_client, batch_responses = asyncio.run(everyone())
    responses = [r for rs in per_client for r in rs]
    assert len(responses) == total
    assert Counter(r.status_code for r in responses) == {201: total}, [
        r.text for r in responses if r.status_code != 201
    ][:3]
    assert sorted(r.json()["id"] for r in responses) == sorted(ids)
    assert [r.status_code for r in batch_responses] == [202] * len(batches), [r.text for r in batch_responses]

    fetched = asyncio.run(fetch_all())
    assert [r.status_code for r in fetched] == [200] * total
    assert [r.json()["id"] for r in fetched] == ids
    assert [r.json() for r in fetched] == sorted((r.json() for r in responses), key=lambda d: ids.index(d["id"]))

    for response, rows in zip(batch_responses, batches, strict=True):
        api.wait_batch(response.json()["id"])
        assert [r["id"] for r in api.results(response.json()["id"])] == [r["id"] for r in rows]
    stored = rows_of(api.db, "select id, status from grades where id like ?", f"{prefix}-%")
    assert len(stored) == total + 60 and {s for _, s in stored} == {"graded"}
    assert api.llm.calls == calls + total + 60  # every answer graded exactly once


def test_concurrent_posts_of_one_id_store_one_grade(api):
    async def at_once(bodies: list[dict[str, Any]]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.server.url, headers=Server.auth(api.alice), timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/grades", json=b) for b in bodies))

    same = uid("same")
    calls = api.llm.calls
    responses = asyncio.run(at_once([{"question": 1, "answer": answer_text(same), "id": same}] * 8))
    # One request created the grade; the others, sent at the same time, get it as stored.
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201], [r.text for r in responses]
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1  # one grade, the same for all
    assert api.llm.calls == calls + 1  # the in-flight duplicates waited for the first
    assert rows_of(api.db, "select count(*) from grades where id = ?", same) == [(1,)]

    contested = uid("contested")
    bodies = [{"question": 1, "answer": answer_text(f"{contested}-{i}"), "id": contested} for i in range(8)]
    responses = asyncio.run(at_once(bodies))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7, [r.text for r in responses]
    winner = next(b for b, r in zip(bodies, responses, strict=True) if r.status_code == 201)
    assert rows_of(api.db, "select answer from grades where id = ?", contested) == [(winner["answer"],)]


# --- learning from reviews -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server with the local backend (the default with nothing configured): loaded once."""
    tmp = tmp_path_factory.mktemp("local")
    server = Server(tmp / "db.sqlite", backend="local", cache_dir=tmp / "cache").start()
    try:
        yield Api(server, None, server.token("alice"), server.token("bob"))  # type: ignore[arg-type]
    finally:
        server.kill()  # a graceful stop of the local backend takes seconds, and is not what is tested here


def test_a_reviewed_grade_is_shown_with_later_grades_of_similar_answers(local):
    def grade(grade_id: str, question: int, answer: str) -> dict[str, Any]:
        response = local.post("/v1/grades", {"question": question, "answer": answer, "id": grade_id})
        assert response.status_code == 201, response.text
        return response.json()

    base = "I look at the logs, error messages and recent deployments, then roll back to restore service."
    first = grade("learn-base", 1, base)
    assert not any("shown reviewed answers" in n for n in first["notes"])
    review = local.post("/v1/reviews", {"grade_id": "learn-base", "tier": "great"}, local.bob)
    assert review.status_code == 201, review.text

    similar = grade("learn-similar", 1, base.replace("then roll back", "and then I roll back the release"))
    assert "shown reviewed answers: learn-base (great)" in similar["notes"]
    elsewhere = grade("learn-elsewhere", 2, base)  # reviews are shown for their own question only
    assert not any("learn-base" in n for n in elsewhere["notes"])

    # A later correction replaces the reviewer's earlier tier in what is shown.
    assert local.post("/v1/reviews", {"grade_id": "learn-base", "tier": "poor"}, local.bob).status_code == 201
    again = grade("learn-again", 1, base + " Afterwards I write it up.")
    assert "shown reviewed answers: learn-base (poor)" in again["notes"]


# --- found by a user's trial of the API ---------------------------------------------------------------


def test_a_failed_grade_is_graded_again_when_its_request_is_sent_again(api):
    grade_id = uid("retry")
    body = {"question": 1, "answer": answer_text(grade_id), "id": grade_id, "candidate": "cand-r"}
    api.llm.fault = lambda n: "malformed"  # every reply invalid: the grade fails, and is stored as failed
    try:
        failed = api.post("/v1/grades", body)
    finally:
        api.llm.fault = None
    assert failed.status_code == 201 and failed.json()["status"] == "failed", failed.text
    calls = api.llm.calls
    again = api.post("/v1/grades", body)  # the model is back: the same request grades it, not the old failure
    assert again.status_code == 200 and again.json()["status"] == "graded", again.text
    assert api.llm.calls > calls
    assert api.get(f"/v1/grades/{grade_id}").json() == again.json()
    assert rows_of(api.db, "select status from grades where id = ?", grade_id) == [("graded",)]
    assert api.post("/v1/grades", body).json() == again.json()  # and now it is the stored grade
    other = api.post("/v1/grades", {**body, "candidate": "someone else"})
    assert other.status_code == 409 and "(its candidate differs)" in other.json()["detail"]
    left_out = api.post("/v1/grades", {k: v for k, v in body.items() if k != "candidate"})
    assert left_out.status_code == 200 and left_out.json() == again.json()  # the same request, a field left out


def test_a_batch_names_every_problem_in_one_answer(api):
    stored = a_grade(api, uid("taken"))["id"]
    rows = [
        {"question": 999, "answer": "x"},
        {"question": 1, "answer": "fine", "id": stored},
        {"question": 1, "answer": "   "},
        {"question": 1, "answer": "fine again", "id": "twice"},
        {"question": 1, "answer": "and again", "id": "twice"},
    ]
    response = api.post("/v1/batches", {"rows": rows})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("rows.0.question: unknown question")
    assert "rows.2.answer" in detail and "rows.4: id 'twice' is used twice in this batch (rows.3)" in detail
    assert f"rows.1.id: {stored!r} is already stored" in detail  # in the same answer, not a second round trip
    # each problem for a program too (trial P #3), in the rows' order
    assert [(e["loc"], e["type"]) for e in response.json()["errors"]] == [
        (["body", "rows", 0, "question"], "unknown_question"),
        (["body", "rows", 1, "id"], "id_taken"),
        (["body", "rows", 2, "answer"], "empty_answer"),
        (["body", "rows", 4, "id"], "duplicate_id"),
    ]


def test_a_batch_with_rows_of_the_wrong_type_names_the_other_rows_problems_too(api):
    """Trial P #4: a row whose answer was no string hid every other row's problem until it was fixed."""
    stored = a_grade(api, uid("taken"))["id"]
    rows = [
        {"question": "nope", "answer": "x"},
        {"question": 1, "answer": 5},
        {"question": 1, "answer": ""},
        {"question": 1, "answer": "fine", "id": stored},
        {"question": 1, "answer": "fine"},
        {"question": 1},
    ]
    response = api.post("/v1/batches", {"rows": rows})
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [
        ["body", "rows", 0, "question"],
        ["body", "rows", 1, "answer"],
        ["body", "rows", 2, "answer"],
        ["body", "rows", 3, "id"],
        ["body", "rows", 5, "answer"],
    ]
    detail = response.json()["detail"]
    assert detail.startswith("rows.0.question: unknown question 'nope'") and "rows.1.answer: Input should be" in detail
    assert "rows.2.answer is empty" in detail and f"rows.3.id: {stored!r} is already stored" in detail
    broken = api.post("/v1/batches", {"rows": "not a list"})  # nothing of the rows to go on: the type error alone
    assert broken.status_code == 422 and [e["loc"] for e in broken.json()["errors"]] == [["body", "rows"]]


def test_the_same_batch_posted_again_is_the_stored_batch(api):
    rows = [{"question": 1, "answer": answer_text(uid(f"again-{i}")), "id": uid(f"again-{i}")} for i in range(3)]
    first = api.post("/v1/batches", {"rows": rows})
    assert first.status_code == 202, first.text
    assert first.headers["location"] == f"/v1/batches/{first.json()['id']}"
    calls, batches = api.llm.calls, rows_of(api.db, "select count(*) from batches")
    again = api.post("/v1/batches", {"rows": rows})  # say the 202 was lost on the way back
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
    api.wait_batch(first.json()["id"])
    assert api.llm.calls == calls + 3  # each row graded once
    assert rows_of(api.db, "select count(*) from batches") == batches  # no second batch

    # Not the same batch: a row changed, rows in another order, or fewer rows.
    changed = [rows[0], {**rows[1], "answer": "another answer"}, rows[2]]
    for other in (changed, rows[::-1], rows[:2]):
        response = api.post("/v1/batches", {"rows": other})
        assert response.status_code == 422 and "is already stored" in response.json()["detail"], response.text


def test_concurrent_posts_naming_other_candidates_conflict(api):
    async def at_once(bodies: list[dict[str, Any]]) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.server.url, headers=Server.auth(api.alice), timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/grades", json=b) for b in bodies))

    grade_id = uid("who")
    body = {"question": 1, "answer": answer_text(grade_id), "id": grade_id}
    responses = asyncio.run(at_once([{**body, "candidate": f"person {i}"} for i in range(4)]))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 3, [r.text for r in responses]
    assert all("(its candidate differs)" in r.json()["detail"] for r in responses if r.status_code == 409)


def test_health_answers_head_and_reviews_keep_each_point_once(api):
    assert httpx.head(api.url("/healthz")).status_code == 200
    grade = a_grade(api, uid("dedupe"))
    point = Q1.key_points[0].id
    review = api.post("/v1/reviews", {"grade_id": grade["id"], "tier": "great", "covered": [point, point]})
    assert review.status_code == 201 and review.json()["covered"] == [point]


def test_the_docs_work_offline_and_the_schema_says_what_errors_look_like(api):
    page = httpx.get(api.url("/docs"))
    assert page.status_code == 200 and "cdn" not in page.text and "https://" not in page.text
    script = next(part.split('"')[1] for part in page.text.split("src=")[1:] if "swagger-ui-bundle" in part)
    assert httpx.get(api.url(script)).status_code == 200  # served by this server, from the installed package
    schema = httpx.get(api.url("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    post = schema["paths"]["/v1/grades"]["post"]
    error = post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/ErrorOut") and "HTTPValidationError" not in json.dumps(schema)
    assert {"401", "409", "413", "422"} <= set(post["responses"])
    assert list(schema["paths"]["/healthz"]) == ["get", "head"]
    # Trial P #8: what a client generator reads. Operation ids are the routes' names; a GET has no body to be
    # too large; a batch's results say what each line is; the health check has a schema.
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and {"post_grade", "get_grade", "batch_results", "review_feed"} <= set(ids)
    gets = [op for path in schema["paths"].values() for method, op in path.items() if method == "get"]
    assert all("413" not in op["responses"] for op in gets)
    results = schema["paths"]["/v1/batches/{batch_id}/results"]["get"]["responses"]["200"]["content"]
    lines = [ref["$ref"].rsplit("/", 1)[1] for ref in results["application/x-ndjson"]["schema"]["oneOf"]]
    assert lines == ["StoredGrade", "StoredFailure", "Pending"]
    assert all(name in schema["components"]["schemas"] for name in lines)
    health = schema["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert health["$ref"].endswith("/Health") and httpx.get(api.url("/healthz")).json()["rubric"]["questions"] == 20
    question = schema["components"]["schemas"]["GradeIn"]["properties"]["question"]
    assert question["anyOf"] == [{"type": "string"}, {"type": "integer"}]


# --- idempotency keys: a request without ids, sent again after its answer was lost --------------------


def keyed(api: Api, path: str, body: Any, key: str, token: str | None = None) -> httpx.Response:
    headers = {**Server.auth(token or api.alice), "Idempotency-Key": key}
    return httpx.post(api.url(path), json=body, headers=headers, timeout=60)


def test_a_grade_sent_again_with_its_idempotency_key_is_the_stored_grade(api):
    key = uid("key")
    body = {"question": 1, "answer": answer_text(key)}  # no id: without the key, each post is a new grade
    calls = api.llm.calls
    first = keyed(api, "/v1/grades", body, key)
    assert first.status_code == 201, first.text
    again = keyed(api, "/v1/grades", {**body, "question": Q1.id}, key)  # the question by id: the same request
    assert again.status_code == 200 and again.json() == first.json(), again.text
    assert api.llm.calls == calls + 1
    assert rows_of(api.db, "select count(*) from grades where answer = ?", body["answer"]) == [(1,)]

    other = keyed(api, "/v1/grades", {**body, "answer": answer_text(key + "-other")}, key)
    assert other.status_code == 422, other.text
    assert other.json()["detail"].startswith(f"Idempotency-Key {key!r} was sent before with another request")
    assert first.json()["id"] in other.json()["detail"]
    assert [(e["loc"], e["type"]) for e in other.json()["errors"]] == [
        (["header", "Idempotency-Key"], "idempotency_key_reused")
    ]

    # Keys are each caller's own: bob's request with alice's key is his own.
    bobs = keyed(api, "/v1/grades", body, key, api.bob)
    assert bobs.status_code == 201 and bobs.json()["id"] != first.json()["id"], bobs.text


def test_a_batch_without_ids_sent_again_with_its_idempotency_key_is_the_stored_batch(api):
    key = uid("bkey")
    rows = [{"question": 1, "answer": answer_text(f"{key}-{i}")} for i in range(3)]
    first = keyed(api, "/v1/batches", {"rows": rows}, key)
    assert first.status_code == 202, first.text
    api.wait_batch(first.json()["id"])
    calls, batches = api.llm.calls, rows_of(api.db, "select count(*) from batches")
    again = keyed(api, "/v1/batches", {"rows": rows}, key)
    assert again.status_code == 200 and again.json() == first.json() | {"graded": 3, "pending": 0, "done": True}
    assert api.llm.calls == calls and rows_of(api.db, "select count(*) from batches") == batches

    for other in (rows[::-1], rows[:2], [{**rows[0], "candidate": "someone"}, *rows[1:]]):
        response = keyed(api, "/v1/batches", {"rows": other}, key)
        assert response.status_code == 422 and "was sent before with another request" in response.text
    as_grade = keyed(api, "/v1/grades", rows[0], key)  # a batch's key is no grade's
    assert as_grade.status_code == 422 and f"which made batch {first.json()['id']}" in as_grade.text
    assert keyed(api, "/v1/batches", {"rows": rows}, uid("bkey")).status_code == 202  # a new key: a new batch


def test_identical_batches_sent_at_once_make_one_batch(api):
    async def at_once(body: dict[str, Any], headers: dict[str, str], n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.server.url, headers=headers, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/batches", json=body) for _ in range(n)))

    auth = Server.auth(api.alice)
    key = uid("ckey")
    unnamed = {"rows": [{"question": 1, "answer": answer_text(f"{key}-{i}")} for i in range(4)]}
    named = {"rows": [{"question": 1, "answer": answer_text(f"{key}-n{i}"), "id": uid("cid")} for i in range(4)]}
    for body, headers in ((unnamed, {**auth, "Idempotency-Key": key}), (named, auth)):
        responses = asyncio.run(at_once(body, headers, 6))
        assert sorted(r.status_code for r in responses) == [200] * 5 + [202], [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        answers = [row["answer"] for row in body["rows"]]
        stored = rows_of(api.db, "select count(*) from grades where answer in (?, ?, ?, ?)", *answers)
        assert stored == [(4,)]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256])
def test_a_malformed_idempotency_key_is_422(api, key):
    response = keyed(api, "/v1/grades", {"question": 1, "answer": "x"}, key)
    assert response.status_code == 422 and response.json()["detail"].startswith("Idempotency-Key: must be")
    assert [e["loc"] for e in response.json()["errors"]] == [["header", "Idempotency-Key"]]
