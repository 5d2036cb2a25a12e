"""`grader serve --db postgresql://...`: the same store against a real PostgreSQL server.

A throwaway cluster (`initdb` + `pg_ctl` in a temporary folder, listening on a unix socket there only) is
started once for the module; each test gets its own database. As root, the cluster runs as the
`postgres` user (PostgreSQL refuses to run as root). Skipped when the PostgreSQL binaries are absent.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.loopback import LoopbackLLM
from tests.support.service import Server
from tests.test_service import QUESTIONS, SESSION_COOKIE, UNCOMMIT, Api, answer_text, llm_env, sent_answers, wait_for

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL driver (psycopg) is not installed")


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl (Debian keeps them off PATH), else PATH."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(folder, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


@dataclass
class Cluster:
    socket_dir: Path
    port: int
    user: str

    def connect(self, dbname: str = "postgres") -> Any:
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=self.user, dbname=dbname, autocommit=True
        )

    def create_database(self, prefix: str) -> tuple[str, str]:
        """A new empty database: its name and the `--db` URL of it."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with self.connect() as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name, f"postgresql://{self.user}@/{name}?host={self.socket_dir}&port={self.port}"

    def query(self, dbname: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as con:
            return con.execute(sql, params).fetchall()

    def execute(self, dbname: str, sql: str, *params: Any) -> None:
        with self.connect(dbname) as con:
            con.execute(sql, params)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: no initdb and pg_ctl in /usr/lib/postgresql/*/bin or on PATH")
    as_owner: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="grader-pg-"))  # not under pytest's 0700 root-owned tmp: postgres must reach it
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(root)
            pytest.skip("running as root and runuser is missing (needed to run PostgreSQL as postgres)")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_owner = [runuser, "-u", "postgres", "--"]
    data, log, port = root / "data", root / "server.log", 5432  # a unix socket in `root` only: no port is taken

    def run(*command: str | Path) -> None:
        done = subprocess.run([*as_owner, *map(str, command)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}\n{server_log}")

    try:
        run(bindir / "initdb", "-D", data, "-U", "grader", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        run(bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        try:
            yield Cluster(root, port, "grader")
        finally:
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PgApi(Api):
    cluster: Cluster | None = None
    dbname: str = ""

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        assert self.cluster is not None
        return self.cluster.query(self.dbname, sql, *params)


@pytest.fixture(scope="module")
def llm() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as server:
        yield server


@pytest.fixture(scope="module")
def pg_api(cluster: Cluster, llm: LoopbackLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgApi]:
    dbname, url = cluster.create_database("api")
    cache = tmp_path_factory.mktemp("pg-cache")
    with Server(url, backend="openai", env=llm_env(llm), cache_dir=cache, args=("--concurrency", "32")) as server:
        yield PgApi(server, llm, server.token("alice"), server.token("bob"), cluster, dbname)


def test_the_service_stores_everything_in_postgresql(pg_api):
    api = pg_api
    assert api.db.startswith("postgresql://")
    body = {"question": 1, "answer": answer_text("pg-1"), "id": "pg-1", "candidate": "cand-pg"}
    calls = api.llm.calls
    first = api.post("/v1/grades", body)
    assert first.status_code == 201, first.text
    assert first.json()["id"] == "pg-1" and first.json()["question_id"] == QUESTIONS[0].id
    assert api.get("/v1/grades/pg-1").json() == first.json()
    again = api.post("/v1/grades", body)
    assert again.status_code == 200 and again.json() == first.json()
    conflict = api.post("/v1/grades", {**body, "answer": "another answer"})
    assert conflict.status_code == 409 and "pg-1" in conflict.json()["detail"]
    assert api.llm.calls == calls + 1
    # In PostgreSQL itself, not in a SQLite file next to it.
    assert api.query("select id, status, candidate, tier from grades where id = %s", "pg-1") == [
        ("pg-1", "graded", "cand-pg", first.json()["tier"])
    ]

    rows = [
        {"id": f"pg-row-{i}", "question": QUESTIONS[i % 3].id, "answer": answer_text(f"pg-row-{i}")} for i in range(20)
    ]
    posted = api.post("/v1/batches", {"rows": rows}, api.bob)
    assert posted.status_code == 202, posted.text
    state = api.wait_batch(posted.json()["id"])
    assert (state["total"], state["graded"], state["pending"]) == (20, 20, 0)
    results = api.results(posted.json()["id"])
    assert [r["id"] for r in results] == [r["id"] for r in rows] and all(r["tier"] for r in results)
    assert api.query("select count(*) from grades where batch_id = %s and status = 'graded'", posted.json()["id"]) == [
        (20,)
    ]

    # Erasure in one transaction: a review, a batch row, a grade posted alone, on PostgreSQL's constraints.
    assert api.post("/v1/reviews", {"grade_id": "pg-1", "tier": "great"}).status_code == 201
    auth = Server.auth(api.alice)
    erased = httpx.delete(api.url("/v1/grades"), params={"candidate": "cand-pg"}, headers=auth)
    assert erased.status_code == 200 and erased.json()["grades"] == 1 and erased.json()["reviews"] == 1, erased.text
    row = httpx.delete(api.url("/v1/grades/pg-row-0"), headers=auth)
    assert row.status_code == 200 and api.get(f"/v1/batches/{posted.json()['id']}").json()["total"] == 19
    assert api.query("select count(*) from grades where id in ('pg-1', 'pg-row-0')") == [(0,)]
    assert api.query("select count(*) from reviews where grade_id = 'pg-1'") == [(0,)]


def test_reviews_a_revoked_token_and_calibration_on_postgresql(pg_api):
    api = pg_api
    name = f"carol-{uuid.uuid4().hex[:6]}"
    carol = api.server.token(name)
    grades = {}
    for i in range(3):
        response = api.post(
            "/v1/grades", {"question": i + 1, "answer": answer_text(f"{name}-{i}"), "id": f"{name}-{i}"}
        )
        assert response.status_code == 201, response.text
        grades[response.json()["id"]] = response.json()["tier"]
    ids = list(grades)
    other = {gid: "poor" if tier != "poor" else "great" for gid, tier in grades.items()}
    for token, grade_id, tier in [
        (carol, ids[0], grades[ids[0]]),
        (carol, ids[1], grades[ids[1]]),
        (api.alice, ids[0], other[ids[0]]),
    ]:
        review = api.post("/v1/reviews", {"grade_id": grade_id, "tier": tier, "reviewer": "someone-else"}, token)
        assert review.status_code == 201, review.text
    assert api.query(
        "select reviewer, count(*) from reviews where grade_id = any(%s) group by reviewer order by reviewer", ids
    ) == [
        ("alice", 1),
        (name, 2),
    ]

    login = httpx.post(api.url("/login"), data={"token": carol}, follow_redirects=False)
    assert login.status_code == 303
    with_cookie = {"Cookie": f"{SESSION_COOKIE}={login.cookies[SESSION_COOKIE]}"}
    assert httpx.get(api.url(f"/v1/grades/{ids[0]}"), headers=with_cookie).status_code == 200
    revoked = subprocess.run(
        [sys.executable, "-m", "grader", "tokens", "revoke", name, "--db", api.db],
        env=api.server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    for headers in (Server.auth(carol), with_cookie):
        assert httpx.get(api.url(f"/v1/grades/{ids[0]}"), headers=headers).status_code == 401
        late = httpx.post(api.url("/v1/reviews"), json={"grade_id": ids[2], "tier": "great"}, headers=headers)
        assert late.status_code == 401
    assert api.query("select count(*) from reviews where grade_id = %s", ids[2]) == [(0,)]
    assert api.get(f"/v1/grades/{ids[0]}").status_code == 200

    done = subprocess.run(
        [sys.executable, "-m", "grader", "calibrate", "--db", api.db, "--format", "json", "--resamples", "200"],
        env=api.server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # carol's reviews stay after her token is revoked: they were hers when she made them.
    assert report["interviewers"][name]["n"] == 2
    assert report["interviewers"][name]["exact_agreement"]["value"] == 1.0
    assert "someone-else" not in report["interviewers"]
    paired = api.query("select count(distinct (grade_id, reviewer)) from reviews")[0][0]
    assert report["counts"]["paired"] == paired


def test_concurrent_posts_on_postgresql_store_each_grade_once(pg_api):
    api = pg_api
    prefix = uuid.uuid4().hex[:8]
    ids = [f"pgc-{prefix}-{i}" for i in range(64)]
    same = f"pgc-{prefix}-same"
    contested = f"pgc-{prefix}-contested"
    calls = api.llm.calls

    async def at_once(bodies: list[dict[str, Any]]) -> list[httpx.Response]:
        async def one(body: dict[str, Any]) -> httpx.Response:
            async with httpx.AsyncClient(
                base_url=api.server.url, headers=Server.auth(api.alice), timeout=120
            ) as client:
                return await client.post("/v1/grades", json=body)

        return await asyncio.gather(*(one(b) for b in bodies))

    distinct = asyncio.run(
        at_once([{"question": i % 3 + 1, "answer": answer_text(g), "id": g} for i, g in enumerate(ids)])
    )
    assert [r.status_code for r in distinct] == [201] * len(ids), [r.text for r in distinct if r.status_code != 201][:3]
    repeated = asyncio.run(at_once([{"question": 1, "answer": answer_text(same), "id": same}] * 8))
    assert sorted(r.status_code for r in repeated) == [200] * 7 + [201] and len({r.text for r in repeated}) == 1
    fought = asyncio.run(
        at_once([{"question": 1, "answer": answer_text(f"{contested}-{i}"), "id": contested} for i in range(8)])
    )
    assert sorted(r.status_code for r in fought) == [201] + [409] * 7, [r.text for r in fought]

    stored = Counter(i for (i,) in api.query("select id from grades where id like %s", f"pgc-{prefix}-%"))
    assert stored == Counter([*ids, same, contested])
    # each distinct answer graded once, the repeated one once; a contested post that comes after the first
    # was stored is refused before grading, so those cost one call to eight, as the posts interleave
    assert calls + len(ids) + 1 + 1 <= api.llm.calls <= calls + len(ids) + 1 + 8


def test_a_batch_survives_a_kill_and_restart_on_postgresql(cluster, tmp_path):
    """As on SQLite: SIGKILL with 4 requests held by the model, restart, nothing graded before is regraded."""
    answered, width, total = 12, 4, 40
    dbname, url = cluster.create_database("kill")
    with LoopbackLLM(hold_from=answered) as llm:
        server = Server(
            url, backend="openai", env=llm_env(llm), cache_dir=tmp_path / "cache", args=("--concurrency", str(width))
        )
        with server:
            api = Api(server, llm, server.token("alice"), "")
            rows = [
                {"id": f"k{i}", "question": QUESTIONS[i % 3].id, "answer": answer_text(f"kill-{i}")}
                for i in range(total)
            ]
            posted = api.post("/v1/batches", {"rows": rows})
            assert posted.status_code == 202, posted.text
            wait_for(lambda: llm.calls >= answered + width, seconds=60, what="the model holding 4 requests")
            server.kill()
        calls_at_kill = llm.calls
        llm.release()
        assert calls_at_kill == answered + width
        committed = [i for (i,) in cluster.query(dbname, "select id from grades where status = 'graded' order by seq")]
        assert len(committed) <= answered
        forced = committed[-3:]  # graded, but as if the kill came before their commit: only the cache has them
        cluster.execute(dbname, UNCOMMIT + " where id = any(%s)", forced)
        with Server(url, backend="openai", env=llm_env(llm), cache_dir=tmp_path / "cache") as restarted:
            api = Api(restarted, llm, api.alice, "")
            api.wait_batch(posted.json()["id"])
            results = api.results(posted.json()["id"])
    assert [r["id"] for r in results] == [r["id"] for r in rows] and all(r["status"] == "graded" for r in results)
    counts = Counter(sent_answers(llm))
    assert all(counts[a] == 1 for a in sent_answers(llm)[:answered])
    assert llm.calls == total + width
    assert cluster.query(dbname, "select count(*) from grades where status = 'graded'") == [(total,)]
