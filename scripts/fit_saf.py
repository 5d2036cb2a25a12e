"""Fit the local backend's SAF rule (`--local-rule saf`) on SAF's training split; its test splits are not read.

SAF's questions are not interview questions and its answers are short technical ones, so the packaged
rule's tier model (fitted on the answers suite) does not transfer. Here the tier model is refitted on
SAF's graded training answers, each graded against its own question with the exemplars the `saf-ua`
suite shows for it (the answer itself left out when it is one of them); the key-point and red-flag
models are the packaged rule's, and the text guards are kept only where no training answer trips them.
Figures are leave-one-question-out on the training split.

    python scripts/fit_saf.py [SAF2_0_DIR]    # writes grader/backends/local/params-saf.json and FIT-saf.md
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from build_saf import DEFAULT_SRC, LABELS, read_split, slug
from fit_local import HERE, TIERS, fit_logistic, qwk
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from grader.backends.local.backend import LocalBackend, guard_rail
from grader.backends.local.rule import TIER_FEATURES, Logistic, TierRule, tier_features
from grader.eval.suites import load
from grader.grading.contract import GradeRequest

C_SAF = 0.5


def fit_plain(X: np.ndarray, y: np.ndarray) -> Logistic:
    """Multinomial logistic regression without class weights: SAF is two-thirds `great`, and accuracy
    above the majority class is the first thing asked of a grader there."""
    base = fit_logistic(X, y, TIER_FEATURES, C_SAF, classes=TIERS)  # for the fill values and scaling
    Z = base._z(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C_SAF, max_iter=5000).fit(Z, y)
    order = [list(model.classes_).index(t) for t in TIERS]
    return replace(base, coef=model.coef_[order], intercept=model.intercept_[order])


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else DEFAULT_SRC
    training = read_split(src / "training")
    ua = load("saf-ua")
    exemplars: dict[str, tuple[tuple[str, str], ...]] = {}
    for case in ua.cases:
        exemplars.setdefault(case.question, tuple((e.tier.value, e.text) for e in case.exemplars or ()))
    base = TierRule.load()
    backend = LocalBackend(rule=base)
    requests, labels, groups = [], [], []
    for sid, q in training.items():
        qid = slug(sid)
        if qid not in exemplars:
            continue
        question = ua.rubric.find(qid)
        for a in q.answers:
            if a.response.strip():
                shown = tuple((t, x) for t, x in exemplars[qid] if x.strip() != a.response.strip())
                requests.append(GradeRequest(question, a.response, exemplars=shown))
                labels.append(LABELS[a.label])
                groups.append(qid)
    y, g = np.array(labels), np.array(groups)
    analyses = [a for a, _ in backend.analyse_many(requests)]

    # Guards: keep one only if it trips on no more than 1 % of the training answers.
    tripped: dict[str, int] = {}
    for a in analyses:
        hit = guard_rail(a, base)
        if hit is not None:
            tripped[hit[1].split(" (")[0]] = tripped.get(hit[1].split(" (")[0], 0) + 1
    guards = base.guards
    for why, n in tripped.items():
        if n / len(analyses) > 0.01:
            if "too short" in why:
                guards = replace(guards, min_words=1)
            elif "keywords" in why:
                guards = replace(guards, prose=0.0)
            elif "off-topic" in why:
                guards = replace(guards, topic=0.0)
            elif "repeats the question" in why:
                guards = replace(guards, echo=1.01)
            elif "same words" in why:
                guards = replace(guards, repetition=1.01)
    rule = replace(base, guards=guards)

    T = np.array(
        [
            tier_features(
                a, base.point_probabilities(a), base.flag_probabilities(a), base.point_threshold, base.flag_threshold
            )
            for a in analyses
        ]
    )
    pred = np.empty(len(y), dtype=object)
    for q in np.unique(g):
        train = g != q
        model = fit_plain(T[train], y[train])
        for i in np.flatnonzero(~train):
            pred[i] = "poor" if guard_rail(analyses[i], rule) else TIERS[int(model.classes(T[i : i + 1])[0].argmax())]
    majority = max(set(labels), key=labels.count)
    rule = replace(rule, tier=fit_plain(T, y))
    (HERE / "params-saf.json").write_text(json.dumps(rule.to_dict(), indent=2) + "\n")
    lines = [
        "# Local backend, SAF rule (written by `python scripts/fit_saf.py`)",
        "",
        f"The tier model refitted on SAF's training split: {len(y)} graded answers to {len(set(groups))} "
        "questions, each with the exemplars the saf-ua suite shows for it; the key-point and red-flag models "
        "are the packaged rule's. Leave-one-question-out on the training split:",
        "",
        f"- accuracy {accuracy_score(y, list(pred)):.3f}, kappa {qwk(list(y), list(pred)):.3f}; majority class "
        f"({majority}) {labels.count(majority) / len(labels):.3f}",
        "- guard rails tripped by training answers (a guard tripping on over 1 % is turned off): "
        + (", ".join(f"{why} {n}" for why, n in sorted(tripped.items())) or "none"),
    ]
    text = "\n".join(lines) + "\n"
    (HERE / "FIT-saf.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
