"""Ollama's native chat API, tested at the HTTP layer with realistic bodies: the whole of a chat backend
for another provider's API is a request, a reply and an error classification; `ChatBackend` does the rest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import httpx2
import pytest
import respx

from grader.backends import BackendOptions, get_backend
from grader.backends.chat import ServerMemory
from grader.backends.checklist import checklist_items
from grader.backends.ollama import OllamaBackend
from grader.errors import BackendError, BackendNotConfiguredError
from grader.grading.contract import GradeRequest, Tier
from tests.conftest import reply_for, respx_transport

HOST = "http://ollama.test:11434"
MODEL = "qwen2.5:7b-instruct"
ANSWER = (
    "I start by gathering logs, error messages and recent deployments. "
    "Then I reproduce the issue in a staging environment before I change any code."
)


@pytest.fixture
def ollama() -> respx.Router:
    return respx.Router(base_url=HOST, assert_all_called=False)


@pytest.fixture
def make(ollama: respx.Router, tmp_path) -> Callable[..., OllamaBackend]:
    def make(**kwargs: Any) -> OllamaBackend:
        kwargs.setdefault("memory", ServerMemory(tmp_path / "servers.json"))
        client = httpx2.AsyncClient(transport=respx_transport(ollama))
        return OllamaBackend(model=MODEL, base_url=HOST, http_client=client, **kwargs)

    return make


def ollama_reply(content: dict | str, *, prompt_eval_count: int = 1412, eval_count: int = 71) -> httpx.Response:
    """A non-streamed /api/chat reply, as Ollama sends it."""
    return httpx.Response(
        200,
        json={
            "model": MODEL,
            "created_at": "2025-11-20T10:00:00.123456Z",
            "message": {"role": "assistant", "content": content if isinstance(content, str) else json.dumps(content)},
            "done_reason": "stop",
            "done": True,
            "total_duration": 4883583458,
            "load_duration": 1334875,
            "prompt_eval_count": prompt_eval_count,
            "prompt_eval_duration": 342546000,
            "eval_count": eval_count,
            "eval_duration": 4535599000,
        },
    )


def checklist_reply(question, yes: dict[str, str]) -> dict:
    return {
        i.key: {"verdict": "yes", "quote": yes[i.key]} if i.key in yes else {"verdict": "no"}
        for i in checklist_items(question)
    }


def grade(backend: OllamaBackend, question, answer: str = ANSWER):
    async def run():
        try:
            return await backend.grade(GradeRequest(question, answer))
        finally:
            await backend.aclose()

    return asyncio.run(run())


def sent(route, i: int = -1) -> dict:
    return json.loads(route.calls[i].request.content)


def test_a_checklist_grade_through_the_native_api(ollama, make, q1):
    quotes = {"p1": "gathering logs, error messages and recent deployments", "p3": "I reproduce the issue"}
    route = ollama.post("/api/chat").mock(return_value=ollama_reply(checklist_reply(q1, quotes)))
    result = grade(make(mode="checklist"), q1)

    body = sent(route)
    assert body["model"] == MODEL and body["stream"] is False
    assert list(body["format"]["properties"]) == [i.key for i in checklist_items(q1)]  # the schema constrains decoding
    assert body["options"] == {"temperature": 0.0, "seed": 42, "repeat_penalty": 1.0}
    assert body["messages"][0]["role"] == "system" and ANSWER in body["messages"][-1]["content"]

    assert result.backend == "ollama" and result.model == MODEL
    assert [c.id for c in result.covered_points] == ["q01.gather-evidence", "q01.reproduce"]
    assert result.tier is Tier.mediocre and result.attempts == 1
    assert result.usage.prompt_tokens == 1412 and result.usage.completion_tokens == 71
    assert result.confidence is None  # no logprobs: hard verdicts


@pytest.mark.parametrize(
    ("mode", "reply", "tier"),
    [
        ("holistic", lambda q: reply_for(q, covered={"q01.reproduce": "I reproduce the issue"}, tier="poor"), "poor"),
        ("tier", lambda q: {"tier": "great"}, "great"),
    ],
    ids=["holistic", "tier"],
)
def test_the_other_modes_come_with_chat_backend(ollama, make, q1, mode, reply, tier):
    ollama.post("/api/chat").mock(return_value=ollama_reply(reply(q1)))
    assert grade(make(mode=mode), q1).tier.value == tier


def test_a_busy_server_is_retried_then_answers(ollama, make, q1, waits):
    busy = {"error": "server busy, please try again.  maximum pending requests exceeded"}
    route = ollama.post("/api/chat").mock(
        side_effect=[httpx.Response(503, json=busy), ollama_reply(checklist_reply(q1, {}))]
    )
    result = grade(make(mode="checklist"), q1)
    assert route.call_count == 2 and len(waits) == 1
    assert result.attempts == 2 and result.tier is Tier.poor


def test_an_unknown_model_is_a_backend_error_at_once(ollama, make, q1):
    missing = {"error": f'model "{MODEL}" not found, try pulling it first'}
    route = ollama.post("/api/chat").mock(return_value=httpx.Response(404, json=missing))
    with pytest.raises(BackendError) as info:
        grade(make(mode="checklist"), q1)
    assert route.call_count == 1
    assert info.value.exit_code == 11 and "not found" in str(info.value) and f"ollama pull {MODEL}" in str(info.value)


def test_a_server_too_old_for_a_schema_gets_json_mode_and_it_is_remembered(ollama, make, q1, tmp_path):
    old = {"error": "json: cannot unmarshal object into Go struct field ChatRequest.format of type string"}
    route = ollama.post("/api/chat").mock(
        side_effect=[httpx.Response(400, json=old), ollama_reply(checklist_reply(q1, {}))]
    )
    assert grade(make(mode="checklist"), q1).attempts == 2
    second = sent(route)
    assert second["format"] == "json"
    assert '"p1"' in second["messages"][0]["content"]  # the format is spelled out in the prompt instead

    route.side_effect = [ollama_reply(checklist_reply(q1, {}))]
    grade(make(mode="checklist"), q1)  # a new process asks in JSON mode straight away
    assert route.call_count == 3 and sent(route)["format"] == "json"


def test_the_registry_builds_it_from_the_cli_options_and_ollama_host(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "ollama.internal:11434")
    backend = get_backend("ollama", BackendOptions(model=MODEL))
    assert isinstance(backend, OllamaBackend) and backend.base_url == "http://ollama.internal:11434"
    assert backend.mode == "checklist" and f":{backend.base_url}:" in backend.cache_key()
    asyncio.run(backend.aclose())
    with pytest.raises(BackendNotConfiguredError):
        get_backend("ollama", BackendOptions())
