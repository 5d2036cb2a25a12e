"""A team's own bank, measured: how well a rubric drafted from the references alone grades, next to the
hand-written one, in one run with the local backend.

    python scripts/measure_drafting.py                      # answers test half + SAF (ua and uq)
    python scripts/measure_drafting.py --split dev          # what the drafter's constants were chosen on
    python scripts/measure_drafting.py --llm-rubric drafted-llm.yaml   # also a rubric a chat model drafted
    python scripts/measure_drafting.py --split stories --no-saf  # story questions of their own (dev data)
    python scripts/measure_drafting.py --split stories --no-saf --without opening   # what a story rule does

1. The packaged bank stripped to its questions and references: `rubric/recruiters-questions.txt` imported
   (the ids agree with the packaged rubric's), then drafted offline (`grader.rubric.contrast`).
2. The `answers` suite's half graded with the hand-written rubric, with the same rubric stripped of its
   phrasings (what the points' texts alone are worth), with the drafted one, (with
   `--llm-rubric`, with that one too) and by the nearest-reference floor: tier accuracy and QWK. Two
   crossed rows say which half of the draft costs the grades: its key points with the hand-written red
   flags, and the hand-written key points with its red flags. One row stands in for review: the draft with
   each point and flag given the phrasings of the hand-written one its quote maps to (an upper bound).
   Key-point F1 of a drafted rubric is measured against the hand grades by mapping each drafted point to
   the hand-written point of the same question its quote is closest to (MiniLM cosine to the point's text
   and phrasings, at least `MAP_MIN`); a drafted point that maps to none counts against precision.
3. SAF (`saf-ua`, `saf-uq`): each question's key points and red flags drafted by contrast in place of the
   mechanical split of the reference the suites ship with (`draft_by_splitting`), same exemplars, same
   SAF rule: QWK with each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from grader.backends.local.backend import LocalBackend, NearestReferenceBackend
from grader.backends.local.embedder import Embedder
from grader.backends.local.rule import TierRule
from grader.eval.cases import Suite
from grader.eval.report import tier_metrics
from grader.eval.runner import CaseResult, run_suite
from grader.eval.suites import load
from grader.resources import data_dir
from grader.rubric import Rubric, contrast, load_rubric
from grader.rubric.contrast import draft_offline
from grader.rubric.importer import import_bank

#: A drafted point maps to a hand-written one when its quote is at least this close to it.
MAP_MIN = 0.5

#: The story rules of the offline drafter (`grader.rubric.contrast`'s doc, 6), each switched off by
#: replacing the function that applies it (`--without`), to see on dev what it does.
RULES: dict[str, tuple[str, Callable[..., bool]]] = {
    # "We needed...", "I had no figures..." are claims like any other
    "scene": ("sets_scene", lambda _claim: False),
    # a red flag need not be the speaker's conduct ("The project was delivered on time" can be one)
    "conduct": ("_speaks_of_itself", lambda _great: False),
    # a story's opening sentence is a claim like any other
    "opening": ("_within", lambda _claim, _scene: False),
}


def switch_off(rules: list[str], set_attr: Callable[[Any, str, Any], None] = setattr) -> None:
    """Draft without these story rules (for this process; a test passes its monkeypatch's setattr)."""
    for rule in rules:
        name, replacement = RULES[rule]
        assert callable(getattr(contrast, name)), name  # a rule renamed in contrast.py must be renamed here
        set_attr(contrast, name, replacement)


def drafted_rubric(embedder: Embedder, bank_file: Path | None = None, known: Rubric | None = None) -> Rubric:
    """A bank stripped to questions and references, drafted offline: the packaged one unless `bank_file`
    (with `known`, the rubric written from it, so the ids agree)."""
    if bank_file is None:
        bank_file, known = data_dir("rubric") / "recruiters-questions.txt", load_rubric()
    bank = import_bank(bank_file, known=known).rubric
    draft = draft_offline(bank, embedder.embed)
    questions = []
    for q in bank.questions:
        kps, rfs = draft(q)
        questions.append(q.model_copy(update={"key_points": kps, "red_flags": rfs}))
    return bank.with_questions(questions)


def without_phrasings(rubric: Rubric) -> Rubric:
    """The same rubric with every key point's and red flag's other phrasings removed."""
    questions = [
        q.model_copy(
            update={
                "key_points": [p.model_copy(update={"phrasings": []}) for p in q.key_points],
                "red_flags": [f.model_copy(update={"phrasings": []}) for f in q.red_flags],
            }
        )
        for q in rubric.questions
    ]
    return rubric.with_questions(questions)


def crossed(points_from: Rubric, flags_from: Rubric) -> Rubric:
    """`points_from`'s questions with `flags_from`'s red flags (same question ids): which half of a drafted
    rubric, its key points or its red flags, costs the grades."""
    return points_from.with_questions(
        [q.model_copy(update={"red_flags": list(flags_from.find(q.id).red_flags)}) for q in points_from.questions]
    )


def with_rubric(suite: Suite, rubric: Rubric) -> Suite:
    """The suite's answers against another rubric (same question ids); hand point labels dropped."""
    cases = [c.model_copy(update={"covered": None, "red_flags": None}) for c in suite.cases]
    return Suite(name=suite.name, description=suite.description, rubric=rubric, cases=cases)


def point_map(drafted: Rubric, hand: Rubric, embedder: Embedder) -> dict[str, str | None]:
    """Each drafted key point's hand-written counterpart (same question), by its quote."""
    out: dict[str, str | None] = {}
    for q in drafted.questions:
        h = hand.find(q.id)
        if not q.key_points or not h.key_points:
            continue
        texts = [[p.text, *p.phrasings] for p in h.key_points]
        flat = [t for ts in texts for t in ts]
        owner = [i for i, ts in enumerate(texts) for _ in ts]
        hv = embedder.embed(flat)
        dv = embedder.embed([p.quote or p.text for p in q.key_points])
        sims = dv @ hv.T
        for p, row in zip(q.key_points, sims, strict=True):
            best = int(np.argmax(row))
            out[p.id] = h.key_points[owner[best]].id if row[best] >= MAP_MIN else None
    return out


def with_borrowed_phrasings(drafted: Rubric, hand: Rubric, embedder: Embedder) -> Rubric:
    """The drafted rubric as a reviewer might leave it: each drafted key point and red flag given the other
    phrasings of the hand-written one its quote maps to (none where it maps to none). A stand-in for the
    phrasings a person adds in review (`rubric new`'s review list asks for them), written for the
    hand-written point, so an upper bound: what the review step can be worth, not what it will be."""
    questions = []
    for q in drafted.questions:
        h = hand.find(q.id)
        update: dict[str, Any] = {}
        for field, hand_items in (("key_points", h.key_points), ("red_flags", h.red_flags)):
            items = getattr(q, field)
            if not items or not hand_items:
                continue
            texts = [[x.text, *x.phrasings] for x in hand_items]
            owner = [i for i, ts in enumerate(texts) for _ in ts]
            sims = (
                embedder.embed([p.quote or p.text for p in items]) @ embedder.embed([t for ts in texts for t in ts]).T
            )
            borrowed = []
            for item, row in zip(items, sims, strict=True):
                best = int(np.argmax(row))
                phrasings = list(hand_items[owner[best]].phrasings) if row[best] >= MAP_MIN else []
                borrowed.append(item.model_copy(update={"phrasings": phrasings}))
            update[field] = borrowed
        questions.append(q.model_copy(update=update))
    return drafted.with_questions(questions)


def tiers(results: list[CaseResult]) -> dict[str, Any]:
    pairs = [(r.case.label.value, r.grade.tier.value) for r in results if r.grade is not None]
    m = tier_metrics([a for a, _ in pairs], [b for _, b in pairs])
    return {"n": m.n, "failed": len(results) - len(pairs), "accuracy": m.accuracy, "qwk": m.qwk}


def point_f1(results: list[CaseResult], truth: dict[str, list[str]], mapping: dict[str, str | None] | None) -> dict:
    tp = fp = fn = 0
    for r in results:
        if r.grade is None or r.case.id not in truth:
            continue
        said = {p.id for p in r.grade.covered_points}
        got = {mapping.get(p) for p in said} if mapping is not None else said
        unmapped = sum(1 for p in said if mapping is not None and mapping.get(p) is None)
        got.discard(None)
        true = set(truth[r.case.id])
        tp += len(got & true)
        fp += len(got - true) + unmapped
        fn += len(true - got)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


async def answers(split: str, embedder: Embedder, llm_rubric: Path | None) -> dict[str, Any]:
    suite = load({"test": "answers", "dev": "answers-dev", "stories": "stories-dev"}[split])
    hand = suite.rubric
    truth = {c.id: list(c.covered or []) for c in suite.cases if c.covered is not None}
    local = LocalBackend()
    # The same rule without its companion for questions that carry no phrasings: what the companion adds,
    # measured in the same run.
    default_only = LocalBackend(rule=replace(TierRule.load(), unphrased=None))
    # What the hand-written points are worth without the other phrasings written for each: the part of the
    # gap an offline draft (which has none) cannot close by better point texts alone.
    bare = without_phrasings(hand)
    drafted = (
        drafted_rubric(embedder, data_dir("evals") / "stories" / "questions.txt", hand)
        if split == "stories"
        else drafted_rubric(embedder)
    )
    runs: list[tuple[str, Rubric, LocalBackend]] = [
        ("hand-written", hand, local),
        ("hand-written, no phrasings", bare, local),
        ("drafted offline", drafted, local),
        ("hand-written, no phrasings, default rule", bare, default_only),
        ("drafted offline, default rule", drafted, default_only),
        # What review could add: the drafted points with the phrasings of the hand-written ones they map to.
        (
            "drafted offline, phrasings borrowed from the hand-written points",
            with_borrowed_phrasings(drafted, hand, embedder),
            local,
        ),
        # Which half of the draft costs the grades: its key points with the hand-written red flags, and the
        # hand-written key points with its red flags (both without phrasings, so the companion rule).
        ("drafted key points, hand-written red flags", crossed(drafted, bare), local),
        ("hand-written key points, drafted red flags", crossed(bare, drafted), local),
    ]
    if llm_rubric is not None:
        runs.append(("drafted by the chat model", load_rubric(llm_rubric), local))
    out: dict[str, Any] = {}
    floor = await run_suite(suite, NearestReferenceBackend())
    out["floor (nearest reference)"] = tiers(floor)
    mappings: dict[tuple[str, ...], dict[str, str | None]] = {}  # per drafted set of key points, computed once
    for name, rubric, backend in runs:
        t0 = time.perf_counter()
        point_ids = tuple(p for q in rubric.questions for p in q.point_ids)
        same_points = all(q.point_ids == hand.find(q.id).point_ids for q in rubric.questions)
        # The F1 reads the hand labels from `truth`, so every rubric grades the answers without them; a
        # rubric whose key points are not the hand-written ones has them mapped below.
        graded = await run_suite(with_rubric(suite, rubric), backend)
        row = tiers(graded)
        mapping = None
        if not same_points:
            if point_ids not in mappings:
                mappings[point_ids] = point_map(rubric, hand, embedder)
            mapping = mappings[point_ids]
        row["points"] = point_f1(graded, truth, mapping)
        if mapping is not None:
            row["mapped"] = f"{sum(v is not None for v in mapping.values())}/{len(mapping)}"
        row["key_points"] = sum(len(q.key_points) for q in rubric.questions)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = row
    return out


async def saf(embedder: Embedder) -> dict[str, Any]:
    local = LocalBackend(rule=TierRule.load("saf"))
    out: dict[str, Any] = {}
    for name in ("saf-ua", "saf-uq"):
        suite = load(name)
        draft = draft_offline(suite.rubric, embedder.embed)
        questions = []
        for q in suite.rubric.questions:
            kps, rfs = draft(q)
            questions.append(q.model_copy(update={"key_points": kps, "red_flags": rfs if q.references.poor else []}))
        contrast = suite.rubric.with_questions(questions)
        split = tiers(await run_suite(suite, local))
        drafted = tiers(await run_suite(with_rubric(suite, contrast), local))
        floor = tiers(await run_suite(suite, NearestReferenceBackend()))
        out[name] = {"floor": floor, "mechanical split": split, "drafted by contrast": drafted}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--split",
        choices=("test", "dev", "stories"),
        default="test",
        help="the answers suite's test or dev half, or stories-dev (story questions of its own, dev data)",
    )
    parser.add_argument("--llm-rubric", type=Path, help="A rubric drafted by a chat model from the same bank.")
    parser.add_argument("--no-saf", action="store_true")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=sorted(RULES),
        help="draft without this story rule (repeatable): scene, conduct, opening",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    if args.split == "stories" and args.llm_rubric is not None:
        parser.error("--llm-rubric is a draft of the packaged bank; it cannot grade stories-dev")
    switch_off(args.without)
    embedder = Embedder.load()
    figures: dict[str, Any] = {"answers": asyncio.run(answers(args.split, embedder, args.llm_rubric))}
    if not args.no_saf:
        figures["saf"] = asyncio.run(saf(embedder))
    print(f"answers suite, {args.split} half, local backend:")
    print("| rubric | accuracy | QWK | key-point P / R / F1 | points (mapped) |")
    print("|---|--:|--:|--:|--:|")
    for name, row in figures["answers"].items():
        p = row.get("points")
        pts = f"{p['precision']:.3f} / {p['recall']:.3f} / {p['f1']:.3f}" if p else ""
        count = f"{row.get('key_points', '')}" + (f" ({row['mapped']})" if "mapped" in row else "")
        print(f"| {name} | {row['accuracy']:.3f} | {row['qwk']:.3f} | {pts} | {count} |")
    for name, rows in figures.get("saf", {}).items():
        print(
            f"\n{name}, SAF rule: "
            + "; ".join(f"{k} acc {v['accuracy']:.3f} QWK {v['qwk']:.3f}" for k, v in rows.items())
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
