"""Ollama's native chat API (`POST /api/chat`): a request body, a reply, and what each failure means.

Everything else (the three grading modes, retries, the fall back to `format: "json"` for a server too old
for a schema, reply checks, re-asks) is `ChatBackend`'s.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2
from pydantic import BaseModel, ValidationError

from grader.backends.chat import OUTPUT_MODE, ChatBackend, Completion, Conversation, Rejected
from grader.backends.retry import TransientError, parse_retry_after
from grader.errors import BackendError, BackendNotConfiguredError, redact
from grader.grading.contract import GradeRequest, Usage

DEFAULT_HOST = "http://127.0.0.1:11434"


class _Message(BaseModel):
    content: str


class _Reply(BaseModel):
    message: _Message
    prompt_eval_count: int = 0
    eval_count: int = 0


class OllamaBackend(ChatBackend):
    name = "ollama"
    multiprocess = True
    output_modes = ("schema", "json")  # `format` takes a JSON schema since Ollama 0.5, plain "json" before

    def __init__(
        self,
        *,
        model: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        http_client: httpx2.AsyncClient | None = None,
        **chat: Any,
    ) -> None:
        """`chat`: ChatBackend's settings (mode, rule, sampling, prompts, retry policy, server memory)."""
        model = model or os.environ.get("GRADER_MODEL")
        if not model:
            raise BackendNotConfiguredError("the ollama backend needs a model", hint="pass --model or set GRADER_MODEL")
        host = base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        host = host if "://" in host else f"http://{host}"  # OLLAMA_HOST is often just host:port
        super().__init__(base_url=host.rstrip("/"), **chat)
        self._model = model
        self.client = http_client or httpx2.AsyncClient(timeout=timeout)

    @property
    def model(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, conversation: Conversation, request: GradeRequest) -> Completion:
        temperature, seed = self.sampling(request)
        # Ollama's default repeat_penalty (1.1) punishes a checklist for saying "yes" twice in a row.
        options: dict[str, Any] = {"temperature": temperature, "seed": seed, "repeat_penalty": 1.0}
        if self.max_tokens:
            options["num_predict"] = self.max_tokens
        schema = self.facts[OUTPUT_MODE] == "schema"
        body = {
            "model": self._model,
            "messages": self.messages(conversation),
            "format": conversation.schema if schema else "json",
            "stream": False,
            "options": {k: v for k, v in options.items() if v is not None},
        }
        response = await self.client.post(f"{self.base_url}/api/chat", content=json.dumps(body).encode())
        response.raise_for_status()
        try:
            reply = _Reply.model_validate_json(response.content)
        except ValidationError as exc:
            raise self.not_a_completion(exc, hint="is --base-url / OLLAMA_HOST an Ollama server?") from None
        usage = Usage(prompt_tokens=reply.prompt_eval_count, completion_tokens=reply.eval_count)
        return Completion(text=reply.message.content, usage=usage)

    def classify(self, exc: Exception) -> Exception:
        if isinstance(exc, httpx2.TimeoutException):
            return TransientError("request timed out")
        if isinstance(exc, httpx2.TransportError):
            return TransientError(f"cannot connect to {self.base_url}")
        if not isinstance(exc, httpx2.HTTPStatusError):
            return exc
        status, response = exc.response.status_code, exc.response
        message = redact(_error_message(response))  # before it is cut to one line
        if status == 400 and "format" in message.lower():
            return Rejected(OUTPUT_MODE)
        if status == 404:
            hint = f"check --model (`ollama pull {self._model}`) and --base-url / OLLAMA_HOST"
            return BackendError(f"{self.base_url}: {message} (HTTP 404)", hint=hint)
        return self.status_error(status, message, retry_after=parse_retry_after(response.headers.get("retry-after")))


def _error_message(response: httpx2.Response) -> str:
    """Ollama's `{"error": "..."}`, or the body as it came."""
    try:
        data = response.json()
    except ValueError:
        return response.text
    return str(data["error"]) if isinstance(data, dict) and "error" in data else response.text
