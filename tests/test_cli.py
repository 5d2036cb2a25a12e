"""The command line, through typer's runner and through the installed `grader` entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.cli import app
from grader.resources import data_dir
from grader.rubric import load_rubric
from grader.rubric.contrast import KEY_POINTS
from tests.conftest import reply_for
from tests.support.loopback import LoopbackLLM

runner = CliRunner()
ANSWER = "I gather logs and recent deployments, then reproduce the issue in staging."


@pytest.fixture
def scripted(tmp_path, monkeypatch, q1):
    """Point the fake backend at a file of scripted replies."""

    def script(*replies: dict | str) -> Path:
        path = tmp_path / "replies.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in replies) + "\n")
        monkeypatch.setenv("GRADER_FAKE_REPLIES", str(path))
        monkeypatch.setenv("GRADER_MODE", "holistic")  # the scripted replies are holistic ones
        return path

    return script


def invoke(*args: str, input: str | bytes | None = None):
    return runner.invoke(app, list(args), input=input)


def test_grade_json(scripted, q1):
    scripted(reply_for(q1, covered={"q01.reproduce": "reproduce the issue in staging"}, tier="mediocre"))
    result = invoke("grade", "-q", "debugging-a-production-issue", "-a", ANSWER, "--format", "json", "-b", "fake")
    assert result.exit_code == 0, result.output
    grade = json.loads(result.stdout)
    assert grade["question_id"] == "debugging-a-production-issue"
    assert grade["tier"] == "mediocre"
    assert grade["covered_points"] == [{"id": "q01.reproduce", "evidence": "reproduce the issue in staging"}]
    assert grade["backend"] == "fake" and grade["model"] == "scripted"
    assert grade["usage"]["prompt_tokens"] > 0 and grade["attempts"] == 1
    assert grade["confidence"] is None


def test_grade_text_from_stdin(scripted, q1):
    scripted(reply_for(q1, covered={"q01.reproduce": "reproduce the issue"}, tier="great"))
    result = invoke("grade", "-q", "1", "--answer-file", "-", "-b", "fake", input=ANSWER)
    assert result.exit_code == 0, result.output
    assert "GREAT" in result.stdout and "q01.reproduce" in result.stdout
    assert '"reproduce the issue"' in result.stdout


def test_grade_prints_the_quote_each_red_flag_fired_on():
    answer = (
        "When the database is slow I usually upgrade to more powerful hardware. Most performance issues are "
        "solved by adding more CPU and memory, so I avoid changing the code or the database design."
    )
    result = invoke("grade", "-q", "4", "-a", answer, "-b", "local", "--no-cache")
    assert result.exit_code == 0, result.output
    shown = " ".join(line.strip(" │") for line in result.stdout.splitlines())  # the panel wraps at any width
    assert re.search(
        r'red flag q04\.no-design-changes: [^"]+ "so I avoid changing the code or the database design\."', shown
    ), shown


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["-q", "debuging", "-a", "x"], 3, "did you mean debugging-a-production-issue", id="unknown-question"
        ),
        pytest.param(["-q", "1", "-a", "   "], 4, "the answer is empty", id="empty"),
        pytest.param(["-q", "1", "-a", "x" * 50, "--max-answer-chars", "10"], 5, "the limit is 10", id="too-long"),
        pytest.param(
            ["-q", "1", "-f", "/nonexistent/answer.txt"], 6, "/nonexistent/answer.txt: no such file", id="missing-file"
        ),
        pytest.param(["-q", "1", "-a", "x", "-b", "openai"], 8, "openai backend is not configured", id="no-backend"),
        pytest.param(["-q", "1"], 2, "exactly one of --answer or --answer-file", id="no-answer"),
        pytest.param(
            ["-q", "1", "-a", "x", "--rubric", "/nonexistent.yaml"], 6, "no such rubric file", id="missing-rubric"
        ),
        # Usage errors are one line too, not typer's five-line framed box.
        pytest.param(
            ["-q", "1", "-a", "x", "--max-answer-chars", "abc"], 2, "Invalid value for '--max-answer-chars'", id="int"
        ),
        pytest.param(["-q", "1", "-a", "x", "--nope"], 2, "No such option: --nope", id="unknown-option"),
        # A chat backend's options, refused before any model is asked (the fake backend has no replies).
        pytest.param(["-q", "1", "-a", "x", "-b", "fake", "--mode", "nope"], 2, "unknown grading mode", id="mode"),
        # ... whichever backend is picked: a bad GRADER_MODE is found before a key is ever set.
        pytest.param(
            ["-q", "1", "-a", "x", "-b", "local", "--mode", "nope"], 2, "unknown grading mode", id="mode-local"
        ),
        pytest.param(["-q", "1", "-a", "x", "--format", "xml"], 2, "'xml' is not one of 'text', 'json'", id="format"),
        pytest.param(
            ["-q", "1", "-a", "x", "-b", "fake", "--checklist-calls", "two"], 2, "--checklist-calls", id="calls"
        ),
        pytest.param(
            ["-q", "1", "-a", "x", "-b", "fake", "--checklist-calls", "per-item", "--prose"],
            2,
            "cannot add --prose",
            id="per-item-prose",
        ),
        pytest.param(
            ["-q", "1", "-a", "x", "-b", "fake", "--checklist-rule", "nope"], 2, "no packaged rule 'nope'", id="rule"
        ),
        pytest.param(
            ["-q", "1", "-a", "x", "-b", "fake", "--checklist-rule", "/nonexistent/rule.json"],
            6,
            "/nonexistent/rule.json: no such file",
            id="rule-file",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_distinct_exit_code(args, code, message):
    result = invoke("grade", *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_non_utf8_file(tmp_path):
    path = tmp_path / "answer.txt"
    path.write_bytes(b"I check the logs.\ncaf\xe9 latin-1")
    result = invoke("grade", "-q", "1", "-f", str(path))
    assert result.exit_code == 7
    assert f"{path}:2: not UTF-8 text (invalid byte 0xe9 at offset 21)" in result.stderr


def test_a_bom_is_not_part_of_the_answer(tmp_path):
    path = tmp_path / "answer.txt"
    path.write_bytes("I check the logs and the recent deployments first.".encode("utf-8-sig"))
    result = invoke("grade", "-q", "1", "-f", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    quotes = [p["evidence"] for p in json.loads(result.stdout)["covered_points"]]
    assert quotes and not any("\ufeff" in q for q in quotes)


def test_directory_as_answer_file(tmp_path):
    result = invoke("grade", "-q", "1", "-f", str(tmp_path))
    assert result.exit_code == 6 and "is a directory" in result.stderr


def test_grading_failure_exit(scripted):
    scripted({"tier": "great"}, {"tier": "great"}, {"tier": "great"})
    result = invoke("grade", "-q", "1", "-a", ANSWER, "-b", "fake")
    assert result.exit_code == 10
    assert "no valid reply after 3 requests" in result.stderr


def test_rubric_list_and_check(monkeypatch):
    listed = invoke("rubric", "list")  # piped: one tab-separated line a question (a table wrapped each word)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[:2] == [
        "#\tid\tpoints\tflags\tquestion",
        "1\tdebugging-a-production-issue\t8\t2\tHow do you approach debugging a production issue?",
    ]
    assert len(lines) == 21
    from grader.cli._common import console

    monkeypatch.setattr(console, "_force_terminal", True)
    table = invoke("rubric", "list")
    assert "backend-engineering (20 questions)" in table.stdout and "┃ id" in table.stdout
    checked = invoke("rubric", "check")
    assert checked.exit_code == 0 and "ok, 20 questions" in checked.stdout


def test_rubric_check_bad_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nquestions:\n- id: a\n  number: 1\n  text: q\n  references: {great: a, mediocre: b, poor: ''}\n"
    )
    result = invoke("rubric", "check", str(bad))
    assert result.exit_code == 9
    assert f"{bad}:6: question a: references.poor" in result.stderr


def test_import_then_draft_without_a_model(tmp_path):
    out = tmp_path / "mine.yaml"
    imported = invoke("rubric", "import", str(data_dir("rubric") / "recruiters-questions.txt"), "--out", str(out))
    assert imported.exit_code == 0, imported.output
    assert "ignored: Last updated" in imported.stderr
    assert all(not q.key_points for q in load_rubric(out))
    again = invoke("rubric", "import", str(data_dir("rubric") / "recruiters-questions.txt"), "--out", str(out))
    assert again.exit_code == 2 and "exists" in again.stderr

    drafted = invoke("rubric", "draft", str(out), "--backend", "local")
    assert drafted.exit_code == 0, drafted.output
    rubric = load_rubric(out)
    for q in rubric:
        assert KEY_POINTS[0] <= len(q.key_points) <= KEY_POINTS[1] and all(p.draft for p in q.key_points)
    assert "q01." in rubric.find(1).key_points[0].id
    checked = invoke("rubric", "check", str(out))
    assert "not reviewed yet" in checked.stdout


def test_draft_through_a_chat_model(tmp_path, monkeypatch, q1):
    bank = tmp_path / "bank.txt"
    bank.write_text(
        f'1. {q1.text}\nGreat Response: "{q1.references.great}"\n'
        f'Mediocre Response: "{q1.references.mediocre}"\nPoor Response: "{q1.references.poor}"\n'
    )
    out = tmp_path / "mine.yaml"
    assert invoke("rubric", "import", str(bank), "-o", str(out)).exit_code == 0
    bad = {"key_points": [{"quote": "invented words", "name": "x", "text": "Something"}], "red_flags": []}
    good = {
        "key_points": [
            {
                "quote": "reproduce the issue in a controlled environment",
                "name": "reproduce",
                "text": "Reproduces the issue first",
                "phrasings": [
                    "Reproduces the issue first",
                    " I try to make it fail again  in staging. ",
                    "I replay the failing request until I see the same error.",
                ],
            },
            {"quote": "blameless post-mortems", "name": "post-mortem", "text": "Runs blameless post-mortems"},
            {"quote": "recent deployments", "name": "recent deploys", "text": "Checks recent deployments"},
        ],
        "red_flags": [
            {"quote": "rather than investigating deeper causes", "name": "no-root-cause", "text": "Skips root causes"}
        ],
    }
    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
    monkeypatch.setenv("GRADER_MODE", "holistic")  # the scripted replies are holistic ones
    result = invoke("rubric", "draft", str(out), "-b", "fake")
    assert result.exit_code == 0, result.output
    q = load_rubric(out).find(1)
    assert [p.id for p in q.key_points] == ["q01.reproduce", "q01.post-mortem", "q01.recent-deploys"]
    # The model's other phrasings are kept (tidied, without a repeat of the point's own text): the local
    # backend matches answers against them.
    assert q.key_points[0].phrasings == [
        "I try to make it fail again in staging.",
        "I replay the failing request until I see the same error.",
    ]
    assert q.key_points[1].phrasings == []
    assert [f.id for f in q.red_flags] == ["q01.no-root-cause"] and q.red_flags[0].draft


# --- the installed entry point and a real server on loopback ----------------------------------------


def _entry_point() -> list[str]:
    exe = shutil.which("grader", path=os.path.dirname(sys.executable)) or shutil.which("grader")
    if exe is None:
        pytest.fail("the `grader` entry point is not installed: pip install '.[test]'")
    return [exe]


def test_installed_entry_point_grades_against_a_loopback_server(tmp_path):
    with LoopbackLLM(reject_json_schema=True) as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-loopback-secret",
            "GRADER_MODEL": "qwen-test",
        }
        proc = subprocess.run(
            [*_entry_point(), "grade", "-q", "3", "--answer-file", "-", "--format", "json"],
            input="I validate every input on the server and use parameterized queries.",
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    grade = json.loads(proc.stdout)
    assert grade["backend"] == "openai" and grade["model"] == "qwen-test"
    assert grade["question_id"] == load_rubric().find(3).id
    assert grade["covered_points"][0]["evidence"] == "I validate every input on"
    assert grade["attempts"] == 2  # json_schema refused with HTTP 500, then JSON mode
    assert [r["response_format"]["type"] for r in server.requests] == ["json_schema", "json_object"]
    assert server.headers[0]["authorization"] == "Bearer sk-loopback-secret"
    assert "sk-loopback-secret" not in proc.stdout + proc.stderr


def test_installed_entry_point_bad_input_exit_code(tmp_path):
    proc = subprocess.run(
        [*_entry_point(), "grade", "-q", "99", "-a", "x"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 3
    assert (
        proc.stderr.strip()
        == "grader: error: unknown question '99' (list them with `grader rubric list` given the same --rubric, "
        "or load_rubric() in Python)"
    )


def test_the_command_line_starts_without_the_heavy_libraries():
    """numpy, onnxruntime, tokenizers, scikit-learn and matplotlib load only for the commands that use them
    (the local model, transcripts, calibration, reports): every other command starts faster."""
    code = "import sys, grader.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("numpy", "onnxruntime", "tokenizers", "sklearn", "matplotlib", "openai"):
        assert f"'{heavy}'" not in loaded


def test_a_cache_folder_that_is_a_file_is_exit_15_with_or_without_the_grade_cache(tmp_path, monkeypatch):
    """The local backend's vector cache lives there too: with --no-cache its failure was a generic exit 1."""
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "afile"))
    for extra in ([], ["--no-cache"]):
        result = invoke("grade", "-q", "1", "-a", "I check the logs.", "-b", "local", *extra)
        assert result.exit_code == 15 and "cannot write" in result.stderr, (extra, result.output)


def test_a_folder_given_as_the_answer_file_points_at_what_grades_many():
    result = invoke("grade", "-q", "1", "-f", ".")
    assert result.exit_code == 6 and "`grader batch` on a .csv or .jsonl file" in result.stderr


def test_output_closed_early_ends_quietly():
    """`grader eval --help | head` was an internal error (exit 70, BrokenPipeError)."""
    for args in (["eval", "--help"], ["rubric", "list"]):
        proc = subprocess.run(
            f"{sys.executable} -m grader {' '.join(args)} | head -8 >/dev/null; echo ${{PIPESTATUS[0]}}",
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.stdout.strip() in {"0", "1"} and "error" not in proc.stderr, (args, proc.stdout, proc.stderr)


def test_a_bad_option_names_its_environment_variable_only_when_the_value_came_from_it(monkeypatch):
    """ "(env var: 'GRADER_REVIEW_THRESHOLD')" after a flag typed on the command line sent people to look
    for a variable they never set."""
    typed = invoke("grade", "-q", "1", "--answer", "I read the logs.", "--review-threshold", "abc")
    assert typed.exit_code == 2
    assert "grader: error: Invalid value for '--review-threshold': Input should be a valid number" in typed.stderr
    assert "GRADER_REVIEW_THRESHOLD" not in typed.stderr
    monkeypatch.setenv("GRADER_REVIEW_THRESHOLD", "abc")
    from_env = invoke("grade", "-q", "1", "--answer", "I read the logs.")
    assert from_env.exit_code == 2
    assert "Invalid value for '--review-threshold' (from GRADER_REVIEW_THRESHOLD): Input" in from_env.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "GRADER_FAKE_REPLIES: cannot read {path} (No such file or directory)"),
        (
            '{"tier": "great"}\n\n{not json\n',
            "GRADER_FAKE_REPLIES: {path}:3: not a JSON reply (Expecting property name",
        ),
    ],
)
def test_a_bad_fake_replies_file_is_exit_8_naming_it(tmp_path, monkeypatch, content, message):
    """A missing or malformed replies file was an internal error (exit 70) with a traceback's last line."""
    path = tmp_path / "replies.jsonl"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(path))
    result = invoke("grade", "-q", "1", "-a", ANSWER, "-b", "fake")
    assert result.exit_code == 8, result.output
    assert message.format(path=path) in result.stderr and "internal error" not in result.stderr
