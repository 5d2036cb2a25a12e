"""A real OpenAI-compatible HTTP server on 127.0.0.1 for end-to-end tests and benchmarks.

It answers /v1/chat/completions with a valid grade for whatever question the request's schema names,
quoting the candidate answer from the prompt. It can behave like llama.cpp (HTTP 500 on `json_schema`),
answer after a latency, and inject faults by request number: "429", "500", "malformed" (a reply that
fails validation) or "hang" (no answer within the client's timeout).
"""

from __future__ import annotations

import email.policy
import json
import re
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = re.compile(r"<candidate_answer>\n(.*)\n</candidate_answer>", re.DOTALL)
Fault = Callable[[int], str | None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class LoopbackLLM:
    def __init__(
        self,
        *,
        reject_json_schema: bool = False,
        tier: str = "mediocre",
        latency: float = 0.0,
        fault: Fault | None = None,
        hang_seconds: float = 5.0,
    ) -> None:
        self.reject_json_schema = reject_json_schema
        self.tier = tier
        self.latency = latency
        self.fault = fault
        self.hang_seconds = hang_seconds
        self.requests: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls = 3  # a batch completes on its third poll
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send_json(self, status: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, payload, raw = outer.batch_get(self.path)
                self._send_json(status, payload, raw)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["content-length"]))
                if self.path.endswith("/files") or self.path.endswith("/batches"):
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    self._send_json(*outer.batch_post(self.path, self.headers["content-type"], raw))
                    return
                body = json.loads(raw)
                with outer._lock:
                    number = len(outer.requests)
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, payload, extra = outer.respond(body, number)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __enter__(self) -> LoopbackLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, body: dict[str, Any], number: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        fault = self.fault(number) if self.fault else None
        if fault == "429":
            return 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, {"retry-after": "0"}
        if fault == "500":
            return 500, {"error": {"message": "upstream failure", "type": "server_error"}}, {}
        if fault == "hang":
            time.sleep(self.hang_seconds)
        elif self.latency:
            time.sleep(self.latency)
        fmt = body.get("response_format") or {}
        if self.reject_json_schema and fmt.get("type") == "json_schema":
            return 500, {"error": {"message": "Input should be 'text' or 'json_object'", "type": "server_error"}}, {}
        content = "this is not JSON" if fault == "malformed" else json.dumps(self.reply(body))
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
                "usage": {"prompt_tokens": 1000, "completion_tokens": 80, "total_tokens": 1080},
            },
            {},
        )

    # --- the files and batches endpoints of the Batch API -------------------------------------------

    def batch_post(self, path: str, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if path.endswith("/files"):
            message = BytesParser(policy=email.policy.HTTP).parsebytes(
                b"content-type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                      for part in message.iter_parts()}
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = fields["file"]
            return 200, {"id": file_id, "object": "file", "bytes": len(fields["file"]), "created_at": 1764000000,
                         "filename": "requests.jsonl", "purpose": fields["purpose"].decode(), "status": "processed"}
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
                    status, payload, _ = self.respond(request["body"], len(self.requests))
                    self.requests.append(request["body"])
                    lines.append(json.dumps({"id": f"req-{len(lines)}", "custom_id": request["custom_id"],
                                             "response": {"status_code": status, "request_id": "r", "body": payload},
                                             "error": None}))
                state["output_file_id"] = f"file-{len(self.files) + 1}"
                self.files[state["output_file_id"]] = ("\n".join(lines) + "\n").encode()
            return 200, self._batch(parts[2], "completed", state["output_file_id"]), None
        return 200, None, self.files[parts[2]]

    def _batch(self, batch_id: str, status: str, output_file_id: str | None = None) -> dict[str, Any]:
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": self.batches[batch_id]["input_file_id"], "completion_window": "24h",
                "status": status, "output_file_id": output_file_id, "error_file_id": None,
                "created_at": 1764000000, "request_counts": {"total": 0, "completed": 0, "failed": 0}}

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """A valid grade: the first key point covered with the answer's first words as evidence."""
        fmt = body.get("response_format") or {}
        schema = fmt.get("schema") or fmt.get("json_schema", {}).get("schema")
        ids = schema["properties"]["points"]["required"]
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        answer = ANSWER.search(user).group(1)
        quote = " ".join(answer.split()[:5])
        return {
            "points": {pid: {"evidence": quote if i == 0 else "", "covered": i == 0} for i, pid in enumerate(ids)},
            "red_flags": [],
            "justification": "Covers the first key point only.",
            "tier": self.tier,
        }
