"""Bad input that gets in, errors that mislead, thin evidence, and the README's exit codes (issue 14).

Each test reproduces what a user (or a fault-injecting server on loopback) ran into, through the real
command line where the exit code is the point.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import re
import resource
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from grader.audit.data import read_grades, read_people
from grader.backends.openai import OpenAIBackend
from grader.backends.retry import RetryPolicy
from grader.batch.files import Columns, read_rows
from grader.calibration.data import iter_model_grades, read_human_grades, read_model_grades
from grader.cli import app
from grader.cli._common import read_input
from grader.errors import (
    AnswerTooLongError,
    BackendNotConfiguredError,
    CalibrationDataError,
    EncodingError,
    GraderError,
    GradingFailedError,
    TranscriptError,
)
from grader.grading.contract import CoveredPoint, Grade, GradeFailure, GradeRequest
from grader.grading.engine import Engine, Job
from grader.grading.review import apply_review_policy
from grader.rubric import load_rubric
from grader.rubric.importer import parse_bank
from grader.transcripts import parse as transcript_parse
from grader.transcripts.parse import read_transcript
from tests.conftest import reply_for
from tests.support.loopback import LoopbackLLM

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "I gather logs and recent deployments, then reproduce the issue in staging before I change any code."
SECRET = "sk-test-secret-0123456789"


def invoke(*args: str, input: Any = None, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), input=input, env=env)


def one_line_error(result: Any) -> str:
    """The stderr of a refused command: exactly one line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


class Endless(io.RawIOBase):
    """An input that never ends (like /dev/zero or a pipe from `yes`), counting the bytes read from it."""

    def __init__(self, byte: bytes = b"a", stop_after: int = 50_000_000) -> None:
        self.byte, self.stop_after, self.consumed = byte, stop_after, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = len(buffer)
        self.consumed += n
        if self.consumed > self.stop_after:  # an unbounded read: fail here, not at a MemoryError
            raise AssertionError(f"read {self.consumed:,} bytes of an endless input")
        buffer[:n] = self.byte * n
        return n


# --- bounded reads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("byte", "error"), [(b"a", AnswerTooLongError), (b"\0", EncodingError)], ids=["text-over-the-limit", "nul-bytes"]
)
def test_endless_standard_input_is_read_only_to_the_limit(monkeypatch, byte, error):
    source = Endless(byte)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=source))
    with pytest.raises(error, match="^standard input"):
        read_input(Path("-"), limit=1000)
    assert source.consumed <= 1001


def test_a_huge_answer_file_is_refused_as_over_the_limit(tmp_path):
    path = tmp_path / "answer.txt"
    path.write_text("word " * 200_000)  # 1 MB
    result = invoke("grade", "-q", "1", "-f", str(path), "--max-answer-chars", "1000")
    assert result.exit_code == 5
    assert f"{path} is over the limit of 1,000 characters" in one_line_error(result)


def test_an_answer_at_the_limit_is_read_whole(tmp_path, monkeypatch, q1):
    """The bound does not cut a file that fits: the engine sees every character (multi-byte ones too)."""
    text = "é" * 999 + "."
    path = tmp_path / "answer.txt"
    path.write_text(text, encoding="utf-8")
    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps(reply_for(q1)) + "\n")
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
    monkeypatch.setenv("GRADER_MODE", "holistic")
    result = invoke("grade", "-q", "1", "-f", str(path), "--max-answer-chars", "1000", "-b", "fake")
    assert result.exit_code == 0, result.output


def _limited_memory() -> None:
    # 2 GiB of address space: plenty for grader, not for reading /dev/zero whole.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["grade", "-q", "1", "-f", "/dev/zero"], 7, "/dev/zero: not UTF-8 text", id="grade"),
        pytest.param(["transcript", "/dev/zero"], 7, "/dev/zero: not UTF-8 text", id="transcript"),
        pytest.param(["grade", "-q", "1", "-f", "-"], 7, "standard input: not UTF-8 text", id="stdin"),
    ],
)
def test_dev_zero_is_refused_without_reading_it_all(args, code, message, tmp_path):
    grader = Path(sys.executable).with_name("grader")
    with open("/dev/zero", "rb") as zeros:
        proc = subprocess.run(
            [str(grader), *args],
            stdin=zeros,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            preexec_fn=_limited_memory,
            env={**os.environ, "GRADER_CACHE_DIR": str(tmp_path)},
        )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and "MemoryError" not in proc.stderr


def test_a_transcript_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(transcript_parse, "MAX_TRANSCRIPT_CHARS", 1000)
    path = tmp_path / "long.txt"
    path.write_text("Interviewer: Tell me about testing.\nCandidate: I write tests.\n" * 1000)
    with pytest.raises(TranscriptError, match=r"long.txt: over the limit of 1,000 characters") as info:
        read_transcript(path)
    assert info.value.exit_code == 14


def test_the_transcript_size_limit_is_documented():
    assert f"{transcript_parse.MAX_TRANSCRIPT_CHARS:,}" in (ROOT / "README.md").read_text()


# --- NUL characters and bytes that are not UTF-8 ----------------------------------------------------


def test_utf16_without_a_bom_is_not_utf8_text(tmp_path):
    path = tmp_path / "answer.txt"
    path.write_bytes(ANSWER.encode("utf-16-le"))
    result = invoke("grade", "-q", "1", "-f", str(path))
    assert result.exit_code == 7
    assert f"{path}: not UTF-8 text" in one_line_error(result)


def test_nul_characters_on_standard_input_are_not_utf8_text():
    result = invoke("grade", "-q", "1", "-f", "-", input=b"I check\x00 the logs")
    assert result.exit_code == 7
    assert "standard input: not UTF-8 text" in one_line_error(result)


def test_a_transcript_with_nul_characters_is_not_utf8_text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("Interviewer: Hi\nCandidate: Hello\n".encode("utf-16-le"))
    result = invoke("transcript", str(path))
    assert result.exit_code == 7
    assert f"{path}: not UTF-8 text" in one_line_error(result)


def test_non_utf8_bytes_in_answer_on_the_command_line_are_refused(tmp_path):
    """argv bytes that are not UTF-8 arrive as surrogate escapes; they never reach a tokenizer."""
    grader = Path(sys.executable).with_name("grader")
    argv = [os.fsencode(grader), b"grade", b"-q", b"1", b"-b", b"local", b"-a", b"I check the logs caf\xe9 first"]
    proc = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 7, proc.stderr
    stderr = proc.stderr.decode()
    assert stderr.strip().splitlines() == [
        "grader: error: the answer given with --answer: not UTF-8 text (bytes that are not UTF-8 on the command line)"
    ]


def test_surrogates_in_answer_are_refused_in_process():
    result = invoke("grade", "-q", "1", "-b", "local", "-a", "caf\udce9 and logs")
    assert result.exit_code == 7
    assert "not UTF-8 text" in one_line_error(result)


# --- deeply nested JSON -----------------------------------------------------------------------------


def test_deeply_nested_json_transcript_names_the_file_and_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('[\n{"speaker": "A", "text": "hi"},\n' + "[" * 100_000 + "]" * 100_000 + "\n]\n")
    with pytest.raises(TranscriptError, match=rf"^{re.escape(str(path))}:3: JSON nested too deeply") as info:
        read_transcript(path)
    assert info.value.exit_code == 14
    result = invoke("transcript", str(path))
    assert result.exit_code == 14
    assert f"{path}:3: JSON nested too deeply" in one_line_error(result)


def test_deeply_nested_json_in_model_grades_names_the_file_and_line(tmp_path):
    path = tmp_path / "model.jsonl"
    path.write_text('\n{"id": "b", "grade": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(CalibrationDataError, match=rf"^{re.escape(str(path))}:2: JSON nested too deeply") as info:
        read_model_grades(path)
    assert info.value.exit_code == 20


# --- rubric import and rubric files -----------------------------------------------------------------


def _bank(number: str, question: str) -> str:
    return f'{number}. {question}\nGreat Response: "a"\nMediocre Response: "b"\nPoor Response: "c"\n'


@pytest.mark.parametrize(
    ("bank", "message"),
    [
        pytest.param(
            _bank("0", "How do you test?"), "bank.txt:1: question number 0: numbers start at 1", id="number-0"
        ),
        pytest.param(_bank("9" * 5000, "How do you test?"), "bank.txt:1: question number 9999", id="huge-number"),
    ],
)
def test_rubric_import_of_a_bad_question_is_one_line_naming_the_line(tmp_path, bank, message):
    source = tmp_path / "bank.txt"
    source.write_text(bank, encoding="utf-8")
    result = invoke("rubric", "import", str(source), "-o", str(tmp_path / "out.yaml"))
    assert result.exit_code == 9, result.output
    assert message in one_line_error(result)


def test_rubric_import_of_a_very_long_question_makes_a_valid_rubric(tmp_path):
    long_question = " ".join(["Supercalifragilisticexpialidociousness"] * 8) + "?"
    source = tmp_path / "bank.txt"
    source.write_text(_bank("1", long_question) + "\n" + _bank("2", long_question), encoding="utf-8")
    out = tmp_path / "out.yaml"
    result = invoke("rubric", "import", str(source), "-o", str(out))
    assert result.exit_code == 0, result.output
    ids = [q.id for q in load_rubric(out)]
    assert len(ids) == 2 and all(len(i) <= 80 for i in ids) and ids[0] != ids[1]


def test_imported_question_that_fails_validation_names_the_line():
    blank = '2. How do you test?\nGreat Response: "\n"\nMediocre Response: "b"\nPoor Response: "c"\n'
    with pytest.raises(GraderError, match=r"^bank:5: question 2: references.great: ") as info:
        parse_bank(_bank("1", "How do you deploy?") + blank, label="bank")
    assert info.value.exit_code == 9 and "\n" not in str(info.value)


def test_duplicate_yaml_keys_in_a_rubric_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: x\nquestions:\n- id: a\n  number: 1\n  text: q\n  text: another q\n"
        "  references: {great: a, mediocre: b, poor: c}\n"
    )
    result = invoke("rubric", "check", str(path))
    assert result.exit_code == 9
    assert f"{path}:6: invalid YAML: duplicate key 'text' (first on line 5)" in one_line_error(result)


# --- usage errors exit 2 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["grade", "-q", "1"], "exactly one of --answer or --answer-file", id="no-answer"),
        pytest.param(["grade", "-q", "1", "-a", "x", "-f", "-"], "exactly one of", id="both-answers"),
        pytest.param(["grade", "-q", "1", "-a", "x", "-b", "nope"], "unknown backend 'nope'", id="unknown-backend"),
        pytest.param(["eval", "-b", "nope"], "unknown backend 'nope'", id="eval-unknown-backend"),
        pytest.param(["eval", "--suite", ",,,", "-b", "local"], "--suite names no suite", id="no-suite"),
        pytest.param(["eval", "--suite", "referencs", "-b", "local"], "unknown suite 'referencs'", id="unknown-suite"),
        pytest.param(
            ["grade", "-q", "1", "-a", ANSWER, "-b", "local", "--samples", "5"],
            "--samples needs a chat backend",
            id="samples-deterministic",
        ),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in one_line_error(result)


def test_rubric_import_onto_an_existing_file_is_a_usage_error(tmp_path):
    source, out = tmp_path / "bank.txt", tmp_path / "out.yaml"
    source.write_text(_bank("1", "How do you deploy?"))
    out.write_text("keep me")
    result = invoke("rubric", "import", str(source), "-o", str(out))
    assert result.exit_code == 2
    assert f"{out} exists" in one_line_error(result) and out.read_text() == "keep me"


def test_the_readme_samples_example_names_a_chat_backend():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if "--samples 5" in line]
    assert lines and all("--backend openai" in line and "chat backend" in line for line in lines), lines


# --- the review threshold's digits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "threshold", "shown"),
    [
        pytest.param(0.5956, 0.6, "confidence 0.596 is below the review threshold 0.600", id="0.5956"),
        pytest.param(0.55, 0.6, "confidence 0.55 is below the review threshold 0.60", id="two-digits-enough"),
        pytest.param(0.59999, 0.6, "confidence 0.59999 is below the review threshold 0.60000", id="0.59999"),
        pytest.param(0.6049, 0.605, "confidence 0.6049 is below the review threshold 0.6050", id="0.6049"),
    ],
)
def test_the_review_reason_never_shows_equal_numbers(q1, confidence, threshold, shown):
    grade = Grade(
        question_id=q1.id,
        tier="mediocre",
        justification="j",
        covered_points=[CoveredPoint(id=p, evidence="x") for p in q1.point_ids[:4]],
        missed_points=q1.point_ids[4:],
        confidence=confidence,
        backend="fake",
        model="m",
    )
    assert shown in apply_review_policy(grade, q1, threshold).review_reasons


# --- secrets never printed or stored ----------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 500])
def test_a_key_echoed_by_the_server_is_redacted(api, make_backend, q1, status):
    body = {"error": {"message": f"bad request: Authorization: Bearer {SECRET} (key {SECRET})"}}
    api.post("/chat/completions").mock(return_value=httpx.Response(status, json=body))
    engine = Engine(make_backend(api_key=SECRET, policy=RetryPolicy(attempts=2)))
    try:
        failure = asyncio.run(engine.grade(Job(q1, ANSWER, tag=None))).failure
    except GraderError as exc:  # a refusal stops a run: raised, and stored as its failure
        assert SECRET not in str(exc) and "[redacted]" in str(exc)
        failure = exc.failure(q1.id)
    assert isinstance(failure, GradeFailure)
    assert SECRET not in failure.model_dump_json() and "[redacted]" in failure.message


def test_bearer_tokens_and_url_credentials_are_redacted_from_any_error():
    error = GradingFailedError(
        "http://u:hunter22@host/v1 kept failing (Authorization: Bearer abc.def-123)",
        attempts=1,
        last_output="Bearer abc.def-123",
    )
    shown = str(error) + error.failure().model_dump_json()
    assert "hunter22" not in shown and "abc.def-123" not in shown and "[redacted]" in shown


class _Echoing(LoopbackLLM):
    """A server that answers every chat request with an error quoting the request's Authorization header."""

    status = 400

    def respond(self, body: dict[str, Any], number: int, fault: str | None = None):  # noqa: ARG002
        sent = self.headers[-1].get("authorization", "")
        return self.status, {"error": {"message": f"invalid request (Authorization: {sent})"}}, {}


@pytest.mark.parametrize(("status", "code"), [(400, 11), (500, 10)])
def test_the_cli_never_prints_an_echoed_key(monkeypatch, status, code):
    with _Echoing() as server:
        server.status = status
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = invoke("grade", "-q", "1", "-a", ANSWER, "--max-attempts", "2", "--mode", "holistic")
    assert result.exit_code == code, result.output
    assert server.headers and SECRET in server.headers[-1]["authorization"]  # the echo really happened
    assert SECRET not in result.output and "[redacted]" in one_line_error(result)


def test_credentials_in_the_base_url_are_a_clear_error_that_never_shows_them(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://alice:hunter22@llm.example/v1")
    result = invoke("grade", "-q", "1", "-a", ANSWER)
    assert result.exit_code == 8
    line = one_line_error(result)
    assert "credentials" in line and "hunter22" not in line and "alice" not in line
    with pytest.raises(BackendNotConfiguredError):
        OpenAIBackend(base_url="http://bob:pw123456@127.0.0.1:1/v1")


# --- connection failures say what happened ----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _grade_through(backend: OpenAIBackend, q1) -> GradingFailedError:
    async def go() -> None:
        try:
            await backend.grade(GradeRequest(q1, ANSWER))
        finally:
            await backend.aclose()

    with pytest.raises(GradingFailedError) as info:
        asyncio.run(go())
    return info.value


@pytest.mark.parametrize("client", ["aiohttp", "httpx2"])
def test_a_refused_connection_is_reported_as_refused(q1, client):
    import httpx2

    port = _closed_port()
    http_client = httpx2.AsyncClient() if client == "httpx2" else None
    backend = OpenAIBackend(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="k", policy=RetryPolicy(attempts=1), http_client=http_client
    )
    error = _grade_through(backend, q1)
    assert f"connection refused to 127.0.0.1:{port}" in str(error)
    assert "timed out" not in str(error)


@pytest.mark.parametrize("client", ["aiohttp", "httpx2"])
def test_an_unresolvable_host_is_reported_as_not_resolving(q1, monkeypatch, client):
    import httpx2

    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):  # never asks the network
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    http_client = httpx2.AsyncClient() if client == "httpx2" else None
    backend = OpenAIBackend(
        base_url="http://llm.invalid/v1", api_key="k", policy=RetryPolicy(attempts=1), http_client=http_client
    )
    error = _grade_through(backend, q1)
    assert "llm.invalid does not resolve" in str(error)
    assert "timed out" not in str(error)


# --- thin evidence asks for a human -----------------------------------------------------------------


def test_a_question_without_key_points_is_sent_for_review(q1):
    bare = q1.model_copy(update={"key_points": [], "red_flags": []})
    grade = Grade(question_id=q1.id, tier="mediocre", justification="j", confidence=0.98, backend="fake", model="m")
    reviewed = apply_review_policy(grade, bare, 0.6)
    assert reviewed.needs_review
    assert any("has no key points" in r for r in reviewed.review_reasons), reviewed.review_reasons


@pytest.mark.parametrize(
    ("justification", "flagged"),
    [
        pytest.param("Covers none of the 8 key points. No red flags.", True, id="poor-by-absence"),
        pytest.param("Graded poor because it does not address the question (off-topic).", False, id="stated-reason"),
    ],
)
def test_a_poor_grade_on_no_evidence_asks_for_a_human_unless_it_says_why(q1, justification, flagged):
    grade = Grade(
        question_id=q1.id,
        tier="poor",
        justification=justification,
        missed_points=q1.point_ids,
        confidence=0.96,
        backend="local",
        model="m",
    )
    reviewed = apply_review_policy(grade, q1, 0.6)
    assert reviewed.needs_review is flagged, reviewed.review_reasons


def test_an_imported_rubric_grades_are_sent_for_review(tmp_path):
    source, out = tmp_path / "bank.txt", tmp_path / "out.yaml"
    source.write_text(_bank("1", "How do you deploy a service safely?"))
    assert invoke("rubric", "import", str(source), "-o", str(out)).exit_code == 0
    answer = "I deploy with a canary release, watch the error rate and roll back when it rises."
    result = invoke("grade", "-q", "1", "-a", answer, "-r", str(out), "-b", "local", "--format", "json")
    assert result.exit_code == 0, result.output
    grade = json.loads(result.stdout)
    assert grade["needs_review"] and any("has no key points" in r for r in grade["review_reasons"])


# --- the README's exit-code table -------------------------------------------------------------------


def _readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| exit | cause |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[int(cells[0])] = cells[1]
    return rows


class _Refusing(LoopbackLLM):
    def respond(self, body: dict[str, Any], number: int, fault: str | None = None):  # noqa: ARG002
        return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}, {}


def _cause(code: int, tmp: Path, monkeypatch: pytest.MonkeyPatch, stack: ExitStack) -> list[str]:
    """One documented cause of `code`, set up under `tmp`: the command line that should exit with it."""
    q1 = load_rubric().find(1)
    if code == 1:  # batch finished but a row failed (an unknown question)
        rows = tmp / "in.csv"
        rows.write_text(f'id,question,answer\na,1,"{ANSWER}"\nb,999,"{ANSWER}"\n')
        return ["batch", str(rows), "-o", str(tmp / "out.jsonl"), "-b", "local"]
    if code == 2:
        return ["grade", "-q", "1"]
    if code == 3:
        return ["grade", "-q", "99", "-a", ANSWER]
    if code == 4:
        return ["grade", "-q", "1", "-a", "   "]
    if code == 5:
        return ["grade", "-q", "1", "-a", ANSWER, "--max-answer-chars", "10"]
    if code == 6:
        return ["grade", "-q", "1", "-f", str(tmp / "missing.txt")]
    if code == 7:
        (tmp / "latin1.txt").write_bytes(b"caf\xe9")
        return ["grade", "-q", "1", "-f", str(tmp / "latin1.txt")]
    if code == 8:
        return ["grade", "-q", "1", "-a", ANSWER, "-b", "openai"]
    if code == 9:
        (tmp / "bad.yaml").write_text("name: x\nquestions: []\n")
        return ["rubric", "check", str(tmp / "bad.yaml")]
    if code == 10:
        replies = tmp / "replies.jsonl"
        replies.write_text('{"tier": "great"}\n' * 3)
        monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
        return ["grade", "-q", "1", "-a", ANSWER, "-b", "fake", "--mode", "holistic"]
    if code == 11:
        server = stack.enter_context(_Refusing())
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-000000")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        return ["grade", "-q", "1", "-a", ANSWER]
    if code == 12:
        (tmp / "prompts").mkdir()
        (tmp / "prompts" / "grade_user.jinja").write_text("{{ no_such_variable }}")
        replies = tmp / "replies.jsonl"
        replies.write_text(json.dumps(reply_for(q1)) + "\n")
        monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
        return ["grade", "-q", "1", "-a", ANSWER, "-b", "fake", "--mode", "holistic", "--prompts", str(tmp / "prompts")]
    if code == 13:
        (tmp / "in.jsonl").write_text('{"id": "a", "question": "1", "answer": "x"}\nnot json\n')
        return ["batch", str(tmp / "in.jsonl"), "-o", str(tmp / "out.jsonl"), "-b", "local"]
    if code == 14:
        (tmp / "t.txt").write_text("Interviewer: Tell me about testing.\nInterviewer: And deploys?\n")
        return ["transcript", str(tmp / "t.txt")]
    if code == 15:  # the batch output's folder is a file
        (tmp / "in.csv").write_text(f'id,question,answer\na,1,"{ANSWER}"\n')
        (tmp / "file").write_text("")
        return ["batch", str(tmp / "in.csv"), "-o", str(tmp / "file" / "out.jsonl"), "-b", "local"]
    if code == 16:  # another run holds the output's lock (the sidecar OUTPUT.lock, as `grader batch` takes it)
        (tmp / "in.csv").write_text(f'id,question,answer\na,1,"{ANSWER}"\n')
        lock = stack.enter_context((tmp / "out.jsonl.lock").open("w"))
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return ["batch", str(tmp / "in.csv"), "-o", str(tmp / "out.jsonl"), "-b", "local"]
    if code == 17:
        return ["calibrate", "--db", str(tmp / "no-such.sqlite")]
    if code == 18:
        taken = stack.enter_context(socket.socket())
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        return ["serve", "--db", str(tmp / "s.sqlite"), "--port", str(taken.getsockname()[1]), "-b", "fake"]
    if code == 19:
        (tmp / "people.csv").write_text("candidate,sex\nc1,\n")  # the sex column holds no known value
        (tmp / "graded.jsonl").write_text('{"id": "a", "candidate": "c1", "question_id": "q", "tier": "great"}\n')
        return ["audit", str(tmp / "graded.jsonl"), "--demographics", str(tmp / "people.csv"), "-o", str(tmp / "r")]
    if code == 20:
        (tmp / "human.csv").write_text("id,interviewer,question,tier\na,dana,1,poor\n")
        (tmp / "model.jsonl").write_text('{"id": "a"}\n')
        return ["calibrate", str(tmp / "human.csv"), "--model-grades", str(tmp / "model.jsonl")]
    if code == 21:
        (tmp / "gate.yaml").write_text("local:\n  answers:\n    min_accuracy: high\n")
        return ["eval", "-s", "answers", "-b", "local", "--check", "--thresholds", str(tmp / "gate.yaml")]
    if code == 22:
        (tmp / "mine.yaml").write_text(
            "cases:\n  - id: a\n    question: 1\n    answer: I check logs.\n    label: grate\n"
        )
        return ["eval", "--cases", str(tmp / "mine.yaml"), "-b", "nearest"]
    raise AssertionError(f"the README documents exit {code}, but this test runs no cause for it: add one")


#: Codes in the README whose cause this test does not run, each with why.
SKIPPED: dict[int, str] = {
    130: "a signal, not an input: test_batch.py's Ctrl-C and kill test sends real ones to a real process",
}


@pytest.mark.parametrize("code", sorted(_readme_exit_codes()), ids=lambda c: f"exit-{c}")
def test_each_documented_exit_code_is_what_its_cause_exits_with(code, tmp_path, monkeypatch):
    if code in SKIPPED:
        pytest.skip(SKIPPED[code])
    with ExitStack() as stack:
        args = _cause(code, tmp_path, monkeypatch, stack)
        result = invoke(*args)
    assert result.exit_code == code, f"{_readme_exit_codes()[code]}: {args}\n{result.output}"
    if code != 1:
        assert "Traceback" not in result.output and result.stderr.strip(), result.output


def _deep(tmp_path: Path, name: str, head: str) -> Path:
    """A file whose first bad byte is on line 6, after blank lines (which every reader skips): a text
    stream decodes ahead of the line it parses, so the line it was on is not the bad byte's."""
    path = tmp_path / name
    path.write_bytes(head.encode() + b"\n" * 5 + b"caf\xe9\n")
    return path


@pytest.mark.parametrize(
    ("name", "head", "read"),
    [
        pytest.param("in.csv", "id,question,answer", lambda p: list(read_rows(p, Columns())), id="batch-csv"),
        pytest.param("in.jsonl", "", lambda p: list(read_rows(p, Columns())), id="batch-jsonl"),
        pytest.param("grades.csv", "id,question,tier,candidate", lambda p: read_grades(str(p)), id="audit-grades"),
        pytest.param("grades.jsonl", "", lambda p: read_grades(str(p)), id="audit-grades-jsonl"),
        pytest.param("people.csv", "candidate,sex", lambda p: read_people(p, None), id="audit-people"),
        pytest.param("model.jsonl", "", lambda p: list(iter_model_grades(p)), id="calibrate-model"),
        pytest.param(
            "human.csv", "id,question,interviewer,tier", lambda p: read_human_grades(p, join="id"), id="calibrate-human"
        ),
    ],
)
def test_a_bad_byte_is_named_with_its_own_line(tmp_path, name, head, read):
    path = _deep(tmp_path, name, head)
    with pytest.raises(EncodingError) as caught:
        read(path)
    offset = len(head.encode()) + 5 + 3
    assert str(caught.value) == f"{path}:6: not UTF-8 text (invalid byte 0xe9 at offset {offset})"
