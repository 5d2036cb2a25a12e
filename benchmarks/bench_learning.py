"""Learning from reviews, measured: tier accuracy and QWK with and without reviewed answers, one backend, one run.

    python benchmarks/bench_learning.py [--split dev|test|all] [--k 6] [--json PATH] [--no-floor]
    python benchmarks/bench_learning.py --tune      # dev only: the grid k / NEIGHBOUR_TAU / _PRIOR / _POINTS came from

Each data set is graded by the local backend twice in the same run, through the grading engine: once with
no reviewed answers, once with each answer's `k` most similar reviewed answers to the same question
(`ReviewBank.nearest`), and by the nearest-reference floor. Reviewed answers are never the answer itself:
its own id is left out, and so is any reviewed answer with the same text (SAF has verbatim copies across
its splits), so a copy's label is not read off.

- test: `saf-ua` (SAF's unseen answers, graded with the SAF rule and the exemplars the suite gives them;
  reviews: SAF's training answers to the same question, `evals/saf/saf-train.json`) and `answers` (the test
  half; reviews: the other answers to the same question, leave-one-out, from answers and answers-dev);
- dev, what the constants were chosen on: `answers-dev` (reviews: the other dev answers to the same
  question) and SAF's training split (each training answer graded against the saf-ua exemplars, itself
  left out of them, as `scripts/fit_saf.py` does; reviews: the other training answers to its question).

QWK and accuracy come from `grader.eval.report.tier_metrics`, the eval report's own.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from grader.backends.base import Backend
from grader.backends.local.backend import (
    NEIGHBOUR_POINTS,
    NEIGHBOUR_PRIOR,
    NEIGHBOUR_TAU,
    LocalBackend,
    NearestReferenceBackend,
    guard_rail,
    learn_from_reviews,
    learn_points,
)
from grader.backends.local.rule import TierRule, tier_features
from grader.eval.report import tier_metrics
from grader.eval.runner import exemplars_for
from grader.eval.suites import load
from grader.grading.contract import TIERS, GradeRequest, Reviewed, Tier
from grader.grading.engine import Engine, Job
from grader.grading.reviews import DEFAULT_K, ReviewBank, load_reviews
from grader.resources import data_dir
from grader.rubric import Question, Rubric


@dataclass(frozen=True)
class Case:
    id: str
    question: Question
    answer: str
    label: str
    exemplars: tuple[tuple[str, str], ...] | None


@dataclass(frozen=True)
class DataSet:
    name: str
    split: str  # dev or test
    rule: str  # the local rule it is graded with: default or saf
    rubric: Rubric
    cases: list[Case]
    bank: ReviewBank
    what: str  # where the reviews come from


def _same(text: str) -> str:
    return " ".join(text.split()).lower()


def reviewed_for(data: DataSet) -> list[tuple[Reviewed, ...]]:
    """Each case's reviewed answers: the bank's nearest to the same question, never itself or a copy of it."""
    copies: dict[tuple[str, str], set[str]] = {}
    for qid in {c.question.id for c in data.cases}:
        for r in data.bank.answers(qid):
            copies.setdefault((qid, _same(r.answer)), set()).add(r.id)
    return [
        data.bank.nearest(c.question, c.answer, exclude={c.id} | copies.get((c.question.id, _same(c.answer)), set()))
        for c in data.cases
    ]


def data_sets(split: str, k: int) -> list[DataSet]:
    out: list[DataSet] = []
    dev, test, ua = load("answers-dev"), load("answers"), load("saf-ua")
    answer_reviews = [
        (c.question, Reviewed(c.id, c.answer, c.label, tuple(c.covered or ()), tuple(c.red_flags or ())))
        for suite in (test, dev)
        for c in suite.cases
    ]
    training = load_reviews(data_dir("evals") / "saf" / "saf-train.json")

    def answers_cases(suite: Any) -> list[Case]:
        return [Case(c.id, suite.rubric.find(c.question), c.answer, c.label.value, None) for c in suite.cases]

    if split in ("dev", "all"):
        shown: dict[str, tuple[tuple[str, str], ...]] = {}
        for c in ua.cases:
            shown.setdefault(c.question, exemplars_for(ua, c))
        train_cases = [
            Case(
                r.id,
                ua.rubric.find(qid),
                r.answer,
                r.tier.value,
                tuple((t, x) for t, x in shown[qid] if x.strip() != r.answer.strip()),
            )
            for qid, r in training
        ]
        out.append(
            DataSet(
                "answers-dev",
                "dev",
                "default",
                dev.rubric,
                answers_cases(dev),
                ReviewBank(answer_reviews, k=k),
                "the other answers to the question",
            )
        )
        out.append(
            DataSet(
                "saf-train",
                "dev",
                "saf",
                ua.rubric,
                train_cases,
                ReviewBank(training, k=k),
                "the other training answers to the question",
            )
        )
    if split in ("test", "all"):
        out.append(
            DataSet(
                "saf-ua",
                "test",
                "saf",
                ua.rubric,
                [
                    Case(c.id, ua.rubric.find(c.question), c.answer, c.label.value, exemplars_for(ua, c))
                    for c in ua.cases
                ],
                ReviewBank(training, k=k),
                "SAF's training answers to the question",
            )
        )
        out.append(
            DataSet(
                "answers",
                "test",
                "default",
                test.rubric,
                answers_cases(test),
                ReviewBank(answer_reviews, k=k),
                "the other answers to the question",
            )
        )
    return out


async def grade(
    backend: Backend, rubric: Rubric, cases: list[Case], reviewed: Sequence[tuple[Reviewed, ...]]
) -> list[str | None]:
    """Each case's tier through the grading engine (None where it could not be graded)."""
    tiers: list[str | None] = [None] * len(cases)
    jobs = [
        Job(c.question, c.answer, tag=i, exemplars=c.exemplars, reviewed=r)
        for i, (c, r) in enumerate(zip(cases, reviewed, strict=True))
    ]

    def keep(graded: Any) -> None:
        tiers[graded.job.tag] = graded.grade.tier.value if graded.grade is not None else None

    await Engine(backend, rubric=rubric).run(jobs, keep)
    return tiers


def metrics(cases: list[Case], tiers: list[str | None]) -> dict[str, Any]:
    pairs = [(c.label, t) for c, t in zip(cases, tiers, strict=True) if t is not None]
    m = tier_metrics([p[0] for p in pairs], [p[1] for p in pairs])
    return {
        "n": m.n,
        "failed": len(cases) - len(pairs),
        "accuracy": m.accuracy,
        "qwk": m.qwk,
        "recall": m.recall,
        "confusion": m.confusion.matrix if m.confusion else None,
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    backends = {"default": LocalBackend(rule=TierRule.load()), "saf": LocalBackend(rule=TierRule.load("saf"))}
    floor = None if args.no_floor else NearestReferenceBackend()
    rows = []
    for data in data_sets(args.split, args.k):
        start = time.perf_counter()
        reviewed = reviewed_for(data)
        backend = backends[data.rule]
        none = [()] * len(data.cases)
        row: dict[str, Any] = {
            "data": data.name,
            "split": data.split,
            "rule": data.rule,
            "reviews": data.what,
            "k": args.k,
            "reviewed_per_answer": round(float(np.mean([len(r) for r in reviewed])), 2),
            "without": metrics(data.cases, asyncio.run(grade(backend, data.rubric, data.cases, none))),
            "with": metrics(data.cases, asyncio.run(grade(backend, data.rubric, data.cases, reviewed))),
        }
        if floor is not None:
            row["floor"] = metrics(data.cases, asyncio.run(grade(floor, data.rubric, data.cases, none)))
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        sys.stderr.write(f"{data.name}: {row['seconds']} s\n")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    def pair(m: dict[str, Any] | None) -> str:
        if m is None:
            return "|"
        qwk = "n/a" if m["qwk"] is None else f"{m['qwk']:.3f}"
        return f"{m['accuracy']:.3f} | {qwk}"

    lines = [
        "| data | split | answers | reviewed per answer | floor acc | floor QWK | without acc | without QWK "
        "| with acc | with QWK | QWK gain |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        a, b = r["without"]["qwk"], r["with"]["qwk"]
        gain = f"{b - a:+.3f}" if a is not None and b is not None else "n/a"
        lines.append(
            f"| {r['data']} | {r['split']} | {r['with']['n']} | {r['reviewed_per_answer']} | {pair(r.get('floor'))} "
            f"| {pair(r['without'])} | {pair(r['with'])} | {gain} |"
        )
    return "\n".join(lines)


def _prior(
    rule: TierRule, request: GradeRequest, a: Any, p_points: Any, p_flags: Any, tau: float, share: float
) -> dict[str, float]:
    """The rule's tier probabilities from the point verdicts the reviewed answers' ticks pulled, as the backend
    computes them."""
    pulled = learn_points(p_points, request.question, request.reviewed, tau=tau, share=share)
    x = tier_features(a, pulled, p_flags, rule.point_threshold, rule.flag_threshold)
    return {t: float(v) for t, v in zip(TIERS, rule.tier.classes(x[None, :])[0], strict=True)}


def tune() -> str:
    """The dev grid: each dev answer analysed once, its reviewed answers measured once (up to the largest
    k), then the tier decided for every (k, tau, prior weight, point share) as the backend decides it."""
    grid_k, grid_tau, grid_weight = (2, 4, 6, 8, 12), (0.05, 0.08, 0.1, 0.15, 0.2), (0.03, 0.1, 0.3, 1.0)
    grid_share = (0.0, 0.2, 0.3, 0.4)
    results: dict[tuple[int, float, float, float], list[tuple[float | None, float | None]]] = {}
    names = []
    for data in data_sets("dev", max(grid_k)):
        names.append(data.name)
        backend = LocalBackend(rule=TierRule.load(None if data.rule == "default" else data.rule))
        rule = backend.rule
        requests = [
            GradeRequest(c.question, c.answer, c.exemplars, reviewed=r)
            for c, r in zip(data.cases, reviewed_for(data), strict=True)
        ]
        analysed = backend._analyse(requests)
        requests = backend._measure_reviewed(requests, [whole for _, _, whole in analysed])
        points = [(a, rule.point_probabilities(a), rule.flag_probabilities(a)) for a, _, _ in analysed]
        guarded = [guard_rail(a, rule) is not None for a, _, _ in analysed]
        labels = [c.label for c in data.cases]

        for k in grid_k:
            shown = [replace(r, reviewed=r.reviewed[:k]) for r in requests]
            for tau, share in itertools.product(grid_tau, grid_share):
                priors = [_prior(rule, r, *p, tau, share) for r, p in zip(shown, points, strict=True)]
                for weight in grid_weight:
                    predicted = []
                    for request, p_tier, guard in zip(shown, priors, guarded, strict=True):
                        if guard:
                            predicted.append(Tier.poor.value)
                            continue
                        p = learn_from_reviews(p_tier, request.reviewed, tau=tau, weight=weight)
                        predicted.append(max(TIERS, key=p.__getitem__))
                    m = tier_metrics(labels, predicted)
                    results.setdefault((k, tau, weight, share), []).append((m.accuracy, m.qwk))
    shipped = (DEFAULT_K, NEIGHBOUR_TAU, NEIGHBOUR_PRIOR, NEIGHBOUR_POINTS)
    lines = [
        "| k | tau | prior weight | point share | " + " | ".join(f"{n} acc | {n} QWK" for n in names) + " |",
        "|--:|--:|--:|--:|" + "--:|--:|" * len(names),
    ]
    for key, figures in sorted(results.items(), key=lambda kv: -sum(q or 0 for _, q in kv[1])):
        mark = " (shipped)" if key == shipped else ""
        cells = " | ".join(f"{a or 0:.3f} | {q or 0:.3f}" for a, q in figures)
        lines.append(f"| {key[0]}{mark} | {key[1]} | {key[2]} | {key[3]} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="reviewed answers shown per answer")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--no-floor", action="store_true", help="skip the nearest-reference floor")
    parser.add_argument("--tune", action="store_true", help="print the dev grid the constants were chosen from")
    args = parser.parse_args()
    if args.tune:
        sys.stdout.write(tune() + "\n")
        return
    rows = measure(args)
    sys.stdout.write(table(rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        sys.stderr.write(f"wrote {args.json}\n")


if __name__ == "__main__":
    main()
