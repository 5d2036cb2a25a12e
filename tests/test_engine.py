"""The grading engine every feature grades through: the cache and its one key, de-duplication, failures
as data, fatal failures, the review policy after the cache, samples, streaming, and the two defects the
per-feature loops had (issue 13)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.backends.fake import FakeBackend
from grader.cli import app
from grader.errors import BackendError, GraderError, TemplateError
from grader.grading.cache import GradeCache
from grader.grading.contract import FailureKind, Grade, GradeFailure
from grader.grading.engine import Engine, Job, Stats
from tests.conftest import reply_for

runner = CliRunner()


def _rows(path: Path, rubric, n: int = 3) -> Path:
    qs = rubric.questions
    lines = [
        {"id": f"r{i}", "question": qs[i].number, "answer": " ".join(list(qs[i].references.items())[0][1].split()[:40])}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the two defects of issue 13, through the command line (so they also run against the old code) -----


def test_batch_rows_carry_every_grade_field_confidence_source_included(tmp_path, rubric):
    source = _rows(tmp_path / "in.jsonl", rubric)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", str(source), "-o", str(out), "--backend", "local"])
    assert result.exit_code == 0, result.output
    rows = _out(out)
    assert len(rows) == 3
    for row in rows:
        assert set(Grade.model_fields) <= set(row), sorted(set(Grade.model_fields) - set(row))
        assert row["confidence"] is not None and row["confidence_source"] == "margin"


def test_a_changed_review_threshold_applies_to_cached_grades(tmp_path, rubric):
    source = _rows(tmp_path / "in.jsonl", rubric)
    low, high = tmp_path / "low.jsonl", tmp_path / "high.jsonl"
    first = runner.invoke(app, ["batch", str(source), "-o", str(low), "-b", "local", "--review-threshold", "0"])
    second = runner.invoke(app, ["batch", str(source), "-o", str(high), "-b", "local", "--review-threshold", "1.0"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "3 from cache" in second.stdout  # the second run graded nothing afresh
    below = "below the review threshold"
    assert not any(below in reason for row in _out(low) for reason in row["review_reasons"])
    for row in _out(high):  # the local backend's confidence is never 1.0
        assert row["needs_review"] is True
        assert any(below in reason for reason in row["review_reasons"]), row["review_reasons"]


# --- the engine itself ------------------------------------------------------------------------------------


def _engine(backend, rubric, **kwargs) -> Engine:
    return Engine(backend, rubric=rubric, **kwargs)


def _run(engine: Engine, jobs: list[Job]) -> list:
    return asyncio.run(engine.grade_all(jobs))


def test_input_that_cannot_be_graded_ends_as_a_typed_failure_and_the_run_goes_on(rubric, q1):
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question))
    jobs = [
        Job("nope", "I check the logs.", tag="unknown"),
        Job(q1, "   ", tag="empty"),
        Job(q1, "x" * 50, tag="long"),
        Job(q1, "I check the logs.", tag="fine"),
    ]
    done = _run(_engine(backend, rubric, max_answer_chars=40), jobs)
    kinds = {g.job.tag: (g.failure.kind if g.failure else "graded") for g in done}
    assert kinds == {
        "unknown": FailureKind.unknown_question,
        "empty": FailureKind.empty_answer,
        "long": FailureKind.answer_too_long,
        "fine": "graded",
    }
    assert [g.source for g in done] == ["input", "input", "input", "model"]
    assert len(backend.sent) == 1  # refused input never reaches the model


def test_an_invalid_reply_after_every_reask_is_a_failure_with_attempts_usage_and_last_output(rubric, q1):
    backend = FakeBackend(responder=lambda *_: {"tier": "great"})  # never a valid reply
    (graded,) = _run(_engine(backend, rubric), [Job(q1, "I check the logs.", tag=0)])
    failure = graded.failure
    assert isinstance(failure, GradeFailure) and failure.kind is FailureKind.invalid_output
    assert failure.attempts == 3 and failure.usage.prompt_tokens > 0 and failure.last_output == '{"tier": "great"}'
    assert failure.question_id == q1.id


@pytest.mark.parametrize(
    "error",
    [BackendError("the server refused the API key (HTTP 401)"), TemplateError("grade_user.jinja: undefined x")],
    ids=["refused", "template"],
)
def test_a_failure_that_would_fail_every_answer_stops_the_run(rubric, q1, error):
    calls = []

    def respond(_c, request):
        calls.append(request)
        raise error

    engine = _engine(FakeBackend(responder=respond), rubric, concurrency=1)
    jobs = [Job(q1, f"answer {i}", tag=i) for i in range(20)]
    with pytest.raises(GraderError) as info:
        _run(engine, jobs)
    assert info.value is error
    assert len(calls) == 1  # one request in flight at a time: nothing more was sent


def test_duplicates_are_graded_once_and_the_cache_serves_a_rerun(tmp_path, rubric, q1):
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question))
    jobs = [Job(q1, "I check the logs.", tag=i) for i in range(5)] + [Job(q1, "Something else.", tag=5)]
    uncached = _engine(backend, rubric)
    _run(uncached, jobs)
    assert len(backend.sent) == 2
    assert (uncached.stats.graded, uncached.stats.duplicates, uncached.stats.model_calls) == (6, 4, 2)
    cache = GradeCache(tmp_path / "grades.sqlite")
    _run(_engine(backend, rubric, cache=cache), jobs)
    assert len(backend.sent) == 4  # duplicates meet in flight or in the cache: one call per distinct answer
    rerun = _engine(backend, rubric, cache=cache)
    done = _run(rerun, jobs)
    assert len(backend.sent) == 4  # nothing new sent
    assert {g.source for g in done} == {"cache"} and rerun.stats.model_calls == 0 and rerun.stats.cached == 6


def test_an_answer_s_cached_grades_are_forgotten_with_it_in_a_cache_an_earlier_version_made(tmp_path, rubric, q1):
    """Erasure (`DELETE /v1/grades`): a cached grade quotes its answer, so it is found by the answer and
    erased. A cache file made before the answer's digest was kept gets the column, and its old rows stay."""
    path = tmp_path / "grades.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE grades (key TEXT PRIMARY KEY, grade TEXT NOT NULL, created REAL NOT NULL)")
    grade = Grade(question_id=q1.id, tier="poor", justification="j", backend="fake", model="m")
    old.execute("INSERT INTO grades VALUES ('older', ?, 0)", (grade.model_dump_json(),))
    old.commit()
    old.close()
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question))
    cache = GradeCache(path)
    _run(_engine(backend, rubric, cache=cache), [Job(q1, "I check the logs.", tag=0), Job(q1, "Other words.", tag=1)])
    assert cache.forget(["I check the logs.", "never graded"]) == 1
    _run(_engine(backend, rubric, cache=cache), [Job(q1, "I check the logs.", tag=0), Job(q1, "Other words.", tag=1)])
    assert len(backend.sent) == 3  # the forgotten answer was graded again, the other came from the cache
    assert cache.get("older") is not None  # an earlier version's row: not known by its answer, kept
    cache.close()


def test_a_failure_is_not_kept_for_a_later_job_of_the_same_answer(tmp_path, rubric, q1):
    # A long-running engine (`grader serve`) meets the same answer again after its model came back: it
    # must ask again, not answer with the failure of an hour ago.
    down = [True]

    def respond(_c, request):
        return {"tier": "great"} if down[0] else reply_for(request.question)  # invalid while "down"

    engine = _engine(FakeBackend(responder=respond), rubric, cache=GradeCache(tmp_path / "grades.sqlite"))
    first = asyncio.run(engine.grade(Job(q1, "I check the logs.", tag=0)))
    assert isinstance(first.outcome, GradeFailure)
    down[0] = False
    second = asyncio.run(engine.grade(Job(q1, "I check the logs.", tag=1)))
    assert isinstance(second.outcome, Grade) and second.source == "model"


def test_the_cache_key_changes_with_everything_that_decides_a_grade(tmp_path, rubric, q1):
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question))
    cache = GradeCache(tmp_path / "grades.sqlite")
    answer = "I check the logs."
    _run(_engine(backend, rubric, cache=cache), [Job(q1, answer, tag=0)])
    variants = [
        Job(q1, answer + " ", tag="answer"),
        Job(rubric.find("2"), answer, tag="question"),
        Job(q1, answer, tag="exemplars", exemplars=(("great", "x"),)),
    ]
    for job in variants:
        (graded,) = _run(_engine(backend, rubric, cache=cache), [job])
        assert graded.source == "model", job.tag
    other_model = FakeBackend(responder=lambda _c, request: reply_for(request.question), model="other")
    (graded,) = _run(_engine(other_model, rubric, cache=cache), [Job(q1, answer, tag=0)])
    assert graded.source == "model"


def test_the_review_policy_is_applied_after_the_cache(tmp_path, rubric, q1):
    """Cached grades are what the backend returned; each run's own threshold decides needs_review."""
    from grader.backends.chat import Completion
    from grader.backends.confidence import TokenLogprob

    def respond(_c, request):  # a holistic reply whose tier token has probability ~0.7
        text = json.dumps(reply_for(request.question, tier="mediocre"))
        at = text.rindex('"mediocre"') + 1
        top = (("mediocre", -0.36), ("great", -1.2))
        tokens = [TokenLogprob(text[:at], 0.0), TokenLogprob("mediocre", -0.36, top), TokenLogprob(text[at + 8 :], 0.0)]
        return Completion(text=text, logprobs=tokens)

    backend = FakeBackend(responder=respond, mode="holistic")
    cache = GradeCache(tmp_path / "grades.sqlite")
    (low,) = _run(_engine(backend, rubric, cache=cache, review_threshold=0.0), [Job(q1, "I check.", tag=0)])
    (high,) = _run(_engine(backend, rubric, cache=cache, review_threshold=0.99), [Job(q1, "I check.", tag=0)])
    assert high.source == "cache"
    assert low.grade is not None and high.grade is not None
    assert low.grade.confidence == high.grade.confidence and low.grade.confidence is not None
    assert not any("review threshold" in r for r in low.grade.review_reasons)
    assert any("below the review threshold 0.99" in r for r in high.grade.review_reasons)


def test_samples_are_cached_as_one_combined_grade(tmp_path, rubric, q1):
    tiers = iter(["great", "great", "mediocre"] * 2)
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question, tier=next(tiers)), mode="holistic")
    cache = GradeCache(tmp_path / "grades.sqlite")
    (graded,) = _run(_engine(backend, rubric, cache=cache, samples=3), [Job(q1, "I check.", tag=0)])
    assert graded.grade is not None and graded.grade.confidence_source == "samples"
    assert graded.grade.confidence == pytest.approx(2 / 3, abs=1e-3)
    (again,) = _run(_engine(backend, rubric, cache=cache, samples=3), [Job(q1, "I check.", tag=0)])
    assert again.source == "cache" and len(backend.sent) == 3
    (single,) = _run(_engine(backend, rubric, cache=cache), [Job(q1, "I check.", tag=0)])
    assert single.source == "model"  # one grade is not the combination of three


def test_samples_need_a_stochastic_backend(rubric):
    class Deterministic(FakeBackend):
        stochastic = False

    with pytest.raises(GraderError, match="deterministic"):
        Engine(Deterministic(), rubric=rubric, samples=3)


def test_outcomes_stream_as_they_finish_and_stats_count_them_once(rubric):
    gates = {i: asyncio.Event() for i in range(3)}

    class Slow(FakeBackend):
        async def grade(self, request):  # type: ignore[override]
            await gates[int(request.answer.split()[-1])].wait()
            return await super().grade(request)

    backend = Slow(responder=lambda _c, request: reply_for(request.question))
    engine = _engine(backend, rubric, concurrency=3)
    q = rubric.questions[0]
    jobs = [Job(q, f"answer {i}", tag=i) for i in range(3)]

    async def run() -> list[int]:
        seen = []
        stream = engine.stream(jobs)
        gates[2].set()
        seen.append((await anext(stream)).job.tag)
        gates[0].set()
        seen.append((await anext(stream)).job.tag)
        gates[1].set()
        seen += [g.job.tag async for g in stream]
        return seen

    assert asyncio.run(run()) == [2, 0, 1]
    assert engine.stats.graded == 3 and engine.stats.failed == 0


def test_stats_skip_failures_in_tiers_and_count_them_by_kind(rubric, q1):
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question, tier="great"))
    stats = Stats()
    engine = _engine(backend, rubric, stats=stats)
    _run(engine, [Job(q1, "I check the logs.", tag=0), Job("nope", "x", tag=1), Job(q1, "", tag=2)])
    assert stats.graded == 1 and stats.failed == 2
    assert dict(stats.tiers) == {"great": 1}
    assert dict(stats.failures) == {"unknown_question": 1, "empty_answer": 1}
