"""Do key points carry the tier on SAF? Measured on SAF's training split (dev data), not its test suites.

For each way of writing the key points (the mechanical split, `grader.rubric.draft.draft_by_splitting`, or
drafted by contrast, `grader.rubric.contrast.draft_offline`) and each condition (the three exemplars the
saf-ua suite shows, or the great reference alone, as saf-uq has), every training answer is graded against
its own question (itself left out of the exemplars) and the script prints:

- rho: Spearman's rank correlation between the expected share of key points the answer makes (the
  local matcher's point probabilities, averaged) and the human tier (poor 0, mediocre 1, great 2);
- loqo: the SAF tier model refitted on the other questions' answers (leave-one-question-out, as
  `scripts/fit_saf.py` fits it) and graded on this question's: accuracy and QWK;
- shipped: the packaged SAF rule (`--local-rule saf`) on the same answers: accuracy and QWK.

    python scripts/measure_saf_points.py          # about 15 minutes on 2 cores
"""

from __future__ import annotations

import json
import sys

import numpy as np
from fit_local import TIERS, qwk
from fit_saf import fit_plain
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score

from grader.backends.local.backend import LocalBackend, guard_rail
from grader.backends.local.rule import TierRule, tier_features
from grader.eval.suites import load
from grader.grading.contract import GradeRequest
from grader.resources import data_dir
from grader.rubric.contrast import draft_offline
from grader.rubric.draft import draft_by_splitting
from grader.rubric.model import References, Rubric

SCORE = {"poor": 0, "mediocre": 1, "great": 2}


def rubric_for(base: Rubric, points: str, one_reference: bool) -> Rubric:
    """The saf-ua rubric with its key points written `points` ("mechanical" or "drafted"), from the great
    reference alone when `one_reference`."""
    questions = [
        q.model_copy(update={"references": References(great=q.references.great)}) if one_reference else q
        for q in base.questions
    ]
    rubric = base.with_questions(questions)
    draft = draft_by_splitting if points == "mechanical" else draft_offline(rubric)
    out = []
    for q in rubric.questions:
        kps, rfs = draft(q)
        out.append(q.model_copy(update={"key_points": kps, "red_flags": rfs if q.references.poor else []}))
    return rubric.with_questions(out)


def main() -> int:
    ua = load("saf-ua")
    answers = json.loads((data_dir("evals") / "saf" / "saf-train.json").read_text(encoding="utf-8"))["answers"]
    exemplars: dict[str, tuple[tuple[str, str], ...]] = {}
    for case in ua.cases:
        exemplars.setdefault(case.question, tuple((e.tier.value, e.text) for e in case.exemplars or ()))
    base, saf = TierRule.load(), TierRule.load("saf")
    backend = LocalBackend(rule=base)
    sys.stdout.write(f"SAF training split: {len(answers)} answers to {len(exemplars)} questions\n")
    sys.stdout.write("| key points | exemplars | rho | loqo: accuracy / QWK | shipped SAF rule: accuracy / QWK |\n")
    sys.stdout.write("|---|---|--:|--:|--:|\n")
    for one_reference in (False, True):
        for points in ("mechanical", "drafted"):
            rubric = rubric_for(ua.rubric, points, one_reference)
            requests, labels, groups = [], [], []
            for a in answers:
                if a["question"] not in exemplars or not a["answer"].strip():
                    continue
                shown = tuple(
                    (t, x)
                    for t, x in exemplars[a["question"]]
                    if x.strip() != a["answer"].strip() and (t == "great" or not one_reference)
                )
                requests.append(GradeRequest(rubric.find(a["question"]), a["answer"], exemplars=shown))
                labels.append(a["tier"])
                groups.append(a["question"])
            y, g = np.array(labels), np.array(groups)
            analyses = [a for a, _ in backend.analyse_many(requests)]
            T = np.array(
                [
                    tier_features(
                        a,
                        base.point_probabilities(a),
                        base.flag_probabilities(a),
                        base.point_threshold,
                        base.flag_threshold,
                    )
                    for a in analyses
                ]
            )
            loqo = np.empty(len(y), dtype=object)
            for q in np.unique(g):
                model = fit_plain(T[g != q], y[g != q])
                for i in np.flatnonzero(g == q):
                    loqo[i] = (
                        "poor" if guard_rail(analyses[i], saf) else TIERS[int(model.classes(T[i : i + 1])[0].argmax())]
                    )
            shipped = [TIERS[int(saf.tier.classes(T[i : i + 1])[0].argmax())] for i in range(len(y))]
            rho = spearmanr(T[:, 1], [SCORE[t] for t in y]).statistic
            sys.stdout.write(
                f"| {points} | {'great only' if one_reference else 'as saf-ua'} | {rho:.3f} "
                f"| {accuracy_score(y, list(loqo)):.3f} / {qwk(list(y), list(loqo)):.3f} "
                f"| {accuracy_score(y, shipped):.3f} / {qwk(list(y), shipped):.3f} |\n"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
