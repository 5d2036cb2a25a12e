"""Benchmark batch grading through the real CLI against a loopback OpenAI-compatible server.

    python benchmarks/bench_batch.py [--answers 2000] [--latency 0.1] [--concurrency 64] [--repeat 3]

Prints, measured in the same run (medians of --repeat runs):
- wall time of `grader batch` against the concurrency-bound ideal (answers x latency / concurrency), for
  the default worker processes and for --workers 1 (the baseline), both whole (process start-up
  included) and for grading alone (the wall time of the same command on an empty file subtracted);
- the client's CPU time per grade (all its processes, HTTP client included, start-up subtracted), and
  our own code's CPU per grade outside any HTTP call (prompt, validation, cache, output), measured
  in-process with the scripted fake model;
- peak memory of the CLI (one process) for N answers and for N/4 answers (streaming keeps it flat);
- the model calls a rerun of the unchanged file makes (the cache makes it 0);
- recovery after a burst of 429s: how long the adaptive limit takes to return to the ceiling, old
  algorithm vs new, in-process on a simulated clock (`--only recovery` runs just this, in under a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.backends.chat import Completion  # noqa: E402
from grader.backends.fake import FakeBackend  # noqa: E402
from grader.backends.retry import TransientError  # noqa: E402
from grader.batch.files import Columns, Writer, read_rows  # noqa: E402
from grader.batch.runner import BatchStats, run_batch  # noqa: E402
from grader.batch.workers import auto_workers  # noqa: E402
from grader.grading.contract import Usage  # noqa: E402
from grader.grading.engine import Engine  # noqa: E402
from grader.grading.limit import AdaptiveLimit  # noqa: E402
from grader.grading.rows import column_names  # noqa: E402
from grader.rubric import load_rubric  # noqa: E402
from tests.support.loopback import LoopbackLLM  # noqa: E402


def make_input(path: Path, n: int) -> None:
    rubric = load_rubric()
    with path.open("w") as handle:
        for i in range(n):
            q = rubric.questions[i % len(rubric.questions)]
            text = list(q.references.items())[i % 3][1]
            handle.write(json.dumps({"id": f"a{i}", "question": q.number, "answer": f"{text} (variant {i})"}) + "\n")


def run_cli(
    source: Path, out: Path, env: dict[str, str], concurrency: int, *extra: str, peak_memory: bool = False
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the process and its workers) and, with `peak_memory`, peak RSS (KiB) of
    one `grader batch`.

    The peak is the process's own high-water mark (VmHWM), polled until it exits: `ru_maxrss` would count
    the pages of this (larger) process that it was forked from before exec. Timed runs do not poll: the
    polling thread would compete for the GIL with the loopback server's thread."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grader",
            "batch",
            str(source),
            "-o",
            str(out),
            "--force",
            "-c",
            str(concurrency),
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0
    status_file = Path(f"/proc/{proc.pid}/status")
    while True:
        # rusage includes the workers it waited for
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG if peak_memory else 0)
        if pid:
            break
        try:
            hwm = next(line for line in status_file.read_text().splitlines() if line.startswith("VmHWM:"))
            peak = max(peak, int(hwm.split()[1]))
        except (OSError, StopIteration):
            pass
        time.sleep(0.01)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"grader batch failed: {err.strip()}")
    return wall, rusage.ru_utime + rusage.ru_stime, peak


def median_run(
    source: Path, out: Path, env: dict[str, str], concurrency: int, repeat: int, *extra: str
) -> tuple[float, float, int]:
    """The run with the median wall time of `repeat` runs, each with a fresh cache (every answer asked)."""
    runs = []
    for _ in range(repeat):
        fresh = {**env, "GRADER_CACHE_DIR": tempfile.mkdtemp(prefix="bench-cache-")}
        runs.append(run_cli(source, out, fresh, concurrency, *extra))
    return sorted(runs)[len(runs) // 2]


def our_cpu_per_grade(n: int, tmp: Path) -> float:
    """CPU per grade of grader's own pipeline with no HTTP at all (the scripted fake model)."""
    rubric = load_rubric()
    source = tmp / "inproc.jsonl"
    make_input(source, n)

    def respond(_conversation, request):  # noqa: ANN001, ANN202
        ids = request.question.point_ids
        quote = " ".join(request.answer.split()[:5])
        reply = {
            "points": {p: {"evidence": quote if i == 0 else "", "covered": i == 0} for i, p in enumerate(ids)},
            "red_flags": [],
            "justification": "First point only.",
            "tier": "mediocre",
        }
        # A ready Completion: the fake's own token counting over the prompt is the model's work, not ours.
        return Completion(text=json.dumps(reply), usage=Usage(prompt_tokens=1000, completion_tokens=100))

    backend = FakeBackend(responder=respond)
    rows = [r for r in read_rows(source, Columns()) if not isinstance(r, Exception)]
    writer = Writer(tmp / "inproc-out.jsonl", column_names(list(rows[0].data)), append=False)
    start = time.process_time()
    engine = Engine(backend, rubric=rubric, concurrency=64, stats=BatchStats())
    asyncio.run(run_batch(rows, engine=engine, writer=writer))
    cpu = time.process_time() - start
    writer.close()
    return cpu / n


def client_alone(base_url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds per request of the HTTP path alone, in this process: the same backend posting the
    same prompt `n` times at `concurrency`, with no prompt rendering, validation, cache or output per grade
    (the ceiling grader's own work sits on top of)."""
    from grader.backends.openai import OpenAIBackend, ServerMemory
    from grader.grading.contract import GradeRequest

    question = load_rubric().questions[0]
    backend = OpenAIBackend(
        base_url=base_url,
        api_key="sk-bench",
        model="gpt-4.1-mini",
        memory=ServerMemory(Path(tempfile.mkdtemp()) / "servers.json"),
    )
    request = GradeRequest(question, question.references.great)
    conversation = backend.build_conversation(request)

    async def run() -> float:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await backend.complete(conversation, request)

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - start
        await backend.aclose()
        return wall

    cpu = time.process_time()
    wall = asyncio.run(run())
    return wall, (time.process_time() - cpu) / n


def client_alone_processes(base_url: str, n: int, concurrency: int, processes: int) -> tuple[float, float]:
    """`client_alone` in `processes` processes at once, sharing the answers and the concurrency like the
    CLI's workers (this process hosts the loopback server, and its GIL). Returns the slowest one's wall
    time, and the mean CPU per request."""
    share, each = -(-n // processes), -(-concurrency // processes)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--client-alone", base_url, "--answers", str(share), "--concurrency", str(each)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = [json.loads(p.communicate()[0]) for p in procs]
    return max(r[0] for r in results), sum(r[1] for r in results) / processes


class OldAdaptiveLimit:
    """The limit before issue 13, kept as the recovery baseline: halved on every 429, one more after a full
    window of successes, floor 1."""

    def __init__(self, maximum: int) -> None:
        self.in_flight = 0
        self._wins = 0
        self._changed = asyncio.Condition()
        self.maximum = self.limit = self.lowest = max(1, maximum)

    def on_transient(self, exc: TransientError) -> None:
        if exc.status == 429:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._wins = 0

    async def __aenter__(self) -> OldAdaptiveLimit:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        async with self._changed:
            self.in_flight -= 1
            if exc_type is None:
                self._wins += 1
                if self._wins >= self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._wins = 0
            self._changed.notify_all()


class GaveUp(Exception):
    """A simulated request rate limited on every attempt."""


async def simulate_limit(
    limit: AdaptiveLimit | OldAdaptiveLimit,
    rate_limited: Callable[[int, int], bool],
    *,
    rows: int | None = None,
    until: Callable[[int, int], bool] | None = None,
    attempts: int = 5,
) -> list[tuple[int, int]]:
    """Drive `limit` like a batch run against a simulated server, on a simulated clock: `limit.maximum`
    workers, each request retried at once inside its slot on a 429 (the retry layer with Retry-After 0); the
    server answers every request it holds at the end of a round-trip, a 429 when `rate_limited(round_trip,
    number)` (retries numbered too). Runs `rows` rows, or until `until(round_trip, limit)`; returns the limit
    and the requests sent so far after each round-trip."""
    loop = asyncio.get_running_loop()
    at_server: list[tuple[asyncio.Future[bool], int]] = []
    history: list[tuple[int, int]] = []
    sent = queued = started = 0
    stop = False

    async def send() -> bool:
        nonlocal sent
        answer: asyncio.Future[bool] = loop.create_future()
        at_server.append((answer, sent))
        sent += 1
        return await answer

    async def worker() -> None:
        nonlocal queued, started
        while not stop and (rows is None or started < rows):
            started += 1
            queued += 1
            try:
                async with limit:
                    queued -= 1
                    for _ in range(attempts):
                        if not await send():
                            break
                        limit.on_transient(TransientError("rate limited", status=429, retry_after=0))
                    else:
                        raise GaveUp
            except GaveUp:
                pass

    async def settle() -> None:
        """Run the tasks until every slot holder waits on the server and nobody queued could be let in."""
        for _ in range(10_000):
            await asyncio.sleep(0)  # one turn of the loop, not a wait
            if limit.in_flight == len(at_server) and (queued == 0 or limit.in_flight >= limit.limit):
                return
        raise RuntimeError("the simulation is stuck")

    tasks = [asyncio.create_task(worker()) for _ in range(limit.maximum)]
    await settle()
    while at_server:
        round_trip = len(history)
        answered, at_server[:] = list(at_server), []
        for answer, number in answered:
            answer.set_result(rate_limited(round_trip, number))
        await settle()
        history.append((limit.limit, sent))
        stop = stop or (until is not None and until(round_trip, limit.limit))
    await asyncio.gather(*tasks)
    return history


def recovery_after_burst(limit: AdaptiveLimit | OldAdaptiveLimit, steady: int = 4) -> tuple[int, int]:
    """Round-trips and requests answered from a round-trip of 429s (every request in flight at the ceiling,
    after `steady` round-trips without) until the limit is back at the ceiling."""
    ceiling = limit.maximum
    history = asyncio.run(
        simulate_limit(limit, lambda r, _: r == steady, until=lambda r, now: r > steady and now >= ceiling)
    )
    back = next(r for r in range(steady + 1, len(history)) if history[r][0] >= ceiling)
    return back - steady, history[back - 1][1] - history[steady - 1][1]


def random_faults(limit: AdaptiveLimit | OldAdaptiveLimit, rows: int, rate: float) -> tuple[int, float, int]:
    """The lowest limit, the mean limit over the round-trips, and the round-trips `rows` rows take, with
    independent 429s at `rate` (the same ones for every limit)."""
    rng = random.Random(13)
    drawn: dict[int, bool] = {}
    history = asyncio.run(simulate_limit(limit, lambda _, n: drawn.setdefault(n, rng.random() < rate), rows=rows))
    return limit.lowest, sum(h[0] for h in history) / len(history), len(history)


def recovery_lines(ceilings: list[int], latency: float) -> list[str]:
    """The recovery section: old and new limit, measured in the same run on the same simulated server."""
    start = time.perf_counter()
    lines = [
        f"recovery after a burst of 429s (simulated server and clock, one round-trip = --latency "
        f"{latency * 1000:.0f} ms; one round-trip of 429s at the ceiling, then none; old = halve per 429, "
        f"+1 per window, floor 1; new = grader.grading.limit):\n"
    ]
    for ceiling in ceilings:
        old, new = OldAdaptiveLimit(ceiling), AdaptiveLimit(ceiling)
        (old_trips, old_requests), (new_trips, new_requests) = recovery_after_burst(old), recovery_after_burst(new)
        lines.append(
            f"  ceiling {ceiling}: old falls to {old.lowest}, back after {old_trips} round-trips = "
            f"{old_trips * latency:.2f} s, {old_requests} requests; new falls to {new.lowest} (floor "
            f"{new.floor}), back after {new_trips} round-trip(s) = {new_trips * latency:.2f} s, {new_requests} "
            f"requests; {old_trips / new_trips:.0f}x faster\n"
        )
    for ceiling, rows, rate in ((8, 300, 0.20), (256, 2000, 0.05)):
        old_low, old_mean, old_trips = random_faults(OldAdaptiveLimit(ceiling), rows, rate)
        new_low, new_mean, new_trips = random_faults(AdaptiveLimit(ceiling), rows, rate)
        lines.append(
            f"  {rate:.0%} random 429s, {rows} rows, ceiling {ceiling}: lowest old {old_low} / new {new_low}, "
            f"mean limit old {old_mean:.1f} / new {new_mean:.1f}, {old_trips} / {new_trips} round-trips = "
            f"{old_trips * latency:.1f} / {new_trips * latency:.1f} s ({old_trips / new_trips:.1f}x faster)\n"
        )
    lines.append(f"  (section measured in {time.perf_counter() - start:.1f} s)\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-alone", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cpu-bound-concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["recovery"], help="run one section only (recovery: in-process, seconds)")
    args = parser.parse_args()
    if args.client_alone:
        sys.stdout.write(json.dumps(client_alone(args.client_alone, args.answers, args.concurrency)) + "\n")
        return
    recovery_ceilings = sorted({args.concurrency, args.cpu_bound_concurrency})
    if args.only == "recovery":
        sys.stdout.writelines(recovery_lines(recovery_ceilings, args.latency))
        return
    n, small, c, big = args.answers, max(1, args.answers // 4), args.concurrency, args.cpu_bound_concurrency
    w = sys.stdout.write
    one = ("--workers", "1")

    with tempfile.TemporaryDirectory() as tmpdir, LoopbackLLM(latency=args.latency, record=False) as server:
        tmp = Path(tmpdir)
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-bench",
            "GRADER_MODEL": "gpt-4.1-mini",
            "GRADER_CACHE_DIR": str(tmp / "cache"),
        }
        empty, source, source_small = tmp / "empty.jsonl", tmp / "in.jsonl", tmp / "small.jsonl"
        empty.write_text("")
        make_input(source, n)
        make_input(source_small, small)

        def measure(concurrency: int, *extra: str) -> dict[str, float]:
            up_wall, up_cpu, _ = median_run(empty, tmp / "e.jsonl", env, concurrency, args.repeat, *extra)
            calls = server.calls
            wall, cpu, _ = median_run(source, tmp / "out.jsonl", env, concurrency, args.repeat, *extra)
            rows = len((tmp / "out.jsonl").read_text().splitlines())
            return {
                "wall": wall,
                "grading": wall - up_wall,
                "startup": up_wall,
                "cpu": (cpu - up_cpu) / n,
                "calls": (server.calls - calls) / args.repeat,
                "rows": rows,
            }

        results = {
            ("aim", "default"): measure(c),
            ("aim", "one"): measure(c, *one),
            ("cpu", "default"): measure(big),
            ("cpu", "one"): measure(big, *one),
        }
        _, _, rss = run_cli(
            source, tmp / "m.jsonl", {**env, "GRADER_CACHE_DIR": str(tmp / "m1")}, c, *one, peak_memory=True
        )
        _, _, rss_small = run_cli(
            source_small, tmp / "m.jsonl", {**env, "GRADER_CACHE_DIR": str(tmp / "m2")}, c, *one, peak_memory=True
        )
        alone = {
            count: sorted(client_alone_processes(server.base_url, n, c, count) for _ in range(args.repeat))[
                args.repeat // 2
            ]
            for count in sorted({1, auto_workers(c)})
        }
        warm = {**env, "GRADER_CACHE_DIR": str(tmp / "cache-warm")}
        run_cli(source, tmp / "warm.jsonl", warm, c)
        calls1 = server.calls
        rerun_wall, _, _ = run_cli(source, tmp / "rerun.jsonl", warm, c)
        rerun_calls = server.calls - calls1

    inproc = our_cpu_per_grade(min(n, 1000), Path(tempfile.mkdtemp()))
    w(
        f"{n} answers, server latency {args.latency * 1000:.0f} ms, {os.cpu_count()} CPUs shared with the server, "
        f"median of {args.repeat} runs each\n"
    )
    for scenario, concurrency in (("aim", c), ("cpu", big)):
        ideal = n * args.latency / concurrency
        title = "the aim" if scenario == "aim" else "client-bound"
        w(f"concurrency {concurrency} ({title}): ideal (answers x latency / concurrency) {ideal:.2f} s\n")
        for label, key in (
            (f"{auto_workers(concurrency)} worker process(es), the default", "default"),
            ("--workers 1, the baseline", "one"),
        ):
            r = results[(scenario, key)]
            w(
                f"  {label}: grading {r['grading']:.2f} s = {ideal / r['grading']:.0%} of ideal "
                f"(start-up {r['startup']:.2f} s subtracted); whole command {r['wall']:.2f} s = "
                f"{ideal / r['wall']:.0%}; client CPU {r['cpu'] * 1000:.2f} ms/grade; "
                f"{r['calls']:.0f} model calls for {r['rows']} rows\n"
            )
        default, base = results[(scenario, "default")], results[(scenario, "one")]
        w(f"  default vs baseline: {base['grading'] / default['grading']:.2f}x faster grading\n")
        if scenario == "aim":
            for count, (alone_wall, alone_cpu) in alone.items():
                w(
                    f"  the HTTP path alone (same backend and prompt, no grading work), {count} process(es): "
                    f"{alone_wall:.2f} s = {ideal / alone_wall:.0%} of ideal, {alone_cpu * 1000:.2f} ms CPU/request\n"
                )
            for label, key, count in (
                ("default", "default", auto_workers(concurrency)),
                ("--workers 1", "one", 1),
            ):
                alone_wall = alone[count][0]
                w(
                    f"  grading throughput against the HTTP path alone in {count} process(es), {label}: "
                    f"{alone_wall / results[(scenario, key)]['grading']:.0%}\n"
                )
    w(f"our CPU per grade: {inproc * 1000:.2f} ms (grader's own code, no HTTP: scripted fake model)\n")
    w(f"peak memory: {rss / 1024:.1f} MiB for {n} answers, {rss_small / 1024:.1f} MiB for {small} (one process)\n")
    w(f"rerun of an unchanged file: {rerun_calls} model calls, {rerun_wall:.2f} s\n")
    sys.stdout.writelines(recovery_lines(recovery_ceilings, args.latency))


if __name__ == "__main__":
    main()
