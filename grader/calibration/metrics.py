"""Agreement between interviewers and the model, and between interviewers, with bootstrap intervals.

Point estimates come from well-kept libraries: scikit-learn for Cohen's kappa (plain and quadratic-
weighted) and the confusion matrix, the `krippendorff` package for Krippendorff's alpha (ordinal).
Tiers are ranks: poor 0, mediocre 1, great 2. Leniency is the mean of human rank minus model rank, so
a positive value means the interviewer grades higher than the model.

Intervals are percentile bootstraps: answers are resampled with replacement by numpy's Generator under a
fixed seed, so a report is reproducible, each with every grade it got in the group: the grades several
interviewers gave one answer share its model grade and are not independent, so resampling them one by one
drew intervals too narrow (by about 40 % on a trial's data where most answers had 2 to 4 graders). Where
each answer has one grade in the group (one interviewer's grades), that is resampling the grades, drawn as
multinomial draws of their 3x3 table, which every statistic here is a function of. A resample whose statistic is
undefined (kappa when both sides gave one and the same tier; alpha with a single tier in play) is
skipped and the number used is reported. For speed each resample's kappa is computed from its 3x3
table with scikit-learn's formula vectorised over all resamples (2,000 scikit-learn calls per group
take seconds); the tests check it against `cohen_kappa_score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Literal

import numpy as np
from pydantic import Field

from grader.calibration.settings import Settings
from grader.grading.contract import TIERS, Tier
from grader.reports.confidence import PLACES
from grader.reports.files import ReportModel

RANKS = (0, 1, 2)
Weights = Literal["quadratic"] | None
Bias = Literal["lenient", "harsh", "no clear bias", "too few grades"]


class Interval(ReportModel):
    """A point estimate and its percentile bootstrap interval; both null when undefined."""

    value: float | None
    ci: tuple[float, float] | None
    resamples_used: int = Field(description="Resamples whose statistic was defined.")


class Confusion(ReportModel):
    labels: list[str]
    rows: Literal["human"]
    columns: Literal["model"]
    matrix: list[list[int]] = Field(description="Rows: the interviewer's tier, columns: the model's.")


class Agreement(ReportModel):
    """Every human-vs-model metric of one group of grades; only `n`, `warnings` and `bias` when empty."""

    n: int
    exact_agreement: Interval | None = None
    kappa: Interval | None = None
    qwk: Interval | None = None
    leniency: Interval | None = Field(default=None, description="Mean tier difference, human minus model.")
    confusion: Confusion | None = None
    warnings: list[str]
    bias: Bias


class InterviewerPair(ReportModel):
    """Two interviewers on the answers both graded: which of them grade alike."""

    first: str
    second: str
    answers: int
    exact_agreement: float
    qwk: float | None = Field(description="Quadratic-weighted kappa; null when both gave one and the same tier.")
    too_few: bool = Field(description="Fewer shared answers than --min-n: too few to conclude.")


class HumanAgreement(ReportModel):
    """Interviewers among themselves on the answers several graded, next to the model on the same;
    only `answers` and `warnings` when no answer was graded twice."""

    answers: int
    interviewers: int | None = None
    grades: int | None = None
    alpha: Interval | None = Field(default=None, description="Krippendorff's alpha (ordinal), interviewers.")
    alpha_with_model: Interval | None = Field(default=None, description="The same, the model one more rater.")
    human_pairs: int | None = None
    human_pairwise_agreement: float | None = None
    model_pairs: int | None = None
    model_pairwise_agreement: float | None = None
    pairs: list[InterviewerPair] = Field(
        default_factory=list, description="Each pair of interviewers who share answers."
    )
    warnings: list[str]


def ranks(tiers: Sequence[Tier | str]) -> np.ndarray:
    return np.array([Tier(t).rank for t in tiers], dtype=np.int64)


# --- point estimates -----------------------------------------------------------------------------


def confusion(human: Sequence[Tier | str], model: Sequence[Tier | str]) -> list[list[int]]:
    """Counts with rows = human tier, columns = model tier, both in TIERS order (great, mediocre, poor)."""
    h = [Tier(t).value for t in human]
    m = [Tier(t).value for t in model]
    from sklearn.metrics import confusion_matrix  # imported here: the CLI starts without scikit-learn

    return confusion_matrix(h, m, labels=list(TIERS)).tolist()


def exact_agreement(human: np.ndarray, model: np.ndarray) -> float:
    return float(np.mean(human == model))


def kappa(human: np.ndarray, model: np.ndarray, *, weights: Weights = None) -> float | None:
    """Cohen's kappa (weights=None) or quadratic-weighted kappa; None when undefined (both sides gave
    every answer one and the same tier, so chance agreement is already perfect)."""
    if len(set(human.tolist()) | set(model.tolist())) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(human, model, labels=list(RANKS), weights=weights))


def leniency(human: np.ndarray, model: np.ndarray) -> float:
    """Mean signed tier difference, human minus model (positive: the human is more generous)."""
    return float(np.mean(human - model))


# --- the bootstrap -------------------------------------------------------------------------------


def rank_table(human: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The 3x3 counts of (human rank, model rank) pairs: rows human, columns model, poor first."""
    return np.bincount(human * 3 + model, minlength=9).reshape(3, 3)


def resample_answers(
    human: np.ndarray, model: np.ndarray, answers: Sequence[str], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, 3, 3) tables of answers drawn with replacement, each with all of its grades: a cluster
    bootstrap. With one grade per answer it is `resample_tables`, which is what is then used."""
    ids = {a: i for i, a in enumerate(dict.fromkeys(answers))}
    cluster = np.array([ids[a] for a in answers], dtype=np.int64)
    if len(ids) == len(answers):
        return resample_tables(rank_table(human, model), resamples, rng)
    per_answer = np.zeros((len(ids), 9), dtype=np.int64)
    np.add.at(per_answer, (cluster, human * 3 + model), 1)
    out = np.empty((resamples, 9), dtype=np.int64)
    k = len(ids)
    for start in range(0, resamples, 200):  # (200 x answers) draws at a time: memory stays bounded
        size = min(200, resamples - start)
        drawn = rng.multinomial(k, np.full(k, 1 / k), size=size)
        out[start : start + size] = drawn @ per_answer
    return out.reshape(resamples, 3, 3)


def resample_tables(table: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, 3, 3) tables of grades drawn with replacement from `table`'s grades.

    Every statistic here is a function of the table, so drawing the nine cell counts from a multinomial
    is the same bootstrap as resampling the grades, without a (resamples x n) index array.
    """
    n = int(table.sum())
    return rng.multinomial(n, table.ravel() / n, size=resamples).reshape(resamples, 3, 3)


def kappa_from_tables(counts: np.ndarray, *, weights: Weights = None) -> np.ndarray:
    """scikit-learn's kappa for each table of a (k, 3, 3) stack; NaN where undefined."""
    i, j = np.indices((3, 3))
    w = (i - j) ** 2 if weights == "quadratic" else (i != j).astype(np.int64)
    total = counts.sum(axis=(1, 2), keepdims=True)
    expected = counts.sum(axis=2)[:, :, None] * counts.sum(axis=1)[:, None, :] / total
    observed = (w * counts).sum(axis=(1, 2))
    chance = (w * expected).sum(axis=(1, 2))
    out = np.full(counts.shape[0], np.nan)
    defined = chance > 1e-12
    out[defined] = 1 - observed[defined] / chance[defined]
    return out


def interval(value: float | None, replicates: np.ndarray, settings: Settings) -> Interval:
    """A point estimate with its percentile interval over the defined replicates."""
    valid = replicates[~np.isnan(replicates)]
    ci = None
    if value is not None and valid.size:
        tail = (1 - settings.level) / 2 * 100
        low, high = np.percentile(valid, [tail, 100 - tail])
        ci = (_round(low), _round(high))
    return Interval(value=None if value is None else _round(value), ci=ci, resamples_used=int(valid.size))


def _round(x: float) -> float:
    """Six places in the JSON: the tables print three, and three from four rounded twice (116 of 222 is
    0.52252, stored 0.5225, printed 0.522)."""
    return round(float(x), PLACES) + 0.0  # + 0.0 turns -0.0 into 0.0


def agreement(
    human: Sequence[Tier | str],
    model: Sequence[Tier | str],
    settings: Settings,
    answers: Sequence[str] | None = None,
) -> Agreement:
    """Every human-vs-model metric of one group of grades, each with its bootstrap interval; `answers` names
    each grade's answer, so the grades of one answer are resampled together."""
    h, m = ranks(human), ranks(model)
    n = int(h.size)
    if n == 0:
        return Agreement(n=0, warnings=["no grades"], bias="too few grades")
    rng = np.random.default_rng(settings.seed)
    if answers is None:
        counts = resample_tables(rank_table(h, m), settings.resamples, rng)
    else:
        counts = resample_answers(h, m, answers, settings.resamples, rng)
    total = counts.sum(axis=(1, 2))
    diagonal = np.trace(counts, axis1=1, axis2=2)
    i, j = np.indices((3, 3))
    shift = ((i - j) * counts).sum(axis=(1, 2))
    # Under min_n no interval is drawn: resampling 3 grades that all agree gives 3 that agree every time,
    # a zero-width interval that would read as certainty. The figures stand alone, with the warning.
    drawn = n >= settings.min_n

    def estimate(value: float | None, replicates: np.ndarray) -> Interval:
        found = interval(value, replicates, settings)
        return found if drawn else found.model_copy(update={"ci": None})

    kappa_interval = estimate(kappa(h, m), kappa_from_tables(counts))
    leniency_interval = estimate(leniency(h, m), shift / total)
    return Agreement(
        n=n,
        exact_agreement=estimate(exact_agreement(h, m), diagonal / total),
        kappa=kappa_interval,
        qwk=estimate(kappa(h, m, weights="quadratic"), kappa_from_tables(counts, weights="quadratic")),
        leniency=leniency_interval,
        confusion=Confusion(labels=list(TIERS), rows="human", columns="model", matrix=confusion(human, model)),
        warnings=_warnings(n, kappa_interval, settings, h),
        bias=bias(n, leniency_interval, settings),
    )


def bias(n: int, leniency: Interval, settings: Settings) -> Bias:
    """lenient or harsh when the leniency interval excludes zero; never concluded from a small group."""
    if n < settings.min_n:
        return "too few grades"
    ci = leniency.ci
    if ci and ci[0] > 0:
        return "lenient"
    if ci and ci[1] < 0:
        return "harsh"
    return "no clear bias"


def _warnings(n: int, kappa: Interval, settings: Settings, human: np.ndarray) -> list[str]:
    out = []
    if n < settings.min_n:
        out.append(f"only {n} grade{'s' if n != 1 else ''}, fewer than {settings.min_n}: too few to conclude")
    if kappa.value is None:
        out.append("kappa undefined: the interviewer and the model gave every answer the same tier")
    elif len(set(human.tolist())) == 1:
        tier = next(t for t in Tier if t.rank == int(human[0])).value
        out.append(
            f"every grade here is {tier}: kappa and QWK are 0 whatever the model says, and so is every resample "
            "of them (an interval of [0, 0] says nothing of agreement)"
        )
    elif kappa.resamples_used < settings.resamples / 2:
        out.append(
            f"kappa's interval rests on {kappa.resamples_used} of {settings.resamples} resamples "
            "(the others had a single tier)"
        )
    return out


# --- between interviewers ------------------------------------------------------------------------


def alpha(counts: np.ndarray) -> float | None:
    """Krippendorff's alpha, ordinal, from an (answers, 3) array counting the grades of each rank (poor,
    mediocre, great) every answer received; None when undefined (no answer graded twice, or a single
    tier among the answers that were)."""
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.size == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        import krippendorff

        value = float(
            krippendorff.alpha(value_counts=pairable, value_domain=list(RANKS), level_of_measurement="ordinal")
        )
    return None if np.isnan(value) else value


def rank_counts(reliability: np.ndarray) -> np.ndarray:
    """(answers, 3) rank counts from a (raters, answers) matrix of ranks with NaN for no grade."""
    return np.stack([(reliability == r).sum(axis=0) for r in RANKS], axis=1)


def human_agreement(
    grades: Sequence[tuple[str, str, Tier | str]],
    model: dict[str, Tier | str],
    settings: Settings,
) -> HumanAgreement:
    """Agreement among interviewers on the answers several of them graded, next to the model's on the same.

    `grades` holds (interviewer, answer id, tier); `model` maps answer ids to the model's tier. Alpha is
    computed over the interviewers alone and with the model added as one more rater: if adding the model
    lowers alpha, it agrees with the interviewers less than they agree with each other.
    """
    by_answer: dict[str, dict[str, int]] = {}
    for interviewer, answer, tier in grades:
        by_answer.setdefault(answer, {})[interviewer] = Tier(tier).rank
    shared = [a for a, g in by_answer.items() if len(g) >= 2]
    if not shared:
        return HumanAgreement(answers=0, warnings=["no answer was graded by more than one interviewer"])
    raters = {r for a in shared for r in by_answer[a]}
    humans = np.zeros((len(shared), 3), dtype=np.int64)
    for row, answer in enumerate(shared):
        for rank in by_answer[answer].values():
            humans[row, rank] += 1
    with_model = humans.copy()
    for row, answer in enumerate(shared):
        if answer in model:
            with_model[row, Tier(model[answer]).rank] += 1

    human_pairs = [x == y for a in shared for x, y in combinations(by_answer[a].values(), 2)]
    model_pairs = [g == Tier(model[a]).rank for a in shared if a in model for g in by_answer[a].values()]

    rng = np.random.default_rng(settings.seed)
    alpha_h, alpha_m = np.full(settings.resamples, np.nan), np.full(settings.resamples, np.nan)
    for b in range(settings.resamples):
        ix = rng.integers(0, len(shared), size=len(shared))
        alpha_h[b], alpha_m[b] = _nan(alpha(humans[ix])), _nan(alpha(with_model[ix]))
    humans_alpha = interval(alpha(humans), alpha_h, settings)
    models_alpha = interval(alpha(with_model), alpha_m, settings)
    warnings = []
    if len(shared) < settings.min_n:
        many = "answer" if len(shared) == 1 else "answers"
        warnings.append(f"only {len(shared)} {many} graded by several interviewers: too few to conclude")
        # no interval under min_n, as for the interviewers: one answer resampled is itself every time
        humans_alpha = humans_alpha.model_copy(update={"ci": None})
        models_alpha = models_alpha.model_copy(update={"ci": None})
    if humans_alpha.value is None:
        warnings.append("alpha undefined: every interviewer gave these answers the same tier")
    return HumanAgreement(
        pairs=interviewer_pairs(by_answer, settings),
        answers=len(shared),
        interviewers=len(raters),
        grades=int(humans.sum()),
        alpha=humans_alpha,
        alpha_with_model=models_alpha,
        human_pairs=len(human_pairs),
        human_pairwise_agreement=_round(float(np.mean(human_pairs))),
        model_pairs=len(model_pairs),
        model_pairwise_agreement=_round(float(np.mean(model_pairs))) if model_pairs else None,
        warnings=warnings,
    )


def interviewer_pairs(by_answer: dict[str, dict[str, int]], settings: Settings) -> list[InterviewerPair]:
    """Every pair of interviewers on the answers both graded, the most alike first."""
    together: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for grades in by_answer.values():
        for a, b in combinations(sorted(grades, key=lambda name: (name.casefold(), name)), 2):
            together.setdefault((a, b), []).append((grades[a], grades[b]))
    out = []
    for (a, b), ranks_ in together.items():
        x, y = np.array([r for r, _ in ranks_]), np.array([r for _, r in ranks_])
        qwk = kappa(x, y, weights="quadratic")
        out.append(
            InterviewerPair(
                first=a,
                second=b,
                answers=len(ranks_),
                exact_agreement=_round(exact_agreement(x, y)),
                qwk=None if qwk is None else _round(qwk),
                too_few=len(ranks_) < settings.min_n,
            )
        )
    return sorted(
        out, key=lambda p: (p.too_few, -p.exact_agreement, -p.answers, p.first.casefold(), p.second.casefold())
    )


def _nan(value: float | None) -> float:
    return np.nan if value is None else value
