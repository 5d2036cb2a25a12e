"""The statistics of a bias audit, as New York City's Local Law 144 rules define them (6 RCNY §5-301) and
US federal guidance reads them (the four-fifths rule, 29 CFR 1607.4(D)).

A *unit* is what gets a score: a candidate (their answers' scores averaged) or, with `--per-answer`, one
answer. For a tool that scores, a unit *scores* when its score is above the median score of the full
sample (every unit, whatever its category), and a category's *scoring rate* is the share of its units
that do. For selection at a tier, a unit is *selected* when its score reaches that tier's score. A
category's *impact ratio* is its rate divided by the highest rate among the categories compared.

Categories holding under 2 % of the units may be left out of the ratios (§5-301(d)); they are, and are
still reported with their counts and rates. Units of unknown category are counted, never compared.

Next to each ratio: a 95 % percentile-bootstrap interval (units resampled within both categories, the
median held at the sample's), Fisher's exact test of the category against the highest one (scipy), the
four-fifths flag (ratio under 0.8), and whether the ratio can be trusted at all: a category under
`MIN_UNITS`, or an interval that straddles 0.8, cannot say on which side of the line the tool falls.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from grader.grading.contract import Tier

#: A tier as a score: averaged over a candidate's answers.
TIER_SCORE: dict[Tier, int] = {Tier.great: 2, Tier.mediocre: 1, Tier.poor: 0}
FOUR_FIFTHS = 0.8
_FOUR_FIFTHS = Fraction(4, 5)  # compared exactly: 6/15 against 10/20 is 0.8, not under it
#: Categories under this share of the units are reported but kept out of the ratios (6 RCNY §5-301(d)).
MIN_SHARE = 0.02
#: Fewer units than this in a category: its ratio is reported as one that cannot be trusted.
MIN_UNITS = 30
RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
UNKNOWN = "unknown"
#: Joins the values of an intersection: `Female × Hispanic or Latino`.
CROSS = " × "


@dataclass(frozen=True)
class Unit:
    """One scored unit and its category in each column (None: unknown)."""

    key: str
    score: float
    categories: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Rate:
    """One category's counts and, when it is compared, its ratio to the highest rate."""

    category: str
    n: int
    share: float
    hits: int
    rate: float
    excluded: bool = False
    highest: bool = False
    impact_ratio: float | None = None
    interval: tuple[float, float] | None = None
    fisher_p: float | None = None
    below_four_fifths: bool | None = None
    trusted: bool | None = None
    caution: str | None = None


@dataclass(frozen=True)
class Dimension:
    """The rates of one column (`sex`) or of an intersection of columns (`sex × race_ethnicity`)."""

    name: str
    columns: tuple[str, ...]
    rates: list[Rate]
    unknown: int
    reference: str | None
    note: str | None = None


def score_of(tiers: Iterable[Tier]) -> float:
    """The mean of the tiers' scores (great 2, mediocre 1, poor 0)."""
    scores = [TIER_SCORE[t] for t in tiers]
    return sum(scores) / len(scores)


def median(units: Sequence[Unit]) -> float | None:
    return statistics.median(u.score for u in units) if units else None


def above(threshold: float) -> Callable[[Unit], bool]:
    """Scoring: the unit's score is above the sample's median."""
    return lambda u: u.score > threshold


def at_least(threshold: float) -> Callable[[Unit], bool]:
    """Selection at a tier: the unit's score reaches that tier's score."""
    return lambda u: u.score >= threshold


def category_of(unit: Unit, columns: tuple[str, ...]) -> str | None:
    values = [unit.categories.get(c) for c in columns]
    if any(v is None for v in values):
        return None
    return CROSS.join(v for v in values if v is not None)


def dimension(
    units: Sequence[Unit],
    columns: tuple[str, ...],
    hit: Callable[[Unit], bool],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Dimension:
    """Every category's rate and ratio in one column or intersection of columns."""
    name = CROSS.join(columns)
    total = len(units)
    groups: dict[str, list[bool]] = {}
    unknown = 0
    for unit in units:
        category = category_of(unit, columns)
        if category is None:
            unknown += 1
        else:
            groups.setdefault(category, []).append(hit(unit))
    plain = {
        c: Rate(category=c, n=len(h), share=len(h) / total, hits=sum(h), rate=sum(h) / len(h))
        for c, h in sorted(groups.items())
    }
    compared = [r for r in plain.values() if r.share >= MIN_SHARE]
    excluded = [Rate(**{**r.__dict__, "excluded": True}) for r in plain.values() if r.share < MIN_SHARE]
    if not compared:
        return Dimension(name, columns, excluded, unknown, None, "no category holds 2 % of the units: no ratio")
    best = max(compared, key=lambda r: (r.rate, r.n))
    if best.rate == 0:
        note = "no unit in any compared category scores: every rate is 0 and no ratio can be computed"
        return Dimension(name, columns, [*compared, *excluded], unknown, None, note)
    rates = [
        _compared(r, best, groups[r.category], groups[best.category], resamples=resamples, seed=seed) for r in compared
    ]
    return Dimension(name, columns, sorted([*rates, *excluded], key=lambda r: r.category), unknown, best.category)


def _compared(rate: Rate, best: Rate, hits: list[bool], best_hits: list[bool], *, resamples: int, seed: int) -> Rate:
    from scipy.stats import fisher_exact

    ratio = rate.rate / best.rate
    if rate is best:
        few = _too_few(best.n)
        return Rate(
            **{
                **rate.__dict__,
                "highest": True,
                "impact_ratio": 1.0,
                "below_four_fifths": False,
                "trusted": few is None,
                "caution": few,
            }
        )
    interval = ratio_interval(hits, best_hits, resamples=resamples, seed=seed)
    table = [[rate.hits, rate.n - rate.hits], [best.hits, best.n - best.hits]]
    p = float(fisher_exact(table, alternative="two-sided").pvalue)
    cautions = []
    if few := _too_few(rate.n):
        cautions.append(few)
    if best.n < MIN_UNITS:
        cautions.append(f"the highest category has only {best.n} (under {MIN_UNITS})")
    if interval is None:
        cautions.append("no interval could be computed")
    elif interval[0] < FOUR_FIFTHS <= interval[1]:
        cautions.append(f"the 95 % interval {interval[0]:.2f}-{interval[1]:.2f} straddles {FOUR_FIFTHS}")
    return Rate(
        **{
            **rate.__dict__,
            "impact_ratio": ratio,
            "interval": interval,
            "fisher_p": p,
            "below_four_fifths": Fraction(rate.hits, rate.n) < _FOUR_FIFTHS * Fraction(best.hits, best.n),
            "trusted": not cautions,
            "caution": "; ".join(cautions) or None,
        }
    )


def _too_few(n: int) -> str | None:
    """The caution on a category of fewer than `MIN_UNITS` units, or None."""
    return f"only {n} unit{'s' if n != 1 else ''} (under {MIN_UNITS})" if n < MIN_UNITS else None


def ratio_interval(
    hits: Sequence[bool], best_hits: Sequence[bool], *, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float] | None:
    """A percentile-bootstrap interval for rate(hits) / rate(best_hits), each sample resampled on its own
    (scipy.stats.bootstrap). A resample where both rates are 0 has no ratio and is left out of the
    percentiles; None when either sample holds one unit, or when a bound is not finite (the highest rate
    resampled to 0 too often)."""
    from scipy.stats import bootstrap

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            result: np.ndarray = a.mean(axis=axis) / b.mean(axis=axis)
        return result

    if len(hits) < 2 or len(best_hits) < 2:
        return None  # one unit cannot be resampled into a spread
    samples = (np.asarray(hits, dtype=float), np.asarray(best_hits, dtype=float))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample whose ratio is infinite warns in the standard error
        result = bootstrap(
            samples,
            ratio,
            n_resamples=resamples,
            method="percentile",
            confidence_level=LEVEL,
            vectorized=True,
            batch=200,
            rng=np.random.default_rng(seed),
        )
    # scipy's own bounds turn NaN when a single resample is 0/0: the same percentiles, without the
    # ratios that do not exist
    tail = (1 - LEVEL) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every ratio undefined: nanpercentile warns and gives NaN
        low, high = (float(b) for b in np.nanpercentile(result.bootstrap_distribution, [tail, 100 - tail]))
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return (low, high)
