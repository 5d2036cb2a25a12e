"""End to end against a real local LLM (opt-in): llama.cpp's OpenAI-compatible server on 127.0.0.1.

    bash scripts/local-llm.sh all                       # build the server, assemble the model, serve
    GRADER_LLM_BASE_URL=http://127.0.0.1:8765/v1 python -m pytest -m llm -n 0

Skipped unless asked for: the default run deselects the `llm` marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.llm

BASE_URL = os.environ.get("GRADER_LLM_BASE_URL")
needs_server = pytest.mark.skipif(not BASE_URL, reason="set GRADER_LLM_BASE_URL to a running llama.cpp server")


def grader(*args: str, env_extra: dict[str, str] | None = None, stdin: str | None = None):
    env = {**os.environ, "OPENAI_BASE_URL": BASE_URL or "", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=env, input=stdin, timeout=600
    )


@needs_server
def test_grades_an_answer_through_the_real_server(tmp_path):
    proc = grader(
        "grade",
        "-q",
        "1",
        "--format",
        "json",
        "--answer-file",
        "-",
        env_extra={"GRADER_CACHE_DIR": str(tmp_path)},
        stdin="I check the logs and recent deployments, reproduce the bug in staging, roll back to "
        "restore service, then find the root cause and run a blameless post-mortem.",
    )
    assert proc.returncode == 0, proc.stderr
    grade = json.loads(proc.stdout)
    assert grade["backend"] == "openai" and grade["tier"] in ("great", "mediocre", "poor")
    assert grade["usage"]["prompt_tokens"] > 500
    for point in grade["covered_points"]:
        assert point["evidence"] is None or point["evidence"]
    # llama-cpp-python's server refuses json_schema with HTTP 500 (the backend learns JSON mode for it);
    # llama.cpp's own llama-server takes json_schema as it is, so nothing needs learning.
    memory_file = tmp_path / "servers.json"
    if memory_file.exists():
        assert json.loads(memory_file.read_text())[BASE_URL.rstrip("/")]["mode"] in (
            "json_schema",
            "json_object_schema",
        )
    assert grade["confidence_source"] in ("logprobs", None)


@needs_server
def test_checklist_grade_through_the_real_server(tmp_path):
    proc = grader(
        "grade",
        "-q",
        "1",
        "--mode",
        "checklist",
        "--format",
        "json",
        "--timeout",
        "600",
        "--answer-file",
        "-",
        env_extra={"GRADER_CACHE_DIR": str(tmp_path)},
        stdin="I check the logs and recent deployments, reproduce the bug in staging, roll back to restore service, "
        "then find the root cause and run a blameless post-mortem.",
    )
    assert proc.returncode == 0, proc.stderr
    grade = json.loads(proc.stdout)
    # one verdict per key point and red flag, each with a probability read from the logprobs
    assert len(grade["point_scores"]) == 10 and all(0 <= p <= 1 for p in grade["point_scores"].values())
    assert grade["confidence_source"] == "logprobs" and 0 < grade["confidence"] <= 1
    assert "by the checklist rule" in grade["justification"]
    assert grade["usage"]["completion_tokens"] < 300  # no quotes or prose for the items answered "no"


@needs_server
def test_eval_references_through_the_real_server(tmp_path):
    proc = grader(
        "eval",
        "--suite",
        "references",
        "--backend",
        "openai",
        "--limit",
        "3",
        "--concurrency",
        "1",
        "--out",
        str(tmp_path),
        env_extra={"GRADER_CACHE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "references.json").read_text())
    assert report["cases"] == 3 and report["scored"] + report["failed"] == 3
