"""What every chat-model backend shares: render the prompt, ask, validate, re-ask, build the Grade."""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from grader.backends.base import Backend, GradeRequest
from grader.confidence import TokenLogprob, tier_confidence
from grader.errors import GradingFailedError
from grader.grade import Grade, Usage, reply_schema
from grader.prompts import ANSWER_TAG, Prompts, fence_answer
from grader.retry import InvalidReply, RetryPolicy, reasks
from grader.validation import ReplyCheck, check_reply, grade_from_reply

Message = dict[str, str]


@dataclass
class Completion:
    """One model reply."""

    text: str
    usage: Usage = field(default_factory=Usage)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    requests: int = 1  # HTTP requests it took, transport retries included


@dataclass
class Conversation:
    """A prompt, with the JSON schema the reply must follow."""

    messages: list[Message]
    schema: dict[str, object]
    name: str = "grade_reply"


class Check(Protocol):
    """The verdict on one reply: fine, acceptable as a last resort, or re-asked with `feedback()`."""

    @property
    def ok(self) -> bool: ...

    @property
    def acceptable(self) -> bool: ...

    def feedback(self) -> str: ...


@dataclass
class Answered:
    completion: Completion
    check: Check
    usage: Usage
    attempts: int


class ChatBackend(Backend):
    """A backend that grades by asking a chat model for a `GradeReply`."""

    def __init__(self, *, prompts: Prompts | None = None, policy: RetryPolicy | None = None) -> None:
        self.prompts = prompts or Prompts()
        self.policy = policy or RetryPolicy()
        self._system_texts: dict[tuple[str, str | None], str] = {}

    def cache_key(self) -> str:
        return f"{super().cache_key()}:prompts={self.prompts.fingerprint}"

    @abstractmethod
    async def complete(self, conversation: Conversation, request: GradeRequest) -> Completion:
        """Send the conversation and return the reply (transport retries happen inside)."""

    def system_message(self, schema: dict[str, object] | None, template: str = "grade_system.jinja") -> Message:
        """The instructions; `schema` is spelled out for servers without structured output. Rendered
        once per template and schema (the same for every answer to a question)."""
        spelled = json.dumps(schema, ensure_ascii=False) if schema is not None else None
        key = (template, spelled)
        if (text := self._system_texts.get(key)) is None:
            text = self._system_texts[key] = self.prompts.render(template, answer_tag=ANSWER_TAG, schema=spelled)
        return {"role": "system", "content": text}

    def build_conversation(self, request: GradeRequest) -> Conversation:
        q = request.question
        user = self.prompts.render(
            "grade_user.jinja",
            question=q,
            exemplars=request.reference_answers,
            answer=fence_answer(request.answer),
            answer_tag=ANSWER_TAG,
        )
        return Conversation(
            messages=[self.system_message(None), {"role": "user", "content": user}],
            schema=reply_schema(q.point_ids, q.flag_ids),
        )

    async def ask(self, conversation: Conversation, request: GradeRequest, check: Callable[[str], Check]) -> Answered:
        """Ask until a reply passes `check`, re-asking with the problems; raise when attempts run out
        unless the last reply is `acceptable`."""
        usage, attempts = Usage(), 0
        last: tuple[Completion, Check] | None = None
        try:
            async for attempt in reasks(self.policy):
                with attempt:
                    if last is not None:  # show the model its reply and what was wrong with it
                        conversation.messages += [
                            {"role": "assistant", "content": last[0].text},
                            {"role": "user", "content": last[1].feedback()},
                        ]
                    completion = await self.complete(conversation, request)
                    attempts += completion.requests
                    usage = usage + completion.usage
                    last = (completion, check(completion.text))
                    if not last[1].ok:
                        raise InvalidReply(last[1].feedback())
        except InvalidReply:
            assert last is not None
            if not last[1].acceptable:
                problem = last[1].feedback().splitlines()[1].removeprefix("- ")
                raise GradingFailedError(
                    f"no valid reply after {attempts} model calls: {problem}",
                    attempts=attempts,
                    usage=usage,
                    last_output=last[0].text,
                ) from None
        except GradingFailedError as exc:  # transport gave up: count what came before
            exc.attempts += attempts
            exc.usage = usage + (exc.usage or Usage())
            raise
        assert last is not None
        return Answered(completion=last[0], check=last[1], usage=usage, attempts=attempts)

    async def grade(self, request: GradeRequest) -> Grade:
        answered = await self.ask(
            self.build_conversation(request),
            request,
            lambda text: check_reply(text, request.question, request.answer),
        )
        check = answered.check
        assert isinstance(check, ReplyCheck)
        reply = check.reply
        assert reply is not None
        return grade_from_reply(
            check,
            request.question,
            backend=self.name,
            model=self.model,
            usage=answered.usage,
            attempts=answered.attempts,
            confidence=tier_confidence(answered.completion.logprobs, reply.tier.value),
            confidence_source="logprobs",
        )
