"""Compare two fits of the local rule answer by answer, on the dev half only.

Each file is what `python scripts/fit_local.py --predictions FILE` writes: every dev answer's grade with
its own question left out of the fit (the guard rails' thresholds, as in FIT.md, are set on all of dev).
Two accuracies a few answers apart may be noise; this says how many answers each fit gets right that the
other gets wrong, an exact McNemar test on those, and a 95 % interval for the difference from resampling
whole questions (answers to one question are not independent: they share its rubric), then the accuracy
of each by the answers' style (`kind`).

    python scripts/compare_fits.py base.jsonl other.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

RESAMPLES = 10_000


def load(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def compare(a: dict[str, dict], b: dict[str, dict], seed: int = 0) -> dict:
    """Paired figures for fits `a` and `b` over the answers both graded (the same dev cases)."""
    if set(a) != set(b):
        raise SystemExit(f"compare_fits: the files grade different answers ({len(set(a) ^ set(b))} differ)")
    if not a:
        raise SystemExit("compare_fits: the files grade no answers")
    ids = sorted(a)
    right_a = np.array([a[i]["tier"] == a[i]["label"] for i in ids])
    right_b = np.array([b[i]["tier"] == b[i]["label"] for i in ids])
    questions = np.array([a[i]["question"] for i in ids])
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(questions == q) for q in np.unique(questions)]
    diffs = []
    for _ in range(RESAMPLES):
        pick = np.concatenate([groups[k] for k in rng.integers(0, len(groups), len(groups))])
        diffs.append(right_b[pick].mean() - right_a[pick].mean())
    low, high = np.percentile(diffs, [2.5, 97.5])
    kinds: dict[str, list[int]] = {}
    for i, ra, rb in zip(ids, right_a, right_b, strict=True):
        if a[i].get("kind") is None:  # a file written before styles were recorded
            continue
        n = kinds.setdefault(str(a[i]["kind"]), [0, 0, 0])
        n[0], n[1], n[2] = n[0] + 1, n[1] + int(ra), n[2] + int(rb)
    return {
        "answers": len(ids),
        "accuracy_a": float(right_a.mean()),
        "accuracy_b": float(right_b.mean()),
        "only_a_right": only_a,
        "only_b_right": only_b,
        "tier_changed": int(sum(a[i]["tier"] != b[i]["tier"] for i in ids)),
        "mcnemar_p": float(p),
        "difference": float(right_b.mean() - right_a.mean()),
        "difference_95": [float(low), float(high)],
        "by_kind": {k: {"answers": n, "accuracy_a": ra / n, "accuracy_b": rb / n} for k, (n, ra, rb) in kinds.items()},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python scripts/compare_fits.py A.jsonl B.jsonl\n")
        return 2
    a = load(Path(argv[0]))
    r = compare(a, load(Path(argv[1])))
    print(
        f"{r['answers']} dev answers: A {r['accuracy_a']:.3f}, B {r['accuracy_b']:.3f}; "
        f"tier changed on {r['tier_changed']}; right only in A {r['only_a_right']}, only in B {r['only_b_right']} "
        f"(exact McNemar p = {r['mcnemar_p']:.2f}); B - A = {r['difference']:+.3f}, "
        f"95 % interval by question {r['difference_95'][0]:+.3f} to {r['difference_95'][1]:+.3f}"
    )
    print(
        f"({len({row['question'] for row in a.values()})} questions: McNemar takes answers as independent and a "
        "percentile interval from few questions is too narrow; read both as rough)"
    )
    if r["by_kind"]:
        print(
            "by style: "
            + "; ".join(
                f"{k} ({v['answers']}) {v['accuracy_a']:.2f} -> {v['accuracy_b']:.2f}"
                for k, v in sorted(r["by_kind"].items())
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
