"""Shared fixtures: no network, no real keys, zero retry waits, and an HTTP-layer fake of the API."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import httpx2
import pytest
import respx

import grader.backends.retry
from grader.backends.openai import OpenAIBackend
from grader.rubric import Question, load_rubric

BASE_URL = "http://llm.test/v1"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never see the developer's key, server or settings, and never touch ~/.cache."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("GRADER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("COLUMNS", "120")


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits are recorded, never slept; the deadlines' clock moves on by them as if they had been."""
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    real_clock = grader.backends.retry.clock
    monkeypatch.setattr(grader.backends.retry, "sleep", fake_sleep)
    monkeypatch.setattr(grader.backends.retry, "clock", lambda: real_clock() + sum(recorded))
    return recorded


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a socket fails the test."""

    def guard(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a test tried to reach the network")

    # The event loop's own self-pipe is a local socketpair; connecting anywhere is what is refused.
    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    monkeypatch.setattr(socket, "create_connection", guard)
    monkeypatch.setattr(socket, "getaddrinfo", guard)


@pytest.fixture(scope="session")
def rubric():
    return load_rubric()


@pytest.fixture
def q1(rubric) -> Question:
    return rubric.find(1)


# --- the HTTP layer -------------------------------------------------------------------------------

_TRANSLATE = {
    httpx.ConnectError: httpx2.ConnectError,
    httpx.ReadTimeout: httpx2.ReadTimeout,
    httpx.ConnectTimeout: httpx2.ConnectTimeout,
}


def respx_transport(router: respx.Router) -> httpx2.MockTransport:
    """Route openai 3.x's httpx2 requests through a respx router (respx only patches httpx)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        mirrored = httpx.Request(
            request.method, str(request.url), headers=list(request.headers.multi_items()), content=request.content
        )
        try:
            response = router.handler(mirrored)
        except tuple(_TRANSLATE) as exc:
            raise _TRANSLATE[type(exc)](str(exc), request=request) from exc
        return httpx2.Response(
            response.status_code, headers=list(response.headers.multi_items()), content=response.read()
        )

    return httpx2.MockTransport(handler)


@pytest.fixture
def api() -> Iterator[respx.Router]:
    router = respx.Router(base_url=BASE_URL, assert_all_called=False)
    yield router


@pytest.fixture
def make_backend(api: respx.Router) -> Callable[..., OpenAIBackend]:
    def make(**kwargs: Any) -> OpenAIBackend:
        kwargs.setdefault("api_key", "sk-test-secret")
        kwargs.setdefault("model", "test-model")
        kwargs.setdefault("mode", "holistic")  # the replies these tests script are whole grades
        return OpenAIBackend(
            base_url=BASE_URL, http_client=httpx2.AsyncClient(transport=respx_transport(api)), **kwargs
        )

    return make


def chat_body(content: str, *, prompt_tokens: int = 900, completion_tokens: int = 120, logprobs: Any = None) -> dict:
    """A realistic chat.completion body, as OpenAI and llama.cpp return it."""
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1764000000,
        "model": "test-model",
        "system_fingerprint": "fp_test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": {"content": logprobs} if logprobs is not None else None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def reply_for(
    question: Question,
    *,
    covered: dict[str, str] | None = None,
    tier: str = "mediocre",
    red_flags: list[str] | None = None,
    justification: str = "Covers some key points but not the rest.",
) -> dict:
    """A model reply for `question`: `covered` maps point ids to their quotes, the rest are missed."""
    covered = covered or {}
    return {
        "points": {pid: {"evidence": covered.get(pid, ""), "covered": pid in covered} for pid in question.point_ids},
        "red_flags": red_flags or [],
        "justification": justification,
        "tier": tier,
    }


def ok(content: dict | str, **kwargs: Any) -> httpx.Response:
    text = content if isinstance(content, str) else json.dumps(content)
    return httpx.Response(200, json=chat_body(text, **kwargs))
