"""A real OpenAI-compatible HTTP server on 127.0.0.1 for end-to-end tests and benchmarks.

It answers /v1/chat/completions with a valid grade for whatever question the request's schema names,
quoting the candidate answer from the prompt. It can behave like llama.cpp (HTTP 500 on `json_schema`),
answer after a latency, and inject faults by request number (`FAULTS`): HTTP errors ("401", "429" with
`Retry-After`, "500", "503"), a connection reset ("reset"), no answer within the client's timeout
("hang"), and replies that fail validation: not JSON ("malformed"), JSON that fits no schema ("schema"),
a point id the rubric lacks ("unknown-point") and evidence the answer does not contain ("fake-quote").
`hold_from` keeps requests from that number on waiting until `release()`, to catch a run mid-way.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from typing import Any

from aiohttp import web

ANSWER = re.compile(r"<candidate_answer>\n(.*)\n</candidate_answer>", re.DOTALL)
Fault = Callable[[int], str | None]
#: Every fault a test can inject.
FAULTS = ("401", "429", "500", "503", "reset", "hang", "malformed", "schema", "unknown-point", "fake-quote")
FAKE_QUOTE = "I rewrote the whole system in a weekend"


class LoopbackLLM:
    """The server runs on its own asyncio event loop (aiohttp) in a background thread, so a latency is an
    `asyncio.sleep`, not a parked thread: it stays cheap at hundreds of concurrent requests, which the
    batch benchmark needs (a thread-per-request server was the bottleneck there, not the client)."""

    def __init__(
        self,
        *,
        reject_json_schema: bool = False,
        tier: str = "mediocre",
        latency: float = 0.0,
        fault: Fault | None = None,
        hang_seconds: float = 5.0,
        retry_after: str = "0",
        hold_from: int | None = None,
        record: bool = True,
    ) -> None:
        self.record = record  # keep every request's body and headers (tests read them; a benchmark only counts)
        self.reject_json_schema = reject_json_schema
        self.tier = tier
        self.latency = latency
        self.fault = fault
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after  # the Retry-After header of a "429"
        self.hold_from = hold_from  # chat requests from this number on wait for `release()`
        self._released: asyncio.Event | None = None
        # Request bodies are kept as bytes and parsed on access: thousands of parsed bodies made Python's
        # cyclic GC pause the server for 200 ms at a time in the batch benchmark.
        self._bodies: list[bytes] = []
        self._calls = 0
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls = 3  # a batch completes on its third poll
        self.headers: list[dict[str, str]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="loopback-llm")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat request's JSON body, in arrival order."""
        return [json.loads(raw) for raw in self._bodies]

    def __enter__(self) -> LoopbackLLM:
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def release(self) -> None:
        """Let the requests held by `hold_from` be answered (and every later one at once)."""
        assert self._loop is not None and self._released is not None
        self._loop.call_soon_threadsafe(self._released.set)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._released = asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        path, raw = request.path, await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if request.method == "GET":
            self.headers.append(headers)
            status, payload, data = self.batch_get(path)
            return web.Response(
                status=status,
                body=data if data is not None else json.dumps(payload).encode(),
                content_type="application/json",
            )
        if path.endswith("/files") or path.endswith("/batches"):
            self.headers.append(headers)
            status, payload = self.batch_post(path, request.headers["content-type"], raw)
            return web.json_response(payload, status=status)
        number, fault = self._count(raw, headers)
        if self.hold_from is not None and number >= self.hold_from:
            assert self._released is not None
            await self._released.wait()
        if fault == "reset":  # an RST instead of an answer (SO_LINGER 0, then abort)
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            return web.Response(status=500)
        status, payload, extra = self.respond(json.loads(raw), number, fault)
        data = json.dumps(payload).encode()
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)
        elif self.latency and fault not in ("401", "429", "500", "503"):
            # The latency counts from the request's arrival, as a client sees a real server's: the work
            # above happens inside it, not on top of it.
            await asyncio.sleep(max(0.0, arrived + self.latency - time.monotonic()))
        return web.Response(status=status, body=data, headers=extra, content_type="application/json")

    def _count(self, raw: bytes, headers: dict[str, str] | None = None) -> tuple[int, str | None]:
        """Number a chat request (kept when recording) and look up the fault injected for it."""
        number = self._calls
        self._calls += 1
        if self.record:
            self._bodies.append(raw)
            if headers is not None:
                self.headers.append(headers)
        return number, self.fault(number) if self.fault else None

    def respond(
        self, body: dict[str, Any], number: int, fault: str | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The reply to one chat request (the handler then waits out the latency)."""
        if fault == "401":
            message = "Incorrect API key provided"
            return 401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}, {}
        if fault == "429":
            return (
                429,
                {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                {"retry-after": self.retry_after},
            )
        if fault in ("500", "503"):
            return int(fault), {"error": {"message": "upstream failure", "type": "server_error"}}, {}
        fmt = body.get("response_format") or {}
        if self.reject_json_schema and fmt.get("type") == "json_schema":
            return 500, {"error": {"message": "Input should be 'text' or 'json_object'", "type": "server_error"}}, {}
        if fault == "malformed":
            content = "this is not JSON"
        elif fault == "schema":
            content = json.dumps({"grade": "great", "because": "it is"})
        else:
            content = json.dumps(self.reply(body, fault))
        return (
            200,
            {
                "id": f"chatcmpl-loopback-{number}",
                "object": "chat.completion",
                "created": 1764000000,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 80,
                    "total_tokens": 1080,
                    "prompt_tokens_details": {"cached_tokens": 896 if number > 1 else 0},
                },
            },
            {},
        )

    # --- the files and batches endpoints of the Batch API -------------------------------------------

    def batch_post(self, path: str, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if path.endswith("/files"):
            message = BytesParser(policy=email.policy.HTTP).parsebytes(
                b"content-type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            fields = {
                part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.iter_parts()
            }
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = fields["file"]
            return 200, {
                "id": file_id,
                "object": "file",
                "bytes": len(fields["file"]),
                "created_at": 1764000000,
                "filename": "requests.jsonl",
                "purpose": fields["purpose"].decode(),
                "status": "processed",
            }
        body = json.loads(raw)
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {"input_file_id": body["input_file_id"], "polls": 0}
        return 200, self._batch(batch_id, "validating")

    def batch_get(self, path: str) -> tuple[int, dict[str, Any] | None, bytes | None]:
        parts = path.strip("/").split("/")  # v1/batches/ID or v1/files/ID/content
        if parts[1] == "batches":
            state = self.batches[parts[2]]
            state["polls"] += 1
            if state["polls"] < self.batch_polls:
                return 200, self._batch(parts[2], "in_progress"), None
            if "output_file_id" not in state:
                lines = []
                for line in self.files[state["input_file_id"]].decode().splitlines():
                    request = json.loads(line)
                    number, fault = self._count(json.dumps(request["body"]).encode())
                    status, payload, _ = self.respond(request["body"], number, fault)
                    lines.append(
                        json.dumps(
                            {
                                "id": f"req-{len(lines)}",
                                "custom_id": request["custom_id"],
                                "response": {"status_code": status, "request_id": "r", "body": payload},
                                "error": None,
                            }
                        )
                    )
                state["output_file_id"] = f"file-{len(self.files) + 1}"
                self.files[state["output_file_id"]] = ("\n".join(lines) + "\n").encode()
            return 200, self._batch(parts[2], "completed", state["output_file_id"]), None
        return 200, None, self.files[parts[2]]

    def _batch(self, batch_id: str, status: str, output_file_id: str | None = None) -> dict[str, Any]:
        return {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": self.batches[batch_id]["input_file_id"],
            "completion_window": "24h",
            "status": status,
            "output_file_id": output_file_id,
            "error_file_id": None,
            "created_at": 1764000000,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }

    def reply(self, body: dict[str, Any], fault: str | None = None) -> dict[str, Any]:
        """A valid grade: the first key point covered with the answer's first words as evidence (in the
        holistic, checklist or tier-only format, whichever the request's schema asks for); with the
        fault "unknown-point" it also covers a point the rubric lacks, with "fake-quote" its evidence is
        not in the answer."""
        fmt = body.get("response_format") or {}
        schema = fmt.get("schema") or fmt.get("json_schema", {}).get("schema")
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        answer = ANSWER.search(user).group(1)
        quote = FAKE_QUOTE if fault == "fake-quote" else " ".join(answer.split()[:5])
        if "points" not in schema["properties"]:
            keys = schema["required"]
            if keys == ["tier"]:
                return {"tier": self.tier}
            items = {k: {"verdict": "yes", "quote": quote} if k == "p1" else {"verdict": "no"} for k in keys}
            if fault == "unknown-point":
                items["p99"] = {"verdict": "yes", "quote": quote}
            return items
        ids = schema["properties"]["points"]["required"]
        points = {pid: {"evidence": quote if i == 0 else "", "covered": i == 0} for i, pid in enumerate(ids)}
        if fault == "unknown-point":
            points["q99.no-such-point"] = {"evidence": quote, "covered": True}
        return {
            "points": points,
            "red_flags": [],
            "justification": "Covers the first key point only.",
            "tier": self.tier,
        }
