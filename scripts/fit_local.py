"""Fit the local backend's decision rule on the seed references, leave-one-question-out.

Each of the 60 reference answers is analysed as a candidate answer with its own reference hidden from
the exemplars. For every question, the thresholds and the logistic rule are fitted on the other 19
questions only, and that question's three references are then graded: those predictions give the
accuracy reported below, so no question is graded with parameters fitted on its own references.
The shipped parameters (`grader/backends/local/params.json`) are then fitted on all 20 questions.

    python scripts/fit_local.py            # writes params.json and FIT.md next to the backend
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

from grader.backends.base import GradeRequest
from grader.backends.local.backend import LocalBackend, _guard_rail
from grader.backends.local.rule import FEATURES, Analysis, TierRule, feature_vector
from grader.grade import TIERS
from grader.rubric import load_rubric

HERE = Path(__file__).resolve().parent.parent / "grader" / "backends" / "local"
GRID = np.round(np.arange(0.30, 0.851, 0.01), 2)
GUARDS = {"topic_threshold": 0.25, "prose_threshold": 0.10, "min_words": 8}
C = 1.0


def holdout_requests(rubric):
    requests, labels, groups = [], [], []
    for q in rubric:
        refs = q.references.items()
        for tier, text in refs:
            requests.append(GradeRequest(q, text, exemplars=tuple((t, x) for t, x in refs if t != tier)))
            labels.append(tier)
            groups.append(q.number)
    return requests, np.array(labels), np.array(groups)


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The cut that best separates positives from negatives (balanced accuracy)."""
    scores = [((pos >= t).mean() + (neg < t).mean()) / 2 for t in GRID]
    return float(GRID[int(np.argmax(scores))])


def fit(analyses: list[Analysis], labels: np.ndarray) -> dict:
    great = [a for a, y in zip(analyses, labels, strict=True) if y == "great"]
    others = [a for a, y in zip(analyses, labels, strict=True) if y == "mediocre"]
    poor = [a for a, y in zip(analyses, labels, strict=True) if y == "poor"]
    cover = best_threshold(
        np.concatenate([a.point_best for a in great]), np.concatenate([a.point_best for a in others])
    )
    flag = best_threshold(
        np.concatenate([a.flag_best for a in poor]),
        np.concatenate([a.flag_best for a in great + others]),
    )
    X = np.array([feature_vector(a, cover, flag) for a in analyses])
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-9
    model = LogisticRegression(C=C, max_iter=5000).fit((X - mean) / scale, labels)
    order = [list(model.classes_).index(t) for t in TIERS]
    return {
        "features": list(FEATURES),
        "tiers": list(TIERS),
        "cover_threshold": cover,
        "flag_threshold": flag,
        **GUARDS,
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "coef": model.coef_[order].round(6).tolist(),
        "intercept": model.intercept_[order].round(6).tolist(),
    }


def predict(rule: TierRule, a: Analysis) -> str:
    if _guard_rail(a, rule) is not None:
        return "poor"
    probs = rule.probabilities(a)
    return max(probs, key=probs.__getitem__)


def main() -> int:
    rubric = load_rubric()
    backend = LocalBackend()
    requests, labels, groups = holdout_requests(rubric)
    analyses = [a for a, _ in backend.analyse_many(requests)]

    predicted = np.empty(len(labels), dtype=object)
    for g in np.unique(groups):
        train = groups != g
        params = fit([a for a, t in zip(analyses, train, strict=True) if t], labels[train])
        rule = TierRule.from_dict(params)
        for i in np.flatnonzero(~train):
            predicted[i] = predict(rule, analyses[i])

    # The floor: grade each reference as the tier of the most similar remaining reference.
    whole = {
        t: v
        for t, v in zip([r.answer for r in requests], backend.embedder.embed([r.answer for r in requests]), strict=True)
    }
    floor = [max(r.exemplars, key=lambda ex: float(whole[ex[1]] @ whole[r.answer]))[0] for r in requests]

    rank = {t: i for i, t in enumerate(TIERS)}
    acc = accuracy_score(labels, predicted)
    qwk = cohen_kappa_score([rank[t] for t in labels], [rank[t] for t in predicted], weights="quadratic")
    cm = confusion_matrix(labels, predicted, labels=list(TIERS))
    floor_acc = accuracy_score(labels, floor)
    wrong = [f"q{groups[i]:02d} {labels[i]} -> {predicted[i]}" for i in range(len(labels)) if labels[i] != predicted[i]]

    final = fit(analyses, labels)
    (HERE / "params.json").write_text(json.dumps(final, indent=2) + "\n")
    lines = [
        "# Local backend fit (written by `python scripts/fit_local.py`)",
        "",
        "Leave-one-question-out on the 60 seed references, each graded with its own reference hidden",
        "from the exemplars and with thresholds and rule fitted on the other 19 questions only.",
        "",
        f"- tier accuracy: {acc:.3f} ({int(round(acc * len(labels)))}/{len(labels)})",
        f"- quadratic-weighted kappa: {qwk:.3f}",
        f"- floor, nearest remaining reference: accuracy {floor_acc:.3f}",
        "",
        "Confusion matrix (rows: reference tier, columns: predicted; order great, mediocre, poor):",
        "",
        "| | great | mediocre | poor |",
        "|---|--:|--:|--:|",
        *[f"| {t} | " + " | ".join(str(v) for v in row) + " |" for t, row in zip(TIERS, cm, strict=True)],
        "",
        "Misgraded: " + (", ".join(wrong) if wrong else "none"),
        "",
        f"Shipped parameters (fitted on all 20 questions): cover threshold {final['cover_threshold']}, "
        f"red-flag threshold {final['flag_threshold']}, guard rails {GUARDS}.",
    ]
    (HERE / "FIT.md").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
