"""What every chat-model backend shares: render the prompt, send it, retry, validate, re-ask, build the Grade.

A backend for one provider's API implements two methods: `send` (one request, in the output mode and
with the optional features in `facts`) and `classify` (its SDK's or HTTP errors as `TransientError`,
`Rejected` or `BackendError`). The transport retries, the fall back through `output_modes` when a server
refuses one, remembering that per server (`ServerMemory`), and the re-asks all happen here.

Three grading modes, one method each for the prompt (`conversation`), the reply check (`checker`) and
the Grade (`finish`); `grade_completion` checks a reply and builds its Grade for the paths that cannot
re-ask (the Batch API), with the same code the direct path uses:

- `checklist`: a yes/no verdict per key point and red flag; the tier follows by a written rule
  (`grader.backends.checklist`);
- `holistic`: per-point verdicts with quotes, a justification and the model's own tier;
- `tier`: the model only picks a tier given the reference answers (a plain judge, the cheap baseline).

Every prompt puts what is the same for every answer to a question first (system, rubric, references,
checklist) and the answer last, so a server's prefix cache can reuse it. Reviewed answers (`request.reviewed`,
other candidates' answers an interviewer graded) come between the two, quoted line by line
(`shown_reviews`); with none, the prompt is what it was without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import re
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import ValidationError

from grader.backends.base import Backend
from grader.backends.checklist import (
    ChecklistCheck,
    ChecklistRule,
    ErrorListCheck,
    Item,
    Verdict,
    check_checklist,
    check_item,
    checklist_grade,
    checklist_items,
    checklist_schema,
    item_schema,
    read_item_probability,
    read_probabilities,
)
from grader.backends.confidence import TokenLogprob, tier_confidence
from grader.backends.prompts import ANSWER_TAG, Prompts, fence_answer
from grader.backends.replies import ReplyCheck, check_reply, grade_from_reply, last_valid, one_line, reply_schema
from grader.backends.retry import (
    MAX_RETRY_AFTER,
    InvalidReply,
    RetryPolicy,
    TransientError,
    reasks,
    time_left,
    transport,
    within,
)
from grader.config import DEFAULT_MODE, optional_cache_dir
from grader.errors import BackendError, GradingFailedError, UsageError
from grader.grading.contract import FailureKind, Grade, GradeRequest, Tier, Usage
from grader.rubric import Question, Rubric
from grader.wording import counted

Message = dict[str, str]
Mode = Literal["checklist", "holistic", "tier"]
MODES: tuple[Mode, ...] = ("checklist", "holistic", "tier")
#: A reviewed answer is shown up to this many characters (a prompt holds several, and a small model's
#: context is 4,096 tokens).
REVIEWED_CHARS = 1500


@dataclass(frozen=True)
class ShownReview:
    """A reviewed answer as a prompt shows it: the tier an interviewer gave it, the rubric items they
    ticked (ids, or checklist keys p1.. f1..), and the answer quoted: every line starts with `>`."""

    tier: str
    points: tuple[str, ...]
    flags: tuple[str, ...]
    quoted: str


def quote_reviewed(answer: str) -> str:
    """Another candidate's answer, made safe to show: fenced like the answer being graded (`fence_answer`:
    no tag of ours, no chat-template token, no invisible characters), cut to `REVIEWED_CHARS`, and every
    line prefixed with `> `, so nothing in it can start a line of its own (a heading, a fake instruction)."""
    text = fence_answer(answer.strip())
    if len(text) > REVIEWED_CHARS:
        text = text[:REVIEWED_CHARS].rstrip() + " [...]"
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def shown_reviews(request: GradeRequest, items: list[Item] | None = None) -> tuple[ShownReview, ...]:
    """The request's reviewed answers for a template's `reviewed`: the question's points and flags each
    ticked, by rubric id, or by checklist key where the prompt names items by key (`items`)."""
    q = request.question
    keys = {i.id: i.key for i in items} if items is not None else {i: i for i in [*q.point_ids, *q.flag_ids]}
    return tuple(
        ShownReview(
            tier=r.tier.value,
            points=tuple(keys[p] for p in r.covered if p in keys),
            flags=tuple(keys[f] for f in r.red_flags if f in keys),
            quoted=quote_reviewed(r.answer),
        )
        for r in request.reviewed
    )


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
    #: The system message for servers without structured output, where it must spell the format out
    #: (None: the holistic instructions with the schema attached).
    plain_system: Message | None = None


class Check(Protocol):
    """The verdict on one reply: fine, acceptable as a last resort, or re-asked with `feedback()`."""

    @property
    def ok(self) -> bool: ...

    @property
    def acceptable(self) -> bool: ...

    def feedback(self) -> str: ...

    @property
    def problem(self) -> str:
        """The first thing wrong, in one line."""
        ...


@dataclass
class Answered:
    completion: Completion
    check: Check
    usage: Usage
    attempts: int


#: The `facts` key of the structured-output mode, and the feature a server refuses when it refuses the mode.
OUTPUT_MODE = "mode"


#: A server's words for "this request is too long for the model" (OpenAI, vLLM, llama.cpp, TGI, Anthropic-style).
_TOO_LONG = re.compile(
    r"context[ _]length|maximum context|context (size|window)|exceed_context_size|too many (input )?tokens"
    r"|prompt is too long|input is too long|reduce the length",
    re.IGNORECASE,
)
#: A context-length refusal that counts the completion asked for (`max_tokens`): the settings, not this answer.
_BUDGET = re.compile(r"max_tokens|max_completion_tokens|in the completion", re.IGNORECASE)
#: A 429 that no wait cures: the account's quota is spent (OpenAI's `insufficient_quota`).
_NO_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota", re.IGNORECASE)


def _duration(seconds: float) -> str:
    """86400 -> '24 h', 600 -> '10 min'."""
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


class _Late(Exception):
    """The grade's deadline (`RetryPolicy.deadline`) came before a reply; says what was under way, if anything."""

    def __init__(self, what: str | None) -> None:
        super().__init__(what)
        self.what = what


class Rejected(Exception):
    """The server refused one request feature: the output mode (`OUTPUT_MODE`) or an optional one such as
    logprobs. `classify` returns it; the request is sent again without the feature."""

    def __init__(self, feature: str) -> None:
        super().__init__(feature)
        self.feature = feature


class ServerMemory:
    """What each server accepts (by base URL), kept in a small JSON file so the next run asks right the
    first time."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None and (folder := optional_cache_dir()) is not None:  # none: remembered for this run only
            path = folder / "servers.json"
        self.path = path

    def load(self, server: str) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            return dict(json.loads(self.path.read_text()).get(server, {}))
        except (OSError, ValueError):
            return {}

    def save(self, server: str, facts: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        data[server] = facts
        tmp = self.path.with_suffix(".tmp")
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
                handle.write(json.dumps(data, indent=2, sort_keys=True))  # private like the rest of the cache
            tmp.replace(self.path)
        except OSError:  # a speed-up lost, not a grade: the backend keeps it for this run
            return


def check_mode(mode: str, *, per_item: bool, prose: bool, ask_tier: bool) -> None:
    """Refuse a grading mode and options that do not go together, before any model is asked."""
    if mode not in MODES:
        raise UsageError(f"unknown grading mode {mode!r}", hint="choose one of: " + ", ".join(MODES))
    if per_item and mode == "checklist" and (prose or ask_tier):
        raise UsageError("--checklist-calls per-item asks one item per call: it cannot add --prose or --ask-tier")


class ChatBackend(Backend):
    """A backend that grades by asking a chat model, in one of three `MODES`."""

    #: The structured-output modes `send` can ask in, best first: a server that refuses one gets the next,
    #: and after the first the system message spells the format out (`messages`).
    output_modes: ClassVar[tuple[str, ...]] = ("schema",)

    def __init__(
        self,
        *,
        prompts: Prompts | None = None,
        policy: RetryPolicy | None = None,
        mode: Mode = DEFAULT_MODE,  # what the command line and the registry use
        rule: ChecklistRule | None = None,
        prose: bool = False,
        ask_tier: bool = False,
        per_item: bool = False,
        base_url: str = "",
        memory: ServerMemory | None = None,
        features: dict[str, bool] | None = None,
        temperature: float = 0.0,
        seed: int | None = 42,
        max_tokens: int | None = None,
    ) -> None:
        check_mode(mode, per_item=per_item, prose=prose, ask_tier=ask_tier)
        self.prompts = prompts or Prompts()
        self.policy = policy or RetryPolicy()
        self.mode: Mode = mode
        self.rule = rule or ChecklistRule()
        self.prose = prose
        self.ask_tier = ask_tier
        self.per_item = per_item and mode == "checklist"
        self.base_url = base_url
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        features = features or {}
        self.memory = (memory or ServerMemory()) if base_url else None
        self._learned = self.memory.load(base_url) if self.memory else {}
        #: The output mode and optional features to send: the defaults, less what this server refused.
        self.facts: dict[str, Any] = {OUTPUT_MODE: self.output_modes[0], **features, **self._learned}
        self.facts.update({name: False for name, on in features.items() if not on})  # what the caller turned off
        if self.facts[OUTPUT_MODE] not in self.output_modes:
            self.facts[OUTPUT_MODE] = self.output_modes[0]

    def cache_key(self, rubric: Rubric | None = None) -> str:
        key = f"{super().cache_key(rubric)}:prompts={self.prompts.fingerprint}:mode={self.mode}"
        if self.mode == "checklist":
            key += f":rule={self.rule.fingerprint}:prose={self.prose}:tier={self.ask_tier}:per_item={self.per_item}"
        if self.base_url:
            key += f":{self.base_url}"
        return f"{key}:t={self.temperature}:seed={self.seed}"

    @abstractmethod
    async def send(self, conversation: Conversation, request: GradeRequest) -> Completion:
        """One request for the conversation, in the output mode and with the features in `facts`; no
        retries here. Whatever it raises goes through `classify`."""

    def classify(self, exc: Exception) -> Exception:
        """What an error from `send` means: a `TransientError` (retried), `Rejected` (asked again without
        the feature), a `GraderError` (final), or the error itself when it is none of these (a bug)."""
        return exc

    async def complete(self, conversation: Conversation, request: GradeRequest) -> Completion:
        """Send the conversation and return the reply: transient failures are retried (`retry.transport`),
        a feature the server refuses is dropped (and remembered for the server), and a server that keeps
        failing is a `transport` GradingFailedError."""
        requests = 0
        failed: TransientError | None = None

        async def attempt_once() -> Completion:
            nonlocal requests, failed
            if failed is not None:  # the retry loop's first attempt is the request that already failed
                first, failed = failed, None
                raise first
            left = time_left()
            if left is not None and left <= 0:
                raise _Late(None)
            requests += 1
            timer = asyncio.timeout(left)  # no deadline: None, no limit but the request's own --timeout
            try:
                async with timer:
                    return await self.send(conversation, request)
            except Exception as exc:
                if isinstance(exc, TimeoutError) and timer.expired():
                    raise _Late("a request was still waiting for its answer") from exc
                error = self.classify(exc)
                if error is exc:
                    raise
                raise error from exc

        while True:
            facts = dict(self.facts)  # what this request is sent with
            before = requests
            try:
                try:  # most requests succeed at once: the retry loop is only built when one does not
                    completion = await attempt_once()
                except TransientError as exc:
                    failed = exc
                    async for attempt in transport(self.policy):
                        with attempt:
                            completion = await attempt_once()
            except Rejected as rejected:
                self._learn(rejected.feature, facts)
                continue
            except TransientError as exc:
                if requests - before < self.policy.attempts:  # stopped before a pause that would pass the deadline
                    raise self._late(requests, f"the last request failed: {exc}") from None
                raise GradingFailedError(
                    f"{self.base_url or self.name} kept failing ({exc}); gave up after {counted(requests, 'request')}",
                    attempts=requests,
                    kind=FailureKind.transport,
                    hint="check the server, or raise --max-attempts (max_attempts= in Python)",
                ) from None
            except _Late as late:
                raise self._late(requests, late.what) from None
            except GradingFailedError as exc:  # counted one request: add the failed ones before it
                exc.attempts += requests - 1
                raise
            if requests > 1:
                completion = dataclasses.replace(completion, requests=completion.requests + requests - 1)
            return completion

    def _late(self, requests: int, what: str | None) -> GradingFailedError:
        seconds = self.policy.deadline
        deadline = f"the deadline of {seconds:g} s" if seconds is not None else "the deadline"
        said = f"; {what}" if what else ""
        return GradingFailedError(
            f"no grade from {self.base_url or self.name} within {deadline}{said}",
            attempts=requests,
            kind=FailureKind.transport,
            hint="raise --deadline (deadline= in Python), or check the server",
        )

    def _learn(self, feature: str, sent: dict[str, Any]) -> None:
        """Stop sending what the server refused in a request sent with the facts `sent`: ask in the next
        output mode, or without the feature. Concurrent refusals never move back."""
        server = self.base_url or self.name
        if feature == OUTPUT_MODE:
            index = self.output_modes.index(sent[OUTPUT_MODE]) + 1
            if index >= len(self.output_modes):
                raise BackendError(f"{server} accepts no JSON output mode grader can use")
            current = self.output_modes.index(self.facts[OUTPUT_MODE])
            self.facts[OUTPUT_MODE] = self.output_modes[max(index, current)]
        elif not sent.get(feature):  # refused something it was not sent: asking again would loop
            raise BackendError(f"{server} refused the request ({feature}) though it was not sent")
        else:
            self.facts[feature] = False
        self._learned[feature] = self.facts[feature]
        if self.memory is not None:
            self.memory.save(self.base_url, self._learned)

    def messages(self, conversation: Conversation) -> list[Message]:
        """The messages to send in the current output mode: past the first, the server does not enforce the
        schema itself, so the system message spells the format out."""
        if self.facts[OUTPUT_MODE] == self.output_modes[0]:
            return conversation.messages
        return [conversation.plain_system or self.system_message(conversation.schema), *conversation.messages[1:]]

    def sampling(self, request: GradeRequest) -> tuple[float, int | None]:
        """The temperature and seed for one request (`--samples k` raises the one and numbers the other)."""
        temperature = self.temperature if request.sampling.temperature is None else request.sampling.temperature
        return temperature, None if self.seed is None else self.seed + request.sample

    def status_error(self, status: int, message: str, *, retry_after: float | None = None) -> Exception:
        """An HTTP error status: this answer too long for the model (a failed grade, the run goes on), a quota
        or a wait longer than grader ever waits (a BackendError: every request would get it), worth a retry
        (408, 409, 429, 5xx), or a BackendError naming the server."""
        server, said = self.base_url or self.name, one_line(message, 160)
        if status == 413 or (status in (400, 422) and _TOO_LONG.search(message) and not _BUDGET.search(message)):
            return GradingFailedError(
                f"{server} refused this answer as too long for the model's context (HTTP {status}: {said})",
                attempts=1,
                kind=FailureKind.answer_too_long,
                hint="shorten it (--max-answer-chars refuses such answers unsent), or use a longer-context model",
            )
        if status == 429 and _NO_QUOTA.search(message):
            return BackendError(
                f"{server}: no quota left (HTTP 429: {said})", status=status, hint="check the plan and billing"
            )
        if status == 429 and retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return BackendError(
                f"{server} asks for {_duration(retry_after)} before the next request (HTTP 429: {said}); grader "
                f"waits at most {MAX_RETRY_AFTER:.0f} s",
                status=status,
                hint="run it again later (grader batch --resume goes on from the rows written)",
            )
        if status in (408, 409, 429) or status >= 500:
            return TransientError(f"HTTP {status}: {said}", retry_after=retry_after, status=status)
        return BackendError(f"{server} rejected the request (HTTP {status}): {said}", status=status)

    def not_a_completion(
        self, exc: ValidationError, *, attempts: int = 1, hint: str | None = None
    ) -> GradingFailedError:
        """The error for a server answer that does not parse as a reply (`invalid_response`)."""
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "the body"
        return GradingFailedError(
            f"{self.base_url} answered with something that is not a chat completion ({where}: {problem['msg']})",
            attempts=attempts,
            kind=FailureKind.invalid_response,
            hint=hint,
        )

    def system_message(self, schema: dict[str, object] | None, template: str = "grade_system.jinja") -> Message:
        """The instructions; `schema` is spelled out for servers without structured output (the prompts
        render it once per template and schema)."""
        spelled = json.dumps(schema, ensure_ascii=False) if schema is not None else None
        return {"role": "system", "content": self.prompts.render(template, answer_tag=ANSWER_TAG, schema=spelled)}

    def conversation(self, request: GradeRequest) -> Conversation:
        """The prompt for one answer in this backend's mode."""
        if self.mode == "checklist":
            return self._checklist_conversation(request)
        if self.mode == "tier":
            return self._tier_conversation(request)
        return self.build_conversation(request)

    def checker(self, request: GradeRequest) -> Callable[[str], Check]:
        """How a reply to `conversation(request)` is checked."""
        q, answer = request.question, request.answer
        if self.mode == "checklist":
            return lambda text: check_checklist(text, q, answer, prose=self.prose, tier=self.ask_tier)
        if self.mode == "tier":
            return _check_tier
        return lambda text: check_reply(text, q, answer)

    def finish(self, request: GradeRequest, answered: Answered) -> Grade:
        """The Grade from a reply that passed (or is acceptable to) `checker(request)`."""
        check, logprobs = answered.check, answered.completion.logprobs
        common = {"backend": self.name, "model": self.model, "usage": answered.usage, "attempts": answered.attempts}
        if isinstance(check, ChecklistCheck):
            read_probabilities(check.verdicts, logprobs)
            read = [v.probability is not None for v in check.verdicts]
            return checklist_grade(
                request.question,
                check.verdicts,
                self.rule,
                confidence_source="logprobs" if read and all(read) else None,
                model_tier=check.model_tier,
                prose=check.prose if self.prose else None,
                **common,  # type: ignore[arg-type]
            )
        if isinstance(check, _TierCheck):
            assert check.tier is not None
            q = request.question
            return Grade(
                question_id=q.id,
                tier=check.tier,
                justification=f"The model judged the answer {check.tier.value} against the reference answers "
                "(tier-only judge: no per-point verdicts).",
                confidence=(conf := tier_confidence(logprobs, check.tier.value)),
                confidence_source="logprobs" if conf is not None else None,
                rubric_version=q.fingerprint(),
                **common,  # type: ignore[arg-type]
            )
        assert isinstance(check, ReplyCheck) and check.reply is not None
        confidence = tier_confidence(logprobs, check.reply.tier.value)
        return grade_from_reply(
            check,
            request.question,
            confidence=confidence,
            confidence_source="logprobs",
            **common,  # type: ignore[arg-type]
        )

    def build_conversation(self, request: GradeRequest) -> Conversation:
        """The holistic prompt."""
        q = request.question
        user = self.prompts.render_answer(
            "grade_user.jinja",
            fence_answer(request.answer),
            question=q,
            exemplars=request.reference_answers,
            reviewed=shown_reviews(request),
            answer_tag=ANSWER_TAG,
        )
        return Conversation(
            messages=[self.system_message(None), {"role": "user", "content": user}],
            schema=reply_schema(q.point_ids, q.flag_ids),
        )

    def _checklist_conversation(self, request: GradeRequest) -> Conversation:
        q = request.question
        items = checklist_items(q)
        keys = ", ".join(i.key for i in items)
        system = self.prompts.render(
            "checklist_system.jinja", answer_tag=ANSWER_TAG, prose=self.prose, tier=self.ask_tier, keys=keys
        )
        user = self.prompts.render_answer(
            "checklist_user.jinja",
            fence_answer(request.answer),
            question=q,
            exemplars=request.reference_answers,
            items=items,
            keys=keys,
            reviewed=shown_reviews(request, items),
            answer_tag=ANSWER_TAG,
        )
        message = {"role": "system", "content": system}
        return Conversation(
            messages=[message, {"role": "user", "content": user}],
            schema=checklist_schema(q, prose=self.prose, tier=self.ask_tier),
            name="checklist_reply",
            plain_system=message,
        )

    def _tier_conversation(self, request: GradeRequest) -> Conversation:
        system = {"role": "system", "content": self.prompts.render("judge_system.jinja", answer_tag=ANSWER_TAG)}
        user = self.prompts.render_answer(
            "judge_user.jinja",
            fence_answer(request.answer),
            question=request.question,
            exemplars=request.reference_answers,
            reviewed=shown_reviews(request),
            answer_tag=ANSWER_TAG,
        )
        return Conversation(
            messages=[system, {"role": "user", "content": user}],
            schema=TIER_SCHEMA,
            name="tier_reply",
            plain_system=system,
        )

    async def ask(self, conversation: Conversation, request: GradeRequest, check: Callable[[str], Check]) -> Answered:
        """Ask until a reply passes `check`, re-asking with the problems; raise when attempts run out
        unless the last reply is `acceptable`. Within the policy's deadline, unless a grade already set one."""
        with within(self.policy.deadline):
            return await self._ask(conversation, request, check)

    async def _ask(self, conversation: Conversation, request: GradeRequest, check: Callable[[str], Check]) -> Answered:
        usage, attempts = Usage(), 0
        last: tuple[Completion, Check] | None = None

        async def attempt_once() -> None:
            nonlocal usage, attempts, last
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

        try:
            try:  # most replies pass at once: the re-ask loop is only built when one does not
                await attempt_once()
            except InvalidReply:
                if not self.policy.reasks:
                    raise
                async for attempt in reasks(self.policy, made=1):
                    with attempt:
                        await attempt_once()
        except InvalidReply:
            pass  # the last reply may still be acceptable
        except GradingFailedError as exc:  # transport gave up: count what came before
            exc.attempts += attempts
            exc.usage = usage + (exc.usage or Usage())
            raise
        assert last is not None
        return _accept(last[0], last[1], usage=usage, attempts=attempts)

    async def grade(self, request: GradeRequest) -> Grade:
        with within(self.policy.deadline):  # one deadline for all of a grade's calls (per-item: one per point)
            if self.per_item:
                return await self._grade_per_item(request)
            answered = await self.ask(self.conversation(request), request, self.checker(request))
            return self.finish(request, answered)

    def grade_completion(
        self, request: GradeRequest, completion: Completion, *, usage: Usage | None = None, attempts: int = 1
    ) -> Grade:
        """The Grade from one reply to `conversation(request)` that cannot be re-asked (a Batch API result):
        checked and built as `grade` does; a reply neither ok nor acceptable is an `invalid_output` failure."""
        check = self.checker(request)(completion.text)
        return self.finish(request, _accept(completion, check, usage=usage or completion.usage, attempts=attempts))

    async def _grade_per_item(self, request: GradeRequest) -> Grade:
        """Checklist mode, one call per item, in rubric order: the prompt is the same up to the item's
        question, so a server's prefix cache reuses the rubric and the answer for every item after the
        first, and the model judges one criterion at a time (what small models do best)."""
        verdicts, usage, attempts = await self.item_verdicts(request)
        read = [v.probability is not None for v in verdicts]
        return checklist_grade(
            request.question,
            verdicts,
            self.rule,
            backend=self.name,
            model=self.model,
            usage=usage,
            attempts=attempts,
            confidence_source="logprobs" if read and all(read) else None,
        )

    async def item_verdicts(self, request: GradeRequest) -> tuple[list[Verdict], Usage, int]:
        """Every checklist item's verdict, one call each; with its probability where logprobs came."""
        items = checklist_items(request.question)
        verdicts, usage, attempts = [], Usage(), 0
        for n, item in enumerate(items, 1):
            checker = functools.partial(check_item, item=item, answer=request.answer)
            try:
                answered = await self.ask(self._item_conversation(request, items, item), request, checker)
            except GradingFailedError as exc:  # the items before were paid for too: count them
                exc.message = f"item {n} of {len(items)} ({item.id}): {exc.message}"
                exc.attempts += attempts
                exc.usage = usage + (exc.usage or Usage())
                raise
            check = answered.check
            assert isinstance(check, ChecklistCheck)
            verdict = check.verdicts[0]
            read_item_probability(verdict, answered.completion.logprobs)
            verdicts.append(verdict)
            usage, attempts = usage + answered.usage, attempts + answered.attempts
        return verdicts, usage, attempts

    def _item_conversation(self, request: GradeRequest, items: list[Item], item: Item) -> Conversation:
        system = {"role": "system", "content": self.prompts.render("item_system.jinja", answer_tag=ANSWER_TAG)}
        user = self.prompts.render_answer(
            "item_user.jinja",
            fence_answer(request.answer),
            question=request.question,
            exemplars=request.reference_answers,
            items=items,
            item=item,
            reviewed=shown_reviews(request, items),
            answer_tag=ANSWER_TAG,
        )
        return Conversation(
            messages=[system, {"role": "user", "content": user}],
            schema=item_schema(),
            name="item_verdict",
            plain_system=system,
        )

    def combine_samples(self, question: Question, results: list[Grade | BaseException]) -> Grade:
        """Checklist mode: each verdict's probability is the share of samples saying yes (the servers that
        give no logprobs give hard verdicts), and the rule decides the tier from those; other modes take
        the majority tier."""
        if self.mode != "checklist":
            return super().combine_samples(question, results)
        from grader.grading.review import sampled

        _, usage, attempts = sampled(results)  # a failed sample's tokens and calls count too
        grades = [r for r in results if isinstance(r, Grade) and r.point_scores]
        if not grades:
            return super().combine_samples(question, results)
        verdicts = []
        for item in checklist_items(question):
            share = sum(g.point_scores.get(item.id, 0.0) >= 0.5 for g in grades) / len(grades)
            quotes = [c.evidence for g in grades for c in g.covered_points if c.id == item.id and c.evidence]
            verdicts.append(Verdict(item, share >= 0.5, share, quotes[0] if quotes else None, bool(quotes)))
        failed = len(results) - len(grades)
        combined = checklist_grade(
            question,
            verdicts,
            self.rule,
            backend=self.name,
            model=self.model,
            usage=usage,
            attempts=attempts,
            confidence_source="samples",
        )
        tally = ", ".join(f"{t.value} {n}" for t in Tier if (n := sum(g.tier is t for g in grades)))
        note = f"{len(results)} samples: {tally}" + (f", failed {failed}" if failed else "")
        return combined.model_copy(update={"notes": [*combined.notes, note]})


def _accept(completion: Completion, check: Check, *, usage: Usage, attempts: int) -> Answered:
    """The reply a grade is built from, or an `invalid_output` GradingFailedError when it is neither ok nor
    acceptable (the direct path's last re-ask and the Batch API's only reply alike)."""
    if not (check.ok or check.acceptable):
        raise GradingFailedError(
            f"no valid reply after {counted(attempts, 'request')}: {check.problem}",
            attempts=attempts,
            usage=usage,
            last_output=completion.text,
        )
    return Answered(completion=completion, check=check, usage=usage, attempts=attempts)


TIER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"tier": {"type": "string", "enum": [t.value for t in Tier]}},
    "required": ["tier"],
    "additionalProperties": False,
}


@dataclass
class _TierCheck(ErrorListCheck):
    tier: Tier | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tier is not None


def _check_tier(text: str) -> _TierCheck:
    def one(data: object) -> _TierCheck:
        value = data.get("tier") if isinstance(data, dict) else None
        try:
            return _TierCheck(Tier(str(value)))
        except ValueError:
            return _TierCheck(errors=['give {"tier": "great" | "mediocre" | "poor"}'])

    return last_valid(text, one)
