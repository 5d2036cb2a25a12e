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
    [
        (FailureKind.unknown_question, 3),
        (FailureKind.empty_answer, 4),
        (FailureKind.answer_too_long, 5),
        (FailureKind.not_text, 7),
    ],
)
def test_a_failure_ends_a_command_with_its_own_errors_exit_code(kind, code):
    assert error_for(GradeFailure(kind=kind, message="m")).exit_code == code


def test_a_failure_of_the_generic_kind_is_exit_1_not_some_other_errors_code():
    # `error` is every other error's kind (a usage error...): which one is not known, so not 6
    assert error_for(GradeFailure(kind=FailureKind.error, message="answer: something")).exit_code == 1


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


# --- from a user trial: keys, built backends, inputs ------------------------------------------------------


def test_an_api_key_is_a_keyword_and_a_key_or_url_picks_the_openai_backend(monkeypatch):
    """`api_key=` was a TypeError: a service grading for several teams had to change os.environ."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with LoopbackLLM() as llm:
        result = grade(1, "I check the logs.", base_url=llm.base_url, api_key="sk-team-a")  # backend="auto"
        assert isinstance(result, Grade) and result.backend == "openai"
        assert llm.headers[-1]["authorization"] == "Bearer sk-team-a"
        from tests.test_cli import invoke

        cli = invoke("grade", "-q", "1", "-a", "I check the logs.", "--base-url", llm.base_url, "--format", "json")
        assert cli.exit_code == 0 and '"backend": "openai"' in cli.stdout  # --base-url alone graded offline
    with pytest.raises(UsageError, match="the ollama backend takes no api_key"):
        grade(1, "I check the logs.", backend="ollama", model="m", api_key="sk-x")


def test_a_backend_you_built_grades_again_and_in_the_default_mode(monkeypatch):
    """A built OpenAIBackend graded in holistic mode (the registry's is checklist), and its second sync grade
    failed: 'Future attached to a different loop' (a new event loop per call)."""
    from grader.api import close
    from grader.backends.openai import OpenAIBackend

    with LoopbackLLM() as llm:
        backend = OpenAIBackend(base_url=llm.base_url, api_key="sk-built")
        try:
            first = grade(1, "I check the logs.", backend=backend)
            second = grade(2, "I version the API in the path.", backend=backend)
        finally:
            close(backend)
        assert first.tier is not None and second.tier is not None
        assert [r["response_format"]["json_schema"]["name"] for r in llm.requests] == ["checklist_reply"] * 2


@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        ([(1,)], TypeError, "item 0: expected a (question, answer) pair, not tuple (1,)"),
        ([(None, "I check the logs.")], TypeError, "item 0: the question must be an id, a number or a Question"),
        ([(True, "I check the logs.")], TypeError, "not bool"),
    ],
)
def test_a_malformed_item_is_a_type_error_naming_it(items, error, message):
    with pytest.raises(error) as info:
        grade_many(items, backend="local")
    assert message in str(info.value)


def test_a_limit_under_one_character_is_refused_up_front():
    with pytest.raises(ValueError, match="max_answer_chars must be at least 1, not 0"):
        grade_many([(1, "I check the logs.")], backend="local", max_answer_chars=0)


def test_an_answer_that_is_no_text_raises_its_own_error():
    """A lone surrogate raised the base GraderError (exit 1) where the command line says not UTF-8 (7)."""
    from grader.errors import EncodingError

    with pytest.raises(EncodingError, match="lone UTF-16 surrogate"):
        grade(1, "half an emoji \ud83d", backend="local")
    with pytest.raises(EncodingError, match="a NUL character at character 7"):  # it was graded
        grade(1, "binary \x00\x01 pasted", backend="local")
    (outcome,) = grade_many([(1, "half an emoji \ud83d")], backend="local")  # a failure of its own kind, not `error`
    assert isinstance(outcome, GradeFailure) and outcome.kind is FailureKind.not_text


def test_a_library_call_writes_nothing_to_stderr_unless_asked():
    """The retry layer's notes reached stderr through Python's last-resort handler."""
    import subprocess
    import sys

    code = "import grader, logging; logging.getLogger('grader.retry').warning('waiting 30 s')"
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""
    asked = code.replace("import grader, logging;", "import grader, logging; logging.basicConfig();")
    said = subprocess.run([sys.executable, "-c", asked], capture_output=True, text=True, timeout=60)
    assert "waiting 30 s" in said.stderr  # an application that configures logging still sees it


def test_no_writable_home_is_no_reason_not_to_grade(tmp_path, monkeypatch):
    """With the grade cache off, a read-only home (a container) made every backend fail: exit 15."""
    from grader.backends.openai import OpenAIBackend

    home = tmp_path / "home"
    home.write_text("a file: no folder can be made under it, even by root (tests may run as root)")
    monkeypatch.delenv("GRADER_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    result = grade(1, "I check the logs, reproduce it and roll back.", backend="local")
    assert result.tier is not None
    assert OpenAIBackend(base_url="http://127.0.0.1:9/v1").memory.path is None  # remembered for the run only


def test_each_outcome_is_handed_over_as_it_is_done_and_a_cached_grade_says_so(q1):
    """Ctrl-C in grade_many lost every grade it had (the list comes at the end), and a grade reused from
    the cache looked fresh: adding up usage counted it twice."""
    import uuid

    from grader.grading.engine import FROM_CACHE

    def backend() -> FakeBackend:
        return FakeBackend(responder=lambda conversation, request: reply_for(request.question, tier="mediocre"))

    answers = [f"I check the logs, run {uuid.uuid4().hex}." for _ in range(3)]
    seen: list[tuple[int, object]] = []
    first = grade_many(
        [(1, a) for a in answers], backend=backend(), cache=True, on_outcome=lambda i, o: seen.append((i, o))
    )
    assert sorted(i for i, _ in seen) == [0, 1, 2] and [o for _, o in sorted(seen, key=lambda x: x[0])] == first
    assert all(isinstance(g, Grade) and FROM_CACHE not in g.notes for g in first)
    again = grade_many([(1, a) for a in answers], backend=backend(), cache=True)
    assert all(isinstance(g, Grade) and g.notes[-1] == FROM_CACHE for g in again)


def test_settings_for_a_backend_you_built_are_refused_not_ignored():
    """deadline= with a built backend was silently ignored: a grade took 2 s under deadline=0.5."""
    built = FakeBackend(responder=lambda conversation, request: reply_for(request.question))
    with pytest.raises(TypeError, match="^deadline, model: settings of a backend grader builds, not of the fake"):
        grade_many([(1, "I check the logs.")], backend=built, deadline=5, model="m")


def test_an_empty_answer_is_its_own_error_before_any_backend_is_built(monkeypatch):
    """With the check left to the engine, an empty answer with no OPENAI_API_KEY set said the key was missing."""
    from grader.errors import EmptyAnswerError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(EmptyAnswerError):
        grade(1, "   ", backend="openai")
