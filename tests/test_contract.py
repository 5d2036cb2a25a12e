"""One contract, every backend: the same checks run against the OpenAI-compatible backend (over HTTP,
faked with respx) and the local backend."""

from __future__ import annotations

import asyncio

import pytest

from grader.grading.contract import Grade, GradeRequest
from grader.grading.review import apply_review_policy
from tests.conftest import ok, reply_for

ANSWER = (
    "I gather the logs and recent deployments first. Then I reproduce the issue in a controlled environment. "
    "After the fix I write up the incident and what will prevent it next time."
)


@pytest.fixture(params=["openai", "local"])
def backend(request, api, make_backend, q1):
    if request.param == "openai":
        covered = {
            "q01.gather-evidence": "I gather the logs and recent deployments first",
            "q01.reproduce": "reproduce the issue in a controlled environment",
        }
        api.post("/chat/completions").mock(return_value=ok(reply_for(q1, covered=covered)))
        return make_backend()
    from grader.backends.local.backend import LocalBackend

    return LocalBackend()


def test_every_backend_honours_the_grade_contract(backend, q1):
    grade = asyncio.run(backend.grade(GradeRequest(q1, ANSWER)))
    grade = apply_review_policy(grade, q1, 0.6)
    assert isinstance(grade, Grade)
    Grade.model_validate_json(grade.model_dump_json())  # round-trips through its own schema
    assert grade.question_id == q1.id
    assert grade.tier.value in {"great", "mediocre", "poor"}
    assert grade.justification.strip()
    covered = [p.id for p in grade.covered_points]
    assert set(covered).isdisjoint(grade.missed_points)
    assert sorted(covered + grade.missed_points) == sorted(q1.point_ids)
    assert set(grade.red_flags) <= set(q1.flag_ids)
    for p in grade.covered_points:
        assert p.evidence and p.evidence.lower() in ANSWER.lower()
    assert grade.confidence is None or 0.0 <= grade.confidence <= 1.0
    assert grade.backend == backend.name and grade.model == backend.model
    assert grade.attempts >= 1 and grade.usage.prompt_tokens >= 0
