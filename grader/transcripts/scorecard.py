"""A candidate's scorecard from one interview transcript, and its JSON, Markdown and HTML renderings.

The scorecard embeds the standard `Grade` of every matched question, adds where each evidence quote was
said (the turn and its timestamp), lists the questions that matched no rubric question and the small
talk (neither graded), and sums up (tier counts, strongest and weakest areas). The HTML page is
self-contained: inline CSS, no scripts, no external resources, every piece of text escaped.
"""

from __future__ import annotations

import html

from pydantic import BaseModel, ConfigDict, Field

from grader.grading.contract import TIERS, Grade, GradeFailure, Tier
from grader.reports import pages


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


class FlagRef(PointRef):
    """A red flag the answer shows, with the quote that shows it and when it was said, where the grade has one."""

    quote: str | None = Field(default=None, description="Verbatim from the candidate's answer; null if none given.")
    timestamp: str | None = Field(default=None, description="When it was said, as MM:SS or H:MM:SS.")


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
    red_flags: list[FlagRef] = Field(default_factory=list)


class UnmatchedQuestion(_Model):
    """An interviewer question that matched no rubric question closely enough."""

    asked: str
    asked_at: str | None = None
    closest: str | None = Field(default=None, description="The most similar rubric question id.")
    score: float
    answer_turns: int
    followups: list[str] = Field(default_factory=list, description="The interviewer's follow-up questions.")


class SmallTalk(_Model):
    """An interviewer question that is small talk, logistics or closing chat ("Where did you grow up?",
    "Can you hear me?", "Any questions for me?"): not graded, the candidate's reply skipped."""

    asked: str = Field(description="The question, as the interviewer said it.")
    asked_at: str | None = Field(default=None, description="Timestamp of the question, where the transcript has one.")
    reply_turns: int = Field(default=0, description="The candidate's turns in reply, skipped (not graded).")


class Area(_Model):
    question_id: str
    question: str
    tier: Tier
    needs_review: bool = Field(default=False, description="The grade is waiting for a person: not yet a strength.")


class Summary(_Model):
    graded: int
    failed: int
    unmatched: int
    small_talk: int = Field(default=0, description="Small talk, logistics and closing questions (not graded).")
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
    small_talk: list[SmallTalk] = Field(
        default_factory=list,
        description="Interviewer questions that are small talk, logistics or closing chat: listed, never graded.",
    )
    skipped_turns: int = Field(description="Small talk and turns outside any question.")
    summary: Summary


def summarize(questions: list[ScoredQuestion], unmatched: int, *, small_talk: int = 0) -> Summary:
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
        grade = q.grade
        assert grade is not None
        return Area(question_id=q.question_id, question=q.question, tier=grade.tier, needs_review=grade.needs_review)

    strongest = [q for q in ranked[:k] if q.grade and q.grade.tier is not Tier.poor]
    weakest = [q for q in reversed(ranked[-k:]) if q.grade and q.grade.tier is not Tier.great and q not in strongest]
    return Summary(
        graded=len(graded),
        failed=len(questions) - len(graded),
        unmatched=unmatched,
        small_talk=small_talk,
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


def _area_grade(area: Area) -> str:
    return area.tier.value + (", needs review" if area.needs_review else "")


def _at(stamp: str | None) -> str:
    return f" ({stamp})" if stamp else ""


def to_markdown(card: Scorecard) -> str:
    s = card.summary
    lines = [
        f"# Scorecard: {_md(card.candidate)}",
        "",
        f"- Transcript: {_md(card.source)} ({card.format})",
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
        "- Strongest: " + (", ".join(f"{_md(a.question)} ({_area_grade(a)})" for a in s.strongest) or "none"),
        "- Weakest: " + (", ".join(f"{_md(a.question)} ({_area_grade(a)})" for a in s.weakest) or "none"),
        "",
        "## Questions",
    ]
    if not card.questions:
        lines += ["", "None matched the rubric: see the unmatched questions and the small talk below."]
    for q in card.questions:
        tier = q.grade.tier.value.upper() if q.grade else "NOT GRADED"
        lines += ["", f"### Q{q.number}. {_md(q.question)} — {tier}", ""]
        lines.append(f"Asked{_at(q.asked_at)}: “{_md(q.asked)}” (match {q.match_score:.2f})")
        if q.also_close:
            lines.append(f"  (also close: {_md(q.also_close)})")
        lines += ["", f"Answer ({q.answer_turns} turn(s)):", "", *_quoted(q.answer), ""]
        if q.grade is None:
            lines.append(f"Not graded: {_md(q.failure.message if q.failure else 'unknown failure')}")
            continue
        if q.grade.confidence is not None:
            source = f" ({q.grade.confidence_source})" if q.grade.confidence_source else ""
            lines += [f"Confidence {q.grade.confidence:.2f}{source}", ""]
        lines += [_md(q.grade.justification), ""]
        for e in q.evidence:
            quote = f"“{_md(e.quote)}”" if e.quote else "(quote dropped)"
            lines.append(f"- ✓ **{_md(e.point)}**: {quote}{_at(e.timestamp)}")
        for m in q.missed:
            lines.append(f"- ✗ missed: {_md(m.text)}")
        for f in q.red_flags:
            quote = f": “{_md(f.quote)}”{_at(f.timestamp)}" if f.quote else ""
            lines.append(f"- ⚠ red flag: {_md(f.text)}{quote}")
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
        lines += [f"  - follow-up: “{_md(f)}”" for f in u.followups]
    lines += ["", "## Small talk (not graded)", ""]
    if not card.small_talk:
        lines.append("None.")
    for t in card.small_talk:
        lines.append(f"- “{_md(t.asked)}”{_at(t.asked_at)}; {t.reply_turns} candidate turn(s) in reply, skipped")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> list[str]:
    """The answer as a Markdown quote block, escaped: each of its lines a paragraph."""
    paragraphs = [_md(line) for line in text.split("\n") if line.strip()] or [""]
    out: list[str] = []
    for paragraph in paragraphs:
        out += [">"] * bool(out) + [f"> {paragraph}"]
    return out


# --- HTML ----------------------------------------------------------------------------------------------


def to_html(card: Scorecard) -> str:
    """A self-contained page (grader/reports/templates/scorecard.html.jinja): inline CSS, no script, no
    image, every piece of text escaped."""
    return pages.render("scorecard.html.jinja", card=card, tiers=TIERS)


RENDERERS = {"json": (to_json, ".json"), "markdown": (to_markdown, ".md"), "html": (to_html, ".html")}
