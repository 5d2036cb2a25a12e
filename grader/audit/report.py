"""The bias audit: units built from the grades and the demographics, every analysis, and the report
(`audit.json`, `audit.md`, `audit.html`) in the shape the NYC rules ask a summary to take: per category
and per intersection the number of units, the scoring (or selection) rate and the impact ratio, the
categories left out under the 2 % rule, and the number of unknown category."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from grader.audit import metrics
from grader.audit.data import Grades, InterviewerGrade, People
from grader.audit.metrics import CROSS, Dimension, Unit
from grader.errors import AuditDataError
from grader.grading.contract import Tier
from grader.reports import files, pages, plots
from grader.reports.files import ReportModel, markdown_table, markdown_text
from grader.wording import counted, named, same_letters

STEM = "audit"
#: Candidates named in a message or the report before "and N more".
SHOWN = 20
#: Said in every report: what this audit is and is not.
LIMITS = (
    "This audit measures the data given to it. It is not the independent bias audit New York City's Local "
    "Law 144 requires: that must be done by an auditor with no stake in the tool, on the tool's historical "
    "data from real use (or test data when that is too thin), once a year.",
    "Scores are tiers (great 2, mediocre 1, poor 0) averaged per candidate; with few answers per candidate "
    "many candidates share the median score, and 'above the median' is strict, as the rules define it.",
    "Small categories give wide intervals. A ratio marked 'not trusted' (under 30 units, or a 95 % interval "
    "that straddles 0.8) cannot show on which side of the four-fifths line the tool falls.",
    "An impact ratio under 0.8 is evidence of adverse impact to look into (29 CFR 1607.4(D)), not proof; "
    "one at or above 0.8 is not proof of fairness either. The EEOC holds the employer responsible for a "
    "vendor's tool.",
)


class CategoryResult(ReportModel):
    n: int = Field(description="Units (candidates, or answers with --per-answer) in this category.")
    share: float = Field(description="The category's share of all units in the audit.")
    hits: int = Field(description="Units scoring above the median (scoring) or selected (selection).")
    rate: float = Field(description="hits / n: the scoring or selection rate.")
    impact_ratio: float | None = Field(
        description="rate / the highest compared category's rate; null when excluded under the 2 % rule or "
        "when no category scores."
    )
    ci_95: tuple[float, float] | None = Field(default=None, description="Bootstrap 95 % interval of the ratio.")
    fisher_p: float | None = Field(default=None, description="Fisher's exact test against the highest category.")
    below_four_fifths: bool | None = Field(default=None, description="impact_ratio < 0.8 (29 CFR 1607.4(D)).")
    excluded: bool = Field(description="Under 2 % of the units: reported, kept out of the ratios.")
    highest: bool = False
    trusted: bool | None = Field(default=None, description="False: too few units, or the interval straddles 0.8.")
    caution: str | None = None


class DimensionResult(ReportModel):
    columns: list[str]
    categories: dict[str, CategoryResult]
    unknown: int = Field(description="Units whose category here is unknown: counted, not compared.")
    reference: str | None = Field(description="The category with the highest rate, that the others divide by.")
    excluded: list[str] = Field(description="Categories under 2 % of the units.")
    below_four_fifths: list[str]
    note: str | None = None


class Analysis(ReportModel):
    kind: Literal["scoring", "selection"]
    rule: str = Field(description="What makes a unit count: above the median, or selected at a tier.")
    median: float | None
    units: int
    hits: int
    dimensions: dict[str, DimensionResult]


class Counts(ReportModel):
    rows: int = Field(description="Answers in GRADES.")
    graded: int
    failed: int = Field(description="Answers the model could not grade: left out of every score.")
    no_candidate: int = Field(description="Graded answers with no candidate: left out (the unit is a candidate).")
    units: int
    unknown_candidates: int = Field(description="Candidates graded but missing from the demographics.")
    missing_from_demographics: list[str] = Field(description=f"Their ids (the first {SHOWN}).")
    not_graded: int = Field(description="People in the demographics with no graded answer.")
    not_graded_people: list[str] = Field(default_factory=list, description=f"Their ids (the first {SHOWN}).")
    respelt_candidates: dict[str, str] = Field(
        default_factory=dict,
        description="Candidates named in GRADES (or the interviewers' file) as the demographics name them but "
        "for Unicode form, case or spacing: read as one person, {that spelling: the demographics'}.",
    )
    failed_answers: list[str] = Field(
        default_factory=list, description=f"The failed answers' ids, or lines where a row has none (the first {SHOWN})."
    )
    no_candidate_answers: list[str] = Field(
        default_factory=list, description=f"The ids (or lines) of graded answers with no candidate (the first {SHOWN})."
    )


class InterviewerResult(ReportModel):
    interviewer: str
    answers: int = Field(description="Answers this interviewer graded that the model graded too.")
    units: int
    interviewer_scoring: Analysis = Field(
        description="Scored by the interviewer's tiers, above the audit's median (the model's, over every unit): "
        "one bar for the interviewer and the model, so a scorer kinder to one group shows."
    )
    model_scoring: Analysis = Field(description="The model's tiers on the same answers, above the same bar.")
    interviewer_selection: Analysis | None = Field(default=None, description="With --selected: by their tiers.")
    model_selection: Analysis | None = Field(default=None, description="With --selected: the model's.")


class InterviewerCounts(ReportModel):
    grades: int
    unmatched: int = Field(description="Interviewer grades whose id GRADES does not hold.")
    model_failed: int = Field(description="Interviewer grades of answers the model failed to grade.")
    no_candidate: int
    respelt: dict[str, str] = Field(
        default_factory=dict,
        description="Interviewer names read as an earlier spelling (differing only in case or spacing).",
    )


class AuditReport(ReportModel):
    """Every figure of one `grader audit`."""

    source: str
    demographics: str
    unit: Literal["candidate", "answer"]
    categories: list[str]
    counts: Counts
    unknown: dict[str, int] = Field(description="Units of unknown category, per column.")
    scoring: Analysis
    selection: Analysis | None = None
    interviewers: list[InterviewerResult] | None = None
    interviewer_counts: InterviewerCounts | None = None
    settings: dict[str, float | int]
    limits: list[str]
    warnings: list[str] = Field(
        default_factory=list,
        description="What the reader must know before the figures: a default category column the demographics "
        "lack, values that may be one category written two ways (`F` and `Female`).",
    )
    merged_values: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Per column, the values read from several spellings (case or spacing): {shown as: spellings}.",
    )


# --- building ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One answer's tier, ready to be grouped into units."""

    unit: str
    candidate: str
    tier: Tier


def units_of(scored: Sequence[Scored], people: People) -> list[Unit]:
    by_unit: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        by_unit[s.unit].append(s)
    unknown = dict.fromkeys(people.columns)
    return [
        Unit(key, metrics.score_of(s.tier for s in items), people.categories.get(items[0].candidate, unknown))
        for key, items in by_unit.items()
    ]


def analyse(
    units: Sequence[Unit],
    people: People,
    kind: Literal["scoring", "selection"],
    selected: Tier | None = None,
    *,
    bar: float | None = None,
) -> Analysis:
    """Every dimension (each column, then their intersection) of one analysis. Scoring is above these units'
    median, or above `bar` (the audit's median, for the interviewers and the model on their answers)."""
    median = metrics.median(units) if bar is None else bar
    if kind == "scoring":
        hit: Callable[[Unit], bool] = metrics.above(median if median is not None else 0.0)
        whose = "the sample's" if bar is None else "the audit's"
        rule = f"score above {whose} median ({round(median, 3):g})" if median is not None else "score above the median"
    else:
        assert selected is not None
        level = metrics.TIER_SCORE[selected]
        hit = metrics.at_least(level)
        rule = f"selected at {selected.value}: score {level} or more"
    groupings: list[tuple[str, ...]] = [(c,) for c in people.columns]
    if len(people.columns) > 1:
        groupings.append(tuple(people.columns))
    dims = {CROSS.join(cols): _dimension(metrics.dimension(units, cols, hit)) for cols in groupings}
    return Analysis(
        kind=kind, rule=rule, median=median, units=len(units), hits=sum(hit(u) for u in units), dimensions=dims
    )


def _dimension(d: Dimension) -> DimensionResult:
    return DimensionResult(
        columns=list(d.columns),
        categories={
            r.category: CategoryResult(
                n=r.n,
                share=round(r.share, 4),
                hits=r.hits,
                rate=round(r.rate, 4),
                impact_ratio=_round(r.impact_ratio),
                ci_95=(round(r.interval[0], 4), round(r.interval[1], 4)) if r.interval else None,
                fisher_p=float(f"{r.fisher_p:.4g}") if r.fisher_p is not None else None,  # 4 figures: 5.8e-06 is no 0
                below_four_fifths=r.below_four_fifths,
                excluded=r.excluded,
                highest=r.highest,
                trusted=r.trusted,
                caution=r.caution,
            )
            for r in d.rates
        },
        unknown=d.unknown,
        reference=d.reference,
        excluded=[r.category for r in d.rates if r.excluded],
        below_four_fifths=[r.category for r in d.rates if r.below_four_fifths],
        note=d.note,
    )


def _round(value: float | None) -> float | None:
    """Six places in the JSON; the tables print three, from this (four, printed to two, showed 43/54 against
    the highest, 0.796, as "0.80 below 0.8", and printed 0.425 as 0.42)."""
    return None if value is None else round(value, 6)


#: The Limits line on scores when each answer is a unit (`--per-answer`), in place of LIMITS[1].
PER_ANSWER_LIMIT = (
    "Scores are tiers (great 2, mediocre 1, poor 0), one per answer; many answers share the median score, "
    "and 'above the median' is strict, as the rules define it. One candidate's answers are not independent "
    "of each other, but Fisher's test and the bootstrap interval treat them as if they were: with several "
    "answers per candidate, read the p-values and intervals as too narrow."
)


def build_report(
    grades: Grades,
    people: People,
    *,
    per_answer: bool = False,
    selected: Tier | None = None,
    interviewers: list[InterviewerGrade] | None = None,
    unmatched: int = 0,
    respelt: dict[str, str] | None = None,
    warnings: Sequence[str] = (),
) -> AuditReport:
    """The whole audit of `grades` against `people`."""
    graded = [a for a in grades.answers if a.tier is not None]
    with_candidate = [a for a in graded if a.candidate]
    scored = [
        Scored((a.id or a.where) if per_answer else (a.candidate or ""), a.candidate or "", a.tier)
        for a in with_candidate
        if a.tier is not None
    ]
    units = units_of(scored, people)
    candidates = {a.candidate for a in with_candidate if a.candidate}
    missing = sorted(c for c in candidates if c not in people.categories)
    not_graded = [c for c in people.categories if c not in candidates]
    if candidates and len(missing) == len(candidates):
        raise AuditDataError(
            f"{people.path}: none of the {len(candidates)} graded candidates is in it "
            f"(GRADES has {', '.join(missing[:3])}...; it has {', '.join(list(people.categories)[:3])}...)",
            hint="both files must name candidates the same way",
        )
    if not candidates:
        raise AuditDataError(f"{grades.label}: no graded answer names a candidate: nothing to audit")
    scoring = analyse(units, people, "scoring")
    unknown = {c: sum(u.categories.get(c) is None for u in units) for c in people.columns}
    report = AuditReport(
        source=grades.label,
        demographics=people.path,
        unit="answer" if per_answer else "candidate",
        categories=list(people.columns),
        counts=Counts(
            rows=len(grades.answers),
            graded=len(graded),
            failed=len(grades.answers) - len(graded),
            no_candidate=len(graded) - len(with_candidate),
            units=len(units),
            unknown_candidates=len(missing),
            missing_from_demographics=missing[:SHOWN],
            not_graded=len(not_graded),
            not_graded_people=not_graded[:SHOWN],
            respelt_candidates=dict(respelt or {}),
            failed_answers=[a.id or a.where for a in grades.answers if a.tier is None][:SHOWN],
            no_candidate_answers=[a.id or a.where for a in graded if not a.candidate][:SHOWN],
        ),
        unknown=unknown,
        scoring=scoring,
        settings={
            "min_share": metrics.MIN_SHARE,
            "min_units": metrics.MIN_UNITS,
            "four_fifths": metrics.FOUR_FIFTHS,
            "resamples": metrics.RESAMPLES,
            "level": metrics.LEVEL,
            "seed": metrics.SEED,
        },
        limits=[PER_ANSWER_LIMIT if per_answer and i == 1 else line for i, line in enumerate(LIMITS)],
        warnings=[*people.notes, *warnings],
        merged_values=people.merged,
    )
    if selected is not None:
        report.selection = analyse(units, people, "selection", selected)
    if interviewers is not None:
        report.interviewers, report.interviewer_counts = _interviewers(
            interviewers, people, per_answer=per_answer, unmatched=unmatched, bar=scoring.median, selected=selected
        )
    return report


def _interviewers(
    grades: list[InterviewerGrade],
    people: People,
    *,
    per_answer: bool,
    unmatched: int,
    bar: float | None,
    selected: Tier | None,
) -> tuple[list[InterviewerResult], InterviewerCounts]:
    """Each interviewer's rates on the candidates they graded, next to the model's on the same answers, at
    one bar for both: the audit's median. Each scorer's own median hid a scorer kinder to one group: one
    who gave most men great had a median of 2, so no one scored above it and every rate was 0."""
    usable = [g for g in grades if g.model is not None and g.candidate]
    by_interviewer: dict[str, list[InterviewerGrade]] = defaultdict(list)
    for g in usable:
        by_interviewer[g.interviewer].append(g)
    results = []
    for name, own in sorted(by_interviewer.items(), key=lambda item: (item[0].casefold(), item[0])):

        def unit(g: InterviewerGrade) -> str:
            return g.id if per_answer else g.candidate or ""

        human = units_of([Scored(unit(g), g.candidate or "", g.tier) for g in own], people)
        model = units_of([Scored(unit(g), g.candidate or "", g.model) for g in own if g.model], people)
        results.append(
            InterviewerResult(
                interviewer=name,
                answers=len(own),
                units=len(human),
                interviewer_scoring=analyse(human, people, "scoring", bar=bar),
                model_scoring=analyse(model, people, "scoring", bar=bar),
                interviewer_selection=analyse(human, people, "selection", selected) if selected else None,
                model_selection=analyse(model, people, "selection", selected) if selected else None,
            )
        )
    counts = InterviewerCounts(
        grades=len(grades) + unmatched,
        unmatched=unmatched,
        model_failed=sum(g.model is None for g in grades),
        no_candidate=sum(g.model is not None and not g.candidate for g in grades),
        respelt={g.written: g.interviewer for g in grades if g.written is not None},
    )
    return results, counts


# --- Markdown ------------------------------------------------------------------------------------


HEAD = ["category", "n", "share", "rate", "impact ratio", "95 % interval", "Fisher p", "four-fifths", "note"]


def category_cells(name: str, c: CategoryResult, units: int) -> list[str]:
    """A table row; the share and rate are printed from the counts (the JSON's are rounded to 4 places, and
    rounding those again printed 14 of 55 as 25.4 %)."""
    if c.excluded:
        ratio, flag = "excluded (under 2 %)", ""
    elif c.impact_ratio is None:
        ratio, flag = "n/a", ""
    else:
        ratio = f"{c.impact_ratio:.3f}" + (" (highest)" if c.highest else "")
        flag = "below 0.8" if c.below_four_fifths else "ok"
    interval = f"{c.ci_95[0]:.2f}-{c.ci_95[1]:.2f}" if c.ci_95 else ""
    p = f"{c.fisher_p:.3g}" if c.fisher_p is not None else ""
    note = f"not trusted: {c.caution}" if c.trusted is False else ""
    return [name, str(c.n), f"{c.n / units:.1%}", f"{c.hits / c.n:.1%}", ratio, interval, p, flag, note]


def summary_lines(report: AuditReport) -> list[str]:
    c = report.counts
    lines = [
        f"grades: {report.source} ({counted(c.rows, 'answer', 'answers')}: {c.graded} graded, {c.failed} failed "
        "and left out" + (f", {c.no_candidate} with no candidate and left out" if c.no_candidate else "") + ")",
        f"demographics: {report.demographics} (columns {', '.join(report.categories)}); "
        f"{counted(c.units, report.unit)} audited",
        "unknown category: " + ", ".join(f"{col} {n}" for col, n in report.unknown.items()),
    ]
    lines += [f"warning: {w}" for w in report.warnings]
    for column, merged in report.merged_values.items():
        lines.append(
            f"{column} values differing only in case or spacing are read as one category: "
            + "; ".join(f"{', '.join(repr(s) for s in spellings)} as {shown!r}" for shown, spellings in merged.items())
        )
    if c.respelt_candidates:
        shown = ", ".join(f"{a!r} as {b!r}{same_letters(a, b)}" for a, b in list(c.respelt_candidates.items())[:SHOWN])
        lines.append(f"candidate names differing only in Unicode form, case or spacing are read as one person: {shown}")
    if c.unknown_candidates:
        lines.append(
            f"{counted(c.unknown_candidates, 'graded candidate is', 'graded candidates are')} missing from the "
            "demographics (counted as unknown): " + named(c.missing_from_demographics, c.unknown_candidates)
        )
    if c.failed:
        lines.append(
            f"{counted(c.failed, 'answer', 'answers')} the model failed to grade: " + named(c.failed_answers, c.failed)
        )
    if c.no_candidate:
        lines.append(
            f"{counted(c.no_candidate, 'graded answer names', 'graded answers name')} no candidate: "
            + named(c.no_candidate_answers, c.no_candidate)
        )
    if c.not_graded:
        lines.append(
            f"{counted(c.not_graded, 'person', 'people')} in the demographics "
            f"{'has' if c.not_graded == 1 else 'have'} no graded answer: " + named(c.not_graded_people, c.not_graded)
        )
    for analysis in (report.scoring, report.selection):
        if analysis is None:
            continue
        flagged = [
            f"{dim}: {', '.join(d.below_four_fifths)}" for dim, d in analysis.dimensions.items() if d.below_four_fifths
        ]
        ratios = [
            cat for d in analysis.dimensions.values() for cat in d.categories.values() if cat.impact_ratio is not None
        ]
        untrusted = sum(1 for cat in ratios if cat.trusted is False)
        if flagged:
            verdict = f"impact ratio under 0.8 for {'; '.join(flagged)}"
        elif any(not cat.highest for cat in ratios):
            verdict = "no impact ratio under 0.8"
        else:  # one known category, or no unit counts: nothing was compared
            verdict = "no impact ratio could be computed (see each dimension's note)"
        lines.append(
            f"{analysis.kind} ({analysis.rule}): {verdict}"
            + (
                f"; {counted(untrusted, 'ratio', 'ratios')} cannot be trusted (too few units or a wide interval)"
                if untrusted
                else ""
            )
        )
    return lines


def _analysis_md(analysis: Analysis, level: str = "##") -> list[str]:
    lines = [f"{level} {analysis.kind.capitalize()}: {analysis.rule}", ""]
    lines.append(f"{analysis.hits} of {analysis.units} units count.")
    for name, d in analysis.dimensions.items():
        lines += ["", f"{level}# {markdown_text(name)}", ""]
        lines += markdown_table(HEAD, [category_cells(cat, c, analysis.units) for cat, c in d.categories.items()])
        lines += ["", markdown_text(f"Unknown {name}: {d.unknown}.")]
        if d.excluded:
            lines.append(markdown_text(f"Excluded from the ratios (under 2 % of the units): {', '.join(d.excluded)}."))
        if d.note:
            lines.append(d.note + ".")
    return lines


def to_markdown(report: AuditReport) -> str:
    lines = ["# Bias audit", ""]
    lines += [f"- {markdown_text(line)}" for line in summary_lines(report)]
    lines.append("")
    lines += _analysis_md(report.scoring)
    if report.selection is not None:
        lines += ["", *_analysis_md(report.selection)]
    if report.interviewers is not None:
        lines += ["", "## Interviewers and the model on the same candidates", ""]
        lines += [f"- {markdown_text(line)}" for line in interviewer_lines(report)]
        for r in report.interviewers:
            lines += ["", f"### {markdown_text(interviewer_heading(r, report.unit))}"]
            for title, rows, notes in interviewer_sections(r):
                lines += ["", f"{markdown_text(title[:1].upper() + title[1:])}:", ""]
                lines += markdown_table(INTERVIEWER_HEAD, rows)
                lines += ["", *(f"- {markdown_text(n)}." for n in notes)] if notes else []
    lines += ["", "## Limits", "", *(f"- {line}" for line in report.limits)]
    return "\n".join(lines).rstrip() + "\n"


INTERVIEWER_HEAD = [
    "dimension",
    "category",
    "n",
    "interviewer: rate",
    "interviewer: ratio",
    "model: rate",
    "model: ratio",
]


def interviewer_sections(r: InterviewerResult) -> list[tuple[str, list[list[str]], list[str]]]:
    """Each analysis of one interviewer: its heading, its table rows, and the notes under it."""
    pairs = [(r.interviewer_scoring, r.model_scoring)]
    if r.interviewer_selection is not None and r.model_selection is not None:
        pairs.append((r.interviewer_selection, r.model_selection))
    out = []
    for human, model in pairs:
        notes = [
            f"{who} {dim}: {d.note}"
            for who, analysis in (("interviewer", human), ("model", model))
            for dim, d in analysis.dimensions.items()
            if d.note
        ]
        out.append((f"{human.kind}: {human.rule}", interviewer_rows(human, model), notes))
    return out


def interviewer_rows(human: Analysis, model_analysis: Analysis) -> list[list[str]]:
    out = []
    for dim, d in human.dimensions.items():
        model = model_analysis.dimensions[dim].categories
        for cat, c in d.categories.items():
            m = model.get(cat)
            out.append(
                [
                    dim,
                    cat,
                    str(c.n),
                    f"{c.hits / c.n:.1%}",
                    _ratio(c),
                    f"{m.hits / m.n:.1%}" if m else "",
                    _ratio(m) if m else "",
                ]
            )
    return out


def _ratio(c: CategoryResult) -> str:
    if c.excluded:
        return "excluded"
    if c.impact_ratio is None:
        return "n/a"
    flag = " *" if c.below_four_fifths else ""
    return f"{c.impact_ratio:.3f}{flag}" + (" (not trusted)" if c.trusted is False else "")


def interviewer_heading(r: InterviewerResult, unit: str) -> str:
    """`alice (12 answers, 5 candidates)`; with answers as the units, `alice (12 answers)`."""
    answers = counted(r.answers, "answer")
    return (
        f"{r.interviewer} ({answers})" if unit == "answer" else f"{r.interviewer} ({answers}, {counted(r.units, unit)})"
    )


def interviewer_lines(report: AuditReport) -> list[str]:
    c = report.interviewer_counts
    if c is None:
        return []
    grades = counted(c.grades, "interviewer grade", "interviewer grades")
    lines = [
        f"{grades}; the interviewers and the model are scored against one bar, the audit's median (the model's, "
        "over every unit), on the same answers; * under 0.8"
    ]
    if c.unmatched:
        lines.append(
            f"{counted(c.unmatched, 'interviewer grade names', 'interviewer grades name')} an answer id that GRADES "
            "does not hold (left out)"
        )
    if c.model_failed:
        lines.append(
            f"{counted(c.model_failed, 'interviewer grade is', 'interviewer grades are')} of answers the model "
            "failed to grade (left out)"
        )
    if c.no_candidate:
        lines.append(
            f"{counted(c.no_candidate, 'interviewer grade has', 'interviewer grades have')} no candidate (left out)"
        )
    if c.respelt:
        lines.append(
            "interviewer names that differ only in Unicode form, case or spacing are read as one person: "
            + ", ".join(f"{written!r} as {name!r}" for written, name in c.respelt.items())
        )
    return lines


# --- HTML ----------------------------------------------------------------------------------------


def ratios_png(analysis: Analysis) -> bytes | None:
    """Every compared category's impact ratio with its interval, the 0.8 line drawn in."""
    rows = [
        (f"{cat} ({dim})" if len(analysis.dimensions) > 1 else cat, c)
        for dim, d in analysis.dimensions.items()
        for cat, c in d.categories.items()
        if c.impact_ratio is not None
    ]
    if not rows:
        return None

    def paint(ax: Any) -> None:
        for y, (_label, c) in enumerate(reversed(rows)):
            ratio = c.impact_ratio or 0.0
            colour = "#b91c1c" if c.below_four_fifths else "#1d4ed8"
            untrusted = c.trusted is False
            ax.barh(y, ratio, color=colour, alpha=0.35 if untrusted else 0.85, hatch="//" if untrusted else None)
            if c.ci_95:
                ax.plot(list(c.ci_95), [y, y], color="black", linewidth=1.2)
        ax.axvline(metrics.FOUR_FIFTHS, color="#b91c1c", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(rows)), [f"{label} (n={c.n})" for label, c in reversed(rows)])
        ax.set_xlabel("impact ratio, with its 95 % interval\ndashed line: four-fifths; faded, hatched: not trusted")
        ax.set_xlim(0, max([1.5, *(c.ci_95[1] for _, c in rows if c.ci_95)]) * 1.02)
        ax.set_title(f"{analysis.kind}: {analysis.rule}", fontsize=10)

    return plots.draw((8.5, 1.6 + 0.34 * len(rows)), paint)


def _analysis_context(analysis: Analysis) -> dict[str, Any]:
    return {
        "analysis": analysis,
        "chart": ratios_png(analysis),
        "tables": [
            (name, d, [category_cells(cat, c, analysis.units) for cat, c in d.categories.items()])
            for name, d in analysis.dimensions.items()
        ],
    }


def to_html(report: AuditReport) -> str:
    """A self-contained page: the tables, a chart of the ratios, no script, no outside resource."""
    analyses = [_analysis_context(report.scoring)]
    if report.selection is not None:
        analyses.append(_analysis_context(report.selection))
    return pages.render(
        "audit.html.jinja",
        report=report,
        summary=summary_lines(report),
        head=HEAD,
        analyses=analyses,
        interviewer_head=INTERVIEWER_HEAD,
        interviewers=[
            (interviewer_heading(r, report.unit), interviewer_sections(r)) for r in report.interviewers or []
        ],
        interviewer_summary=interviewer_lines(report),
    )


def write_reports(report: AuditReport, out: Path) -> files.Written:
    """audit.json, audit.md and audit.html under `out`."""
    return files.write_reports(report, out, STEM, to_markdown, to_html)
