"""Batch grading: validation before any model call, error rows, resume after SIGKILL, injected faults,
the cache, duplicates, and secrets kept out of every file."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.batch.files import Columns, Writer, done_ids, scan
from grader.cli import app
from grader.grading.rows import column_names
from tests.support.loopback import LoopbackLLM

runner = CliRunner()
SECRET = "sk-test-do-not-leak-4242"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def answers(n: int, rubric, *, prefix: str = "r") -> list[dict]:
    qs = rubric.questions
    return [
        {
            "id": f"{prefix}{i}",
            "question": qs[i % len(qs)].number,
            "answer": f"Answer {i}: I check the logs, reproduce the problem and write tests.",
            "candidate": f"c{i % 3}",
        }
        for i in range(n)
    ]


def batch(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["batch", *args], env=env)


@pytest.fixture
def server_env(monkeypatch):
    def start(server: LoopbackLLM) -> LoopbackLLM:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("GRADER_MODEL", "gpt-4.1-mini")
        return server

    return start


# --- validation before any model call -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param(
            "a.jsonl",
            '{"id": "1", "question": 1, "answer": "x"}\n{"id": "2", "question": 1,\n',
            "a.jsonl:2: invalid JSON",
            id="bad-json",
        ),
        pytest.param(
            "a.jsonl",
            '{"id": "1", "question": 1, "answer": "x"}\n{"id": "1", "question": 2, "answer": "y"}\n',
            "a.jsonl:2: duplicate id '1' (first at line 1)",
            id="duplicate-id",
        ),
        pytest.param("a.jsonl", '{"id": "1", "answer": "x"}\n', "a.jsonl:1: missing question", id="missing-field"),
        pytest.param("a.jsonl", "[1, 2]\n", "a.jsonl:1: expected a JSON object", id="not-object"),
        pytest.param("a.csv", "id,question\n1,2\n", "a.csv:1: missing column(s) answer", id="missing-column"),
        pytest.param(
            "a.csv", 'id,question,answer\n1,2,"unclosed\n2,3,fine\n', "a.csv:2: bad CSV quoting", id="bad-quoting"
        ),
        pytest.param("a.csv", "id,question,answer\n1,2,x,extra\n", "a.csv:2: expected 3 fields", id="extra-field"),
    ],
)
def test_malformed_input_is_reported_by_line_before_any_model_call(tmp_path, server_env, name, content, message):
    source = tmp_path / name
    source.write_text(content)
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"))
        assert server.calls == 0
    assert result.exit_code == 13
    assert message in result.stderr.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "out.jsonl").exists()


def test_skip_invalid_grades_the_rest(tmp_path, server_env, rubric):
    rows = answers(3, rubric)
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(rows[0]) + "\nnot json\n" + json.dumps(rows[1]) + "\n" + json.dumps(rows[0]) + "\n")
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "--skip-invalid")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in out) == ["r0", "r1"]


# --- rows that cannot be graded --------------------------------------------------------------------------


def test_ungradable_rows_are_written_with_their_error_and_the_run_goes_on(tmp_path, server_env, rubric):
    rows = answers(4, rubric) + [
        {"id": "bad-q", "question": "nope", "answer": "x y z"},
        {"id": "empty", "question": 1, "answer": "   "},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1  # some rows failed
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert set(out) == {"r0", "r1", "r2", "r3", "bad-q", "empty"}
    assert out["bad-q"]["error_kind"] == "unknown_question" and out["bad-q"]["tier"] is None
    assert out["empty"]["error_kind"] == "empty_answer"
    assert out["r0"]["tier"] == "mediocre" and out["r0"]["candidate"] == "c0" and out["r0"]["error_message"] is None
    assert "failed 2 (empty_answer 1, unknown_question 1)" in result.stdout


def test_injected_429_500_timeouts_and_malformed_replies_all_end_recorded(tmp_path, server_env, rubric):
    faults = {0: "429", 1: "500", 2: "malformed", 3: "hang", 5: "429", 7: "500", 9: "malformed"}
    rows = answers(12, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with LoopbackLLM(fault=faults.get, hang_seconds=1.0) as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "-c", "4", "--timeout", "0.3", "--no-cache")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    assert all((r["tier"] is None) != (r["error_message"] is None) for r in out)
    graded = [r for r in out if r["tier"]]
    assert len(graded) == 12, result.output  # every fault is recovered from by a retry or a re-ask
    assert sum(r["attempts"] for r in graded) == 12 + len(faults)


def test_retries_exhausted_is_an_error_row(tmp_path, server_env, rubric):
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    with LoopbackLLM(fault=lambda n: "500") as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "--max-attempts", "2", "-c", "1")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["error_kind"] for r in out] == ["transport", "transport"]
    assert result.exit_code == 1 and "failed 2 (transport 2)" in result.stdout


# --- cache, duplicates, secrets -------------------------------------------------------------------------


def test_rerun_makes_no_model_calls_and_duplicates_are_graded_once(tmp_path, server_env, rubric):
    rows = answers(5, rubric)
    rows.append({**rows[0], "id": "dup"})  # the same answer to the same question
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with LoopbackLLM() as server:
        server_env(server)
        first = batch(str(source), "-o", str(tmp_path / "a.jsonl"))
        calls = server.calls
        second = batch(str(source), "-o", str(tmp_path / "b.csv"))
        assert server.calls == calls == 5
    assert first.exit_code == 0 and second.exit_code == 0
    assert "1 duplicate answer(s) graded once" in first.stdout
    assert "6 from cache; 0 duplicate answer(s) graded once; 0 model call(s)" in second.stdout
    with (tmp_path / "b.csv").open() as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 6 and records[0]["candidate"] in {"c0", "c1", "c2"}


def test_the_api_key_never_reaches_output_cache_or_logs(tmp_path, server_env, rubric, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("GRADER_CACHE_DIR", str(cache_dir))
    source = write_jsonl(tmp_path / "in.jsonl", answers(3, rubric) + [{"id": "x", "question": "zzz", "answer": "a b"}])
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"))
        assert server.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in result.output
    for path in [tmp_path / "out.jsonl", *cache_dir.iterdir()]:
        assert SECRET.encode() not in path.read_bytes(), path


# --- resume ----------------------------------------------------------------------------------------------


def test_resume_repairs_a_torn_line_and_grades_only_what_is_missing(tmp_path, server_env, rubric):
    rows = answers(6, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        assert batch(str(source), "-o", str(out), "--no-cache").exit_code == 0
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(lines[:3]) + lines[3][:25])  # killed while writing the fourth line
        assert done_ids(out, "id") == {json.loads(line)["id"] for line in lines[:3]}
        again = batch(str(source), "-o", str(out), "--no-cache")
        assert again.exit_code == 1 and "exists" in again.stderr
        before = server.calls
        resumed = batch(str(source), "-o", str(out), "--resume", "--no-cache")
        assert resumed.exit_code == 0, resumed.output
        assert server.calls - before == 3
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows)


def _wait_until(ready: Callable[[], bool], *, seconds: float) -> None:
    """Poll another process's visible state (a file, /proc) until `ready()` or `seconds` pass: it waits on
    that process, it is not a timed assertion (the caller asserts the state afterwards)."""
    deadline = time.monotonic() + seconds
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.02)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"  # dead, not yet reaped
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_run_then_resume_grades_every_id_exactly_once(tmp_path, rubric, workers):
    rows = answers(40, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM(latency=0.05) as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": SECRET,
            "GRADER_CACHE_DIR": str(tmp_path / "cache"),
        }
        cmd = [
            sys.executable,
            "-m",
            "grader",
            "batch",
            str(source),
            "-o",
            str(out),
            "-c",
            "2",
            "--workers",
            str(workers),
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until(lambda: out.exists() and out.read_text().count("\n") >= 8, seconds=60)
        children = _children(proc.pid)
        assert len(children) == (workers if workers > 1 else 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait_until(lambda: all(map(_gone, children)), seconds=30)  # nothing keeps writing behind --resume
        assert all(map(_gone, children))
        partial = out.read_text()
        assert 8 <= partial.count("\n") < 40
        resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # no torn line: every line parses
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(ids) == len(set(ids))
    assert all(r["tier"] for r in records)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_cleanly_says_what_was_written_and_resume_finishes(tmp_path, rubric, workers):
    # Enough rows that the run is still going when Ctrl-C arrives, even on a loaded machine.
    rows = answers(300, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM(latency=0.05) as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": SECRET,
            "GRADER_CACHE_DIR": str(tmp_path / "cache"),
        }
        cmd = [
            sys.executable,
            "-m",
            "grader",
            "batch",
            str(source),
            "-o",
            str(out),
            "-c",
            "2",
            "--workers",
            str(workers),
        ]
        # Its own process group, as a terminal's foreground job: Ctrl-C reaches the parent and its workers.
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        _wait_until(lambda: out.exists() and out.read_text().count("\n") >= 8, seconds=60)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        written = out.read_text().splitlines()
        assert f"interrupted: {len(written)} row(s) written to {out}; finish with --resume" in stderr
        assert "Traceback" not in stderr
        resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(ids) == len(set(ids))


# --- worker processes -----------------------------------------------------------------------------------


def _cli(args: list[str], server: LoopbackLLM, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": SECRET,
        "GRADER_MODEL": "gpt-4.1-mini",
        "GRADER_CACHE_DIR": str(cache),
    }
    return subprocess.run(
        [sys.executable, "-m", "grader", "batch", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_workers_share_a_run_every_id_once_duplicates_graded_once(tmp_path, rubric, suffix):
    rows = answers(30, rubric)
    rows += [{**rows[0], "id": "dup-a"}, {**rows[7], "id": "dup-b", "question": rubric.find(rows[7]["question"]).id}]
    rows.append({"id": "bad-q", "question": "no-such-question", "answer": "words"})
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / f"out.{suffix}"
    with LoopbackLLM() as server:
        first = _cli([str(source), "-o", str(out), "-c", "8", "--workers", "2"], server, tmp_path / "cache")
        assert server.calls == 30  # duplicates (by number or by id) met in one worker and were asked once
        rerun = _cli(
            [str(source), "-o", str(tmp_path / "again.jsonl"), "-c", "8", "--workers", "2"], server, tmp_path / "cache"
        )
        assert server.calls == 30  # the workers' shared SQLite cache answered everything
    assert first.returncode == 1, first.stderr  # the bad question is an error row
    assert "graded 32" in first.stdout and "failed 1 (unknown_question 1)" in first.stdout
    reused = re.search(r"(\d+) from cache; (\d+) duplicate answer\(s\) graded once; 30 model call\(s\)", first.stdout)
    assert reused and int(reused[1]) + int(reused[2]) == 2  # in flight together, or the first was already cached
    assert "concurrency 8 (lowest 8 after rate limits) over 2 worker processes" in first.stdout
    assert "32 from cache" in rerun.stdout and "0 model call(s)" in rerun.stdout
    if suffix == "csv":
        text = out.read_text()
        assert text.count("id,question,answer,candidate") == 1  # one header, written before the workers
        with out.open(newline="") as handle:
            ids = [r["id"] for r in csv.DictReader(handle)]
    else:
        ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows)


def test_workers_need_an_http_backend_and_direct_requests(tmp_path, rubric):
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    local = batch(str(source), "-o", str(tmp_path / "a.jsonl"), "--backend", "local", "--workers", "2")
    assert local.exit_code == 1 and "the local backend grades in one process" in local.stderr
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    api = batch(str(source), "-o", str(tmp_path / "b.jsonl"), "--via", "batch-api", "--workers", "2", env=env)
    assert api.exit_code == 1 and "--workers applies to direct requests" in api.stderr


def test_a_worker_that_hits_a_bug_stops_the_run_with_one_line(tmp_path, rubric):
    from grader.backends.fake import FakeBackend
    from grader.batch.files import read_rows
    from grader.batch.runner import BatchStats
    from grader.batch.workers import ShardedJob, WorkerFailed, Workers
    from grader.grading.engine import Engine

    source = write_jsonl(tmp_path / "in.jsonl", answers(40, rubric))
    out = tmp_path / "out.jsonl"

    def make_engine(concurrency: int) -> Engine:
        backend = FakeBackend(responder=lambda *_: RuntimeError("a bug in the backend"))
        return Engine(backend, rubric=rubric, concurrency=concurrency, stats=BatchStats())

    job = ShardedJob(
        rows=lambda: (r for r in read_rows(source, Columns()) if not isinstance(r, Exception)),
        make_engine=make_engine,
        rubric=rubric,
        output=out,
        header=["id"],
        skip_ids=set(),
        concurrency=4,
    )
    with pytest.raises(WorkerFailed) as info:
        Workers(job, 2).collect(total=40)
    assert info.value.exit_code == 70
    assert "internal error: RuntimeError: a bug in the backend" in str(info.value)


def test_auto_workers_and_sharding():
    from grader.batch.files import Row
    from grader.batch.workers import auto_workers, shard_of
    from grader.rubric import load_rubric

    assert auto_workers(64, cpus=2) == 2 and auto_workers(256, cpus=4) == 4
    assert auto_workers(8, cpus=16) == 1 and auto_workers(64, cpus=1) == 1
    assert auto_workers(256, cpus=4, platform="darwin") == 1
    rubric = load_rubric()
    q = rubric.find(3)
    by_number = Row(id="a", question="3", answer="same words", data={}, line=1)
    by_id = Row(id="b", question=q.id, answer="same words", data={}, line=2)
    assert shard_of(by_number, rubric, 7) == shard_of(by_id, rubric, 7)
    spread = {
        shard_of(Row(id=str(i), question="3", answer=f"answer {i}", data={}, line=i), rubric, 4) for i in range(64)
    }
    assert spread == {0, 1, 2, 3}


# --- pieces -------------------------------------------------------------------------------------------


def test_an_unexpected_error_stops_the_run_instead_of_hanging_it(tmp_path, rubric):
    from grader.backends.fake import FakeBackend
    from grader.batch.files import read_rows
    from grader.batch.runner import BatchStats, run_batch
    from grader.grading.engine import Engine

    source = write_jsonl(tmp_path / "in.jsonl", answers(40, rubric))  # more rows than the queue holds
    rows = [r for r in read_rows(source, Columns()) if not isinstance(r, Exception)]
    backend = FakeBackend([RuntimeError("a bug, not a row's problem")] * 40)
    writer = Writer(tmp_path / "out.jsonl", column_names(list(rows[0].data)), append=False)

    async def run() -> None:
        await asyncio.wait_for(
            run_batch(rows, engine=Engine(backend, rubric=rubric, concurrency=2, stats=BatchStats()), writer=writer),
            timeout=30,
        )  # a guard: before the fix the producer waited on a full queue forever

    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(run())
    writer.close()


def test_output_columns_carry_input_through_and_avoid_collisions(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "question": 1, "answer": "x", "tier": "strong"}])
    found = scan(source, Columns())
    header = column_names(found.header)
    assert header[:4] == ["id", "question", "answer", "tier"] and "grade_tier" in header
    writer = Writer(tmp_path / "o.csv", header, append=False)
    writer.write(
        {"id": "1", "question": 1, "answer": "x", "tier": "strong", "grade_tier": "great", "missed_points": ["a", "b"]}
    )
    writer.close()
    with (tmp_path / "o.csv").open() as handle:
        record = next(csv.DictReader(handle))
    assert record["tier"] == "strong" and record["grade_tier"] == "great" and record["missed_points"] == '["a", "b"]'


# --- the Batch API ---------------------------------------------------------------------------------------


def test_batch_api_round_trip_against_a_loopback_server(tmp_path, server_env, rubric, waits):
    rows = answers(5, rubric)
    rows.append({**rows[1], "id": "dup"})
    rows.append({"id": "bad-q", "question": "nope", "answer": "words here"})
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(out), "--via", "batch-api", "--no-cache")
        assert len(server.batches) == 1 and server.calls == 5  # the duplicate answer is requested once
        uploaded = server.files["file-1"].decode().splitlines()
    assert result.exit_code == 1, result.output  # the unknown question is a failed row
    first = json.loads(uploaded[0])
    assert first["method"] == "POST" and first["url"] == "/v1/chat/completions"
    assert first["body"]["response_format"]["type"] == "json_schema" and first["body"]["model"] == "gpt-4.1-mini"
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {r["id"] for r in rows}
    assert records["dup"]["tier"] == records["r1"]["tier"] == "mediocre"
    assert records["bad-q"]["error_kind"] == "unknown_question"
    assert waits[:2] == [1.0, 2.0]  # polled with backoff, never slept in the test
    assert "estimated cost" in result.stdout and SECRET not in out.read_text()


def test_export_requests_then_import_results_offline(tmp_path, server_env, rubric):
    rows = answers(3, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    requests = tmp_path / "requests.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        exported = batch(str(source), "-o", str(tmp_path / "unused.jsonl"), "--export-requests", str(requests))
        assert exported.exit_code == 0 and server.calls == 0
        # A self-hosted engine runs the file (here: the loopback server's own answers).
        lines = []
        for line in requests.read_text().splitlines():
            request = json.loads(line)
            status, body, _ = server.respond(request["body"], 0)
            lines.append(
                json.dumps({"custom_id": request["custom_id"], "response": {"status_code": status, "body": body}})
            )
        # break one reply (a checklist verdict no schema allows): that row must come back invalid_output
        assert '\\"verdict\\": \\"no\\"' in lines[1]
        lines[1] = lines[1].replace('\\"verdict\\": \\"no\\"', '\\"verdict\\": \\"perhaps\\"')
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(lines) + "\n")
    imported = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "--import-results", str(results))
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert records["r0"]["tier"] == "mediocre" and records["r2"]["tier"] == "mediocre"
    assert records["r1"]["error_kind"] == "invalid_output"
    assert imported.exit_code == 1 and "failed 1 (invalid_output 1)" in imported.stdout


def test_checklist_batch_through_a_real_server_groups_requests_by_question(tmp_path, server_env, rubric):
    rows = [{"id": f"r{i}", "question": 1 + i % 3, "answer": f"Answer {i}: I check the logs."} for i in range(12)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(
            str(source), "-o", str(tmp_path / "out.jsonl"), "--mode", "checklist", "-c", "1", "--workers", "1"
        )
        sent = server.requests
    assert result.exit_code == 0, result.output
    # one question's requests go out together, so a single-slot server reuses its prompt prefix
    questions = [r["messages"][1]["content"].split("\n")[1] for r in sent]
    assert questions == sorted(questions, key=questions.index)
    assert len(set(questions)) == 3
    body = sent[0]
    assert list(body["response_format"]["json_schema"]["schema"]["properties"])[0] == "p1"
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 12 and all(r["tier"] in ("great", "mediocre", "poor") for r in out)
    assert all(r["usage"]["cached_tokens"] in (0, 896) for r in out)
    assert "from the server's prefix cache" in result.stdout


def test_a_per_item_checklist_cannot_go_through_the_batch_api(tmp_path, server_env, rubric):
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(
            str(source),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--mode",
            "checklist",
            "--checklist-calls",
            "per-item",
            "--export-requests",
            str(tmp_path / "requests.jsonl"),
        )
        assert server.calls == 0
    assert result.exit_code != 0
    assert "per-item" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "requests.jsonl").exists() or not (tmp_path / "requests.jsonl").read_text()
