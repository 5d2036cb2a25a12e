"""The one retry layer, built on tenacity.

Two loops, both here: `transport()` retries a single request on transient failures (429 honouring
Retry-After, 5xx, timeouts, lost connections) with exponential backoff and jitter; `reasks()` re-asks the
model when its reply fails validation. `within()` puts both under one deadline: a grade's requests,
pauses and re-asks end by it, or the grade fails. Backends translate their SDK's exceptions into `TransientError`
so this module knows nothing about any one SDK. Tests replace `sleep` to run with zero waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

MAX_RETRY_AFTER = 120.0
#: A pause this long (seconds) is logged as it starts (`grader.retry`, shown by the command line).
LONG_WAIT = 10.0
log = logging.getLogger("grader.retry")


class TransientError(Exception):
    """A failure worth retrying after a pause: rate limit, server error, timeout, connection loss."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class InvalidReply(Exception):
    """The model answered, but the reply failed validation; carries the feedback for the re-ask."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # requests per model call, transport failures included
    reasks: int = 2  # extra model calls when a reply fails validation
    initial_wait: float = 0.5
    max_wait: float = 30.0
    deadline: float | None = None  # seconds a grade may take with the model, all requests, pauses and re-asks

    def __post_init__(self) -> None:
        if self.deadline is not None and not self.deadline > 0:  # NaN too
            raise ValueError(f"a deadline must be a number of seconds above 0, not {self.deadline}")


#: Told about every transient failure before the pause: the grading engine sets it to its concurrency
#: limit's `on_transient` for the requests it sends, so a run slows down on 429s.
transient_listener: ContextVar[Callable[[TransientError], None] | None] = ContextVar("transient_listener", default=None)


# Replaced in tests (zero waits, recorded); the real thing everywhere else.
sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
#: What deadlines are read against; tests move it on by the waits they skip.
clock: Callable[[], float] = time.monotonic

#: When (on `clock`) the grade being made must be done; None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("grade_deadline", default=None)


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Make what runs inside end within `seconds` (`time_left`); inside another `within`, the outer holds."""
    if seconds is None or _deadline.get() is not None:
        yield
        return
    token = _deadline.set(clock() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds until the deadline `within` set (negative once past); None when there is none."""
    at = _deadline.get()
    return None if at is None else at - clock()


class _PastDeadline(stop_base):
    """Stop rather than start a pause that would end at or after the deadline."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        left = time_left()
        return left is not None and retry_state.upcoming_sleep >= left


def sleep_for(seconds: float) -> Awaitable[None]:
    """Pause between polls; the same seam as retry waits, so tests run with zero waits."""
    return sleep(seconds)


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER)
        return backoff(state)

    return wait


def transport(policy: RetryPolicy) -> AsyncRetrying:
    def notify(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        listener = transient_listener.get()
        if listener is not None and isinstance(exc, TransientError):
            listener(exc)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if wait >= LONG_WAIT and isinstance(exc, TransientError):  # a long silence is said, not sat through
            asked = exc.retry_after
            said = ""
            if asked and asked > wait:
                said = f" (the server asked for {asked:.0f} s; at most {MAX_RETRY_AFTER:.0f} are waited)"
            log.warning(
                "%s; waiting %.0f s before request %d of %d%s",
                exc,
                wait,
                state.attempt_number + 1,
                policy.attempts,
                said,
            )

    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=_wait(policy),
        stop=stop_after_attempt(policy.attempts) | _PastDeadline(),
        sleep=sleep_for,
        before_sleep=notify,
        reraise=True,
    )


def reasks(policy: RetryPolicy, made: int = 0) -> AsyncRetrying:
    """Re-asks after an invalid reply, `made` model calls already made (1 + policy.reasks in all)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(InvalidReply),
        stop=stop_after_attempt(max(1, 1 + policy.reasks - made)),
        sleep=sleep_for,
        reraise=True,
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
