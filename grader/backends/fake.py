"""A scripted chat model for tests and dry runs: it replays queued replies and records what it was sent.

From the CLI, `--backend fake` reads its replies from the JSON-lines file named by $GRADER_FAKE_REPLIES
(one reply per line: a JSON object, or a JSON string holding raw text).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from grader.backends.chat import ChatBackend, Completion, Conversation
from grader.backends.confidence import TokenLogprob
from grader.backends.prompts import Prompts
from grader.backends.retry import RetryPolicy
from grader.errors import BackendError, BackendNotConfiguredError
from grader.grading.contract import GradeRequest, Usage

Reply = str | dict[str, Any] | Exception | Completion
Responder = Callable[[Conversation, GradeRequest], Reply]


class FakeBackend(ChatBackend):
    name = "fake"

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        responder: Responder | None = None,
        model: str = "scripted",
        prompts: Prompts | None = None,
        policy: RetryPolicy | None = None,
        **modes: Any,
    ) -> None:
        modes.setdefault("mode", "holistic")  # scripted replies are whole grades unless a test says otherwise
        super().__init__(prompts=prompts, policy=policy, **modes)
        self.replies: deque[Reply] = deque(replies)
        self.responder = responder
        self._model = model
        self.sent: list[Conversation] = []

    @classmethod
    def from_env(cls, **kwargs: Any) -> FakeBackend:
        path = os.environ.get("GRADER_FAKE_REPLIES")
        if not path:
            raise BackendNotConfiguredError(
                "the fake backend needs scripted replies", hint="set GRADER_FAKE_REPLIES to a JSON-lines file"
            )
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise BackendNotConfiguredError(f"GRADER_FAKE_REPLIES: cannot read {path} ({reason})") from None
        replies = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                replies.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BackendNotConfiguredError(
                    f"GRADER_FAKE_REPLIES: {path}:{number}: not a JSON reply ({exc.msg})",
                    hint="one reply per line: a JSON object, or a JSON string holding raw text",
                ) from None
        return cls(replies, **kwargs)

    @property
    def model(self) -> str:
        return self._model

    async def send(self, conversation: Conversation, request: GradeRequest) -> Completion:
        self.sent.append(Conversation(messages=list(conversation.messages), schema=conversation.schema))
        if self.responder is not None:
            reply: Reply = self.responder(conversation, request)
        elif self.replies:
            reply = self.replies.popleft()
        else:
            raise BackendError("the fake backend has no scripted reply left")
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return Completion(
            text=text, usage=Usage(prompt_tokens=len(_words(conversation)), completion_tokens=len(text.split()))
        )


def _words(conversation: Conversation) -> list[str]:
    return " ".join(m["content"] for m in conversation.messages).split()


__all__ = ["FakeBackend", "TokenLogprob"]
