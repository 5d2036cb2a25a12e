"""The Python API: the README's example runs as written, and the API is the engine's."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from grader import FailureKind, Grade, GradeFailure, agrade_many, grade
from grader.backends.fake import FakeBackend
from grader.errors import GraderError
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
