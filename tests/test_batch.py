"""Batch grading: validation before any model call, error rows, resume after SIGKILL, injected faults,
the cache, duplicates, and secrets kept out of every file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.batch.files import Columns, Writer, done_ids, scan
from grader.cli import app
from grader.grading.rows import column_names
from grader.rubric import save_rubric
from tests.support.loopback import LoopbackLLM
from tests.support.process import foreground_job, wait_until

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
        pytest.param(
            "a.jsonl",
            '{"id": "1", "question": 1, "answer": "I check the logs.", "answer": "I restart it."}\n',
            "a.jsonl:1: key 'answer' given twice",
            id="key-twice",
        ),
        pytest.param("a.jsonl", '{"id": "1", "answer": "x"}\n', "a.jsonl:1: missing question", id="missing-field"),
        pytest.param("a.jsonl", "[1, 2]\n", "a.jsonl:1: expected a JSON object", id="not-object"),
        pytest.param(
            "a.jsonl",
            '{"id": "1", "question": 1, "answer": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
            "a.jsonl:1: JSON nested too deeply",
            id="deep-json",
        ),
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
    assert "6 from cache; 0 duplicate answer(s) graded once; 0 request(s) to the model" in second.stdout
    # which rubric graded: a team's numbers 1-20 are the packaged questions too, and nothing said so
    assert f"; by the packaged rubric {rubric.name} (20 questions; --rubric or GRADER_RUBRIC" in first.stdout
    own = tmp_path / "mine.yaml"
    save_rubric(rubric.with_questions(rubric.questions[:3]), own)
    with LoopbackLLM() as server:
        server_env(server)
        third = batch(str(source), "-o", str(tmp_path / "c.jsonl"), "--rubric", str(own))
    assert f"; by rubric {rubric.name} ({own}, 3 questions)" in third.stdout
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
        assert again.exit_code == 2 and "exists" in again.stderr
        before = server.calls
        resumed = batch(str(source), "-o", str(out), "--resume", "--no-cache")
        assert resumed.exit_code == 0, resumed.output
        assert server.calls - before == 3
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows)


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
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 8, seconds=60)
        children = _children(proc.pid)
        assert len(children) == (workers if workers > 1 else 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until(lambda: all(map(_gone, children)), seconds=30)  # nothing keeps writing behind --resume
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


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_cleanly_says_what_was_written_and_resume_finishes(tmp_path, rubric, workers, how):
    """Ctrl-C reaches the whole job; `kill` (SIGTERM: systemd, Kubernetes) reaches only grader itself, which
    stops the same way (trial O: it died without a word)."""
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
        proc = foreground_job(cmd, env)
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 8, seconds=60)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        written = out.read_text().splitlines()
        assert f"interrupted: {len(written)} row(s) written to {out}; finish with --resume" in stderr
        assert "Traceback" not in stderr
        resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(ids) == len(set(ids))
    # the summary of the resumed run counts the whole file too, not only what it graded itself
    tiers = Counter(r["tier"] for r in records)
    whole = ", ".join(f"{t} {tiers[t]}" for t in ("great", "mediocre", "poor"))
    said = f"with the {len(written)} rows kept from before, {out} holds 300 rows: 300 grades ({whole}) and 0 failed"
    assert said in resumed.stdout


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
    reused = re.search(
        r"(\d+) from cache; (\d+) duplicate answer\(s\) graded once; 30 request\(s\) to the model", first.stdout
    )
    assert reused and int(reused[1]) + int(reused[2]) == 2  # in flight together, or the first was already cached
    assert "concurrency 8 (lowest 8 after rate limits) over 2 worker processes" in first.stdout
    assert "32 from cache" in rerun.stdout and "0 request(s) to the model" in rerun.stdout
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
    assert local.exit_code == 2 and "the local backend grades in one process" in local.stderr
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    api = batch(str(source), "-o", str(tmp_path / "b.jsonl"), "--via", "batch-api", "--workers", "2", env=env)
    assert api.exit_code == 2 and "--workers applies to direct requests" in api.stderr


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


def test_exporting_the_rest_of_an_output_waits_for_no_run_writing_it(tmp_path, server_env, rubric):
    """Review: `--export-requests --resume` repairs the output it reads (a torn record cut) without the lock
    a run appending to it holds, so that run's rows could go to a replaced file."""
    import fcntl

    source = write_jsonl(tmp_path / "in.jsonl", answers(3, rubric))
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "r0", "torn', encoding="utf-8")
    with (tmp_path / "out.jsonl.lock").open("w") as held, LoopbackLLM() as server:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        server_env(server)
        result = batch(str(source), "-o", str(out), "--resume", "--export-requests", str(tmp_path / "requests.jsonl"))
    assert result.exit_code == 16, result.output
    assert out.read_text(encoding="utf-8") == '{"id": "r0", "torn'  # left as the other run has it


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


# --- issue 14: files that stay whole, runs that stop or go on as a user expects ------------------------

MULTILINE = 'First line, with a comma.\nSecond "quoted" line\n\nünïcødé after a blank line\r\nlast line'


def _graded_records(n: int) -> tuple[list[str], list[dict]]:
    """`n` output rows with multi-line answers, as `grader batch` writes them."""
    from grader.grading.contract import CoveredPoint, Grade
    from grader.grading.rows import to_record

    carried = [{"id": f"r{i}", "question": "1", "answer": f"{MULTILINE} {i}\n", "candidate": f"c{i}"} for i in range(n)]
    records = [
        to_record(
            Grade(
                question_id="q01",
                tier="mediocre",
                justification=f'Covers one point.\nMisses the rest, "mostly" {i}.',
                covered_points=[CoveredPoint(id="q01.logs", evidence="First line, with a comma.")],
                confidence=0.61,
                backend="openai",
                model="m",
            ),
            row,
        )
        for i, row in enumerate(carried)
    ]
    return column_names(list(carried[0])), records


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_resume_after_a_cut_at_every_byte_of_the_last_record_loses_and_shifts_nothing(tmp_path, suffix, monkeypatch):
    from grader.grading.rows import decode_cells, encode_cell

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not what this checks, a thousand times

    header, records = _graded_records(3)
    out = tmp_path / f"out.{suffix}"
    writer = Writer(out, header, append=False)
    for record in records[:2]:
        writer.write(record)
    writer.close()
    last_starts = out.stat().st_size
    writer = Writer(out, header, append=True)
    writer.write(records[2])
    writer.close()
    whole = out.read_bytes()
    expected = [{name: encode_cell(r.get(name)) for name in header} for r in records]
    newlines_inside = [i + 1 for i in range(last_starts, len(whole) - 1) if whole[i : i + 1] == b"\n"]
    assert suffix == "jsonl" or len(newlines_inside) >= 6  # cuts just after a newline inside a quoted field
    for cut in range(last_starts, len(whole)):
        out.write_bytes(whole[:cut])
        assert done_ids(out, "id") == {"r0", "r1"}, cut  # the torn record is cut off, never counted as done
        writer = Writer(out, header, append=True)  # what --resume does next: append the missing row
        writer.write(records[2])
        writer.close()
        if suffix == "csv":
            with out.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle, strict=True))
            assert rows == expected, cut
            assert [decode_cells(r)["answer"] for r in rows] == [r["answer"] for r in records]
        else:
            assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == records, cut


def test_resume_after_a_csv_cut_inside_a_quoted_answer_through_the_cli(tmp_path, server_env, rubric):
    rows = [{"id": f"r{i}", "question": 1 + i % 3, "answer": f"{MULTILINE} {i}"} for i in range(5)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.csv"
    with LoopbackLLM() as server:
        server_env(server)
        assert batch(str(source), "-o", str(out), "--workers", "1").exit_code == 0
        whole = out.read_bytes()
        with out.open(encoding="utf-8", newline="") as handle:
            graded = list(csv.DictReader(handle))
        last = whole.rindex(b"\n" + graded[-1]["id"].encode() + b",") + 1
        cuts = [i + 1 for i in range(last, len(whole) - 1) if whole[i : i + 1] == b"\n"][:4]
        assert len(cuts) == 4
        for cut in cuts:  # a crash or a full disk just after a newline inside the quoted answer
            out.write_bytes(whole[:cut])
            resumed = batch(str(source), "-o", str(out), "--resume", "--workers", "1")
            assert resumed.exit_code == 0, resumed.output
            with out.open(encoding="utf-8", newline="") as handle:
                again = list(csv.DictReader(handle, strict=True))
            assert sorted(r["id"] for r in again) == sorted(r["id"] for r in rows), cut
            assert all(r["tier"] == "mediocre" and r["answer"].startswith("First line") for r in again)
            assert sorted(again, key=lambda r: r["id"]) == sorted(graded, key=lambda r: r["id"])


def _as_an_earlier_version_wrote(
    rows: list[dict[str, str]], also: str | None = None, new: str = "red_flag_evidence"
) -> str:
    """`rows` of a CSV output as the version before `red_flag_evidence` wrote them: without that column (`new`:
    `grade_red_flag_evidence` where an input column has its name), and with a column of its own (`also`,
    cells "x") that this version no longer writes."""
    older = [c for c in rows[0] if c != new] + ([also] if also else [])
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(older)
    writer.writerows([[r.get(c, "x") for c in older] for r in rows])
    return buffer.getvalue()


def _graded_in_input_order(source: Path, out: Path) -> list[dict[str, str]]:
    """A CSV batch of `source` into `out` (this version's), its rows read back in the input's order (they are
    written in the order they finish), so a slice of them is the first rows of the input."""
    assert batch(str(source), "-o", str(out), "--workers", "1", "--no-cache").exit_code == 0
    with out.open(encoding="utf-8", newline="") as handle:
        return sorted(csv.DictReader(handle, strict=True), key=lambda r: int(r["id"][1:]))


def _regraded(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows graded again, comparable with their first grading: by id (they come in the order they finish),
    without `usage` (the loopback server's prompt cache may be warm the second time: `cached_tokens`)."""
    return [{k: v for k, v in r.items() if k != "usage"} for r in sorted(rows, key=lambda r: r["id"])]


def test_resume_goes_on_with_a_csv_an_earlier_version_wrote(tmp_path, server_env, rubric):
    """A run killed, grader upgraded (a field added to Grade since), the run resumed: the rows already graded
    are kept under this version's columns, and only the rest are graded."""
    source = write_jsonl(tmp_path / "in.jsonl", answers(5, rubric))
    out = tmp_path / "out.csv"
    with LoopbackLLM() as server:
        server_env(server)
        graded = _graded_in_input_order(source, out)
        header = list(graded[0])
        # what the version before `red_flag_evidence` wrote, killed after three rows and a torn fourth
        torn = _as_an_earlier_version_wrote(graded[:3], also="retired_field") + 'r3,1,"Answer 3\nwith a second line'
        out.write_text(torn, encoding="utf-8")
        calls = server.calls

        resumed = batch(str(source), "-o", str(out), "--resume", "--workers", "1", "--no-cache")

        assert resumed.exit_code == 0, resumed.output
        assert server.calls - calls == 2  # r3 and r4 only
    assert (
        f"--resume: {out} was written by another version of grader; its rows are kept, rewritten with this "
        "version's columns (added red_flag_evidence (empty in its rows); dropped retired_field)"
    ) in " ".join(resumed.stderr.split())
    assert f"--resume: cut the last 33 bytes off {out}: a record torn by a run stopped mid-write" in " ".join(
        resumed.stderr.split()
    )
    with out.open(encoding="utf-8", newline="") as handle:
        again = list(csv.DictReader(handle, strict=True))
    assert list(again[0]) == header
    assert [r["id"] for r in again[:3]] == ["r0", "r1", "r2"]
    assert again[:3] == [{**r, "red_flag_evidence": ""} for r in graded[:3]]
    assert _regraded(again[3:]) == _regraded(graded[3:])


def test_an_earlier_versions_csv_is_upgraded_when_an_input_column_has_the_new_fields_name(tmp_path, server_env, rubric):
    """Review B3: an input column named like the field added since (`red_flag_evidence`, not JSON) was read
    as that field's column in the earlier version's file, which then was refused instead of upgraded."""
    rows = [{**row, "red_flag_evidence": f"notes {i}, not JSON"} for i, row in enumerate(answers(4, rubric))]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.csv"
    with LoopbackLLM() as server:
        server_env(server)
        graded = _graded_in_input_order(source, out)
        assert "grade_red_flag_evidence" in graded[0]
        out.write_text(_as_an_earlier_version_wrote(graded[:2], new="grade_red_flag_evidence"), encoding="utf-8")
        calls = server.calls

        resumed = batch(str(source), "-o", str(out), "--resume", "--workers", "1", "--no-cache")

        assert resumed.exit_code == 0, resumed.output
        assert server.calls - calls == 2  # r2 and r3 only
    assert "(added grade_red_flag_evidence (empty in its rows))" in " ".join(resumed.stderr.split())
    with out.open(encoding="utf-8", newline="") as handle:
        again = list(csv.DictReader(handle, strict=True))
    assert again[:2] == [{**r, "grade_red_flag_evidence": ""} for r in graded[:2]]
    assert [r["red_flag_evidence"] for r in again] == [f"notes {i}, not JSON" for i in range(4)]
    assert _regraded(again[2:]) == _regraded(graded[2:])


def test_an_earlier_versions_csv_of_another_input_is_refused_untouched_and_a_torn_character_is_cut(
    tmp_path, server_env, rubric
):
    """Review: the upgrade rewrote (and dropped columns of) a file before checking its rows were this input's,
    and a record torn inside a character stopped it with an internal error and a temporary file left."""
    source = write_jsonl(tmp_path / "in.jsonl", answers(3, rubric))
    other = write_jsonl(tmp_path / "other.jsonl", answers(3, rubric, prefix="x"))
    out = tmp_path / "out.csv"
    with LoopbackLLM() as server:
        server_env(server)
        graded = _graded_in_input_order(source, out)
        old = _as_an_earlier_version_wrote(graded[:2]).encode("utf-8")

        out.write_bytes(old)
        refused = batch(str(other), "-o", str(out), "--resume", "--workers", "1", "--no-cache")
        assert refused.exit_code == 13 and "is not an output of this input" in refused.stderr
        assert out.read_bytes() == old  # nothing rewritten

        out.write_bytes(old + "r2,1,Répon".encode()[:-2] + "é".encode()[:1])  # torn inside the é
        resumed = batch(str(source), "-o", str(out), "--resume", "--workers", "1", "--no-cache")
        assert resumed.exit_code == 0, resumed.output
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with out.open(encoding="utf-8", newline="") as handle:
        assert [r["id"] for r in csv.DictReader(handle, strict=True)] == ["r0", "r1", "r2"]


def test_resume_refuses_a_csv_with_another_header(tmp_path, server_env, rubric):
    source = write_jsonl(tmp_path / "in.jsonl", answers(3, rubric))
    out = tmp_path / "out.csv"
    out.write_text("name,score\nalice,3\n")
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(out), "--resume")
        assert server.calls == 0
    assert result.exit_code == 13, result.output
    assert "is not an output of this input" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "pass --force (which replaces it); or write to another -o" in result.stderr
    assert out.read_text() == "name,score\nalice,3\n"


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_resume_regrades_failed_rows_and_keeps_each_id_once(tmp_path, server_env, rubric, suffix):
    rows = answers(6, rubric)
    rows[2]["id"] = "=1+1"  # a formula-like id: resume must read it back as written
    rows[3]["answer"] = "@SUM(A1) " + rows[3]["answer"]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / f"out.{suffix}"
    failing = {1, 4}  # with one request per row and one row at a time: two rows fail
    with LoopbackLLM(fault=lambda n: "500" if n in failing else None) as server:
        server_env(server)
        first = batch(str(source), "-o", str(out), "-c", "1", "--workers", "1", "--max-attempts", "1")
        assert first.exit_code == 1 and "failed 2 (transport 2)" in first.stdout, first.output
        server.fault = None
        before = server.calls
        resumed = batch(str(source), "-o", str(out), "--resume", "-c", "1", "--workers", "1")
        assert resumed.exit_code == 0, resumed.output
        assert server.calls - before == 2  # only the failed rows
    assert "2 failed row(s)" in resumed.stderr and "skipped 4 already in" in resumed.stdout
    if suffix == "csv":
        from grader.grading.rows import decode_cells

        with out.open(encoding="utf-8", newline="") as handle:
            records = [decode_cells(r) for r in csv.DictReader(handle, strict=True)]
    else:
        records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(set(ids)) == len(ids)
    assert all(r["tier"] and r["error_kind"] is None for r in records)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".out*"))  # the rewrite left nothing


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(tmp_path, rubric):
    rows = answers(30, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM(hold_from=4) as server:  # the first run stays mid-way until released
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": SECRET,
            "GRADER_CACHE_DIR": str(tmp_path / "cache"),
        }
        cmd = [sys.executable, "-m", "grader", "batch", str(source), "-o", str(out), "-c", "2", "--workers", "2"]
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: server.calls >= 5, seconds=60)  # requests held in flight: the run is going
            assert server.calls >= 5
            second = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=60)
            calls = server.calls
        finally:
            server.release()
            _, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr
    assert second.returncode == 16, second.stderr
    assert f"is being written by another grader batch (pid {first.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert calls >= 5 and server.calls == 30  # the second run sent nothing
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    assert not (tmp_path / "out.jsonl.lock").exists()


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_csv_or_jsonl_input_with_a_utf8_bom_is_accepted(tmp_path, server_env, rubric, suffix):
    rows = answers(3, rubric)
    source = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        with source.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8-sig")
    assert source.read_bytes().startswith(b"\xef\xbb\xbfid" if suffix == "csv" else b'\xef\xbb\xbf{"id"')
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "--workers", "1")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in out) == ["r0", "r1", "r2"] and all(r["tier"] for r in out)


# --- a full disk, an unwritable path, a missing folder ---------------------------------------------------


def _fail_writes(monkeypatch, how: str, after: int = 2) -> None:
    """Make the output's appends fail after `after` records, the way a full disk does."""
    import errno

    real = os.write
    seen = {"records": 0}

    def write(fd: int, data: bytes) -> int:
        if not bytes(data[:8]) == b'{"id": "':
            return real(fd, data)
        seen["records"] += 1
        if seen["records"] <= after:
            return real(fd, data)
        if how == "short" and seen["records"] == after + 1:
            return real(fd, data[: len(data) // 2])  # the kernel wrote what fitted
        code = errno.EIO if how == "eio" else errno.ENOSPC
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("how", ["enospc", "short", "eio"])
def test_a_failed_append_leaves_no_partial_line_and_stops_with_exit_15(tmp_path, server_env, rubric, how, monkeypatch):
    rows = answers(8, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        with monkeypatch.context() as patch:
            _fail_writes(patch, how)
            result = batch(str(source), "-o", str(out), "-c", "1", "--workers", "1")
        assert result.exit_code == 15, result.output
        cause = "Input/output error" if how == "eio" else "No space left on device" if how == "enospc" else "wrote"
        assert f"cannot write {out}: {cause}" in result.stderr and "internal error" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        text = out.read_text()
        assert text.endswith("\n") and [json.loads(line)["id"] for line in text.splitlines()] == [
            json.loads(line)["id"] for line in text.splitlines()
        ]
        assert len(text.splitlines()) == 2  # the two whole lines written before the disk filled up
        resumed = batch(str(source), "-o", str(out), "--resume", "-c", "1", "--workers", "1")
        assert resumed.exit_code == 0, resumed.output
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in rows)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this platform")
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_dev_full_is_one_line_with_exit_15(tmp_path, server_env, rubric, suffix):
    source = write_jsonl(tmp_path / "in.jsonl", answers(3, rubric))
    out = tmp_path / f"out.{suffix}"
    out.symlink_to("/dev/full")
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(out), "--force", "--workers", "1")
    assert result.exit_code == 15, result.output
    assert result.stderr.strip() == f"grader: error: cannot write {out}: No space left on device"


def test_an_unwritable_output_or_cache_is_one_line_with_exit_15(tmp_path, server_env, rubric, monkeypatch):
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with LoopbackLLM() as server:
        server_env(server)
        # tests run as root, where permissions stop nothing: a path under a regular file cannot be written
        output = batch(str(source), "-o", str(a_file / "out.jsonl"), "--workers", "1")
        assert output.exit_code == 15, output.output
        assert output.stderr.startswith(
            f"grader: error: cannot write {a_file / 'out.jsonl'}: {a_file} is a file, not a folder"
        )
        monkeypatch.setenv("GRADER_CACHE_DIR", str(a_file / "cache"))
        cache = batch(str(source), "-o", str(tmp_path / "o1.jsonl"), "--workers", "1")
        assert cache.exit_code == 15, cache.output
        assert f"cannot write {a_file / 'cache'}: {a_file} is a file, not a folder" in cache.stderr
        broken = tmp_path / "broken-cache"
        (broken / "grades.sqlite").mkdir(parents=True)  # a folder where the database should be
        monkeypatch.setenv("GRADER_CACHE_DIR", str(broken))
        sqlite = batch(str(source), "-o", str(tmp_path / "o2.jsonl"), "--workers", "1")
        assert sqlite.exit_code == 15, sqlite.output
        assert f"cannot write {broken / 'grades.sqlite'}: Is a directory" in sqlite.stderr
        garbage = tmp_path / "garbage-cache"
        garbage.mkdir()
        (garbage / "grades.sqlite").write_bytes(b"not a database, " * 100)
        monkeypatch.setenv("GRADER_CACHE_DIR", str(garbage))
        corrupt = batch(str(source), "-o", str(tmp_path / "o3.jsonl"), "--workers", "1")
        assert corrupt.exit_code == 15, corrupt.output
        assert f"cannot write {garbage / 'grades.sqlite'}: file is not a database" in corrupt.stderr
        assert server.calls == 0
    for result in (output, cache, sqlite, corrupt):
        assert len(result.stderr.strip().splitlines()) == 1 and "internal error" not in result.stderr


def test_a_missing_output_folder_is_created(tmp_path, server_env, rubric):
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    out = tmp_path / "new" / "deeper" / "grades.csv"
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        assert [r["id"] for r in csv.DictReader(handle)] == ["r0", "r1"]


def test_the_cache_is_private_and_outputs_keep_the_umask(tmp_path, server_env, rubric, monkeypatch):
    import stat

    from grader.grading.cache import GradeCache
    from grader.grading.contract import Grade

    cache = tmp_path / "home" / "cache" / "grader"
    monkeypatch.setenv("GRADER_CACHE_DIR", str(cache))
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    old = os.umask(0o002)
    try:
        with LoopbackLLM() as server:
            server_env(server)
            result = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "--workers", "1")
        assert result.exit_code == 0, result.output
        open_cache = GradeCache()
        open_cache.put("k", Grade(question_id="q01", tier="poor", justification="x", backend="b", model="m"))
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in cache.iterdir()}
        open_cache.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert {"grades.sqlite", "grades.sqlite-wal", "grades.sqlite-shm"} <= set(files)
    assert all(files[name] == 0o600 for name in files if name.startswith("grades.sqlite")), files
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o664  # the user's umask, not ours


# --- stopping at once, or going on ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_refused_key_stops_the_batch_at_the_first_request(tmp_path, server_env, rubric, workers):
    source = write_jsonl(tmp_path / "in.jsonl", answers(60, rubric))
    out = tmp_path / "out.jsonl"
    with LoopbackLLM(fault=lambda n: "401") as server:
        server_env(server)
        if workers == 1:
            result = batch(str(source), "-o", str(out), "-c", "1", "--workers", "1")
            code, stderr = result.exit_code, result.stderr
        else:  # forked workers: through a real process, not the test runner's
            done = _cli([str(source), "-o", str(out), "-c", "2", "--workers", "2"], server, tmp_path / "cache")
            code, stderr = done.returncode, done.stderr
        calls = server.calls
    assert code == 11, stderr
    assert calls <= workers  # the first refusal stops the run: at most one request in flight per slot
    assert "refused the API key (HTTP 401)" in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists() or not out.read_text().strip()  # no error rows


def test_300_rows_with_every_fault_then_resume_grades_every_row_once(tmp_path, server_env, rubric, waits):
    import random

    from tests.support.loopback import FAULTS

    kinds = [f for f in FAULTS if f != "401"]
    chance = random.Random(14)
    schedule = [chance.choice(kinds) if chance.random() < 0.2 else None for _ in range(4000)]
    rows = answers(300, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    args = [str(source), "-o", str(out), "-c", "16", "--workers", "1", "--timeout", "0.5"]
    with LoopbackLLM(fault=lambda n: schedule[n], hang_seconds=2.0, retry_after="7") as server:
        server_env(server)
        first = batch(*args, "--max-attempts", "2", "--reasks", "0")
        sent = server.requests
        injected = {schedule[n] for n in range(len(sent))} - {None}
        assert injected == set(kinds)
        records = [json.loads(line) for line in out.read_text().splitlines()]
        ids = [r["id"] for r in records]
        assert sorted(ids) == sorted(r["id"] for r in rows)  # every row once, graded or failed
        assert all((r["tier"] is None) != (r["error_kind"] is None) for r in records)
        failed = [r for r in records if r["error_kind"]]
        assert failed and first.exit_code == 1, first.output
        assert {r["error_kind"] for r in failed} <= {"transport", "invalid_output", "invalid_response"}
        assert f"failed {len(failed)} (" in first.stdout
        assert 7.0 in waits  # Retry-After honoured (and never slept in a test)
        server.fault = None  # the faults stop
        before = server.calls
        resumed = batch(*args, "--resume")
        assert resumed.exit_code == 0, resumed.output
        assert server.calls - before == len(failed)  # the graded rows are not asked for again
    assert f"{len(failed)} failed row(s)" in resumed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(r["id"] for r in rows) and len(set(ids)) == 300
    assert all(r["tier"] and r["error_kind"] is None for r in records)


def test_the_cache_folder_is_created_private_and_an_open_default_one_is_tightened(tmp_path, monkeypatch):
    import stat

    from grader.config import cache_dir

    monkeypatch.delenv("GRADER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    created = cache_dir()
    assert created == tmp_path / "xdg" / "grader" and stat.S_IMODE(created.stat().st_mode) == 0o700
    created.chmod(0o755)  # as an older version left it
    assert stat.S_IMODE(cache_dir().stat().st_mode) == 0o700
    chosen = tmp_path / "shared-cache"
    chosen.mkdir(mode=0o755)
    chosen.chmod(0o755)
    monkeypatch.setenv("GRADER_CACHE_DIR", str(chosen))
    assert stat.S_IMODE(cache_dir().stat().st_mode) == 0o755  # a folder the user chose is theirs to set


def test_the_server_memory_and_the_vector_cache_are_private_too(tmp_path, monkeypatch):
    from grader.backends.chat import ServerMemory
    from grader.backends.local.vectors import VectorCache

    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    old = os.umask(0o022)
    try:
        ServerMemory().save("http://127.0.0.1:9/v1", {"mode": "json_object"})
        vectors = VectorCache("model")
        assert vectors._connect() is not None
        vectors.close()
    finally:
        os.umask(old)
    for name in ("servers.json", "vectors.sqlite"):
        assert (tmp_path / "cache" / name).stat().st_mode & 0o777 == 0o600, name


# --- the output is the input; text that is no text; resuming another input's output; unknown formats ---------


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "other-folder", "symlink", "hard-link"])
@pytest.mark.parametrize("mode", ["--force", "--resume"])
def test_an_output_that_is_the_input_is_refused_before_it_is_touched(tmp_path, server_env, rubric, spelling, mode):
    source = write_jsonl(tmp_path / "in.jsonl", answers(3, rubric))
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    output = {
        "same": str(source),
        "dot-slash": str(tmp_path / "." / "in.jsonl"),
        "other-folder": str(tmp_path / "sub" / ".." / "in.jsonl"),
        "symlink": str(tmp_path / "link.jsonl"),
        "hard-link": str(tmp_path / "hard.jsonl"),
    }[spelling]
    if spelling == "symlink":
        os.symlink(source, output)
    elif spelling == "hard-link":
        os.link(source, output)
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", output, mode)
        assert server.calls == 0
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"grader: error: --output {output} is the input file {source}: writing it would wipe the answers "
        "(write the grades to another file)"
    ]
    assert source.read_bytes() == before
    assert not Path(output + ".lock").exists()


def test_export_requests_onto_the_input_is_refused(tmp_path, server_env, rubric):
    source = write_jsonl(tmp_path / "in.jsonl", answers(2, rubric))
    before = source.read_bytes()
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(tmp_path / "out.jsonl"), "--export-requests", str(source))
    assert result.exit_code == 2 and "--export-requests" in result.stderr and str(source) in result.stderr
    assert source.read_bytes() == before


LONE = "\\ud83d"  # JSON text for half of an emoji: valid JSON, and no text UTF-8 can encode


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param(
            '{"id": "cut", "question": 1, "answer": "I check the logs ' + LONE + ' first."}',
            "answer contains a lone UTF-16 surrogate (not text) at character 17",
            id="answer",
        ),
        pytest.param(
            '{"id": "cut", "question": 1, "answer": "I check the logs.", "candidate": "Sam ' + LONE + '"}',
            "candidate contains a lone UTF-16 surrogate (not text) at character 4",
            id="candidate",
        ),
        pytest.param(
            '{"id": "cut' + LONE + '", "question": 1, "answer": "I check the logs."}',
            "id contains a lone UTF-16 surrogate (not text) at character 3",
            id="id",
        ),
        pytest.param(
            '{"id": "cut", "question": 1, "answer": "I check the logs.", "tags": [{"x": "a' + LONE + '"}]}',
            "tags contains a lone UTF-16 surrogate (not text)",
            id="nested",
        ),
        pytest.param(
            '{"id": "cut", "question": 1, "answer": "I check the logs.", "note' + LONE + '": "x"}',
            "a column name ('note\\ud83d') contains a lone UTF-16 surrogate (not text)",
            id="column-name",
        ),
        pytest.param(  # binary data: a file holding a NUL is refused as not text; escaped in JSON it was graded
            '{"id": "nul", "question": 1, "answer": "I check the logs \\u0000\\u0001 first."}',
            "answer contains a NUL character (not text) at character 17",
            id="nul",
        ),
    ],
)
def test_a_lone_surrogate_in_a_jsonl_row_is_a_malformed_row(tmp_path, server_env, rubric, row, message):
    good = answers(2, rubric)
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(good[0]) + "\n" + row + "\n" + json.dumps(good[1]) + "\n")
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        refused = batch(str(source), "-o", str(out))
        assert server.calls == 0
        assert refused.exit_code == 13, refused.output
        assert f"{source}:2: {message}" in refused.stderr and "internal error" not in refused.stderr
        assert not out.exists()
        skipped = batch(str(source), "-o", str(out), "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in records) == ["r0", "r1"] and all(r["tier"] for r in records)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_lone_surrogate_in_a_jsonl_row_never_reaches_a_csv_or_jsonl_output(tmp_path, server_env, rubric, suffix):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(answers(1, rubric)[0]) + '\n{"id": "x", "question": 1, "answer": "a ' + LONE + '"}\n')
    out = tmp_path / f"out.{suffix}"
    with LoopbackLLM() as server:
        server_env(server)
        result = batch(str(source), "-o", str(out), "--skip-invalid", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "r0" in out.read_text(encoding="utf-8") and "UnicodeEncodeError" not in result.output


def test_the_engine_refuses_a_lone_surrogate_as_not_utf8_text_instead_of_crashing(rubric):
    from grader import grade_many
    from grader.backends.fake import FakeBackend
    from grader.grading.engine import Engine, Job

    engine = Engine(FakeBackend(responder=lambda *_: AssertionError("no model call")), rubric=rubric)
    graded = asyncio.run(engine.grade(Job(1, "I check the logs \ud83d first.", tag=None, where="row 7")))
    assert graded.outcome.kind.value == "not_text" and graded.source == "input"
    assert graded.outcome.message == "row 7: not UTF-8 text (a lone UTF-16 surrogate at character 17)"
    graded = asyncio.run(engine.grade(Job(1, "I check the logs \x00 first.", tag=None, where="row 8")))
    assert graded.outcome.message == "row 8: not UTF-8 text (a NUL character at character 17)"
    (outcome,) = grade_many([(1, "half an emoji \udc00")], backend="nearest", cache=False)
    assert "not UTF-8 text" in outcome.message
    # `grader grade` refuses it before the engine, in one line (exit 7), as it refuses NUL characters
    result = runner.invoke(app, ["grade", "-q", "1", "-b", "nearest", "-a", "I check the logs \ud83d first."])
    assert result.exit_code == 7 and "not UTF-8 text" in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.parametrize("change", ["another-answer", "another-id", "another-question"])
def test_resume_refuses_an_output_made_from_another_input_with_the_same_header(
    tmp_path, server_env, rubric, suffix, change
):
    first = answers(4, rubric)
    source = write_jsonl(tmp_path / "a.jsonl", first)
    other = [dict(r) for r in first]
    key, value = {
        "another-answer": ("answer", "I restart the server and hope."),
        "another-id": ("id", "zz"),
        "another-question": ("question", rubric.questions[-1].number),
    }[change]
    other[2][key] = value
    second = write_jsonl(tmp_path / "b.jsonl", other)
    out = tmp_path / f"out.{suffix}"
    with LoopbackLLM() as server:
        server_env(server)
        assert batch(str(source), "-o", str(out), "--workers", "1").exit_code == 0
        written = out.read_bytes()
        same = batch(str(source), "-o", str(out), "--resume", "--workers", "1")
        assert same.exit_code == 0 and "skipped 4 already in" in same.stdout, same.output
        calls = server.calls
        result = batch(str(second), "-o", str(out), "--resume", "--workers", "1")
        assert server.calls == calls
    assert result.exit_code == 13, result.output
    (line,) = result.stderr.strip().splitlines()
    assert re.fullmatch(
        rf"grader: error: {re.escape(str(out))}:\d+: is not an output of this input \(no row of "
        rf"{re.escape(str(second))} has its id 'r2' with its question and answer\) \(is this the right output file\? "
        r"To grade this input into it afresh, pass --force \(which replaces it\); or write to another -o\)",
        line,
    ), line
    assert out.read_bytes() == written


def test_resume_checks_rows_by_id_whatever_order_they_were_written_in(tmp_path, server_env, rubric):
    rows = answers(6, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        assert batch(str(source), "-o", str(out)).exit_code == 0
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(reversed(lines[:4])))  # another order, two rows missing
        resumed = batch(str(source), "-o", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == sorted(r["id"] for r in rows)


@pytest.mark.parametrize(
    ("source_name", "output_name", "message"),
    [
        pytest.param("in.jsonl", "grades.txt", "grades.txt: unknown output format '.txt'", id="output-txt"),
        pytest.param("in.jsonl", "grades", "grades: unknown output format '(none)'", id="output-no-extension"),
        pytest.param("in.txt", "grades.jsonl", "in.txt: unknown input format '.txt'", id="input-txt"),
        pytest.param("in", "grades.jsonl", "in: unknown input format '(none)'", id="input-no-extension"),
    ],
)
def test_an_unknown_input_or_output_format_is_a_usage_error(tmp_path, rubric, source_name, output_name, message):
    source = write_jsonl(tmp_path / source_name, answers(2, rubric))
    result = batch(str(source), "-o", str(tmp_path / output_name), "-b", "fake")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"grader: error: {tmp_path}/{message}; use .csv or .jsonl (or .ndjson)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [source_name]  # no output, no lock file


def test_resume_says_when_kept_rows_were_graded_against_another_version_of_the_rubric(tmp_path, server_env, rubric):
    rows = answers(4, rubric)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as server:
        server_env(server)
        assert batch(str(source), "-o", str(out)).exit_code == 0
        same = batch(str(source), "-o", str(out), "--resume")
        assert same.exit_code == 0 and "another version of the rubric" not in same.stderr
        edited = rubric.model_copy(
            update={
                "questions": [
                    q.model_copy(update={"text": q.text + " (edited)"}) if i == 0 else q
                    for i, q in enumerate(rubric.questions)
                ]
            }
        )
        changed = tmp_path / "edited.yaml"
        save_rubric(edited, changed)
        resumed = batch(str(source), "-o", str(out), "--resume", "--rubric", str(changed))
    assert resumed.exit_code == 0, resumed.output
    first = rubric.questions[0].id
    n = sum(1 for r in rows if rubric.find(r["question"]).id == first)
    said = f"{n} row of {out} was" if n == 1 else f"{n} rows of {out} were"
    assert n and f"--resume: {said} graded against another version of the rubric" in resumed.stderr
    assert f"({first} changed since)" in resumed.stderr

    # A question renamed since: its rows keep the old id, and the message says which is gone.
    renamed = edited.with_questions(
        [q.model_copy(update={"id": "renamed-first"}) if i == 0 else q for i, q in enumerate(edited.questions)]
    )
    save_rubric(renamed, changed)
    with LoopbackLLM() as server:
        server_env(server)
        again = batch(str(source), "-o", str(out), "--resume", "--rubric", str(changed))
    assert again.exit_code == 0, again.output
    assert f"{first} no longer in the rubric (renamed or removed: their rows keep the old id)" in again.stderr


def test_a_resumed_summary_counts_every_row_of_the_file_failed_ones_too(tmp_path, monkeypatch):
    """'with the 1 grades kept from before, out.jsonl holds 2' of a file of 3 rows, one failed."""
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    first = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "question": 1, "answer": "I read the logs first."}])
    out = tmp_path / "out.jsonl"
    assert batch(str(first), "-o", str(out), "-b", "nearest").exit_code == 0
    more = [
        {"id": "b", "question": 2, "answer": "I version the API in the path."},
        {"id": "c", "question": 99, "answer": "x y"},
    ]
    write_jsonl(first, [{"id": "a", "question": 1, "answer": "I read the logs first."}, *more])
    resumed = batch(str(first), "-o", str(out), "-b", "nearest", "--resume")
    assert resumed.exit_code == 1  # the unknown question is a failed row
    assert len(out.read_text().splitlines()) == 3
    assert f"with the 1 row kept from before, {out} holds 3 rows: 2 grades (" in resumed.stdout
    assert ") and 1 failed" in resumed.stdout
