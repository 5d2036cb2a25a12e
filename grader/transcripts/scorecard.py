"""A candidate's scorecard from one interview transcript, and its JSON, Markdown and HTML renderings.

The scorecard embeds the standard `Grade` of every matched question, adds where each evidence quote was
said (the turn and its timestamp), lists the questions that matched no rubric question, and sums up
(tier counts, strongest and weakest areas). The HTML page is self-contained: inline CSS, no scripts, no
external resources, every piece of text escaped.
"""

from __future__ import annotations

import html
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grader.grading.contract import TIERS, Grade, GradeFailure, Tier


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Evidence(_Model):
    """A covered key point's quote, and when it was said."""

    point_id: str
    point: str = Field(description="The key point's text from the rubric.")
    quote: str | None = Field(description="Verbatim from the candidate's answer; null if the grade dropped it.")
    speaker: str | None = None
    start: float | None = Field(default=None, description="Seconds into the recording, where the transcript says.")
    timestamp: str | None = Field(default=None, description="`start` as MM:SS or H:MM:SS.")


class PointRef(_Model):
    id: str
    text: str


class ScoredQuestion(_Model):
    """One rubric question the interviewer asked, the candidate's answer and its grade."""

    question_id: str
    number: int
    question: str = Field(description="The rubric's wording.")
    asked: str = Field(description="What the interviewer actually said.")
    asked_at: str | None = Field(default=None, description="Timestamp of the question, where the transcript has one.")
    match_score: float = Field(description="Cosine similarity of the asked question to the rubric question.")
    also_close: str | None = Field(default=None, description="A runner-up rubric question almost as similar.")
    answer: str = Field(description="The candidate's graded text: every answer turn, follow-ups included.")
    answer_turns: int
    followups: list[str] = Field(default_factory=list, description="The interviewer's follow-up questions.")
    grade: Grade | None = Field(default=None, description="The standard Grade; null when grading failed.")
    failure: GradeFailure | None = Field(
        default=None, description="Why no grade could be had (kept out of the summary)."
    )
    evidence: list[Evidence] = Field(default_factory=list)
    missed: list[PointRef] = Field(default_factory=list)
    red_flags: list[PointRef] = Field(default_factory=list)


class UnmatchedQuestion(_Model):
    """An interviewer question that matched no rubric question closely enough."""

    asked: str
    asked_at: str | None = None
    closest: str | None = Field(default=None, description="The most similar rubric question id.")
    score: float
    answer_turns: int


class Area(_Model):
    question_id: str
    question: str
    tier: Tier


class Summary(_Model):
    graded: int
    failed: int
    unmatched: int
    tier_counts: dict[str, int]
    needs_review: int
    strongest: list[Area]
    weakest: list[Area]


class Scorecard(_Model):
    """Everything about one candidate in one transcript."""

    source: str = Field(description="The transcript file.")
    format: str = Field(description="text, vtt, srt or json.")
    candidate: str
    interviewers: list[str]
    rubric: str
    backend: str
    model: str
    redacted: bool = Field(description="True when names, e-mails, phones and URLs were hidden from the backend.")
    match_threshold: float
    questions: list[ScoredQuestion]
    unmatched: list[UnmatchedQuestion]
    skipped_turns: int = Field(description="Small talk and turns outside any question.")
    summary: Summary


def summarize(questions: list[ScoredQuestion], unmatched: int) -> Summary:
    graded = [q for q in questions if q.grade is not None]
    counts = {t: sum(q.grade.tier.value == t for q in graded if q.grade) for t in TIERS}

    def strength(q: ScoredQuestion) -> tuple[int, float, int]:
        assert q.grade is not None
        n = len(q.grade.covered_points) + len(q.grade.missed_points)
        coverage = len(q.grade.covered_points) / n if n else 0.0
        return (q.grade.tier.rank, coverage - 0.5 * len(q.grade.red_flags), -q.number)

    ranked = sorted(graded, key=strength, reverse=True)
    k = min(3, max(1, len(ranked) // 2))

    def area(q: ScoredQuestion) -> Area:
        assert q.grade is not None
        return Area(question_id=q.question_id, question=q.question, tier=q.grade.tier)

    strongest = [q for q in ranked[:k] if q.grade and q.grade.tier is not Tier.poor]
    weakest = [q for q in reversed(ranked[-k:]) if q.grade and q.grade.tier is not Tier.great and q not in strongest]
    return Summary(
        graded=len(graded),
        failed=len(questions) - len(graded),
        unmatched=unmatched,
        tier_counts=counts,
        needs_review=sum(bool(q.grade and q.grade.needs_review) for q in graded),
        strongest=[area(q) for q in strongest],
        weakest=[area(q) for q in weakest],
    )


# --- JSON --------------------------------------------------------------------------------------------


def to_json(card: Scorecard) -> str:
    return card.model_dump_json(indent=2) + "\n"


# --- Markdown ----------------------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text safe inside Markdown prose: no accidental emphasis, links or HTML."""
    out = html.escape(" ".join(text.split()), quote=False)
    for ch in "\\`*_[]#|":
        out = out.replace(ch, "\\" + ch)
    return out


def _at(stamp: str | None) -> str:
    return f" ({stamp})" if stamp else ""


def to_markdown(card: Scorecard) -> str:
    s = card.summary
    lines = [
        f"# Scorecard: {_md(card.candidate)}",
        "",
        f"- Transcript: `{card.source}` ({card.format})",
        f"- Interviewer(s): {_md(', '.join(card.interviewers))}",
        f"- Rubric: {_md(card.rubric)}; graded by {_md(card.backend)} ({_md(card.model)})"
        + ("; names, e-mails, phones and URLs redacted before grading" if card.redacted else ""),
        "",
        "## Summary",
        "",
        "| great | mediocre | poor | failed | unmatched | needs review |",
        "|--:|--:|--:|--:|--:|--:|",
        f"| {s.tier_counts['great']} | {s.tier_counts['mediocre']} | {s.tier_counts['poor']} | {s.failed} | "
        f"{s.unmatched} | {s.needs_review} |",
        "",
        "- Strongest: " + (", ".join(f"{_md(a.question)} ({a.tier.value})" for a in s.strongest) or "none"),
        "- Weakest: " + (", ".join(f"{_md(a.question)} ({a.tier.value})" for a in s.weakest) or "none"),
        "",
        "## Questions",
    ]
    for q in card.questions:
        tier = q.grade.tier.value.upper() if q.grade else "NOT GRADED"
        lines += ["", f"### Q{q.number}. {_md(q.question)} — {tier}", ""]
        lines.append(f"Asked{_at(q.asked_at)}: “{_md(q.asked)}” (match {q.match_score:.2f})")
        if q.also_close:
            lines.append(f"  (also close: {_md(q.also_close)})")
        lines.append("")
        if q.grade is None:
            lines.append(f"Not graded: {_md(q.failure.message if q.failure else 'unknown failure')}")
            continue
        lines += [_md(q.grade.justification), ""]
        for e in q.evidence:
            quote = f"“{_md(e.quote)}”" if e.quote else "(quote dropped)"
            lines.append(f"- ✓ **{_md(e.point)}**: {quote}{_at(e.timestamp)}")
        for m in q.missed:
            lines.append(f"- ✗ missed: {_md(m.text)}")
        for f in q.red_flags:
            lines.append(f"- ⚠ red flag: {_md(f.text)}")
        for followup in q.followups:
            lines.append(f"- follow-up: “{_md(followup)}”")
        if q.grade.needs_review:
            lines += ["", "Needs review: " + _md("; ".join(q.grade.review_reasons))]
    lines += ["", "## Unmatched questions", ""]
    if not card.unmatched:
        lines.append("None.")
    for u in card.unmatched:
        closest = f"; closest rubric question: {_md(u.closest)} at {u.score:.2f}" if u.closest else ""
        lines.append(f"- “{_md(u.asked)}”{_at(u.asked_at)}{closest}")
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------------------

_CSS = """
:root { --great: #1b7f3b; --mediocre: #9a6a00; --poor: #b3261e; --muted: #5f6368; --line: #dadce0; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #202124; margin: 0;
       background: #f6f7f9; }
main { max-width: 960px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 10px; }
h3 { font-size: 16px; margin: 0; flex: 1; }
.meta { color: var(--muted); margin: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 12px 0; }
.head { display: flex; align-items: baseline; gap: 12px; }
.tier { font-weight: 700; font-size: 13px; text-transform: uppercase; padding: 2px 10px; border-radius: 12px;
        color: #fff; white-space: nowrap; }
.tier.great { background: var(--great); } .tier.mediocre { background: var(--mediocre); }
.tier.poor { background: var(--poor); } .tier.none { background: var(--muted); }
.asked { color: var(--muted); margin: 6px 0 10px; }
.counts { display: flex; gap: 12px; flex-wrap: wrap; }
.count { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 96px; }
.count b { display: block; font-size: 22px; }
.bar { display: flex; height: 10px; border-radius: 5px; overflow: hidden; margin: 12px 0; background: var(--line); }
.bar span.great { background: var(--great); } .bar span.mediocre { background: var(--mediocre); }
.bar span.poor { background: var(--poor); }
ul.points { list-style: none; padding: 0; margin: 8px 0 0; }
ul.points li { padding: 4px 0 4px 26px; position: relative; }
ul.points li::before { position: absolute; left: 4px; font-weight: 700; }
li.covered::before { content: "\\2713"; color: var(--great); }
li.missed::before { content: "\\2717"; color: var(--poor); }
li.flag::before { content: "!"; color: var(--poor); }
blockquote { margin: 4px 0 0; padding: 2px 10px; border-left: 3px solid var(--line); color: #3c4043; }
.time { font-variant-numeric: tabular-nums; color: var(--muted); font-size: 13px; margin-left: 6px; }
.review { background: #fdf3f2; border-radius: 6px; padding: 6px 10px; margin-top: 10px; }
details { margin-top: 10px; } summary { cursor: pointer; color: var(--muted); }
.answer { white-space: pre-wrap; background: #f8f9fa; border-radius: 6px; padding: 8px 10px; margin: 6px 0 0; }
@media print { body { background: #fff; } .card { break-inside: avoid; } }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _time(stamp: str | None) -> str:
    return f' <span class="time">{_e(stamp)}</span>' if stamp else ""


def to_html(card: Scorecard) -> str:
    s = card.summary
    total = max(1, s.graded)
    counts = "".join(f'<div class="count"><b>{s.tier_counts[t]}</b>{t}</div>' for t in TIERS) + "".join(
        f'<div class="count"><b>{n}</b>{label}</div>'
        for n, label in ((s.failed, "not graded"), (s.unmatched, "unmatched"), (s.needs_review, "needs review"))
    )
    bar = "".join(f'<span class="{t}" style="width:{100 * s.tier_counts[t] / total:.1f}%"></span>' for t in TIERS)

    def areas(items: list[Any]) -> str:
        if not items:
            return "none"
        return ", ".join(f"{_e(a.question)} <small>({_e(a.tier.value)})</small>" for a in items)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Scorecard: {_e(card.candidate)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Scorecard: {_e(card.candidate)}</h1>",
        f'<p class="meta">Transcript {_e(card.source)} ({_e(card.format)}) · interviewer(s) '
        f"{_e(', '.join(card.interviewers))} · rubric {_e(card.rubric)} · graded by {_e(card.backend)} "
        f"({_e(card.model)})" + (" · personal data redacted before grading" if card.redacted else "") + "</p>",
        "<h2>Summary</h2>",
        f'<div class="counts">{counts}</div>',
        f'<div class="bar" aria-hidden="true">{bar}</div>',
        f"<p><b>Strongest:</b> {areas(s.strongest)}<br><b>Weakest:</b> {areas(s.weakest)}</p>",
        f"<h2>Questions ({len(card.questions)})</h2>",
    ]
    for q in card.questions:
        tier = q.grade.tier.value if q.grade else "none"
        label = tier if q.grade else "not graded"
        body = [
            f'<section class="card" id="{_e(q.question_id)}"><div class="head">',
            f"<h3>Q{q.number}. {_e(q.question)}</h3>",
            f'<span class="tier {tier}">{_e(label)}</span></div>',
            f'<p class="asked">Asked{_time(q.asked_at)}: “{_e(q.asked)}” · match {q.match_score:.2f}'
            + (f" · also close: {_e(q.also_close)}" if q.also_close else "")
            + "</p>",
        ]
        if q.grade is None:
            body.append(
                f'<p class="review">Not graded: {_e(q.failure.message if q.failure else "unknown failure")}</p>'
            )
        else:
            body.append(f"<p>{_e(q.grade.justification)}</p>")
            items = []
            for ev in q.evidence:
                quote = f"<blockquote>“{_e(ev.quote)}”{_time(ev.timestamp)}</blockquote>" if ev.quote else ""
                items.append(f'<li class="covered">{_e(ev.point)}{quote}</li>')
            items += [f'<li class="missed">Missed: {_e(m.text)}</li>' for m in q.missed]
            items += [f'<li class="flag">Red flag: {_e(f.text)}</li>' for f in q.red_flags]
            body.append(f'<ul class="points">{"".join(items)}</ul>')
            if q.grade.needs_review:
                body.append(f'<p class="review">Needs review: {_e("; ".join(q.grade.review_reasons))}</p>')
            conf = (
                f"{q.grade.confidence:.2f} ({q.grade.confidence_source})" if q.grade.confidence is not None else "n/a"
            )
            body.append(
                f'<p class="meta"><small>confidence {_e(conf)} · {_e(q.grade.backend)} · {_e(q.grade.model)}'
                "</small></p>"
            )
        if q.followups:
            asked = "".join(f"<li>{_e(f)}</li>" for f in q.followups)
            body.append(f'<p class="meta">Follow-ups:</p><ul class="followups">{asked}</ul>')
        body.append(
            f"<details><summary>Candidate's answer ({q.answer_turns} turn(s))</summary>"
            f'<p class="answer">{_e(q.answer)}</p></details></section>'
        )
        parts += body
    parts.append(f"<h2>Unmatched questions ({len(card.unmatched)})</h2>")
    if card.unmatched:
        rows = []
        for u in card.unmatched:
            closest = f" · closest rubric question {_e(u.closest)} at {u.score:.2f}" if u.closest else ""
            rows.append(f"<li>“{_e(u.asked)}”{_time(u.asked_at)}<small>{closest}</small></li>")
        parts.append(f'<ul class="unmatched">{"".join(rows)}</ul>')
    else:
        parts.append("<p>None: every question matched the rubric.</p>")
    parts.append(
        f'<p class="meta"><small>Questions matched at cosine ≥ {card.match_threshold:.2f}; '
        f"{card.skipped_turns} turn(s) of small talk skipped.</small></p>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


RENDERERS = {"json": (to_json, ".json"), "markdown": (to_markdown, ".md"), "html": (to_html, ".html")}
