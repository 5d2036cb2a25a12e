"""How many grades may be in flight at once: an AIMD limit that a run's 429s shrink and its successes grow.

Decrease: a 429 halves the limit, at most once per window. A 429 counts only if its request was let in
after the last cut: the requests already in flight then were sent under the old limit, so their 429s
say nothing about the new one. A burst of N 429s from concurrent requests halves the limit once, not N
times (which took 256 to 1).

Floor: `floor_for(ceiling)`, an eighth of the ceiling but at least 2 (the ceiling itself when that is
lower). Three halvings cut the load to an eighth, enough for a limit that is there to shed load, not to
find the server's exact rate: the retry layer already paces each rate-limited request (`Retry-After`,
backoff). A server that wants less than that needs a lower `--concurrency`, which the run's summary hints
at with the lowest limit reached. Never 1 unless the ceiling is 1: a lone request in flight turns a few
429s into a serial batch.

Increase: one more per success, up to the ceiling. A window of `limit` successes then doubles the limit,
so after a cut it is back at the ceiling within a round-trip or two (`ceiling - limit` successes), where
one more per window of successes took about ceiling² / 2 successes. With a halving per window and a
doubling per window of successes, the limit shrinks only while more than about half the requests are
rate limited (then down to the floor); occasional 429s (5 %, 20 %) leave it near the ceiling, and the
retry layer's waits absorb them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass

from grader.backends.retry import TransientError

#: The floor is the ceiling divided by this (three halvings) ...
FLOOR_DIVISOR = 8
#: ... but at least this many, unless the ceiling is lower.
MIN_FLOOR = 2


def floor_for(ceiling: int) -> int:
    """The lowest limit rate limits can push a limit of `ceiling` to (see the module docstring)."""
    return min(ceiling, max(MIN_FLOOR, ceiling // FLOOR_DIVISOR))


@dataclass(frozen=True)
class _Held:
    """A slot the current task holds: which limit, the window it was let in during, and the slot it holds
    of an outer limit, if any."""

    limit: AdaptiveLimit
    window: int
    outer: _Held | None


# The slot the running task holds, so `on_transient` (called by the retry layer inside `async with
# limit`) knows when the failed request was let in. Child tasks (samples gathered within one slot) see it.
_held: ContextVar[_Held | None] = ContextVar("adaptive_limit_held", default=None)


class AdaptiveLimit:
    """How many grades may be in flight: never above `maximum` (the user's --concurrency), never below
    `floor`; halved on a 429 once per window, one more per success. `lowest` is the lowest it reached.

    Used as `async with limit:` around one request, retries included; leaving without an exception counts
    as a success. Waiters are let in first come, first served."""

    def __init__(self, maximum: int) -> None:
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._window = 0  # bumped by every cut: requests let in before it cannot cut again
        self.resize(maximum)

    def resize(self, maximum: int) -> None:
        """Start over at a new ceiling (a backend's own default concurrency, once it is known)."""
        self.maximum = self.limit = self.lowest = max(1, maximum)
        self.floor = floor_for(self.maximum)
        self._wake()

    def on_transient(self, exc: TransientError) -> None:
        """Told by the retry layer about a transient failure; only a rate limit (429) shrinks the limit.

        Called outside any `async with` of this limit (the request is unknown), every 429 counts."""
        if exc.status != 429:
            return
        held = _held.get()
        while held is not None and held.limit is not self:
            held = held.outer
        if held is not None and held.window != self._window:
            return  # let in before the last cut: the cut already answered this load
        if self.limit > self.floor:
            self.limit = max(self.floor, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._window += 1

    async def __aenter__(self) -> AdaptiveLimit:
        if self._waiters or self.in_flight >= self.limit:
            slot = asyncio.get_running_loop().create_future()
            self._waiters.append(slot)
            self._wake()  # the queue may hold only cancelled waiters
            try:
                await slot
            except asyncio.CancelledError:
                if not slot.cancelled():  # let in just as it was cancelled: pass the slot on
                    self.in_flight -= 1
                    self._wake()
                raise
        else:
            self.in_flight += 1
        _held.set(_Held(self, self._window, _held.get()))
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        held = _held.get()
        _held.set(held.outer if held is not None and held.limit is self else held)
        self.in_flight -= 1
        if exc_type is None and self.limit < self.maximum:
            self.limit += 1
        self._wake()

    def _wake(self) -> None:
        """Let waiters in, oldest first, while there is room."""
        while self._waiters and self.in_flight < self.limit:
            slot = self._waiters.popleft()
            if not slot.done():  # not cancelled while it waited
                self.in_flight += 1
                slot.set_result(None)
