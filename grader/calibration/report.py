"""The calibration report: one typed `CalibrationReport`, written as JSON, Markdown and a self-contained
HTML page.

The HTML page embeds its charts (confusion-matrix heatmaps, a per-interviewer leniency chart) as PNG
data URIs drawn by matplotlib, and carries no script and no outside resource.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from grader.calibration.data import Pair, respelt
from grader.calibration.metrics import (
    Agreement,
    HumanAgreement,
    Interval,
    InterviewerPair,
    agreement,
    human_agreement,
)
from grader.calibration.settings import Settings
from grader.grading.contract import TIERS, Tier
from grader.reports import files, pages, plots
from grader.reports.confidence import PLACES, ConfidenceMetrics, confidence_metrics
from grader.reports.files import ReportModel, markdown_table
from grader.wording import counted, named

#: Disagreements listed in the Markdown and HTML pages (the JSON holds them all).
SHOWN_DISAGREEMENTS = 200
STEM = "calibration"

# --- the report --------------------------------------------------------------------------------------


class Inputs(ReportModel):
    human: str = Field(description="The interviewers' CSV.")
    model_grades: str | None = Field(description="The model grades file; null when this run graded the answers.")
    graded_by: list[str] = Field(description="`backend · model` of every model grade.")


class Counts(ReportModel):
    rows: int
    paired: int
    failed: int
    unmatched: int
    interviewers: int
    questions: int
    answers: int


class Row(ReportModel):
    """One row of the interviewers' CSV."""

    line: int
    interviewer: str
    question: str
    id: str
    candidate: str | None


class FailedRow(Row):
    error: str | None


class GradeRow(Row):
    human: Tier
    model: Tier | None
    status: Literal["paired", "failed", "unmatched"]


class Disagreement(Row):
    human: Tier
    model: Tier
    difference: int = Field(description="Tier ranks, human minus model.")
    answer: str | None
    justification: str
    missed_points: list[str]
    red_flags: list[str]


class ModelConfidence(ReportModel):
    """Whether the model's confidence means anything on these answers: how often the interviewers agree with
    its tier, by how sure it said it was, and with and without the grades it sent for review."""

    calibration: ConfidenceMetrics = Field(
        description="Over the paired grades with a confidence: `accuracy` is the share whose interviewer "
        "gave the model's tier; `ece` how far the stated confidence is from that share."
    )
    review_flagged: int = Field(description="Paired grades the model sent for review (needs_review).")
    agreement_flagged: float | None = None
    agreement_unflagged: float | None = None


class CalibrationReport(ReportModel):
    """Every metric of a calibration run: what `grader calibrate` prints and writes."""

    kind: Literal["calibration"]
    inputs: Inputs
    settings: Settings
    counts: Counts
    overall: Agreement
    interviewers: dict[str, Agreement]
    questions: dict[str, Agreement]
    human_agreement: HumanAgreement
    model_confidence: ModelConfidence
    disagreements: list[Disagreement] = Field(description="The largest tier gap first.")
    failed: list[FailedRow]
    unmatched: list[Row]
    grades: list[GradeRow]


def build_report(
    pairs: list[Pair],
    *,
    settings: Settings,
    human_path: str,
    model_grades_path: str | None = None,
) -> CalibrationReport:
    """Every metric of a calibration run."""
    paired = [p for p in pairs if p.status == "paired"]
    by_interviewer: dict[str, list[Pair]] = defaultdict(list)
    by_question: dict[str, list[Pair]] = defaultdict(list)
    for p in paired:
        by_interviewer[p.human.interviewer].append(p)
        by_question[p.question].append(p)
    models = sorted({f"{p.model.backend} · {p.model.model}" for p in paired if p.model is not None})

    def metrics(group: list[Pair]) -> Agreement:
        tiers = [p.human.tier for p in group]
        return agreement(tiers, [_model_tier(p) for p in group], settings, [p.answer_id for p in group])

    overall = metrics(paired)
    if note := respelt(p.human for p in pairs):
        overall.warnings.append(note)
    return CalibrationReport(
        kind="calibration",
        inputs=Inputs(human=human_path, model_grades=model_grades_path, graded_by=models),
        settings=settings,
        counts=Counts(
            rows=len(pairs),
            paired=len(paired),
            failed=sum(p.status == "failed" for p in pairs),
            unmatched=sum(p.status == "unmatched" for p in pairs),
            interviewers=len({p.human.interviewer for p in pairs}),
            questions=len({p.question for p in pairs}),
            answers=len({p.answer_id for p in pairs}),
        ),
        overall=overall,
        interviewers={
            name: metrics(group)
            for name, group in sorted(by_interviewer.items(), key=lambda item: (item[0].casefold(), item[0]))
        },
        questions={name: metrics(group) for name, group in sorted(by_question.items())},
        human_agreement=human_agreement(
            [(p.human.interviewer, p.answer_id, p.human.tier) for p in pairs],
            {p.answer_id: _model_tier(p) for p in paired},
            settings,
        ),
        model_confidence=model_confidence(paired),
        disagreements=disagreements(paired),
        failed=[
            FailedRow(**_row(p), error=p.failure.message if p.failure else None) for p in pairs if p.status == "failed"
        ],
        unmatched=[Row(**_row(p)) for p in pairs if p.status == "unmatched"],
        grades=[
            GradeRow(**_row(p), human=p.human.tier, model=_model_tier(p) if p.model else None, status=p.status)
            for p in pairs
        ],
    )


def model_confidence(paired: list[Pair]) -> ModelConfidence:
    """The model's confidence read against the interviewers: a grade is "right" where its interviewer gave
    the same tier (one pair per interviewer grade, so an answer three people graded counts three times)."""
    agrees = [(p, p.model is not None and p.human.tier is p.model.tier) for p in paired]
    flagged = [ok for p, ok in agrees if p.model is not None and p.model.needs_review]
    kept = [ok for p, ok in agrees if p.model is not None and not p.model.needs_review]
    return ModelConfidence(
        calibration=confidence_metrics(
            [(p.model.confidence, ok) for p, ok in agrees if p.model is not None and p.model.confidence is not None]
        ),
        review_flagged=len(flagged),
        agreement_flagged=round(sum(flagged) / len(flagged), PLACES) if flagged else None,
        agreement_unflagged=round(sum(kept) / len(kept), PLACES) if kept else None,
    )


PAIR_COLUMNS = ("interviewers", "answers both graded", "exact agreement", "QWK", "note")


def pair_rows(h: HumanAgreement) -> list[list[str]]:
    """Each pair of interviewers who share answers, the most alike first (pairs with too few answers last)."""
    return [
        [
            f"{p.first} · {p.second}",
            str(p.answers),
            _share(p.exact_agreement),
            _num(p.qwk),
            "too few to conclude" if p.too_few else "",
        ]
        for p in h.pairs
    ]


def confidence_lines(m: ModelConfidence) -> list[str]:
    """The model's confidence against the interviewers, one sentence a line."""
    c = m.calibration
    if not c.n:
        lines = ["the model's grades carry no confidence: nothing to check it against"]
    else:
        lines = [
            f"over {counted(c.n, 'grade')} with a confidence: mean confidence {_num(c.mean_confidence)}; the "
            f"interviewers gave the model's tier on {_share(c.accuracy)} of them (ECE {_num(c.ece)}), on "
            f"{_share(c.accuracy_top_80)} of its most confident 80 %"
        ]
    if m.review_flagged:
        lines.append(
            f"sent for review (needs_review): {counted(m.review_flagged, 'grade')}, the interviewers gave its "
            f"tier on {_share(m.agreement_flagged)} of them; on {_share(m.agreement_unflagged)} of the others"
        )
    return lines


def confidence_rows(m: ModelConfidence) -> list[list[str]]:
    """The bins with grades in them: confidence range, grades, share the interviewers agreed with."""
    bins = [b for b in m.calibration.bins or [] if b.n]
    return [[f"{b.start:.1f}-{b.to:.1f}", str(b.n), _share(b.accuracy)] for b in bins]


CONFIDENCE_COLUMNS = ("model confidence", "grades", "the interviewer gave its tier")


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _model_tier(pair: Pair) -> Tier:
    assert pair.model is not None
    return pair.model.tier


def _row(pair: Pair) -> dict[str, Any]:
    return {
        "line": pair.human.line,
        "interviewer": pair.human.interviewer,
        "question": pair.question,
        "id": pair.answer_id,
        "candidate": pair.human.candidate,
    }


def disagreements(paired: list[Pair]) -> list[Disagreement]:
    """Grades where the interviewer and the model differ, the largest tier gap first."""
    rows = []
    for p in paired:
        model = p.model
        assert model is not None
        difference = p.human.tier.rank - model.tier.rank
        if difference:
            rows.append(
                Disagreement(
                    **_row(p),
                    human=p.human.tier,
                    model=model.tier,
                    difference=difference,
                    answer=p.answer,
                    justification=model.justification,
                    missed_points=list(model.missed_points),
                    red_flags=list(model.red_flags),
                )
            )
    return sorted(rows, key=lambda r: (-abs(r.difference), r.interviewer, r.line))


# --- in plain words ------------------------------------------------------------------------------

#: Landis and Koch's (1977) reading of a kappa, the scale most papers quote: above each bound, the word.
KAPPA_READING = ((0.8, "almost perfect"), (0.6, "substantial"), (0.4, "moderate"), (0.2, "fair"), (0.0, "slight"))

#: What the figures mean, for a reader who has not met kappa: printed under the tables and in the pages.
HOW_TO_READ = (
    "exact agreement: the share of grades where the interviewer gave the model's tier",
    "kappa: agreement beyond what chance would give (0: no better than chance, 1: always the same tier); read on "
    "Landis and Koch's scale as slight up to 0.2, fair to 0.4, moderate to 0.6, substantial to 0.8, then almost "
    "perfect",
    "QWK (quadratic-weighted kappa): the same, but great against poor counts four times a one-tier difference, "
    "so it is the one to read for ordered tiers",
    "leniency: the mean tier difference, interviewer minus model; lenient or harsh means the 95 % interval "
    "leaves out zero. The model is the yardstick, not the truth: 'lenient' says only that the interviewer grades "
    "higher than the model",
    "[a, b]: the 95 % bootstrap interval; a group with fewer grades than --min-n gets no verdict",
)


def kappa_reading(kappa: float | None) -> str | None:
    """A kappa in words on Landis and Koch's scale ("moderate agreement beyond chance"); None where it is
    undefined. At zero, no agreement beyond chance; below it, less than chance gives: the two disagree
    more than they would at random (an interviewer who reverses the model's tiers)."""
    if kappa is None:
        return None
    if kappa < 0:
        return "worse than chance: they disagree more than at random"
    if kappa == 0:
        return "no agreement beyond chance"
    return next(word for bound, word in KAPPA_READING if kappa > bound) + " agreement beyond chance"


def in_short(report: CalibrationReport, where: str = " below") -> list[str]:
    """What the report says, in a few sentences a busy reader can act on: how far the interviewers agree with
    the model and with each other, who grades higher or lower than the model, and where they differ most.
    `where` says where the disagreements are listed (" below" in the pages; the printed report names the
    file, or says to write one)."""
    o, lines = report.overall, []
    if not o.n or o.exact_agreement is None or o.exact_agreement.value is None:
        return ["no interviewer grade has a model grade to compare it with"]
    agreed = round(o.exact_agreement.value * o.n)
    who = "the interviewers" if len(report.interviewers) != 1 else next(iter(report.interviewers))
    first = f"{who} gave the model's tier on {agreed} of {counted(o.n, 'grade')} ({o.exact_agreement.value:.1%})"
    qwk = o.qwk.value if o.qwk else None
    if (reading := kappa_reading(qwk)) is not None:
        first += f"; QWK {_num(qwk)}: {reading}"
    lines.append(first)
    if o.bias in ("lenient", "harsh") and o.leniency is not None and len(report.interviewers) > 1:
        higher = "higher" if o.bias == "lenient" else "lower"
        lines.append(f"taken together, the interviewers grade {higher} than the model ({_signed(o.leniency.value)})")
    groups: dict[str, list[str]] = defaultdict(list)
    for name, m in report.interviewers.items():
        lenient = m.leniency.value if m.leniency else None
        groups[m.bias].append(name if lenient is None or m.bias == "too few grades" else f"{name} ({_signed(lenient)})")
    for bias, one, many in (
        ("lenient", "grades higher than the model (lenient)", "grade higher than the model (lenient)"),
        ("harsh", "grades lower than the model (harsh)", "grade lower than the model (harsh)"),
        (
            "no clear bias",
            "grades neither clearly higher nor lower than the model",
            "grade neither clearly higher nor lower than the model",
        ),
        ("too few grades", "has too few grades to tell", "have too few grades to tell"),
    ):
        if names := groups.get(bias):
            joined = ("; " if any("," in n for n in names) else ", ").join(names)  # "Smith, John" is one person
            lines.append(f"{joined} {one if len(names) == 1 else many}")
    asked = {q: m for q, m in report.questions.items() if m.bias != "too few grades" and m.exact_agreement}
    shares = {q: _value(m.exact_agreement) or 0.0 for q, m in asked.items()}
    if len(shares) >= 2 and min(shares.values()) != max(shares.values()):  # no "most" and "least" of all alike
        low = [q for q, v in shares.items() if v == min(shares.values())]  # every question tied at each end
        high = [q for q, v in shares.items() if v == max(shares.values())]
        direction = _direction(asked[low[0]]) if len(low) == 1 else ""
        lines.append(
            f"they differ from the model most on {' and '.join(low)} ({_share(min(shares.values()))} the same tier"
            f"{direction}) and least on {' and '.join(high)} ({_share(max(shares.values()))})"
        )
    h = report.human_agreement
    enough = h.answers >= report.settings.min_n  # fewer shared answers are too few to compare with
    if enough and h.human_pairwise_agreement is not None and h.model_pairwise_agreement is not None:
        human, model = h.human_pairwise_agreement, h.model_pairwise_agreement
        than = (
            "about as often as"
            if abs(human - model) < 0.05
            else "less often than"
            if model < human
            else "more often than"
        )
        lines.append(
            f"on the answers several interviewers graded, the model agrees with them {than} they agree with each "
            f"other ({model:.1%} against {human:.1%})"
        )
    conclusive = [p for p in h.pairs if not p.too_few]
    if conclusive and (top := max(p.exact_agreement for p in conclusive)) > (
        bottom := min(p.exact_agreement for p in conclusive)
    ):
        most = [p for p in conclusive if p.exact_agreement == top]  # every pair tied at each end
        least = [p for p in conclusive if p.exact_agreement == bottom]
        lines.append(
            f"most alike: {_pairs_named(most)} (the same tier on {_of(most)} answers); least alike: "
            f"{_pairs_named(least)} ({_of(least)})"
        )
    if report.disagreements:
        answers = disagreement_answers(report.disagreements)
        apart = sum(1 for a in answers if a.largest == 2)
        two = "all two tiers apart" if apart == len(answers) else f"{apart} of them two tiers apart"
        lines.append(
            f"next: read the disagreements ({disagreement_count(report)}" + (f", {two}" if apart else "") + "), "
            f"largest first{where}"
        )
    return lines


def _pairs_named(pairs: list[InterviewerPair]) -> str:
    """'Ann and Ben', or 'Ann and Ben; Cy and Dee' (a name may hold a comma)."""
    return "; ".join(f"{p.first} and {p.second}" for p in pairs)


def _of(pairs: list[InterviewerPair]) -> str:
    """'8 of 10' for one pair; for pairs tied on their share, that share ('50.0% of their')."""
    if len(pairs) > 1:
        return f"{pairs[0].exact_agreement:.1%} of their"
    return f"{round(pairs[0].exact_agreement * pairs[0].answers)} of {pairs[0].answers}"


def _value(interval: Interval | None) -> float | None:
    return interval.value if interval else None


def _direction(m: Agreement) -> str:
    return {"lenient": ", the interviewers higher", "harsh": ", the interviewers lower"}.get(m.bias, "")


class DisagreedAnswer(ReportModel):
    """One answer and every interviewer grade of it that differs from the model's: the pages list an answer
    once, with all who differ on it, not once per grade."""

    id: str
    question: str
    candidate: str | None
    model: Tier
    grades: list[Disagreement]
    largest: int = Field(description="The largest tier gap of its grades.")


def disagreement_answers(rows: list[Disagreement]) -> list[DisagreedAnswer]:
    """The disagreements by answer: the largest gap first, then the most interviewers differing."""
    by_answer: dict[str, list[Disagreement]] = defaultdict(list)
    for d in rows:
        by_answer[d.id].append(d)
    answers = [
        DisagreedAnswer(
            id=answer_id,
            question=grades[0].question,
            candidate=next((g.candidate for g in grades if g.candidate), None),
            model=grades[0].model,
            grades=sorted(grades, key=lambda g: (-abs(g.difference), g.interviewer.casefold(), g.line)),
            largest=max(abs(g.difference) for g in grades),
        )
        for answer_id, grades in by_answer.items()
    ]
    return sorted(answers, key=lambda a: (-a.largest, -len(a.grades), a.id))


def more_answers(total: int) -> str:
    """'1 more answer in calibration.json (its disagreements, per grade)', past those the pages list."""
    more = total - SHOWN_DISAGREEMENTS
    return f"{counted(more, 'more answer')} in {STEM}.json (its `disagreements`, one per grade)" if more > 0 else ""


def disagreement_count(report: CalibrationReport) -> str:
    """'25 grades on 14 answers' (or 'none')."""
    if not report.disagreements:
        return "none"
    answers = len({d.id for d in report.disagreements})
    return f"{counted(len(report.disagreements), 'grade')} on {counted(answers, 'answer')}"


def who_differs(answer: DisagreedAnswer) -> str:
    """'carol gave poor (-2); bob gave mediocre (-1)'."""
    return "; ".join(f"{g.interviewer} gave {g.human.value} ({g.difference:+d})" for g in answer.grades)


# --- formatting ----------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else "0.000" if x == 0 else f"{x:+.3f}"


def _with_ci(metric: Interval | None, fmt: Callable[[float | None], str] = _num) -> str:
    if metric is None or metric.value is None:
        return "n/a"
    ci = metric.ci
    return fmt(metric.value) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


METRIC_COLUMNS = ("n", "exact agreement", "kappa", "QWK", "leniency (human − model)", "bias")


def metric_cells(m: Agreement) -> list[str]:
    if not m.n:
        return ["0", "n/a", "n/a", "n/a", "n/a", m.bias]
    return [
        str(m.n),
        _with_ci(m.exact_agreement),
        _with_ci(m.kappa),
        _with_ci(m.qwk),
        _with_ci(m.leniency, _signed),
        m.bias,
    ]


def summary_lines(report: CalibrationReport) -> list[str]:
    c, s, inputs = report.counts, report.settings, report.inputs
    source = f"model grades from {inputs.model_grades}" if inputs.model_grades else "answers graded by this run"
    by = ", ".join(inputs.graded_by) or "none"
    return [
        f"interviewer grades: {inputs.human} ({counted(c.rows, 'row')}, {counted(c.interviewers, 'interviewer')}, "
        f"{counted(c.questions, 'question')}, {counted(c.answers, 'answer')}); {source} (graded by {by})",
        f"paired {c.paired}; failed model grades {c.failed}; ids with no model grade {c.unmatched}"
        + (
            f" ({named(sorted({r.id for r in report.unmatched}), len({r.id for r in report.unmatched}))})"
            if report.unmatched
            else ""
        )
        + " (neither enters the metrics)",
        f"{s.level:.0%} bootstrap intervals from {s.resamples} resamples (seed {s.seed}); "
        f"a group under {s.min_n} grades is flagged as too few to conclude; leniency is the mean tier "
        "difference, human minus model (positive: the interviewer grades higher)",
    ]


def human_lines(h: HumanAgreement) -> list[str]:
    """Interviewers among themselves, one sentence a line; warnings start with `warning: `."""
    if not h.answers:
        return list(h.warnings)
    lines = [
        f"answers graded by several interviewers: {h.answers} ({h.grades} grades from {h.interviewers} interviewers)",
        f"Krippendorff's alpha (ordinal) among interviewers: {_with_ci(h.alpha)}; with the model as one more "
        f"rater: {_with_ci(h.alpha_with_model)}",
        f"interviewers agree exactly on {h.human_pairwise_agreement:.1%} of "
        f"{counted(h.human_pairs or 0, 'pair')} of grades",
    ]
    if h.model_pairwise_agreement is not None:
        lines.append(
            f"the model agrees exactly with them on {h.model_pairwise_agreement:.1%} of {h.model_pairs} "
            "grades of the same answers"
        )
    lines += [f"warning: {w}" for w in h.warnings]
    return lines


def warning_rows(groups: dict[str, Agreement]) -> list[str]:
    return [f"{name}: {w}" for name, m in groups.items() for w in m.warnings]


def row_tables(report: CalibrationReport) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The rows kept out of the metrics, as (title, columns, rows) tables; none when there are none."""
    head = ["line", "interviewer", "id", "question"]
    tables: list[tuple[str, list[str], list[list[Any]]]] = [
        (
            "Model grades that failed",
            [*head, "error"],
            [[r.line, r.interviewer, r.id, r.question, r.error] for r in report.failed],
        ),
        ("Rows with no model grade", head, [[r.line, r.interviewer, r.id, r.question] for r in report.unmatched]),
    ]
    return [t for t in tables if t[2]]


def _confusion_md(matrix: list[list[int]]) -> list[str]:
    return markdown_table(["interviewer \\ model", *TIERS], [[t, *row] for t, row in zip(TIERS, matrix, strict=True)])


def to_markdown(report: CalibrationReport) -> str:
    o = report.overall
    lines = ["# Calibration: interviewers against the model", ""]
    lines += [f"- {line}" for line in summary_lines(report)]
    lines += ["", "## In short", ""]
    lines += [f"- {line}" for line in in_short(report)]
    lines += ["", "## Overall", ""]
    lines += markdown_table(METRIC_COLUMNS, [metric_cells(o)])
    lines += [f"- warning: {w}" for w in o.warnings]
    lines += ["", "How to read the figures:", "", *(f"- {line}" for line in HOW_TO_READ)]
    if o.confusion:
        lines += ["", "Confusion matrix (rows: interviewer, columns: model):", ""]
        lines += _confusion_md(o.confusion.matrix)
    for title, groups, label in (
        ("Per interviewer", report.interviewers, "interviewer"),
        ("Per question", report.questions, "question"),
    ):
        lines += ["", f"## {title}", ""]
        lines += markdown_table([label, *METRIC_COLUMNS], [[name, *metric_cells(m)] for name, m in groups.items()])
        warnings = warning_rows(groups)
        if warnings:
            lines += ["", "Warnings:", "", *(f"- {w}" for w in warnings)]
    lines += ["", "## Between interviewers", ""]
    lines += [f"- {line}" for line in human_lines(report.human_agreement)]
    if rows := pair_rows(report.human_agreement):
        lines += ["", "Pairs of interviewers, on the answers both graded:", "", *markdown_table(PAIR_COLUMNS, rows)]
    lines += ["", "## The model's confidence against the interviewers", ""]
    lines += [f"- {line}" for line in confidence_lines(report.model_confidence)]
    if rows := confidence_rows(report.model_confidence):
        lines += ["", *markdown_table(CONFIDENCE_COLUMNS, rows)]
    if report.interviewers:
        lines += ["", "## Confusion matrices per interviewer", ""]
        for name, m in report.interviewers.items():
            lines += [f"### {name} ({m.n} grades)", ""]
            if m.confusion:
                lines += _confusion_md(m.confusion.matrix)
            lines.append("")
    answers = disagreement_answers(report.disagreements)
    lines += ["", f"## Disagreements, largest first ({disagreement_count(report)})", ""]
    source = Path(report.inputs.human).name
    for i, a in enumerate(answers[:SHOWN_DISAGREEMENTS], start=1):
        whose = f"; candidate {a.candidate}" if a.candidate else ""
        lines += [f"### {i}. {a.id} ({a.question}{whose}): the model gave {a.model.value}; {who_differs(a)}", ""]
        first = a.grades[0]
        if first.answer:
            lines += ["> " + line for line in first.answer.strip().splitlines()]
            lines.append("")
        lines.append(f"- model's justification: {first.justification.strip()}")
        lines.append(f"- missed points: {', '.join(first.missed_points) or 'none'}")
        if first.red_flags:
            lines.append(f"- red flags: {', '.join(first.red_flags)}")
        lines.append(
            f"- {source} "
            + ("line " if len(a.grades) == 1 else "lines ")
            + ", ".join(str(n) for n in sorted(g.line for g in a.grades))
        )
        lines.append("")
    if len(answers) > SHOWN_DISAGREEMENTS:
        lines.append(f"{more_answers(len(answers))}.")
    for title, head, rows in row_tables(report):
        lines += ["", f"## {title} ({len(rows)})", ""]
        lines += markdown_table(head, rows)
    return "\n".join(lines).rstrip() + "\n"


# --- charts --------------------------------------------------------------------------------------


def heatmap_png(matrix: list[list[int]], title: str) -> bytes:
    """A confusion-matrix heatmap: rows the interviewer's tier, columns the model's."""
    return plots.heatmap_png(matrix, title, rows="interviewer", columns="model")


BIAS_COLOURS = {"lenient": "#d95f02", "harsh": "#1b9e77", "no clear bias": "#555555", "too few grades": "#bbbbbb"}


def leniency_png(interviewers: dict[str, Agreement]) -> bytes | None:
    """Each interviewer's leniency with its interval; zero is grading like the model."""
    shown = [(name, m, m.leniency) for name, m in interviewers.items() if m.n and m.leniency is not None]
    if not shown:
        return None

    def paint(ax: Any) -> None:
        for y, (_name, m, lenient) in enumerate(reversed(shown)):
            value = lenient.value
            ci = list(lenient.ci) if lenient.ci else [value, value]
            colour = BIAS_COLOURS.get(m.bias, "#555555")
            ax.plot(ci, [y, y], color=colour, linewidth=2)
            ax.plot([value], [y], "o", color=colour, label=m.bias)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(shown)), [f"{name} (n={m.n})" for name, m, _ in reversed(shown)])
        ax.set_xlim(-2.1, 2.1)
        ax.set_xlabel("leniency: mean tier difference, interviewer − model (95 % interval)")
        ax.set_title("harsher than the model  ←   →  more lenient", fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)

    return plots.draw((7.6, 1.4 + 0.38 * len(shown)), paint)


# --- HTML ----------------------------------------------------------------------------------------


def to_html(report: CalibrationReport) -> str:
    """A self-contained page: tables, heatmaps and the leniency chart, no script, no outside resource."""
    figures: list[tuple[bytes, str]] = []
    answers = disagreement_answers(report.disagreements)
    if report.overall.confusion:
        figures.append((heatmap_png(report.overall.confusion.matrix, "all interviewers"), "confusion matrix: overall"))
    for name, m in report.interviewers.items():
        if m.confusion:
            figures.append((heatmap_png(m.confusion.matrix, f"{name} (n={m.n})"), f"confusion: {name}"))
    return pages.render(
        "calibration.html.jinja",
        report=report,
        summary=summary_lines(report),
        columns=list(METRIC_COLUMNS),
        overall=metric_cells(report.overall),
        per_interviewer=[[name, *metric_cells(m)] for name, m in report.interviewers.items()],
        per_question=[[name, *metric_cells(m)] for name, m in report.questions.items()],
        interviewer_warnings=warning_rows(report.interviewers),
        question_warnings=warning_rows(report.questions),
        between=human_lines(report.human_agreement),
        pair_columns=list(PAIR_COLUMNS),
        pair_rows=pair_rows(report.human_agreement),
        confidence=confidence_lines(report.model_confidence),
        confidence_columns=list(CONFIDENCE_COLUMNS),
        confidence_rows=confidence_rows(report.model_confidence),
        figures=figures,
        leniency=leniency_png(report.interviewers),
        in_short=in_short(report),
        how_to_read=HOW_TO_READ,
        disagreement_count=disagreement_count(report),
        shown=[(a, who_differs(a)) for a in answers[:SHOWN_DISAGREEMENTS]],
        more=more_answers(len(answers)),
        row_tables=row_tables(report),
        stem=STEM,
    )


def write_reports(report: CalibrationReport, out: Path) -> files.Written:
    """calibration.json, calibration.md and calibration.html under `out`."""
    return files.write_reports(report, out, STEM, to_markdown, to_html)
