"""The adaptive concurrency limit, driven by simulated request streams: a server that answers in
round-trips with scripted 429s, workers that retry inside their slot like the retry layer. No clock: a
round-trip ends when every task is parked, so every run is deterministic."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from grader.backends.retry import TransientError
from grader.grading.limit import AdaptiveLimit, floor_for

RATE_LIMITED = TransientError("rate limited", status=429, retry_after=0)


class GaveUp(Exception):
    """A request rate limited on every attempt."""


@dataclass
class Run:
    """What a simulated run saw: the limit after each success and after each round-trip."""

    after_success: list[int] = field(default_factory=list)
    after_round: list[int] = field(default_factory=list)
    sent: int = 0
    failed: int = 0


async def simulate(
    limit: AdaptiveLimit,
    rows: int,
    rate_limited: Callable[[int], bool],
    *,
    attempts: int = 5,
    workers: int | None = None,
) -> Run:
    """Grade `rows` answers through `limit` with `workers` workers (the ceiling, like the engine). The
    server answers every request it holds at the end of a round-trip; request number n (retries numbered
    too) gets a 429 when `rate_limited(n)`, and is retried at once within its slot, up to `attempts`."""
    loop = asyncio.get_running_loop()
    run = Run()
    at_server: list[asyncio.Future[None]] = []
    queued = 0
    todo = iter(range(rows))

    async def send() -> bool:
        number = run.sent
        run.sent += 1
        answer = loop.create_future()
        at_server.append(answer)
        await answer
        return rate_limited(number)

    async def worker() -> None:
        nonlocal queued
        for _ in todo:
            queued += 1
            try:
                async with limit:
                    queued -= 1
                    for _ in range(attempts):
                        if not await send():
                            break
                        limit.on_transient(RATE_LIMITED)
                    else:
                        raise GaveUp
            except GaveUp:
                run.failed += 1
            else:
                run.after_success.append(limit.limit)

    async def settle() -> None:
        """Run the tasks until every slot holder waits on the server and nobody queued could be let in."""
        for _ in range(1000):
            await asyncio.sleep(0)  # one turn of the loop, not a wait
            if limit.in_flight == len(at_server) and (queued == 0 or limit.in_flight >= limit.limit):
                return
        raise AssertionError("the simulation is stuck: a waiter was never let in")

    tasks = [asyncio.create_task(worker()) for _ in range(workers or limit.maximum)]
    await settle()
    while at_server:
        answered, at_server[:] = list(at_server), []
        for answer in answered:
            answer.set_result(None)
        await settle()
        run.after_round.append(limit.limit)
    await asyncio.gather(*tasks)
    assert limit.in_flight == 0
    return run


def faults(rate: float, seed: int = 13) -> Callable[[int], bool]:
    """Independent 429s at `rate`, the same for every run with this seed."""
    rng = random.Random(seed)
    drawn: dict[int, bool] = {}
    return lambda n: drawn.setdefault(n, rng.random() < rate)


def burst(start: int, count: int) -> Callable[[int], bool]:
    return lambda n: start <= n < start + count


def simulated(ceiling: int, rows: int, rate_limited: Callable[[int], bool], **kw: int) -> tuple[AdaptiveLimit, Run]:
    limit = AdaptiveLimit(ceiling)
    return limit, asyncio.run(simulate(limit, rows, rate_limited, **kw))


@pytest.mark.parametrize(
    ("ceiling", "floor"),
    [(1, 1), (2, 2), (3, 2), (8, 2), (16, 2), (24, 3), (64, 8), (256, 32)],
    ids=lambda v: str(v),
)
def test_floor_is_an_eighth_of_the_ceiling_but_at_least_two(ceiling, floor):
    assert floor_for(ceiling) == floor
    assert AdaptiveLimit(ceiling).floor == floor


def test_a_burst_from_requests_in_flight_halves_once():
    # the first round-trip: all 16 in flight at once get a 429
    limit, run = simulated(16, 64, burst(0, 16))
    assert limit.lowest == 8
    assert run.after_round[0] == 8
    assert run.failed == 0


def test_a_burst_lasting_several_round_trips_halves_once_per_window():
    # 429s for three round-trips: every one from a request let in before the cut (the retries hold their
    # slots, so nobody new is let in), so nothing cuts again
    limit, run = simulated(16, 64, burst(0, 48))
    assert run.after_round[:3] == [8, 8, 8]
    assert limit.lowest == 8


def test_only_a_429_from_a_request_let_in_after_the_cut_halves_again():
    limit = AdaptiveLimit(16)
    seen: list[int] = []

    async def request(go: asyncio.Event) -> None:
        with contextlib.suppress(GaveUp):
            async with limit:
                await go.wait()
                limit.on_transient(RATE_LIMITED)
                seen.append(limit.limit)
                raise GaveUp  # not a success: the limit does not grow back in between

    async def scenario() -> None:
        first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
        before = [asyncio.create_task(request(first)), asyncio.create_task(request(second))]
        await turns()
        first.set()  # 16 -> 8
        await turns()
        second.set()  # in flight since before that cut: no change
        await turns()
        after = asyncio.create_task(request(third))
        await turns()
        third.set()  # let in after the cut: 8 -> 4
        await asyncio.gather(*before, after)

    asyncio.run(scenario())
    assert seen == [8, 8, 4] and limit.lowest == 4


@pytest.mark.parametrize("ceiling", [8, 16, 64, 256])
def test_recovery_after_a_burst_takes_ceiling_minus_the_cut_successes(ceiling):
    # steady at the ceiling for 4 round-trips, then a round-trip of 429s, then none
    start = 4 * ceiling
    limit, run = simulated(ceiling, 20 * ceiling, burst(start, ceiling))
    assert limit.lowest == ceiling // 2
    first = run.after_success.index(ceiling // 2 + 1)  # the first success after the cut
    back = run.after_success.index(ceiling, first)
    assert back - first + 1 == ceiling - ceiling // 2  # one more per success
    assert run.after_round[4:6] == [ceiling // 2, ceiling]  # the burst's round-trip, then back
    assert run.after_round[-1] == ceiling


def test_recovery_from_the_floor_takes_at_most_ceiling_successes():
    limit = AdaptiveLimit(64)
    for _ in range(10):
        limit.on_transient(RATE_LIMITED)  # outside any request: every 429 counts
    assert limit.limit == limit.lowest == limit.floor == 8
    run = asyncio.run(simulate(limit, 200, lambda n: False))
    assert run.after_success.index(64) + 1 == 64 - 8
    assert run.after_round[:3] == [16, 32, 64]  # doubles every round-trip


def test_20_percent_faults_over_300_rows_at_8_stay_above_1():
    limit, run = simulated(8, 300, faults(0.20))
    assert limit.lowest >= 2
    assert min(run.after_round) >= 2
    assert run.sent > 300 * 1.2  # the faults were there


def test_5_percent_faults_over_2000_rows_at_256_stay_high_and_end_near_the_ceiling():
    limit, run = simulated(256, 2000, faults(0.05))
    assert limit.lowest >= 64  # two halvings at most: "well above 4"
    assert run.after_round[-1] >= 192
    assert sum(run.after_success) / len(run.after_success) >= 192


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("ceiling", "rate"), [(1, 0.5), (2, 0.3), (8, 0.2), (64, 0.1), (256, 0.05), (64, 0.9)])
def test_the_limit_stays_between_the_floor_and_the_ceiling(ceiling, rate, seed):
    limit, run = simulated(ceiling, 4 * ceiling + 50, faults(rate, seed))
    seen = run.after_success + run.after_round
    assert all(limit.floor <= value <= ceiling for value in seen)
    assert limit.floor <= limit.lowest <= min(seen)


def test_sustained_rate_limiting_drives_it_to_the_floor():
    limit, run = simulated(64, 1000, faults(0.9))
    assert limit.lowest == limit.floor == 8
    assert run.after_round.count(8) > len(run.after_round) // 2


def test_only_rate_limits_shrink_it():
    limit = AdaptiveLimit(16)
    limit.on_transient(TransientError("server", status=500))
    limit.on_transient(TransientError("timed out"))
    assert limit.limit == limit.lowest == 16


def test_leaving_with_an_exception_is_not_a_success():
    limit = AdaptiveLimit(16)
    limit.on_transient(RATE_LIMITED)

    async def fail() -> None:
        with pytest.raises(GaveUp):
            async with limit:
                raise GaveUp

    asyncio.run(fail())
    assert limit.limit == 8 and limit.in_flight == 0


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)  # a turn of the loop, not a wait


class Holders:
    """Tasks that each take a slot and hold it until told to leave."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.entered: list[int] = []
        self.leave: dict[int, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, *ids: int) -> None:
        for i in ids:
            self.leave[i] = asyncio.Event()
            self.tasks.append(asyncio.create_task(self._hold(i)))

    async def _hold(self, i: int) -> None:
        async with self.limit:
            self.entered.append(i)
            await self.leave[i].wait()


def test_waiters_are_let_in_when_the_limit_rises():
    limit = AdaptiveLimit(4)

    async def scenario() -> None:
        holders = Holders(limit)
        holders.start(0, 1, 2, 3)
        await turns()
        limit.on_transient(RATE_LIMITED)  # 4 -> 2 with 4 in flight
        holders.start(4, 5, 6)
        await turns()
        assert holders.entered == [0, 1, 2, 3] and limit.in_flight == 4
        holders.leave[0].set()  # a success: 3 in flight, the limit 3: nobody fits
        await turns()
        assert (limit.limit, limit.in_flight, holders.entered) == (3, 3, [0, 1, 2, 3])
        holders.leave[1].set()  # 2 in flight, the limit 4: the rise lets in two, oldest first
        await turns()
        assert (limit.limit, limit.in_flight, holders.entered) == (4, 4, [0, 1, 2, 3, 4, 5])
        for event in holders.leave.values():
            event.set()
        await asyncio.gather(*holders.tasks)
        assert holders.entered == [0, 1, 2, 3, 4, 5, 6]

    asyncio.run(scenario())
    assert limit.in_flight == 0


def test_a_larger_ceiling_lets_waiters_in():
    limit = AdaptiveLimit(1)

    async def scenario() -> None:
        holders = Holders(limit)
        holders.start(0, 1, 2)
        await turns()
        assert holders.entered == [0]
        limit.resize(3)
        await turns()
        assert holders.entered == [0, 1, 2] and limit.in_flight == 3
        for event in holders.leave.values():
            event.set()
        await asyncio.gather(*holders.tasks)

    asyncio.run(scenario())


def test_a_waiter_cancelled_in_the_queue_gives_up_its_place():
    limit = AdaptiveLimit(1)

    async def scenario() -> None:
        holders = Holders(limit)
        holders.start(0, 1, 2)
        await turns()
        holders.tasks[1].cancel()
        await turns()
        holders.leave[0].set()
        await turns()
        assert holders.entered == [0, 2] and limit.in_flight == 1
        holders.leave[2].set()
        await asyncio.gather(holders.tasks[0], holders.tasks[2])

    asyncio.run(scenario())
    assert limit.in_flight == 0
