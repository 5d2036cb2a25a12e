"""Any OpenAI-compatible chat server (OpenAI, Azure-style base URLs, vLLM, Ollama, llama.cpp).

Asks for strict JSON-schema structured output. Servers that reject `json_schema` (llama.cpp answers
HTTP 500 "Input should be 'text' or 'json_object'") get JSON mode with the schema attached and spelled
out in the prompt; `ChatBackend` remembers the choice per server in the cache folder. The SDK's own
retries are off (`max_retries=0`): `grader.backends.retry` is the one retry layer.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx2
import openai
from pydantic import BaseModel, ValidationError

from grader.backends.chat import OUTPUT_MODE, ChatBackend, Completion, Conversation, Mode, Rejected, ServerMemory
from grader.backends.checklist import ChecklistRule
from grader.backends.confidence import TokenLogprob
from grader.backends.prompts import Prompts
from grader.backends.replies import one_line
from grader.backends.retry import RetryPolicy, TransientError, parse_retry_after
from grader.config import DEFAULT_MODE, DEFAULT_OPENAI_MODEL
from grader.errors import BackendError, BackendNotConfiguredError, add_secret, redact
from grader.grading.contract import GradeRequest, Usage

MODES = ("json_schema", "json_object_schema", "json_object")
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _TopLogprob(BaseModel):
    token: str
    logprob: float


class _TokenLogprob(_TopLogprob):
    top_logprobs: list[_TopLogprob] | None = None


class _Logprobs(BaseModel):
    content: list[_TokenLogprob] | None = None


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message
    logprobs: _Logprobs | None = None


class _PromptDetails(BaseModel):
    cached_tokens: int | None = 0


class _Usage(BaseModel):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: _PromptDetails | None = None


class ChatReply(BaseModel):
    """The part of a chat-completion response grader reads, validated straight from the response bytes
    (pydantic-core), instead of building the SDK's full `ChatCompletion` object tree for every reply."""

    choices: list[_Choice]
    usage: _Usage | None = None


class OpenAIBackend(ChatBackend):
    name = "openai"
    multiprocess = True
    output_modes = MODES

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        temperature: float = 0.0,
        seed: int | None = 42,
        timeout: float = 120.0,
        max_tokens: int | None = None,
        logprobs: bool = True,
        http_client: Any = None,
        prompts: Prompts | None = None,
        policy: RetryPolicy | None = None,
        memory: ServerMemory | None = None,
        mode: Mode = DEFAULT_MODE,  # what the command line and the registry use
        rule: ChecklistRule | None = None,
        prose: bool = False,
        ask_tier: bool = False,
        per_item: bool = False,
    ) -> None:
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not api_key and not base_url:
            raise BackendNotConfiguredError(
                "the openai backend is not configured",
                hint="set OPENAI_API_KEY (and OPENAI_BASE_URL for a self-hosted server), or use --backend local",
            )
        given = base_url or DEFAULT_BASE_URL
        base_url = given.strip().rstrip("/")  # a newline a shell or .env file left on it is no part of it
        parts = _http_url(base_url)
        if parts is None:  # a typo, not a network to retry for
            raise BackendNotConfiguredError(
                f"the server URL (--base-url or OPENAI_BASE_URL) {given!r} is not an http(s) URL",
                hint="write it whole, e.g. http://127.0.0.1:8080/v1",
            )
        if parts.username is not None:  # `user:password@host`: the SDK cannot send both
            raise BackendNotConfiguredError(
                "the server URL (--base-url or OPENAI_BASE_URL) holds credentials (user:password@host)",
                hint="remove them from the URL and put the key in OPENAI_API_KEY",
            )
        add_secret(api_key)
        super().__init__(
            prompts=prompts,
            policy=policy,
            mode=mode,
            rule=rule,
            prose=prose,
            ask_tier=ask_tier,
            per_item=per_item,
            base_url=base_url,
            memory=memory,
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            # Self-hosted servers get `repeat_penalty: 1.0`: llama-cpp-python's server defaults to 1.1, which
            # punishes a checklist for saying "yes" (or "no") twice in a row and makes the chosen verdict
            # disagree with its own logprobs. A server that refuses a feature is remembered not to get it.
            features={"logprobs": logprobs, "repeat_penalty": base_url != DEFAULT_BASE_URL},
        )
        self._model = model or os.environ.get("GRADER_MODEL") or DEFAULT_OPENAI_MODEL
        self.client = openai.AsyncOpenAI(
            # Local servers ignore the key, but the SDK insists on one.
            api_key=api_key or "not-needed",
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            # aiohttp under the SDK's httpx2 interface: the SDK's documented choice for high concurrency
            # (in profiling, about a third less CPU per request than httpx2's own connection pool).
            # Tests pass an httpx2 client with a mock transport instead.
            http_client=http_client if http_client is not None else openai.DefaultAioHttpClient(timeout=timeout),
        )

    @property
    def model(self) -> str:
        return self._model

    # The API key is deliberately not part of the cache key: it never changes a grade and must not be stored.

    async def aclose(self) -> None:
        await self.client.close()

    def _response_format(self, conversation: Conversation, mode: str) -> dict[str, Any]:
        if mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {
                    "name": conversation.name,
                    "schema": self._schema_for_strict(conversation),
                    "strict": True,
                },
            }
        if mode == "json_object_schema":  # llama.cpp and others constrain decoding to this schema
            return {"type": "json_object", "schema": conversation.schema}
        return {"type": "json_object"}

    def _schema_for_strict(self, conversation: Conversation) -> dict[str, Any]:
        """OpenAI's own strict mode refuses string lengths and item counts; self-hosted servers (llama.cpp,
        vLLM) compile them into the grammar, which keeps a small model's quotes short."""
        if self.base_url == DEFAULT_BASE_URL or ".openai.azure.com" in self.base_url:
            return _strict_subset(conversation.schema)
        return conversation.schema

    def request_body(self, conversation: Conversation, request: GradeRequest) -> dict[str, Any]:
        """The chat-completions request for a conversation, in the mode this server accepts (also what a
        Batch API request line carries)."""
        temperature, seed = self.sampling(request)
        body: dict[str, Any] = {
            "model": self._model,
            "messages": self.messages(conversation),
            "response_format": self._response_format(conversation, self.facts[OUTPUT_MODE]),
            "temperature": temperature,
        }
        if seed is not None:
            body["seed"] = seed
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        if self.facts.get("repeat_penalty"):
            body["repeat_penalty"] = 1.0
        if self.facts["logprobs"]:
            body["logprobs"] = True
            body["top_logprobs"] = 5
        return body

    async def send(self, conversation: Conversation, request: GradeRequest) -> Completion:
        # The SDK's documented low-level call with a ready-made body: `chat.completions.create(**body)`
        # re-walks the whole request (schema and prompt included) through its TypedDict transform and
        # builds a model object per token of the reply, which cost more CPU than everything else
        # grader does per grade. Status errors, timeouts and auth still go through the SDK.
        body = json.dumps(self.request_body(conversation, request)).encode()
        response = await self.client.post("/chat/completions", content=body, cast_to=httpx2.Response)
        return self.completion_from(response.content)

    def classify(self, exc: Exception) -> Exception:
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
            # The SDK's aiohttp client reports a refused connection or a name that does not resolve as a
            # timeout: the cause says what happened.
            if (problem := connection_problem(exc, self.base_url)) is not None:
                return TransientError(problem)
            if isinstance(exc, openai.APITimeoutError):
                return TransientError("request timed out")
            if _closed_early(exc):  # it connected: the server hung up before its answer was whole
                return TransientError("the server closed the connection before its answer was complete")
            return TransientError(f"cannot connect to {self.base_url}")
        if not isinstance(exc, openai.APIStatusError):
            return exc
        status = exc.status_code
        message = redact(exc.message)  # before it is cut to one line: no part of a key survives the cut
        message = _SDK_PREFIX.sub("", message).strip()  # "Error code: 502 - " repeats the status
        if not message and exc.response is not None:
            text = exc.response.text.lstrip()
            message = (
                "an HTML page, not a JSON error: is OPENAI_BASE_URL the API's address?"
                if text.startswith("<")
                else one_line(text, 120) or "no message"
            )
        body = f"{message} {exc.response.text if exc.response is not None else ''}".lower()
        if any(s in body for s in ("json_schema", "response_format", "json_object")) and (
            status in (400, 422, 501) or (status == 500 and _REFUSED.search(body))
        ):  # llama.cpp refuses json_schema with a 500; a 500 that only names it (out of memory) is retried
            return Rejected(OUTPUT_MODE)
        for feature in ("repeat_penalty", "logprobs"):
            if status in (400, 422) and feature in body:
                return Rejected(feature)
        if status in (401, 403):
            return BackendError(
                f"{self.base_url} refused the API key (HTTP {status})", hint="check OPENAI_API_KEY", status=status
            )
        if status == 404:
            return BackendError(
                f"{self.base_url}: model {self._model!r} or endpoint not found (HTTP 404)",
                hint="check --model / GRADER_MODEL and OPENAI_BASE_URL",
                status=status,
            )
        retry_after = parse_retry_after(exc.response.headers.get("retry-after")) if exc.response is not None else None
        return self.status_error(status, message, retry_after=retry_after)

    def completion_from(self, response: bytes | dict[str, Any], requests: int = 1) -> Completion:
        """A Completion from a chat-completion response (its bytes, or a Batch API result body)."""
        try:
            if isinstance(response, dict):
                reply = ChatReply.model_validate(response)
            else:
                reply = ChatReply.model_validate_json(response)
        except ValidationError as exc:
            hint = "is OPENAI_BASE_URL an OpenAI-compatible /v1 endpoint?"
            raise self.not_a_completion(exc, attempts=requests, hint=hint) from None
        choice = reply.choices[0] if reply.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        usage = Usage()
        if reply.usage is not None:
            details = reply.usage.prompt_tokens_details
            usage = Usage(
                prompt_tokens=reply.usage.prompt_tokens or 0,
                completion_tokens=reply.usage.completion_tokens or 0,
                cached_tokens=(details.cached_tokens or 0) if details is not None else 0,
            )
        tokens: list[TokenLogprob] = []
        logprobs = choice.logprobs if choice is not None else None
        for item in (logprobs.content if logprobs is not None else None) or []:
            top = tuple((alt.token, alt.logprob) for alt in (item.top_logprobs or []))
            tokens.append(TokenLogprob(item.token, item.logprob, top))
        return Completion(text=text, usage=usage, logprobs=tokens, requests=requests)


def _http_url(url: str) -> SplitResult | None:
    """`url` split, when it is an http(s) URL with a host, a valid port and nothing unprintable; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError:  # "http://[::1/v1": an IPv6 host not closed
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or not url.isprintable():
        return None
    return parts if " " not in url else None


_SDK_PREFIX = re.compile(r"^Error code: \d+\s*-?\s*")
#: How a server says it refuses a request's field (pydantic's and others' validation words), not that it failed.
_REFUSED = re.compile(r"input should be|literal_error|validation error|not supported|unsupported|not implemented")


def _causes(exc: BaseException) -> list[BaseException]:
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    return causes


def _closed_early(exc: BaseException) -> bool:
    """Whether the server closed the connection mid-answer (aiohttp's payload and disconnect errors, or
    httpx's incomplete read), not refused it."""
    names = {type(c).__name__ for c in _causes(exc)}
    return bool(names & {"ClientPayloadError", "ServerDisconnectedError", "RemoteProtocolError", "IncompleteRead"})


def connection_problem(exc: BaseException, base_url: str) -> str | None:
    """What a failed connection was, read from the exception's causes: `connection refused to HOST:PORT`,
    `HOST does not resolve`, or `cannot connect to HOST:PORT (reason)`; None when no cause says."""
    url = urlsplit(base_url)
    host = url.hostname or base_url
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        port = None
    where = f"{host}:{port}" if port is not None else host
    causes = _causes(exc)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return f"{host} does not resolve"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"connection refused to {where}"
    for c in causes:
        if isinstance(c, OSError) and not isinstance(c, TimeoutError) and c.strerror:
            return f"cannot connect to {where} ({c.strerror})"
    return None


def _strict_subset(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without the keywords OpenAI's strict mode refuses (string lengths, item counts); a constrained
    decoder elsewhere gets them, and validation checks the reply either way."""
    key = id(schema)
    cached = _STRICT.get(key)
    if cached is None or cached[0] is not schema:
        cached = _STRICT[key] = (schema, _drop(schema, {"maxLength", "minLength", "maxItems", "minItems"}))
    return cached[1]


_STRICT: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def _drop(node: Any, keys: set[str]) -> Any:
    if isinstance(node, dict):
        return {k: _drop(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_drop(v, keys) for v in node]
    return node


__all__ = ["ChatReply", "OpenAIBackend", "ServerMemory"]
