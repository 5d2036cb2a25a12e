"""Benchmark chat grading modes against a real OpenAI-compatible server, side by side in one run.

    bash scripts/local-llm.sh all            # llama.cpp's llama-server with Qwen2.5-Coder-1.5B on 127.0.0.1:8765
    python benchmarks/bench_llm.py --base-url http://127.0.0.1:8765/v1 --per-question 1 --out bench-llm.json

On the same answers (the `answers` suite's test half, `--per-question` answers from each of its
questions, tiers taken round-robin starting from a different tier for each question), in one run against one server:

- time, prompt / cached / completion tokens per grade for three modes: `holistic` (the prompt grader
  shipped before the checklist: per-point quotes, a justification and the model's tier), `checklist`
  (per-point yes/no verdicts, the tier by rule) and `tier` (a plain judge that only picks a tier given
  the three references); and the ratios checklist / holistic and checklist / tier;
- reference-order consistency: each answer graded in checklist mode again with the references in two
  other orders (reversed, rotated); the share of grades whose tier is unchanged, and the mean absolute
  change of the verdict probabilities;
- test-retest: the first order graded a second time (temperature 0, seed 42): the share identical.

Requests go out one at a time, question by question, so a single-slot server reuses each question's
prompt prefix for every mode alike. No grade cache is used: everything is graded afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

from grader.backends.openai import OpenAIBackend
from grader.backends.retry import RetryPolicy
from grader.eval.suites import answers_suite
from grader.grading.contract import Grade, GradeRequest

MODES = ("holistic", "checklist", "tier")


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def pick(per_question: int, split: str, questions: int = 0) -> list[Any]:
    suite = answers_suite(split)
    by_question: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for case in suite.cases:
        by_question[case.question][case.label.value].append(case)
    chosen = []
    for i, tiers in enumerate(list(by_question.values())[: questions or None]):
        order = ("great", "mediocre", "poor")[i % 3 :] + ("great", "mediocre", "poor")[: i % 3]  # vary the first tier
        rounds = itertools.zip_longest(*(tiers[t] for t in order))
        chosen += [c for round_ in rounds for c in round_ if c is not None][:per_question]
    return [(suite.rubric.find(c.question), c) for c in chosen]


async def timed(backend: OpenAIBackend, request: GradeRequest) -> tuple[Grade | None, float, str | None]:
    start = time.perf_counter()
    try:
        grade = await backend.grade(request)
    except Exception as exc:  # noqa: BLE001 - a failed grade is counted, not fatal
        return None, time.perf_counter() - start, str(exc)
    return grade, time.perf_counter() - start, None


def calibration(pairs: list[tuple[float | None, bool]], bins: int = 10) -> dict[str, Any]:
    """Mean confidence against accuracy, and the expected calibration error over `bins` equal bins."""
    rated = [(c, ok) for c, ok in pairs if c is not None]
    if not rated:
        return {"mean_confidence": None, "ece": None}
    ece = 0.0
    for b in range(bins):
        inside = [(c, ok) for c, ok in rated if b / bins <= c < (b + 1) / bins or (b == bins - 1 and c == 1.0)]
        if inside:
            gap = abs(statistics.mean(c for c, _ in inside) - sum(ok for _, ok in inside) / len(inside))
            ece += gap * len(inside) / len(rated)
    return {"mean_confidence": round(statistics.mean(c for c, _ in rated), 3), "ece": round(ece, 3)}


def summary(rows: list[tuple[Grade | None, float, str | None]]) -> dict[str, Any]:
    ok = [(g, s) for g, s, _ in rows if g is not None]
    n = max(len(ok), 1)
    return {
        "grades": len(rows),
        "failed": sum(g is None for g, _, _ in rows),
        "seconds_per_grade": round(statistics.mean(s for _, s in ok), 2) if ok else None,
        "prompt_tokens": round(sum(g.usage.prompt_tokens for g, _ in ok) / n, 1),
        "cached_tokens": round(sum(g.usage.cached_tokens for g, _ in ok) / n, 1),
        "completion_tokens": round(sum(g.usage.completion_tokens for g, _ in ok) / n, 1),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cases = pick(args.per_question, args.split, args.questions)
    backends = {
        mode: OpenAIBackend(
            model=args.model,
            base_url=args.base_url,
            timeout=args.timeout,
            mode=mode,
            policy=RetryPolicy(attempts=2, reasks=1),
        )
        for mode in MODES
    }
    results: dict[str, list] = {m: [] for m in MODES}
    orders: list[tuple[Grade | None, ...]] = []
    retest: list[tuple[Grade | None, Grade | None]] = []
    try:
        by_question: dict[str, list] = defaultdict(list)
        for question, case in cases:
            by_question[question.id].append((question, case))
        for items in by_question.values():
            for mode in args.modes:  # each mode's requests for one question together: prefix reuse for all
                for question, case in items:
                    row = await timed(backends[mode], GradeRequest(question, case.answer))
                    results[mode].append(row)
                    say(f"{mode:9s} {case.id} {row[1]:6.1f} s {row[0].tier.value if row[0] else row[2]}")
            if args.consistency:
                for question, case in items:
                    refs = list(question.references.items())
                    first = next(
                        (
                            g
                            for (g, _, _), (_, c) in zip(results["checklist"][-len(items) :], items, strict=True)
                            if c.id == case.id
                        ),
                        None,
                    )
                    other = []
                    for exemplars in (tuple(reversed(refs)), tuple(refs[1:] + refs[:1])):
                        g, s, _ = await timed(backends["checklist"], GradeRequest(question, case.answer, exemplars))
                        other.append(g)
                        say(f"order     {case.id} {s:6.1f} s {g.tier.value if g else '-'}")
                    orders.append((first, *other))
                    again, s, _ = await timed(backends["checklist"], GradeRequest(question, case.answer))
                    retest.append((first, again))
                    say(f"retest    {case.id} {s:6.1f} s {again.tier.value if again else '-'}")
    finally:
        for backend in backends.values():
            await backend.aclose()

    report: dict[str, Any] = {
        "server": args.base_url,
        "answers": len(cases),
        "split": args.split,
        "modes": {m: summary(results[m]) for m in args.modes},
    }
    s = report["modes"]
    if "checklist" in s and "holistic" in s and s["holistic"]["seconds_per_grade"]:
        report["checklist_over_holistic_time"] = round(
            s["checklist"]["seconds_per_grade"] / s["holistic"]["seconds_per_grade"], 3
        )
    if "checklist" in s and "tier" in s and s["tier"]["seconds_per_grade"]:
        report["checklist_over_tier_time"] = round(
            s["checklist"]["seconds_per_grade"] / s["tier"]["seconds_per_grade"], 3
        )
    for mode in args.modes:
        graded = [(g, c) for (g, _, _), (_, c) in zip(results[mode], cases, strict=True) if g is not None]
        if graded:
            s[mode]["accuracy_on_these"] = round(sum(g.tier is c.label for g, c in graded) / len(graded), 3)
            s[mode]["tiers"] = {t: sum(g.tier.value == t for g, _ in graded) for t in ("great", "mediocre", "poor")}
            s[mode].update(calibration([(g.confidence, g.tier is c.label) for g, c in graded]))
    if orders:
        full = [o for o in orders if all(g is not None for g in o)]
        same = [all(g.tier is o[0].tier for g in o[1:]) for o in full]  # type: ignore[union-attr]
        shifts = [
            abs(g.point_scores[k] - o[0].point_scores[k])  # type: ignore[union-attr]
            for o in full
            for g in o[1:]
            for k in o[0].point_scores  # type: ignore[union-attr]
        ]
        report["reference_order"] = {
            "answers": len(full),
            "tier_consistency": round(sum(same) / len(same), 3) if same else None,
            "mean_abs_verdict_shift": round(statistics.mean(shifts), 4) if shifts else None,
        }
        pairs = [(a, b) for a, b in retest if a is not None and b is not None]
        report["test_retest"] = {
            "answers": len(pairs),
            "identical_tier": round(sum(a.tier is b.tier for a, b in pairs) / len(pairs), 3) if pairs else None,
            "identical_verdicts": round(sum(a.point_scores == b.point_scores for a, b in pairs) / len(pairs), 3)
            if pairs
            else None,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--per-question", type=int, default=1)
    parser.add_argument("--questions", type=int, default=0, help="only the first N questions of the split")
    parser.add_argument("--split", default="test", choices=["test", "dev"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--no-consistency", dest="consistency", action="store_false")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.consistency and "checklist" not in args.modes:
        parser.error("the consistency checks need the checklist mode")
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
