"""A real OpenAI-compatible HTTP server on 127.0.0.1 for end-to-end tests of the CLI.

It answers /v1/chat/completions with a valid grade for whatever question the request's schema names,
quoting the candidate answer from the prompt, and can behave like llama.cpp (HTTP 500 on `json_schema`).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = re.compile(r"<candidate_answer>\n(.*)\n</candidate_answer>", re.DOTALL)


class LoopbackLLM:
    def __init__(self, *, reject_json_schema: bool = False, tier: str = "mediocre") -> None:
        self.reject_json_schema = reject_json_schema
        self.tier = tier
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.requests.append(body)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, payload = outer.respond(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fmt = body.get("response_format") or {}
        if self.reject_json_schema and fmt.get("type") == "json_schema":
            return 500, {"error": {"message": "Input should be 'text' or 'json_object'", "type": "server_error"}}
        schema = fmt.get("schema") or fmt.get("json_schema", {}).get("schema")
        ids = schema["properties"]["points"]["required"]
        answer = ANSWER.search(body["messages"][1]["content"]).group(1)
        quote = " ".join(answer.split()[:5])
        reply = {
            "points": {pid: {"evidence": quote if i == 0 else "", "covered": i == 0} for i, pid in enumerate(ids)},
            "red_flags": [],
            "justification": "Covers the first key point only.",
            "tier": self.tier,
        }
        content = json.dumps(reply)
        return 200, {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": 1764000000,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 80, "total_tokens": 1080},
        }
