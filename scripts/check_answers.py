"""Check hand-written `answers` suite files: schema, rubric ids, the grading policy, freshness.

    python scripts/check_answers.py [evals/answers.yaml | new-cases.yaml ...]

Policy (see evals/answers.yaml's header): any red flag -> poor; great <=> no red flag and at least
half the key points (rounded up) covered with substance; otherwise mediocre or poor.
A fresh answer shares no run of 8 words with any reference answer of its question.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"id", "question", "label", "kind", "covered", "red_flags", "answer"}
STYLES = {
    "terse",
    "long",
    "bullets",
    "spoken",
    "non-native",
    "unusual-vocabulary",
    "confident-wrong",
    "half-right",
    "off-wording",
    "skips-one",
    "buzzwords",
    "plain",
    "evasive",
}


def ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    w = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def main(paths: list[str]) -> int:
    rubric = yaml.safe_load((ROOT / "rubric" / "backend-engineering.yaml").read_text())
    questions = {q["id"]: q for q in rubric["questions"]}
    problems: list[str] = []
    per_q: dict[str, Counter] = defaultdict(Counter)
    seen: set[str] = set()
    for path in paths:
        cases = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if isinstance(cases, dict):  # the suite file itself, not a list of new cases
            cases = cases["cases"]
        for i, c in enumerate(cases):
            where = f"{path}: case {i} ({c.get('id')})"
            if set(c) != FIELDS:
                problems.append(f"{where}: fields {sorted(set(c) ^ FIELDS)} wrong")
                continue
            if c["id"] in seen:
                problems.append(f"{where}: duplicate id")
            seen.add(c["id"])
            q = questions.get(c["question"])
            if q is None:
                problems.append(f"{where}: unknown question {c['question']}")
                continue
            points = {p["id"] for p in q["key_points"]}
            flags = {f["id"] for f in q["red_flags"]}
            if c["kind"] not in STYLES:
                problems.append(f"{where}: kind {c['kind']!r} not in {sorted(STYLES)}")
            for pid in c["covered"]:
                if pid not in points:
                    problems.append(f"{where}: covered {pid} is not a key point of {q['id']}")
            for fid in c["red_flags"]:
                if fid not in flags:
                    problems.append(f"{where}: red flag {fid} is not a red flag of {q['id']}")
            need = math.ceil(len(points) / 2)
            great_by_points = not c["red_flags"] and len(set(c["covered"])) >= need
            if c["label"] == "great" and not great_by_points:
                problems.append(f"{where}: great needs no red flag and >= {need} key points covered")
            if c["label"] != "great" and great_by_points:
                problems.append(f"{where}: {len(c['covered'])} points and no red flag make it great, not {c['label']}")
            if c["red_flags"] and c["label"] != "poor":
                problems.append(f"{where}: a red flag makes it poor")
            if c["label"] not in ("great", "mediocre", "poor"):
                problems.append(f"{where}: label {c['label']!r}")
            shared = ngrams(c["answer"]) & set().union(*(ngrams(t) for t in q["references"].values()))
            if shared:
                problems.append(
                    f"{where}: shares {len(shared)} 8-word runs with a reference, e.g. {' '.join(next(iter(shared)))!r}"
                )
            per_q[q["id"]][c["label"]] += 1
            per_q[q["id"]]["style:" + c["kind"]] += 1
    for qid, counts in per_q.items():
        for tier in ("great", "mediocre", "poor"):
            if counts[tier] < 4:
                problems.append(f"{qid}: only {counts[tier]} {tier} answers (need 4)")
        styles = [k for k in counts if k.startswith("style:")]
        if len(styles) < 6:
            problems.append(f"{qid}: only {len(styles)} styles (need 6)")
    for p in problems:
        print(p)
    print(f"{len(seen)} answers, {len(per_q)} questions, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or [str(ROOT / "evals" / "answers.yaml")]))
