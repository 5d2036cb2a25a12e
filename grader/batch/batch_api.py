"""Grading through a provider's Batch API (about half the price, results within a day).

Three halves that can run apart: `export_requests` writes the request file (the OpenAI Batch API JSON
lines format, which vLLM's `run_batch` also reads); `submit_and_wait` uploads it, starts the batch,
polls with backoff and downloads the results file; `import_results` validates every result into the
same output format as a direct run, through the grading engine like every other run (a results file
stands in for the model: `ResultsBackend`). A request's `custom_id` is the engine's cache key of its
question and answer, so duplicate answers are requested once and any row can find its result again.
Replies are checked by the chat backend's own `grade_completion`, as on the direct path; one that fails
is not re-asked here: it is an `invalid_output` failure, counted in the summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import openai

from grader.backends.base import Backend
from grader.backends.chat import Completion, Conversation
from grader.backends.retry import sleep_for
from grader.batch.files import Row, Writer
from grader.batch.runner import BatchStats, jobs_of, run_batch
from grader.errors import BackendError, GraderError, GradingFailedError
from grader.grading.contract import FailureKind, Grade, GradeRequest
from grader.grading.engine import Engine, cache_key
from grader.rubric import Rubric

ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@runtime_checkable
class BatchAPIBackend(Protocol):
    """What the Batch API path needs of a chat backend: its request bodies, its reply parsing and checking,
    and a client for the provider's files and batches endpoints."""

    name: str
    base_url: str
    client: Any
    per_item: bool

    @property
    def model(self) -> str: ...

    def cache_key(self) -> str: ...

    def conversation(self, request: GradeRequest) -> Conversation: ...

    def request_body(self, conversation: Conversation, request: GradeRequest) -> dict[str, Any]: ...

    def completion_from(self, response: bytes | dict[str, Any], requests: int = 1) -> Completion: ...

    def grade_completion(self, request: GradeRequest, completion: Completion) -> Grade: ...


def one_request_per_row(backend: BatchAPIBackend) -> None:
    """The Batch API sends one request per answer: a per-item checklist cannot go through it."""
    if backend.per_item:
        raise GraderError(
            "--checklist-calls per-item makes one call per checklist item; the Batch API sends one per answer",
            hint="use --checklist-calls one with --batch-api",
        )


def export_requests(rows: Iterable[Row], backend: BatchAPIBackend, engine: Engine, path: Path) -> int:
    """Write one request per distinct answer the engine still has to grade; returns how many."""
    one_request_per_row(backend)
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        for key, request in engine.pending(jobs_of(rows)):
            body = backend.request_body(backend.conversation(request), request)
            line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            written += 1
    return written


async def submit_and_wait(
    backend: BatchAPIBackend,
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


class ResultsBackend(Backend):
    """Grades from a Batch API results file instead of a live model: each request's result is found by its
    cache key and checked by the chat backend's own `grade_completion`, as a direct reply would be."""

    name = "batch-api"
    stochastic = False
    default_concurrency = 64

    def __init__(self, chat: BatchAPIBackend, results: dict[str, dict[str, Any]]) -> None:
        self.chat = chat
        self.results = results
        self._key = chat.cache_key()

    @property
    def model(self) -> str:
        return self.chat.model

    def cache_key(self, rubric: Rubric | None = None) -> str:  # noqa: ARG002
        return self._key  # the chat backend's: a result graded here is the same grade as a direct one

    async def grade(self, request: GradeRequest) -> Grade:
        result = self.results.get(cache_key(self._key, request))
        if result is None:
            raise GradingFailedError(
                "no result for this answer in the batch output", attempts=0, kind=FailureKind.missing_result
            )
        response = result.get("response") or {}
        if result.get("error") or response.get("status_code") != 200:
            detail = result.get("error") or response.get("body", {}).get("error") or response.get("status_code")
            raise GradingFailedError(f"the batch request failed: {detail}", attempts=1, kind=FailureKind.batch_error)
        return self.chat.grade_completion(request, self.chat.completion_from(response["body"]))


async def import_results(
    rows: Iterable[Row],
    backend: BatchAPIBackend,
    results: dict[str, dict[str, Any]],
    engine: Callable[[Backend], Engine],
    writer: Writer,
    skip_ids: set[str],
) -> BatchStats:
    """Turn results into output rows, one per input row, through the engine (`engine(backend)` builds it
    around the results)."""
    one_request_per_row(backend)
    return await run_batch(rows, engine=engine(ResultsBackend(backend, results)), writer=writer, skip_ids=skip_ids)
