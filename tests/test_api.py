"""The Python API: the README's example runs as written, and the API is the engine's."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from grader import FailureKind, Grade, GradeFailure, agrade_many, grade
from grader.backends.fake import FakeBackend
from grader.errors import GraderError, error_for
from tests.conftest import reply_for

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
    ("kind", "code"),
    [(FailureKind.unknown_question, 3), (FailureKind.empty_answer, 4), (FailureKind.answer_too_long, 5)],
)
def test_a_failure_ends_a_command_with_its_own_errors_exit_code(kind, code):
    assert error_for(GradeFailure(kind=kind, message="m")).exit_code == code


def test_a_failure_of_the_generic_kind_is_exit_1_not_some_other_errors_code():
    # `error` is every other error's kind (not UTF-8 text, a usage error...): which one is not known, so not 6
    assert error_for(GradeFailure(kind=FailureKind.error, message="answer: not UTF-8 text")).exit_code == 1
