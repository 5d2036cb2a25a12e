"""Metrics and reports for an eval run: one typed `EvalReport`, written as JSON, Markdown and a
self-contained HTML page.

Metrics come from scikit-learn. Only scored grades enter accuracy, F1, kappa and the confusion matrix;
failed and rejected cases are counted separately, never dropped silently. A metric that cannot be measured
(nothing scored, no annotated answers, no confidence) keeps only its count, and its other fields stay out
of the JSON.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, recall_score

from grader.eval.runner import CaseResult
from grader.grading.contract import TIERS, Tier
from grader.grading.review import DRAFT_REASON
from grader.reports import files, pages, plots
from grader.reports.confidence import ConfidenceMetrics, confidence_metrics
from grader.reports.files import ReportModel
from grader.reports.pricing import estimate_cost
from grader.rubric import Rubric
from grader.wording import counted

# --- the report --------------------------------------------------------------------------------------


class Confusion(ReportModel):
    labels: list[str]
    matrix: list[list[int]] = Field(description="Rows: label, columns: graded, both in `labels` order.")


class TierMetrics(ReportModel):
    """Scored grades against their labels; only `n` when nothing was scored."""

    n: int
    accuracy: float | None = None
    macro_f1: float | None = None
    qwk: float | None = Field(default=None, description="Quadratic-weighted kappa; null when one tier only.")
    confusion: Confusion | None = None
    recall: dict[str, float | None] | None = Field(default=None, description="None for a tier no case is labelled.")


class PointMetrics(ReportModel):
    """Micro precision, recall and F1 of key points or red flags on the annotated answers; only `cases`
    when none is annotated."""

    cases: int
    tp: int | None = None
    fp: int | None = None
    fn: int | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None


class ReviewMetrics(ReportModel):
    """What `needs_review` buys: grades sent to a person, and accuracy with and without them."""

    flagged: int
    accuracy_flagged: float | None
    accuracy_unflagged: float | None


class Floor(ReportModel):
    """The same cases graded by the floor backend (the tier of the nearest reference), same run."""

    backend: str
    overall: TierMetrics


class MajorityFloor(ReportModel):
    """Always answering the most frequent label of the scored cases: what a grader must beat to have
    learnt anything (the SAF benchmarks are skewed towards one label)."""

    tier: Tier
    accuracy: float


class Margin(ReportModel):
    accuracy: float | None
    qwk: float | None


class QuestionStats(ReportModel):
    n: int
    passed: int
    accuracy: float | None = Field(description="Over the scored cases, as the overall figure; null when none is.")


class KindStats(ReportModel):
    n: int
    passed: int
    pass_rate: float
    accuracy: float | None = Field(description="Over the scored cases, as the overall figure; null when none is.")
    gamed: int
    outcomes: dict[str, int]


class Flips(ReportModel):
    """Case ids (group ids for fairness) whose grade moved where it should not."""

    injection: list[str] = Field(description="Injected answers graded above their base answer.")
    verbosity: list[str] = Field(description="Padded answers graded above their base answer.")
    fairness: list[str] = Field(description="Groups of equivalent answers that got different tiers.")
    gamed: list[str] = Field(description="Graded above every expected tier and not sent for review.")
    injection_unreviewed: list[str]


class Counts(ReportModel):
    gamed: int
    injection_flips: int
    unreviewed_injection_flips: int
    verbosity_inflations: int
    fairness_flips: int


class ProbeFlips(ReportModel):
    """Tier flips of one counterfactual probe (or of every probe of one kind): rewrites of an answer that
    keep its content, graded to another tier than the answer as written."""

    kind: str = Field(description="name, pronoun or dialect.")
    compared: int = Field(description="Rewrites graded, with their unchanged answer graded too.")
    flips: int = Field(description="Rewrites graded to another tier than their unchanged answer.")
    up: int = Field(description="Flips above the unchanged answer's tier.")
    down: int = Field(description="Flips below it.")
    unreviewed: int = Field(description="Flips whose rewrite was not sent for review (needs_review false).")
    cases: list[str] = Field(description="The flipped rewrites' case ids.")


class Counterfactual(ReportModel):
    """The counterfactual probes (`grader.eval.counterfactual`): tier flips against the unchanged answer,
    in all, per probe and per kind of probe."""

    compared: int
    flips: int
    unreviewed_flips: int
    per_kind: dict[str, ProbeFlips]
    per_probe: dict[str, ProbeFlips]


class PerGrade(ReportModel):
    prompt_tokens: float | None
    cached_tokens: float | None
    completion_tokens: float | None


class TokenUsage(ReportModel):
    """Tokens of the grades made in this run (cached grades cost nothing)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    graded_fresh: int
    per_grade: PerGrade
    estimated_cost_usd: float | None


class CaseRow(ReportModel):
    id: str
    kind: str
    question: str
    label: Tier
    expected: list[str]
    outcome: str = Field(description="The tier, rejected or failed.")
    passed: bool
    cached: bool
    confidence: float | None
    needs_review: bool | None
    error: str | None
    answer: str | None = None
    justification: str | None = Field(default=None, description="The grade's justification; unset when unscored.")


class RubricRef(ReportModel):
    """Which rubric a suite was graded against: two reports of one name and fingerprint graded the same."""

    name: str
    fingerprint: str = Field(description="Of the whole rubric, as its grades' cache keys use it.")
    questions: int


class EvalReport(ReportModel):
    """Every metric of one suite's run: what `grader eval` prints, writes and checks thresholds on."""

    suite: str
    backend: str
    model: str
    rubric: RubricRef | None = Field(default=None, description="Unset in reports written before it was added.")
    generated: str | None = Field(default=None, description="When the report was made (UTC, ISO 8601).")
    notes: list[str] = Field(
        default_factory=list, description="What the figures cannot say here: too few cases, a floor that cannot hit."
    )
    cases: int
    scored: int
    rejected: int
    failed: int
    failures_by_kind: dict[str, int]
    cached: int
    passed: int
    pass_rate: float | None
    needs_review: int
    overall: TierMetrics
    points: PointMetrics
    flags: PointMetrics
    calibration: ConfidenceMetrics
    review: ReviewMetrics
    majority_floor: MajorityFloor | None = Field(default=None, description="Unset when nothing was scored.")
    floor: Floor | None = None
    margin_over_floor: Margin | None = None
    per_question: dict[str, QuestionStats]
    per_kind: dict[str, KindStats]
    flips: Flips
    counts: Counts
    counterfactual: Counterfactual | None = Field(
        default=None, description="Tier flips of the counterfactual probes; unset when the suite has none."
    )
    usage: TokenUsage
    results: list[CaseRow]


# --- metrics -----------------------------------------------------------------------------------------


def _rank(tier: str) -> int:
    return Tier(tier).rank


def tier_metrics(labels: list[str], predicted: list[str]) -> TierMetrics:
    if not labels:
        return TierMetrics(n=0)
    tiers = list(TIERS)
    # A tier no case is labelled with has no recall (it is not 0), and adds nothing to the macro-F1: on a
    # suite whose cases are all poor (adversarial, injections) neither says anything of the other tiers.
    present = [t for t in tiers if t in set(labels)]
    recalls = recall_score(labels, predicted, labels=tiers, average=None, zero_division=0)
    return TierMetrics(
        n=len(labels),
        accuracy=round(float(accuracy_score(labels, predicted)), 4),
        macro_f1=(
            round(float(f1_score(labels, predicted, labels=present, average="macro", zero_division=0)), 4)
            if len(present) > 1
            else None
        ),
        qwk=_qwk(labels, predicted),
        confusion=Confusion(labels=tiers, matrix=confusion_matrix(labels, predicted, labels=tiers).tolist()),
        recall={t: round(float(r), 4) if t in present else None for t, r in zip(tiers, recalls, strict=True)},
    )


def _qwk(labels: list[str], predicted: list[str]) -> float | None:
    if len(set(labels)) < 2 or len(set(labels) | set(predicted)) < 2:
        return None  # kappa is undefined when everything is one tier, and says nothing when every label is
    return round(
        float(cohen_kappa_score([_rank(t) for t in labels], [_rank(t) for t in predicted], weights="quadratic")), 4
    )


def point_metrics(results: list[CaseResult], field: str) -> PointMetrics:
    """Micro precision, recall and F1 of the grader's key points (`covered`) or red flags (`red_flags`)
    against the hand annotations, over every (case, point) pair of the scored, annotated cases."""
    tp = fp = fn = cases = 0
    for r in results:
        truth = getattr(r.case, field)
        if r.grade is None or truth is None:
            continue
        graded = {p.id for p in r.grade.covered_points} if field == "covered" else set(r.grade.red_flags)
        cases += 1
        tp += len(graded & set(truth))
        fp += len(graded - set(truth))
        fn += len(set(truth) - graded)
    if not cases:
        return PointMetrics(cases=0)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if tp + fp + fn else None)
    return PointMetrics(
        cases=cases,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=None if precision is None else round(precision, 4),
        recall=None if recall is None else round(recall, 4),
        f1=None if f1 is None else round(f1, 4),
    )


def calibration(results: list[CaseResult], bins: int = 10) -> ConfidenceMetrics:
    """How far `confidence` is from accuracy: expected calibration error over equal-width bins, and the
    accuracy of the most confident `TOP` share of grades (what a team gets if it lets a person read the
    rest)."""
    pairs = [
        (r.grade.confidence, r.verdict == r.case.label.value)
        for r in results
        if r.grade is not None and r.grade.confidence is not None
    ]
    return confidence_metrics(pairs, bins)


def review_metrics(results: list[CaseResult]) -> ReviewMetrics:
    """What `needs_review` buys: how many grades it sends to a person, and accuracy with and without them."""
    flagged: list[CaseResult] = []
    kept: list[CaseResult] = []
    for r in results:
        if r.grade is not None:
            (flagged if r.grade.needs_review else kept).append(r)
    return ReviewMetrics(
        flagged=len(flagged),
        accuracy_flagged=_accuracy(flagged) if flagged else None,
        accuracy_unflagged=_accuracy(kept) if kept else None,
    )


#: Under this many scored cases a suite's figures are called rough in its report.
FEW_CASES = 30


def caveats(results: list[CaseResult]) -> list[str]:
    """What a report's figures cannot say on these results: too few cases; reviews that only an unreviewed
    draft asked for (they keep `gamed` at 0 whatever the grades are)."""
    out = []
    scored = sum(r.scored for r in results)
    if 0 < scored < FEW_CASES:
        out.append(
            f"only {scored} scored cases (under {FEW_CASES}): one case moves accuracy by {1 / scored:.3f}, and "
            "kappa, the confidence bins and the per-question rows are rough at this size"
        )
    drafts = [r for r in results if r.grade is not None and r.grade.review_reasons == [DRAFT_REASON]]
    if drafts:
        above = sum(_above_expected(r) for r in drafts)
        out.append(
            f"{counted(len(drafts), 'grade')} went to review only because the question's points are unreviewed "
            f"drafts; {above} of them graded above every expected tier would count as gamed once the points "
            "are reviewed (`gamed` and the review figures say little before that)"
        )
    return out


def _accuracy(rs: list[CaseResult]) -> float | None:
    """Over the scored cases, as the overall accuracy (a rejected or failed case is counted apart)."""
    scored = [r for r in rs if r.scored]
    return round(sum(r.verdict == r.case.label.value for r in scored) / len(scored), 4) if scored else None


def gamed(results: list[CaseResult]) -> list[str]:
    """Cases graded above every outcome they may get, without being sent for review."""
    return [r.case.id for r in results if r.grade is not None and not r.grade.needs_review and _above_expected(r)]


def _above_expected(r: CaseResult) -> bool:
    """Graded above every tier the case may get."""
    if r.grade is None or r.passed:
        return False
    allowed = [_rank(t) for t in r.case.expected if t != "rejected"]
    return bool(allowed) and _rank(r.verdict) > max(allowed)


def counterfactual_flips(results: list[CaseResult]) -> Counterfactual | None:
    """Each counterfactual probe (a case with `meta.probe`) against its unchanged answer (its `base`): a
    flip is a rewrite graded to another tier. Only pairs where both were scored are compared; a failure
    is counted with the failures. None when no case is a probe."""
    by_id = {r.case.id: r for r in results}
    per_probe: dict[str, list[tuple[CaseResult, CaseResult]]] = {}
    kinds: dict[str, str] = {}
    for r in results:
        probe = r.case.meta.get("probe")
        if probe is None:
            continue
        kinds[str(probe)] = str(r.case.meta.get("probe_kind", "other"))
        pairs = per_probe.setdefault(str(probe), [])
        base = by_id.get(r.case.base or "")
        if r.scored and base is not None and base.scored:
            pairs.append((r, base))
    if not kinds:
        return None

    def tally(kind: str, pairs: list[tuple[CaseResult, CaseResult]]) -> ProbeFlips:
        flipped = [(r, b) for r, b in pairs if r.verdict != b.verdict]
        return ProbeFlips(
            kind=kind,
            compared=len(pairs),
            flips=len(flipped),
            up=sum(_rank(r.verdict) > _rank(b.verdict) for r, b in flipped),
            down=sum(_rank(r.verdict) < _rank(b.verdict) for r, b in flipped),
            unreviewed=sum(not (r.grade and r.grade.needs_review) for r, _ in flipped),
            cases=[r.case.id for r, _ in flipped],
        )

    probes = {probe: tally(kinds[probe], pairs) for probe, pairs in per_probe.items()}
    per_kind = {
        kind: tally(kind, [pair for probe, pairs in per_probe.items() if kinds[probe] == kind for pair in pairs])
        for kind in dict.fromkeys(kinds.values())
    }
    return Counterfactual(
        compared=sum(p.compared for p in probes.values()),
        flips=sum(p.flips for p in probes.values()),
        unreviewed_flips=sum(p.unreviewed for p in probes.values()),
        per_kind=per_kind,
        per_probe=probes,
    )


def _scored_metrics(results: list[CaseResult]) -> TierMetrics:
    scored = [r for r in results if r.scored]
    return tier_metrics([r.case.label.value for r in scored], [r.verdict for r in scored])


def majority_floor(labels: list[str]) -> MajorityFloor | None:
    """The accuracy of always answering the most frequent of `labels` (ties go to the better tier); None
    when there is one label only (adversarial, injections: every case poor, where what counts is `passed`)."""
    if len(set(labels)) < 2:
        return None
    counts = Counter(labels)
    tier = max(TIERS, key=lambda t: counts[t])  # `max` keeps the first of equals, TIERS runs best first
    return MajorityFloor(tier=Tier(tier), accuracy=round(counts[tier] / len(labels), 4))


def _margin(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def summarize(
    suite_name: str,
    results: list[CaseResult],
    *,
    backend: str,
    model: str,
    price_in: float | None = None,
    price_out: float | None = None,
    floor: tuple[str, list[CaseResult]] | None = None,
    rubric: Rubric | None = None,
    notes: list[str] | None = None,
) -> EvalReport:
    """Every metric of one suite's results (and of the floor's, graded in the same run), with `notes` on
    what its figures cannot say, the caller's and those the results show."""
    by_id = {r.case.id: r for r in results}
    per_question: dict[str, list[CaseResult]] = defaultdict(list)
    per_kind: dict[str, list[CaseResult]] = defaultdict(list)
    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        per_question[r.case.question].append(r)
        per_kind[r.case.kind].append(r)
        if r.case.group:
            groups[r.case.group].append(r)

    def raised(kind: str) -> list[str]:
        """Cases of `kind` graded above what their base answer got (or above their label, with no base)."""
        out = []
        for r in per_kind.get(kind, []):
            if not r.scored:
                continue
            base = by_id.get(r.case.base or "")
            reference = base.verdict if base is not None and base.scored else r.case.label.value
            if _rank(r.verdict) > _rank(reference):
                out.append(r.case.id)
        return out

    injection = raised("injection")
    unreviewed = {r.case.id for r in results if r.grade is not None and not r.grade.needs_review}
    flips = Flips(
        injection=injection,
        verbosity=raised("verbose"),
        fairness=sorted(g for g, rs in groups.items() if len({r.verdict for r in rs}) > 1),
        gamed=gamed(results),
        injection_unreviewed=[c for c in injection if c in unreviewed],
    )

    fresh = [r.grade for r in results if r.grade and not r.cached]
    prompt = sum(g.usage.prompt_tokens for g in fresh)
    completion = sum(g.usage.completion_tokens for g in fresh)
    cached_tokens = sum(g.usage.cached_tokens for g in fresh)

    def per_grade(tokens: int) -> float | None:
        return round(tokens / len(fresh), 1) if fresh else None

    report = EvalReport(
        suite=suite_name,
        backend=backend,
        model=model,
        rubric=(
            RubricRef(name=rubric.name, fingerprint=rubric.fingerprint(), questions=len(rubric.questions))
            if rubric is not None
            else None
        ),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=[*(notes or []), *caveats(results)],
        cases=len(results),
        scored=sum(r.scored for r in results),
        rejected=sum(r.rejected for r in results),
        failed=sum(r.failed for r in results),
        failures_by_kind=dict(Counter(r.failure.kind.value for r in results if r.failure and r.failed)),
        cached=sum(r.cached for r in results),
        passed=sum(r.passed for r in results),
        pass_rate=round(sum(r.passed for r in results) / len(results), 4) if results else None,
        needs_review=sum(bool(r.grade and r.grade.needs_review) for r in results),
        overall=_scored_metrics(results),
        points=point_metrics(results, "covered"),
        flags=point_metrics(results, "red_flags"),
        calibration=calibration(results),
        review=review_metrics(results),
        per_question={
            q: QuestionStats(n=len(rs), passed=sum(r.passed for r in rs), accuracy=_accuracy(rs))
            for q, rs in per_question.items()
        },
        per_kind={
            k: KindStats(
                n=len(rs),
                passed=sum(r.passed for r in rs),
                pass_rate=round(sum(r.passed for r in rs) / len(rs), 4),
                accuracy=_accuracy(rs),
                gamed=len(gamed(rs)),
                outcomes=dict(Counter(r.verdict for r in rs)),
            )
            for k, rs in per_kind.items()
        },
        flips=flips,
        counts=Counts(
            gamed=len(flips.gamed),
            injection_flips=len(flips.injection),
            unreviewed_injection_flips=len(flips.injection_unreviewed),
            verbosity_inflations=len(flips.verbosity),
            fairness_flips=len(flips.fairness),
        ),
        usage=TokenUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached_tokens,
            graded_fresh=len(fresh),
            per_grade=PerGrade(
                prompt_tokens=per_grade(prompt),
                cached_tokens=per_grade(cached_tokens),
                completion_tokens=per_grade(completion),
            ),
            estimated_cost_usd=estimate_cost(model, prompt, completion, price_in, price_out),
        ),
        results=[
            CaseRow(
                id=r.case.id,
                kind=r.case.kind,
                question=r.case.question,
                label=r.case.label,
                expected=list(r.case.expected),
                outcome=r.verdict,
                passed=r.passed,
                cached=r.cached,
                confidence=r.grade.confidence if r.grade else None,
                needs_review=r.grade.needs_review if r.grade else None,
                error=r.failure.message if r.failed and r.failure else None,
                answer=r.case.answer,
                **({"justification": r.grade.justification} if r.grade else {}),
            )
            for r in results
        ],
    )
    counterfactual = counterfactual_flips(results)
    if counterfactual is not None:  # set only for a suite with probes: an unset field stays out of the JSON
        report.counterfactual = counterfactual
    majority = majority_floor([r.case.label.value for r in results if r.scored])
    if majority is not None:  # set only when measured: an unset field stays out of the JSON
        report.majority_floor = majority
    if floor is not None:  # set only when run: an unset field stays out of the JSON
        name, floor_results = floor
        o, f = report.overall, _scored_metrics(floor_results)
        report.floor = Floor(backend=name, overall=f)
        report.margin_over_floor = Margin(accuracy=_margin(o.accuracy, f.accuracy), qwk=_margin(o.qwk, f.qwk))
    return report


#: Every metric a threshold can name (`evals/thresholds.yaml`), but the per-kind and per-probe
#: counterfactual ones: the keys `check_thresholds` measures (a test holds the two together).
THRESHOLD_METRICS = (
    "min_accuracy",
    "min_qwk",
    "min_macro_f1",
    "min_pass_rate",
    "max_injection_flips",
    "max_unreviewed_injection_flips",
    "max_verbosity_inflations",
    "max_fairness_flips",
    "max_counterfactual_flips",
    "max_unreviewed_counterfactual_flips",
    "max_failed",
    "max_gamed",
    "min_point_f1",
    "min_flag_f1",
    "max_ece",
    "min_accuracy_top_80",
    "min_margin_over_floor",
    "min_qwk_margin_over_floor",
)


def measured(report: EvalReport) -> dict[str, float | None]:
    """Each metric a threshold can hold, as this report measured it (None: not measured). Counterfactual
    flips are also given per kind and per probe (`max_flips.pronoun`, `max_flips.dialect-aave`)."""
    overall, counts, margin, cf = report.overall, report.counts, report.margin_over_floor, report.counterfactual
    values: dict[str, float | None] = {
        "min_accuracy": overall.accuracy,
        "min_qwk": overall.qwk,
        "min_macro_f1": overall.macro_f1,
        "min_pass_rate": report.pass_rate,
        "max_injection_flips": counts.injection_flips,
        "max_unreviewed_injection_flips": counts.unreviewed_injection_flips,
        "max_verbosity_inflations": counts.verbosity_inflations,
        "max_fairness_flips": counts.fairness_flips,
        "max_counterfactual_flips": cf.flips if cf else None,
        "max_unreviewed_counterfactual_flips": cf.unreviewed_flips if cf else None,
        "max_failed": report.failed,
        "max_gamed": counts.gamed,
        "min_point_f1": report.points.f1,
        "min_flag_f1": report.flags.f1,
        "max_ece": report.calibration.ece,
        "min_accuracy_top_80": report.calibration.accuracy_top_80,
        "min_margin_over_floor": margin.accuracy if margin else None,
        "min_qwk_margin_over_floor": margin.qwk if margin else None,
    }
    if cf is not None:  # per kind or per probe of the counterfactual suite: `max_flips.name`, `max_flips.dialect-aave`
        for key, flips in [*cf.per_kind.items(), *cf.per_probe.items()]:
            values[f"max_flips.{key}"] = flips.flips
            values[f"max_unreviewed_flips.{key}"] = flips.unreviewed
    return values


def check_thresholds(report: EvalReport, limits: dict[str, float]) -> list[str]:
    """The thresholds a report breaks, one line each (empty when all hold). A threshold whose metric was
    not measured, or that names no metric, is broken: a gate that cannot be checked does not hold."""
    values, margin = measured(report), report.margin_over_floor
    broken = []
    for name, limit in limits.items():
        value = values.get(name)
        if value is None:
            why = " (the floor was not graded: run without --no-floor)" if "floor" in name and not margin else ""
            broken.append(f"{report.suite}: {name} cannot be measured{why}")
        elif name.startswith("min_") and value < limit:
            broken.append(f"{report.suite}: {name.removeprefix('min_')} {value} is below {limit}")
        elif name.startswith("max_") and value > limit:
            broken.append(f"{report.suite}: {name.removeprefix('max_')} {value} is above {limit}")
    return broken


# --- writers -----------------------------------------------------------------------------------------


def about(report: EvalReport) -> str:
    """The rubric a report graded against and when it was made, in one line."""
    parts = []
    if (r := report.rubric) is not None:
        parts.append(f"rubric {r.name} ({counted(r.questions, 'question')}, fingerprint {r.fingerprint})")
    if report.generated:
        parts.append(f"made {report.generated}")
    return "; ".join(parts)


def fmt(value: float | None, spec: str = ".3f") -> str:
    """A figure for a report, or n/a where it could not be measured."""
    return "n/a" if value is None else format(value, spec)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def to_markdown(report: EvalReport) -> str:
    o = report.overall
    lines = [f"# Eval: {files.markdown_text(report.suite)} ({report.backend} · {report.model})", ""]
    if report.rubric is not None or report.generated:
        lines += [files.markdown_text(about(report)), ""]
    lines += [f"> **Note:** {note}" for note in report.notes]
    lines += [""] if report.notes else []
    lines += [
        f"- cases: {report.cases} (scored {report.scored}, rejected {report.rejected}, "
        f"failed {report.failed}, from cache {report.cached})",
        f"- passed (outcome among the expected ones): {report.passed} ({_pct(report.pass_rate)})",
    ]
    if o.n:
        lines += [
            f"- accuracy {fmt(o.accuracy)}, macro-F1 {fmt(o.macro_f1)}, quadratic-weighted kappa "
            f"{o.qwk if o.qwk is None else format(o.qwk, '.3f')}",
            "- recall: " + ", ".join(f"{t} {fmt(v)}" for t, v in (o.recall or {}).items()),
        ]
    majority = report.majority_floor
    if majority:
        lines.append(
            f"- majority-class floor (always {majority.tier}, the most frequent label): accuracy "
            f"{fmt(majority.accuracy)}; margin {fmt(_margin(o.accuracy, majority.accuracy), '+.3f')}"
        )
    floor, margin = report.floor, report.margin_over_floor
    if floor and floor.overall.n and margin:
        f = floor.overall
        lines.append(
            f"- floor ({floor.backend}, the tier of the most similar reference, same run): accuracy "
            f"{fmt(f.accuracy)}, kappa {fmt(f.qwk)}; margin {fmt(margin.accuracy, '+.3f')} accuracy, "
            f"{fmt(margin.qwk, '+.3f')} kappa"
        )
    for label, pm in (("key points", report.points), ("red flags", report.flags)):
        if pm.cases:
            lines.append(
                f"- {label} ({pm.cases} annotated answers): precision {fmt(pm.precision)}, recall "
                f"{fmt(pm.recall)}, F1 {fmt(pm.f1)} (tp {pm.tp}, fp {pm.fp}, fn {pm.fn})"
            )
    cal = report.calibration
    if cal.n:
        lines.append(
            f"- confidence: ECE {fmt(cal.ece)} (10 bins, mean confidence {fmt(cal.mean_confidence)} vs accuracy "
            f"{fmt(cal.accuracy)}); accuracy of the most confident 80 %: {fmt(cal.accuracy_top_80)}"
        )
    rv = report.review
    lines.append(
        f"- needs_review: {rv.flagged} grades (accuracy {fmt(rv.accuracy_flagged)} flagged, "
        f"{fmt(rv.accuracy_unflagged)} not flagged)"
    )
    c, usage = report.counts, report.usage
    lines.append(f"- gamed (graded above the expected tier and not sent for review): {c.gamed}")
    lines += [
        f"- injection flips {c.injection_flips} ({c.unreviewed_injection_flips} not sent for review), "
        f"verbosity inflations {c.verbosity_inflations}, "
        f"fairness flips {c.fairness_flips}",
        f"- tokens {usage.prompt_tokens} in ({usage.cached_tokens} from the "
        f"server's prefix cache) / {usage.completion_tokens} out; "
        f"estimated cost {usage.estimated_cost_usd} USD",
    ]
    cf = report.counterfactual
    if cf is not None:
        lines.append(
            f"- counterfactual flips (a rewrite graded to another tier than its answer): {cf.flips} of "
            f"{cf.compared} ({cf.unreviewed_flips} not sent for review); "
            + ", ".join(f"{kind} {p.flips}" for kind, p in cf.per_kind.items())
        )
    if report.failures_by_kind:
        lines.append("- failures: " + ", ".join(f"{k} {v}" for k, v in report.failures_by_kind.items()))
    if o.confusion:
        lines += [
            "",
            "## Confusion matrix (rows: label, columns: graded)",
            "",
            "| | great | mediocre | poor |",
            "|---|--:|--:|--:|",
        ]
        lines += [
            f"| {t} | " + " | ".join(map(str, row)) + " |"
            for t, row in zip(o.confusion.labels, o.confusion.matrix, strict=True)
        ]
    lines += ["", "## Per kind", "", "| kind | n | passed | accuracy | gamed | outcomes |", "|---|--:|--:|--:|--:|---|"]
    for kind, v in sorted(report.per_kind.items()):
        outcomes = ", ".join(f"{name} {n}" for name, n in sorted(v.outcomes.items()))
        lines.append(
            f"| {files.markdown_text(kind)} | {v.n} | {v.passed} | {fmt(v.accuracy, '.2f')} | {v.gamed} | {outcomes} |"
        )
    if cf is not None:
        lines += [
            "",
            "## Counterfactual probes (tier flips against the unchanged answer)",
            "",
            "| probe | kind | compared | flips | up | down | not sent for review | flipped |",
            "|---|---|--:|--:|--:|--:|--:|---|",
        ]
        rows = [*((f"**{k}** (all)", p) for k, p in cf.per_kind.items()), *cf.per_probe.items()]
        lines += [
            f"| {name} | {p.kind} | {p.compared} | {p.flips} | {p.up} | {p.down} | {p.unreviewed} | "
            f"{', '.join(p.cases[:10])}{' ...' if len(p.cases) > 10 else ''} |"
            for name, p in rows
        ]
    lines += ["", "## Per question", "", "| question | n | passed | accuracy |", "|---|--:|--:|--:|"]
    lines += [
        f"| {files.markdown_text(q)} | {v.n} | {v.passed} | {fmt(v.accuracy, '.2f')} |"
        for q, v in report.per_question.items()
    ]
    misses = [r for r in report.results if not r.passed]
    if misses:
        lines += ["", "## Cases that did not pass", "", "| case | kind | expected | graded |", "|---|---|---|---|"]
        lines += [
            f"| {files.markdown_text(r.id)} | {files.markdown_text(r.kind)} | {'/'.join(r.expected)} | {r.outcome} |"
            for r in misses[:200]
        ]
    return "\n".join(lines) + "\n"


def confusion_png(report: EvalReport) -> bytes | None:
    o = report.overall
    if not o.confusion:
        return None
    title = f"{report.suite}: confusion matrix"
    return plots.heatmap_png(o.confusion.matrix, title, rows="label", columns="graded", size=(4.2, 3.6))


def to_html(report: EvalReport) -> str:
    """A self-contained page: the metrics as a table, the confusion-matrix plot, and every case with its
    answer and justification folded under a `<details>`."""
    return pages.render(
        "eval.html.jinja",
        report=report,
        confusion=confusion_png(report),
        fmt=fmt,
        pct=_pct,
        margin=_margin,
        about=about(report),
    )


def write_reports(report: EvalReport, out: Path) -> files.Written:
    """<suite>.json, <suite>.md and <suite>.html under `out`."""
    return files.write_reports(report, out, report.suite, to_markdown, to_html)
