"""The Python API: the README's example runs as written, and the API is the engine's."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from grader import FailureKind, Grade, GradeFailure, agrade_many, grade, grade_many
from grader.backends.fake import FakeBackend
from grader.errors import (
    AnswerTooLongError,
    EmptyAnswerError,
    GraderError,
    GradingFailedError,
    UnknownQuestionError,
    UsageError,
    error_for,
)
from tests.conftest import reply_for
from tests.support.loopback import LoopbackLLM

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs(capsys):
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[0] in {"great", "mediocre", "poor"}
    assert "unknown_question" in printed[1] and "empty_answer" in printed[1]


def test_grade_many_gives_one_outcome_per_pair_in_order(rubric):
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question, tier="great"))
    outcomes = asyncio.run(agrade_many([(1, "I check the logs."), ("nope", "x"), (2, "Indexes.")], backend=backend))
    assert [type(o) for o in outcomes] == [Grade, GradeFailure, Grade]
    assert outcomes[1].kind is FailureKind.unknown_question
    assert outcomes[2].question_id == rubric.find(2).id


def test_grade_raises_what_a_failure_stands_for():
    with pytest.raises(GraderError) as info:
        grade(1, "   ", backend="local")
    assert info.value.exit_code == 4


@pytest.mark.parametrize(
    ("question", "answer", "error"),
    [
        ("nope", "I check the logs.", UnknownQuestionError),
        (1, "   ", EmptyAnswerError),
        (1, "x" * 200, AnswerTooLongError),
    ],
)
def test_grade_raises_the_typed_error_so_it_can_be_caught_by_its_class(question, answer, error):
    # It raised the base GraderError with the subclass's exit code: `except UnknownQuestionError` caught nothing.
    with pytest.raises(error) as info:
        grade(question, answer, backend="local", max_answer_chars=100)
    assert type(info.value) is error and str(info.value)


@pytest.mark.parametrize(
    ("kind", "code"),
    [(FailureKind.unknown_question, 3), (FailureKind.empty_answer, 4), (FailureKind.answer_too_long, 5)],
)
def test_a_failure_ends_a_command_with_its_own_errors_exit_code(kind, code):
    assert error_for(GradeFailure(kind=kind, message="m")).exit_code == code


def test_a_failure_of_the_generic_kind_is_exit_1_not_some_other_errors_code():
    # `error` is every other error's kind (not UTF-8 text, a usage error...): which one is not known, so not 6
    assert error_for(GradeFailure(kind=FailureKind.error, message="answer: not UTF-8 text")).exit_code == 1


def test_max_attempts_and_reasks_reach_the_backend(monkeypatch):
    """The CLI's --max-attempts and --reasks as keywords (they were a TypeError), against a real server."""
    with LoopbackLLM(fault=lambda n: "500") as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        with pytest.raises(GradingFailedError):
            grade(1, "I check the logs.", backend="openai", max_attempts=2)
        assert llm.calls == 2  # 5 by default
    with LoopbackLLM(fault=lambda n: "malformed") as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        with pytest.raises(GradingFailedError):
            grade(1, "I check the logs.", backend="openai", mode="holistic", reasks=0)
        assert llm.calls == 1


def test_a_deadline_reaches_the_backend_from_python_and_the_command_line(monkeypatch, waits):
    """Against a real server that answers 429 with Retry-After: 30 (the waits are recorded, not slept)."""
    from tests.test_cli import invoke

    with LoopbackLLM(fault=lambda n: "429", retry_after="30") as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        with pytest.raises(GradingFailedError, match="within the deadline of 45 s; the last request failed"):
            grade(1, "I check the logs.", backend="openai", deadline=45)
        assert llm.calls == 2 and waits == [30.0]  # 5 calls and 4 pauses without it
        result = invoke("grade", "-q", "1", "-a", "I check the logs.", "-b", "openai", "--deadline", "45")
        assert result.exit_code == 10, result.output
        assert "within the deadline of 45 s" in result.output and llm.calls == 4


@pytest.mark.parametrize("answer", [b"I check the logs.", None])
def test_an_answer_that_is_not_text_is_a_type_error_naming_the_item(answer):
    with pytest.raises(TypeError, match=f"^the answer must be a str, not {type(answer).__name__}$"):
        grade(1, answer, backend="local")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"^item 1: the answer must be a str, not {type(answer).__name__}$"):
        grade_many([(1, "I check the logs."), (1, answer)], backend="local")  # type: ignore[list-item]


def test_an_unknown_backend_is_a_usage_error_as_on_the_command_line():
    with pytest.raises(UsageError, match="unknown backend 'bogus'") as info:
        grade(1, "I check the logs.", backend="bogus")
    assert info.value.exit_code == 2
