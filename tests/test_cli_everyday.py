"""What users of llm, inspect and promptfoo reach for: --version, completion, `grader backends`, JSON output
for every command that prints a table, wide help, and the grade cache for `grader grade`."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from grader import __version__
from grader.cli import app
from tests.conftest import reply_for

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_version():
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0 and result.stdout.strip() == f"grader {__version__}"


def test_shell_completion_is_offered(monkeypatch):
    # With shell detection on, typer reads the shell from the process tree and `bash` is no option value: a
    # run whose parent shell has exited (nohup, some CI runners) found none ("Shell  not supported").
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name="grader")
    assert result.exit_code == 0 and "_GRADER_COMPLETE=complete_bash" in result.stdout, result.output


def test_backends_lists_each_with_whether_it_is_configured_and_its_model(monkeypatch):
    result = invoke("backends", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"openai", "ollama", "local", "nearest", "fake"}
    assert rows["local"]["configured"] and rows["local"]["auto"] and rows["local"]["model"] == "all-MiniLM-L6-v2-int8"
    assert not rows["openai"]["configured"] and "OPENAI_API_KEY" in rows["openai"]["note"]
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("GRADER_MODEL", "my-model")
    rows = {row["name"]: row for row in json.loads(invoke("backends", "--format", "json").stdout)}
    assert rows["openai"]["configured"] and rows["openai"]["auto"] and rows["openai"]["model"] == "my-model"
    table = invoke("backends")
    assert table.exit_code == 0 and "openai (auto)" in table.stdout


def test_rubric_list_as_json():
    result = invoke("rubric", "list", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["rubric"] == "backend-engineering" and len(data["questions"]) == 20
    first = data["questions"][0]
    assert first["number"] == 1 and first["key_points"][0].startswith("q01.") and first["red_flags"]


def test_eval_as_json_is_the_reports_alone_on_standard_output(tmp_path):
    args = ["eval", "-b", "nearest", "-s", "adversarial,references", "--limit", "4", "--no-cache", "--no-floor"]
    result = invoke(*args, "--format", "json", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [r["suite"] for r in reports] == ["adversarial", "references"] and reports[0]["cases"] == 4
    assert "wrote" in result.stderr
    assert reports[0] == json.loads((tmp_path / "adversarial.json").read_text())


def test_calibrate_as_json(tmp_path):
    human = tmp_path / "human.csv"
    human.write_text("interviewer,id,question,tier\nalice,a1,1,great\nbob,a1,1,mediocre\n")
    grades = tmp_path / "grades.jsonl"
    grade = {"id": "a1", "question_id": "debugging-a-production-issue", "tier": "great", "justification": "j"}
    grades.write_text(json.dumps(grade | {"backend": "local", "model": "m"}) + "\n")
    result = invoke("calibrate", str(human), "-g", str(grades), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["overall"]["n"] == 2 and set(report["interviewers"]) == {"alice", "bob"}


def test_help_piped_is_not_cut_at_80_columns():
    out = subprocess.run(
        [sys.executable, "-m", "grader", "grade", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert max(len(line) for line in out.splitlines()) > 100
    assert "Grade one answer against a rubric question and print the grade." in out  # on one line


def test_grade_reuses_a_cached_grade(tmp_path, monkeypatch, q1):
    replies = tmp_path / "replies.jsonl"
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
    monkeypatch.setenv("GRADER_MODE", "holistic")
    args = ("grade", "-q", "1", "-a", "I check the logs.", "-b", "fake", "--format", "json")
    replies.write_text(json.dumps(reply_for(q1, tier="mediocre")) + "\n")
    first = invoke(*args)
    replies.write_text(json.dumps(reply_for(q1, tier="great")) + "\n")  # the model would now say great
    second, fresh = invoke(*args), invoke(*args, "--no-cache")
    assert first.exit_code == second.exit_code == fresh.exit_code == 0, second.output
    cached = json.loads(second.stdout)
    assert cached["notes"][-1].startswith("from the grade cache: no model call now")  # its usage is no new cost
    assert {**cached, "notes": cached["notes"][:-1]} == json.loads(first.stdout)  # served by the cache
    assert json.loads(fresh.stdout)["tier"] == "great" and not json.loads(first.stdout)["notes"]
