"""Benchmark the local backend: cold start, and batch throughput against the embedding model's own.

    python benchmarks/bench_local.py [--answers 500] [--cold-runs 4]

Prints, measured in the same run:
- cold start: wall time of `grader grade` from process start to the printed grade, first with an empty
  cache (the rubric is embedded), then the median of the later runs (its vectors read back);
- answers/s grading a batch of N answers through `LocalBackend.grade` (asyncio.gather, as a batch
  run does), with the rubric anchors already embedded;
- the embedding-bound limit: the model alone embedding exactly the texts that batch needs (every
  answer's spans, chunks and windows, and the whole answers, in the chunks grading embeds together), in
  answers/s; and the ratio of the two;
- a batch run's first output: N answers through the grading engine (what `grader batch` does), the time
  to the first outcome and to the last, with the small first embedding chunk and, as the baseline in
  the same run, with a full-size first chunk (the behaviour before it);
- repeated texts: one embedding chunk of the counterfactual suite (answers and their rewrites, which
  repeat most spans), embedded as grading does (each distinct text once) and, as the baseline in the
  same run, every text (`Embedder.embed_each`, the behaviour before).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import grader.backends.local.backend as local_backend
from grader.backends.local.backend import LocalBackend, _cut
from grader.backends.local.reading import read
from grader.eval.suites import load
from grader.grading.contract import GradeRequest
from grader.grading.engine import Engine, Job
from grader.rubric import load_rubric

COLD_ANSWER = "I check the logs and recent deploys, reproduce the bug in staging, and fix the root cause."


def make_answers(n: int, seed: int = 7) -> list[GradeRequest]:
    """N realistic answers: sentence subsets of the seed references, shuffled across questions."""
    rng = random.Random(seed)
    rubric = load_rubric()
    out = []
    for _ in range(n):
        q = rng.choice(rubric.questions)
        text = rng.choice([t for _, t in q.references.items()])
        sentences = [s for s in text.split(". ") if s]
        keep = rng.randint(max(1, len(sentences) // 2), len(sentences))
        out.append(GradeRequest(q, ". ".join(sentences[:keep])))
    return out


def cold_start(runs: int) -> list[float]:
    """Process start to printed grade, `runs` times in a fresh cache directory: the first run embeds the
    rubric (and fills the vector cache), the later ones read it back."""
    exe = shutil.which("grader") or sys.exit("install grader first: pip install .")
    times = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GRADER_CACHE_DIR": cache}
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [exe, "grade", "-q", "1", "-a", COLD_ANSWER, "--format", "json"],
                check=True,
                capture_output=True,
                env=env,
            )
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=4)
    args = parser.parse_args()

    colds = cold_start(args.cold_runs)
    requests = make_answers(args.answers)
    backend = LocalBackend()
    backend.grade_many(requests[:1])  # load the session
    for r in requests:  # the rubric is embedded once per question, before timing
        backend._anchors_for(r)

    async def grade_all() -> list:
        return await asyncio.gather(*(backend.grade(r) for r in requests))

    start = time.perf_counter()
    grades = asyncio.run(grade_all())
    graded = time.perf_counter() - start
    assert len(grades) == len(requests)

    # Exactly what grading embeds per answer: its spans, word chunks and two-sentence windows, and itself,
    # in the chunks grading embeds together (a text repeated within a chunk is embedded once).
    chunks, rest = [], requests
    while rest:
        size = local_backend.FIRST_BATCH_ANSWERS if not chunks else local_backend.MAX_BATCH_ANSWERS
        chunks.append(
            [s.text for r in rest[:size] for part in _cut(r.answer)[:2] for s in part] + [r.answer for r in rest[:size]]
        )
        rest = rest[size:]
    texts = [t for chunk in chunks for t in chunk]
    start = time.perf_counter()
    for chunk in chunks:
        backend.embedder.embed(chunk)
    embedded = time.perf_counter() - start

    rate, limit = len(requests) / graded, len(requests) / embedded
    w = sys.stdout.write
    w(
        f"cold start (process start to first grade): {colds[0]:.2f} s with an empty cache, then median "
        f"{statistics.median(colds[1:] or colds):.2f} s (runs: {', '.join(f'{c:.2f}' for c in colds)})\n"
    )
    w(f"batch of {len(requests)} answers ({len(texts)} texts to embed, {len(texts) / len(requests):.1f} per answer)\n")
    w(f"  graded:                 {graded:6.2f} s  {rate:7.1f} answers/s\n")
    w(f"  embedding alone:        {embedded:6.2f} s  {limit:7.1f} answers/s  ({len(texts) / embedded:.0f} texts/s)\n")
    w(f"  graded / embedding-bound: {rate / limit:.0%}\n")
    w(f"{len(requests)} answers through the grading engine (as grader batch runs them):\n")
    for label, first in (
        (f"first chunk {local_backend.FIRST_BATCH_ANSWERS}", local_backend.FIRST_BATCH_ANSWERS),
        (f"first chunk {local_backend.MAX_BATCH_ANSWERS} (before)", local_backend.MAX_BATCH_ANSWERS),
    ):
        first_out, last_out = first_outcome(backend, requests, first)
        w(f"  {label + ':':30} first outcome after {first_out:5.2f} s, all after {last_out:6.2f} s\n")
    texts = rewrite_texts()
    timed = {}
    for label, embed in (
        ("each distinct text once", backend.embedder.embed),
        ("every text (before)", backend.embedder.embed_each),
    ):
        start = time.perf_counter()
        embed(texts)
        timed[label] = time.perf_counter() - start
    w(
        f"one chunk of the counterfactual suite ({local_backend.MAX_BATCH_ANSWERS} answers and rewrites, "
        f"{len(texts)} texts, {len(set(texts))} distinct):\n"
    )
    for label, seconds in timed.items():
        w(f"  {label + ':':30} {seconds:6.2f} s\n")
    w(f"  speed-up: {timed['every text (before)'] / timed['each distinct text once']:.1f}x\n")


def rewrite_texts() -> list[str]:
    """What grading embeds for the first chunk of the counterfactual suite: each answer's reading, cut into
    spans and windows, and the reading whole."""
    cases = load("counterfactual").cases[: local_backend.MAX_BATCH_ANSWERS]
    readings = [read(c.answer).text for c in cases]
    return [s.text for text in readings for part in _cut(text)[:2] for s in part] + readings


def first_outcome(backend: LocalBackend, requests: list[GradeRequest], first_chunk: int) -> tuple[float, float]:
    """Seconds to the first and to the last outcome of the requests through an engine, the backend's first
    embedding chunk set to `first_chunk` answers."""
    saved, local_backend.FIRST_BATCH_ANSWERS = local_backend.FIRST_BATCH_ANSWERS, first_chunk
    times: list[float] = []
    start = time.perf_counter()
    try:
        jobs = [Job(r.question, r.answer, tag=i) for i, r in enumerate(requests)]
        asyncio.run(Engine(backend).run(jobs, lambda _g: times.append(time.perf_counter() - start)))
    finally:
        local_backend.FIRST_BATCH_ANSWERS = saved
    return times[0], times[-1]


if __name__ == "__main__":
    main()
