"""`grader eval --cases`: a team's own hand-graded answers to its own rubric, with every metric of the
answers suite; and what the eval command does for such a run: reports written as each suite finishes,
thresholds checked before grading, notes on what small suites cannot say."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.backends.chat import Conversation
from grader.backends.fake import FakeBackend
from grader.cli import app
from grader.eval.cases import EvalCase, Suite
from grader.eval.report import summarize, to_markdown
from grader.eval.runner import run_suite
from grader.grading.contract import GradeRequest
from grader.grading.review import DRAFT_REASON
from grader.rubric import dump_rubric, load_rubric
from tests.conftest import reply_for
from tests.support.loopback import LoopbackLLM
from tests.support.process import foreground_job, wait_until
from tests.test_eval import scripted, small_suite

runner = CliRunner()


@pytest.fixture
def team_rubric(tmp_path: Path) -> Path:
    """Three packaged questions under the team's own ids: not the packaged bank."""
    packaged = load_rubric()
    mine = packaged.model_copy(
        update={
            "name": "team-bank",
            "questions": [q.model_copy(update={"id": f"team-{q.id}"}) for q in packaged.questions[:3]],
        }
    )
    path = tmp_path / "team.yaml"
    path.write_text(dump_rubric(mine), encoding="utf-8")
    return path


def cases_yaml(rubric_path: Path, *, name: str = "team-answers", prefix: str = "") -> str:
    rubric = load_rubric(rubric_path)
    q1, q2 = rubric.questions[0], rubric.questions[1]
    return f"""name: {name}
description: Our own answers, graded by two interviewers.
cases:
  - id: {prefix}a1
    question: {q1.id}
    answer: {json.dumps(prefix + q1.references.great)}
    label: great
    covered: [{q1.key_points[0].id}, {q1.key_points[1].id}]
    red_flags: []
  - id: {prefix}a2
    question: {q1.id}
    answer: {json.dumps(prefix + q1.references.poor)}
    label: poor
    covered: []
    red_flags: [{q1.red_flags[0].id}]
  - id: {prefix}b1
    question: 2
    answer: {json.dumps(prefix + q2.references.mediocre)}
    label: mediocre
    kind: terse
"""


def test_own_cases_are_graded_with_every_metric_of_the_answers_suite(tmp_path, team_rubric):
    cases = tmp_path / "mine.yaml"
    cases.write_text(cases_yaml(team_rubric))
    out = tmp_path / "reports"
    result = runner.invoke(
        app,
        ["eval", "--cases", str(cases), "--rubric", str(team_rubric), "-b", "nearest", "--no-cache", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["team-answers.html", "team-answers.json", "team-answers.md"]
    report = json.loads((out / "team-answers.json").read_text())
    assert report["suite"] == "team-answers" and report["cases"] == 3 and report["scored"] == 3
    assert report["rubric"]["name"] == "team-bank" and report["rubric"]["questions"] == 3
    assert report["rubric"]["fingerprint"] == load_rubric(team_rubric).fingerprint()
    assert report["points"]["cases"] == 2 and report["flags"]["cases"] == 2  # the hand-marked answers
    team = load_rubric(team_rubric)
    assert set(report["per_question"]) == {team.questions[0].id, team.questions[1].id}  # "2" is read as a number
    assert set(report["per_kind"]) == {"answer", "terse"}  # an unmarked case is a candidate's answer
    assert report["notes"] and "only 3 scored cases" in report["notes"][0]
    assert "only 3 scored cases" in result.stdout and "rubric team-bank" in result.stdout
    md = (out / "team-answers.md").read_text()
    assert "rubric team-bank (3 questions, fingerprint " in md and "> **Note:** only 3 scored cases" in md
    assert "· rubric team-bank (3 questions" in (out / "team-answers.html").read_text()


def test_the_packaged_suites_run_with_own_cases_only_when_named(tmp_path, team_rubric):
    cases = tmp_path / "mine.yaml"
    cases.write_text(cases_yaml(team_rubric))
    args = ["eval", "--cases", str(cases), "--rubric", str(team_rubric), "-b", "nearest", "--no-cache"]
    result = runner.invoke(app, [*args, "-s", "references", "--format", "json", "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert [r["suite"] for r in json.loads(result.stdout)] == ["references", "team-answers"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("label: poor", "label: grate"), ":13: case a2: label: Input should be 'great'"),
        (lambda t: t.replace("question: 2", "question: team-api-desgn"), ":17: case b1: question: unknown question"),
        (lambda t: t.replace("id: b1", "id: a1"), ":16: case a1: id: duplicate case id 'a1'"),
        (lambda t: t.replace("red_flags: []", "red_flags: [q01.nope]"), ":9: case a1: red_flags: q01.nope: not in"),
        (lambda t: t.replace("    kind: terse", "    knd: terse"), ":20: case b1: knd: unknown field"),
        (lambda t: t.replace("name: team-answers", "name: answers"), ":1: name: 'answers' is a packaged suite's"),
        (lambda t: t.replace("name: team-answers", "name: ../up"), ":1: name: String should match pattern"),
        (lambda t: "", ": a cases file is a mapping with `cases:`"),
        (lambda t: t.replace("  - id: a1", "  - id: a1\n  bad"), ": invalid YAML"),
    ],
)
def test_a_bad_cases_file_is_one_line_naming_the_file_line_and_case(tmp_path, team_rubric, edit, message):
    cases = tmp_path / "mine.yaml"
    cases.write_text(edit(cases_yaml(team_rubric)))
    result = runner.invoke(app, ["eval", "--cases", str(cases), "--rubric", str(team_rubric), "-b", "nearest"])
    assert result.exit_code == 22, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"grader: error: {cases}") and message in line, line


def test_a_misspelt_question_suggests_the_rubric_s_ids(tmp_path, team_rubric):
    cases = tmp_path / "mine.yaml"
    cases.write_text(cases_yaml(team_rubric).replace("question: 2", "question: team-api-desgn"))
    result = runner.invoke(app, ["eval", "--cases", str(cases), "--rubric", str(team_rubric), "-b", "nearest"])
    assert "in rubric team-bank (did you mean " in result.stderr and "team-api-design?)" in result.stderr


def test_check_without_thresholds_for_own_cases_fails_before_grading(tmp_path, team_rubric):
    cases = tmp_path / "mine.yaml"
    cases.write_text(cases_yaml(team_rubric))
    out = tmp_path / "reports"
    args = ["eval", "--cases", str(cases), "--rubric", str(team_rubric), "-b", "nearest", "--no-cache", "-o", str(out)]
    missing = runner.invoke(app, [*args, "--check"])
    assert missing.exit_code == 1
    assert "no thresholds for the nearest backend for team-answers in " in missing.stderr
    # the packaged file is in site-packages, gone at the next install: a file of your own is the way
    assert "write your own (backend -> suite -> metric) and pass it as --thresholds FILE" in missing.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing was graded
    mine = tmp_path / "gate.yaml"
    mine.write_text("nearest:\n  references:\n    max_failed: 0\n")
    other = runner.invoke(app, [*args, "--check", "--thresholds", str(mine)])
    assert other.exit_code == 1 and "no thresholds under nearest for team-answers" in other.stderr
    assert "add them to that file (backend -> suite -> metric)" in other.stderr
    mine.write_text("nearest:\n  team-answers:\n    max_failed: 0\n    min_accuracy: 0.3\n")
    held = runner.invoke(app, [*args, "--check", "--thresholds", str(mine)])
    assert held.exit_code == 0 and "thresholds hold" in held.stdout, held.output


def test_breakdowns_count_accuracy_over_the_scored_cases_as_the_headline_does(rubric):
    """A rejected or failed case is counted apart: it was counted wrong per question and kind only."""
    tiers = {"alpha": "great", "beta": "mediocre", "gamma": "poor"}
    results = asyncio.run(run_suite(small_suite(rubric), scripted(tiers), cache=None))
    report = summarize("small", results, backend="fake", model="scripted")
    (question,) = report.per_question.values()
    assert question.n == 9 and question.accuracy == report.overall.accuracy  # 4 of the 7 scored
    assert report.per_kind["empty"].accuracy is None and report.per_kind["empty"].passed == 1
    assert "| empty | 1 | 1 | n/a |" in to_markdown(report)


def test_reviews_asked_only_by_a_draft_are_noted_with_what_would_be_gamed(rubric):
    q = rubric.find(1)
    drafted = rubric.with_questions(
        [q.model_copy(update={"key_points": [p.model_copy(update={"draft": True}) for p in q.key_points]})]
    )
    filler = " ".join(f"word{i}" for i in range(30))  # not so short that its length asks for review too
    cases = [
        EvalCase(id="p1", question=q.id, answer=f"alpha poor answer {filler}", label="poor"),
        EvalCase(id="m1", question=q.id, answer=f"beta so-so answer {filler}", label="mediocre"),
    ]

    def respond(conversation: Conversation, request: GradeRequest) -> dict:
        great = request.answer.startswith("alpha")  # points that fit the tier: no reason to review but the draft
        ids = request.question.point_ids if great else request.question.point_ids[:2]
        covered = {pid: request.answer for pid in ids}
        return reply_for(request.question, covered=covered, tier="great" if great else "mediocre")

    results = asyncio.run(run_suite(Suite(name="d", rubric=drafted, cases=cases), FakeBackend(responder=respond)))
    assert [r.grade.review_reasons for r in results if r.grade is not None] == [[DRAFT_REASON]] * 2
    report = summarize("d", results, backend="fake", model="scripted")
    assert report.counts.gamed == 0
    (note,) = [n for n in report.notes if "drafts" in n]
    assert note.startswith("2 grades went to review only because the question's points are unreviewed drafts; 1 of")


def test_ctrl_c_keeps_the_suites_finished_and_their_grades_for_the_rerun(tmp_path, team_rubric):
    """Reports were written only once every suite was graded: Ctrl-C on the second suite lost the first."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(cases_yaml(team_rubric, name="first", prefix="A "))
    second.write_text(cases_yaml(team_rubric, name="second", prefix="B "))
    out = tmp_path / "reports"
    args = [
        "eval",
        "--cases",
        str(first),
        "--cases",
        str(second),
        "--rubric",
        str(team_rubric),
        "-b",
        "openai",
        "--no-floor",
    ]
    with LoopbackLLM(hold_from=3) as server:  # the second suite's requests wait: the run is mid-way
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": server.base_url,
            "GRADER_CACHE_DIR": str(tmp_path / "cache"),
        }
        cmd = [sys.executable, "-m", "grader", *args, "-o", str(out)]
        proc = foreground_job(cmd, env)
        try:
            wait_until(lambda: server.calls > 3 and (out / "first.html").exists(), seconds=120)
            os.killpg(proc.pid, signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            server.release()  # a held request would keep the server from stopping
        assert proc.returncode == 130, stderr
        assert sorted(p.name for p in out.iterdir()) == ["first.html", "first.json", "first.md"]
        assert f"interrupted: 1 of 2 suites finished and written to {out}; the grades made are cached" in stderr
        assert "Traceback" not in stderr

        before = server.calls
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert server.calls - before == 3  # the first suite's grades came from the cache
    assert {p.name for p in out.iterdir()} >= {"first.json", "second.json"}


def test_expected_outcomes_read_any_case_as_the_label_does():
    case = EvalCase(id="a", question="q", answer="x", label="Great", expected=["Great", " POOR"])
    assert case.label.value == "great" and case.expected == ["great", "poor"]
