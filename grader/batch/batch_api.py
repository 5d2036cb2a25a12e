"""Grading through a provider's Batch API (about half the price, results within a day).

Three halves that can run apart: `export_requests` writes the request file (the OpenAI Batch API JSON
lines format, which vLLM's `run_batch` also reads); `submit_and_wait` uploads it, starts the batch,
polls with backoff and downloads the results file; `import_results` validates every result into the
same output format as a direct run. A request's `custom_id` is the grade-cache key of its question
and answer, so duplicate answers are requested once and any row can find its result again.
Replies that fail validation are not re-asked here: they become error rows, counted in the summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai

from grader.backends.base import GradeRequest
from grader.backends.chat import Answered
from grader.backends.openai import OpenAIBackend
from grader.backends.retry import sleep_for
from grader.batch.files import Row, Writer, output_record
from grader.batch.runner import BatchStats
from grader.errors import BackendError, GraderError
from grader.grading.cache import GradeCache, grade_key
from grader.grading.contract import Grade
from grader.grading.review import apply_review_policy, check_answer
from grader.rubric import Question, Rubric

ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class _Prepared:
    question: Question
    key: str


def one_request_per_row(backend: OpenAIBackend) -> None:
    """The Batch API sends one request per answer: a per-item checklist cannot go through it."""
    if backend.per_item:
        raise GraderError(
            "--checklist-calls per-item makes one call per checklist item; the Batch API sends one per answer",
            hint="use --checklist-calls one with --batch-api",
        )


def _prepare(row: Row, backend: OpenAIBackend, rubric: Rubric, max_chars: int) -> _Prepared:
    """Raises a GraderError for a row that cannot be graded (unknown question, empty answer...)."""
    question = rubric.find(row.question)
    check_answer(row.answer, max_chars=max_chars, where=f"the answer of row {row.id}")
    key = grade_key(backend.cache_key(), question.fingerprint(), list(question.references.items()), row.answer)
    return _Prepared(question, key)


def export_requests(
    rows: Iterable[Row],
    backend: OpenAIBackend,
    rubric: Rubric,
    path: Path,
    *,
    cache: GradeCache | None,
    max_chars: int,
) -> int:
    """Write one request per distinct ungraded answer; returns how many were written."""
    one_request_per_row(backend)
    written: set[str] = set()
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            try:
                prepared = _prepare(row, backend, rubric, max_chars)
            except GraderError:
                continue  # reported as an error row on import
            if prepared.key in written or (cache is not None and cache.get(prepared.key) is not None):
                continue
            request = GradeRequest(prepared.question, row.answer)
            body = backend.request_body(backend.conversation(request), request)
            line = {"custom_id": prepared.key, "method": "POST", "url": ENDPOINT, "body": body}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            written.add(prepared.key)
    return len(written)


async def submit_and_wait(
    backend: OpenAIBackend,
    requests: Path,
    results: Path,
    state: Path,
    *,
    max_wait: float = 60.0,
    on_status: Callable[[Any], None] | None = None,
) -> Path:
    """Upload, start (or pick up the batch recorded in `state`), poll until done, download results."""
    client = backend.client
    try:
        saved = json.loads(state.read_text()) if state.exists() else {}
        batch_id = saved.get("batch_id")
        if batch_id is None:
            with requests.open("rb") as handle:
                uploaded = await client.files.create(file=(requests.name, handle.read()), purpose="batch")
            batch = await client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
            batch_id = batch.id
            state.write_text(json.dumps({"batch_id": batch_id, "input_file_id": uploaded.id}))
        wait = 1.0
        while True:
            batch = await client.batches.retrieve(batch_id)
            if on_status is not None:
                on_status(batch)
            if batch.status in TERMINAL:
                break
            await sleep_for(wait)
            wait = min(wait * 2, max_wait)
        if batch.status != "completed" and not batch.output_file_id:
            raise BackendError(f"batch {batch_id} ended {batch.status} with no results")
        lines = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await client.files.content(file_id)
                lines.append(content.text.rstrip("\n"))
        results.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
        return results
    except openai.APIError as exc:
        raise BackendError(f"the Batch API at {backend.base_url} failed: {exc}") from None


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                results[record["custom_id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise GraderError(f"{path}:{number}: not a Batch API result line") from None
    return results


def import_results(
    rows: Iterable[Row],
    backend: OpenAIBackend,
    rubric: Rubric,
    results: dict[str, dict[str, Any]],
    writer: Writer,
    stats: BatchStats,
    *,
    cache: GradeCache | None,
    skip_ids: set[str],
    max_chars: int,
    review_threshold: float,
) -> BatchStats:
    """Turn results into output rows: one per input row, a grade or a recorded error."""
    one_request_per_row(backend)
    graded: dict[str, Grade] = {}
    for row in rows:
        if row.id in skip_ids:
            stats.skipped += 1
            continue
        grade, error = None, None
        try:
            prepared = _prepare(row, backend, rubric, max_chars)
            grade = graded.get(prepared.key) or (cache.get(prepared.key) if cache is not None else None)
            if grade is not None:
                stats.cached += prepared.key not in graded
                stats.duplicates += prepared.key in graded
            else:
                grade = _grade_result(results.get(prepared.key), prepared, row, backend, stats, review_threshold)
                graded[prepared.key] = grade
                if cache is not None:
                    cache.put(prepared.key, grade)
        except _ResultError as exc:
            error = (str(exc), exc.kind)
        except GraderError as exc:
            error = (str(exc), type(exc).__name__)
        writer.write(output_record(row, grade, error))
        stats.record(grade, error)
    return stats


class _ResultError(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _grade_result(
    result: dict[str, Any] | None,
    prepared: _Prepared,
    row: Row,
    backend: OpenAIBackend,
    stats: BatchStats,
    review_threshold: float,
) -> Grade:
    if result is None:
        raise _ResultError("no result for this row in the batch output", "missing_result")
    response = result.get("response") or {}
    if result.get("error") or response.get("status_code") != 200:
        detail = result.get("error") or response.get("body", {}).get("error") or response.get("status_code")
        raise _ResultError(f"the batch request failed: {detail}", "batch_error")
    completion = backend.completion_from(response["body"])
    stats.model_calls += 1
    stats.prompt_tokens += completion.usage.prompt_tokens
    stats.completion_tokens += completion.usage.completion_tokens
    stats.cached_tokens += completion.usage.cached_tokens
    request = GradeRequest(prepared.question, row.answer)
    check = backend.checker(request)(completion.text)
    if not (check.ok or check.acceptable):
        raise _ResultError(f"invalid reply: {check.problem}", "invalid_output")
    grade = backend.finish(request, Answered(completion, check, completion.usage, attempts=1))
    return apply_review_policy(grade, prepared.question, review_threshold, answer=row.answer)
