"""Benchmark batch grading through the real CLI against a loopback OpenAI-compatible server.

    python benchmarks/bench_batch.py [--answers 2000] [--latency 0.1] [--concurrency 64]

Prints, measured in the same run:
- wall time of `grader batch` against the concurrency-bound ideal (answers x latency / concurrency);
- the client's CPU time per grade (the whole process, HTTP client included, start-up subtracted), and
  our own code's CPU per grade outside any HTTP call (prompt, validation, cache, output), measured
  in-process with the scripted fake model;
- peak memory of the CLI for N answers and for N/4 answers (streaming keeps it flat);
- the model calls a rerun of the unchanged file makes (the cache makes it 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.backends.fake import FakeBackend  # noqa: E402
from grader.batch.files import Columns, Writer, output_header, read_rows  # noqa: E402
from grader.batch.runner import AdaptiveLimit, run_batch  # noqa: E402
from grader.rubric import load_rubric  # noqa: E402
from tests.support.loopback import LoopbackLLM  # noqa: E402


def make_input(path: Path, n: int) -> None:
    rubric = load_rubric()
    with path.open("w") as handle:
        for i in range(n):
            q = rubric.questions[i % len(rubric.questions)]
            text = list(q.references.items())[i % 3][1]
            handle.write(json.dumps({"id": f"a{i}", "question": q.number, "answer": f"{text} (variant {i})"}) + "\n")


def run_cli(source: Path, out: Path, env: dict[str, str], concurrency: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) of one `grader batch` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "grader", "batch", str(source), "-o", str(out), "--force",
                             "-c", str(concurrency)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, rusage = os.wait4(proc.pid, 0)[1:]
    wall = time.perf_counter() - start
    proc.stdout.close()
    proc.stderr.close()
    del before
    return wall, rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss


def our_cpu_per_grade(n: int, tmp: Path) -> float:
    """CPU per grade of grader's own pipeline with no HTTP at all (the scripted fake model)."""
    rubric = load_rubric()
    source = tmp / "inproc.jsonl"
    make_input(source, n)

    def respond(_conversation, request):  # noqa: ANN001, ANN202
        ids = request.question.point_ids
        quote = " ".join(request.answer.split()[:5])
        return {"points": {p: {"evidence": quote if i == 0 else "", "covered": i == 0} for i, p in enumerate(ids)},
                "red_flags": [], "justification": "First point only.", "tier": "mediocre"}

    backend = FakeBackend(responder=respond)
    rows = [r for r in read_rows(source, Columns()) if not isinstance(r, Exception)]
    writer = Writer(tmp / "inproc-out.jsonl", output_header(list(rows[0].data)), append=False)
    start = time.process_time()
    asyncio.run(run_batch(rows, backend=backend, rubric=rubric, writer=writer, limit=AdaptiveLimit(64)))
    cpu = time.process_time() - start
    writer.close()
    return cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    n, small = args.answers, max(1, args.answers // 4)
    w = sys.stdout.write

    with tempfile.TemporaryDirectory() as tmpdir, LoopbackLLM(latency=args.latency) as server:
        tmp = Path(tmpdir)
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
               "GRADER_MODEL": "gpt-4.1-mini", "GRADER_CACHE_DIR": str(tmp / "cache")}
        empty, source, source_small = tmp / "empty.jsonl", tmp / "in.jsonl", tmp / "small.jsonl"
        empty.write_text("")
        make_input(source, n)
        make_input(source_small, small)

        _, startup_cpu, _ = run_cli(empty, tmp / "e.jsonl", env, args.concurrency)
        calls0 = server.calls
        wall, cpu, rss = run_cli(source, tmp / "out.jsonl", env, args.concurrency)
        graded_calls = server.calls - calls0
        env_small = {**env, "GRADER_CACHE_DIR": str(tmp / "cache-small")}
        _, _, rss_small = run_cli(source_small, tmp / "small-out.jsonl", env_small, args.concurrency)
        calls1 = server.calls
        rerun_wall, _, _ = run_cli(source, tmp / "rerun.jsonl", env, args.concurrency)
        rerun_calls = server.calls - calls1
        lines = (tmp / "out.jsonl").read_text().splitlines()

    ideal = n * args.latency / args.concurrency
    inproc = our_cpu_per_grade(min(n, 1000), Path(tempfile.mkdtemp()))
    w(f"{n} answers, server latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}\n")
    w(f"  wall time:            {wall:6.2f} s   ideal {ideal:.2f} s   -> {ideal / wall:.0%} of ideal "
      f"(process start-up included)\n")
    w(f"  model calls:          {graded_calls} for {len(lines)} output rows\n")
    w(f"  client CPU per grade: {(cpu - startup_cpu) / n * 1000:6.2f} ms (whole process incl. HTTP client, "
      f"start-up {startup_cpu:.2f} s subtracted)\n")
    w(f"  our CPU per grade:    {inproc * 1000:6.2f} ms (grader's own code, no HTTP: scripted fake model)\n")
    w(f"  peak memory:          {rss / 1024:6.1f} MiB for {n} answers, {rss_small / 1024:.1f} MiB for {small}\n")
    w(f"  rerun:                {rerun_calls} model calls, {rerun_wall:.2f} s\n")


if __name__ == "__main__":
    main()
