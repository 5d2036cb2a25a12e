"""What a person should look at first in a new rubric, and how well the grader does on it.

`review_notes` flags, most useful first:
- red flags the grader shows on the question's own great or mediocre reference (`flags_on_references`,
  from the self-test's grades of the references): answers like that reference are graded poor;
- questions whose references are too alike to tell the tiers apart (MiniLM cosine of two references at
  `TOO_ALIKE` or more): no rubric drafted from them can separate those tiers;
- drafted key points that no reference separates: the point is about as close to the mediocre or poor
  reference as to the great one it was drafted from, so it does not mark a great answer;
- drafted points that match another question's point (cosine at `SAME_ELSEWHERE` or more): a point that
  fits two questions is too generic to grade either;
- questions with no key point at all;
- notes to whoever grades in a reference ("Note: an answer that only names the pillars is mediocre"),
  which the offline drafter leaves out of its claims: what they say belongs in a key point or red flag;
- red flags still marked `draft: true`, before the key points that are: a red flag shown makes a grade
  poor, and on the dev sets the drafted red flags cost more grades than the drafted key points (an
  offline draft's key points with the hand-written red flags grade answers-dev at 0.742 and stories-dev at
  0.521; the hand-written key points with its red flags at 0.717 and 0.375; the whole draft at 0.667 and
  0.375: `scripts/measure_drafting.py --split dev|stories`, its crossed rows);
- key points still marked `draft: true`.

`self_test` grades the references suite (each reference as a candidate, itself hidden from the exemplars)
and the generated perturbations on a rubric, with one backend, and returns the figures a person compares
with the packaged bank's (`grader rubric new` prints both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.rubric.contrast import claims, grading_notes
from grader.rubric.model import Question, Rubric
from grader.wording import counted

Embed = Callable[[Sequence[str]], np.ndarray]
TOO_ALIKE = 0.9
#: A point whose best weaker-reference claim is within this of its best great-reference claim.
NOT_SEPARATED = 0.05
SAME_ELSEWHERE = 0.85
#: Fewer drafted key points than this are too few to grade by (a short great reference).
FEW_POINTS = 3


@dataclass(frozen=True)
class Note:
    question: str
    kind: str  # one of ORDER
    message: str

    #: The order a reviewer should read them in.
    ORDER = (
        "flag_on_reference",
        "too_alike",
        "no_points",
        "few_points",
        "not_separated",
        "same_elsewhere",
        "grading_notes",
        "unreviewed_flags",
        "unreviewed",
    )


def review_notes(rubric: Rubric, embed: Embed) -> list[Note]:
    notes: list[Note] = []
    point_vecs: list[tuple[str, str, np.ndarray]] = []  # (question, point id, vector)
    for q in rubric.questions:
        refs = q.references.items()
        vecs = embed([text for _, text in refs])
        for i, (t1, _) in enumerate(refs):
            for j in range(i + 1, len(refs)):
                sim = float(vecs[i] @ vecs[j])
                if sim >= TOO_ALIKE:
                    notes.append(
                        Note(
                            q.id, "too_alike", f"the {t1} and {refs[j][0]} references are too alike (cosine {sim:.2f})"
                        )
                    )
        if not q.key_points:
            notes.append(Note(q.id, "no_points", "no key points: every grade of it will be sent for review"))
            continue
        notes += _separation(q, embed)
        drafted = any(p.draft for p in q.key_points) or any(f.draft for f in q.red_flags)
        said = [(tier, n) for tier, text in refs for n in grading_notes(text)] if drafted else []
        if said:
            notes.append(
                Note(
                    q.id,
                    "grading_notes",
                    "notes to whoever grades, left out of the draft: make a key point or red flag of what they say"
                    + "".join(f"\n    {tier}: {n}" for tier, n in said),
                )
            )
        texts = [p.text for p in q.key_points]
        for p, v in zip(q.key_points, embed(texts), strict=True):
            point_vecs.append((q.id, p.id, v))
        flags = [f for f in q.red_flags if f.draft]
        if flags:
            notes.append(
                Note(
                    q.id,
                    "unreviewed_flags",
                    "drafted red flags not reviewed yet: each one shown makes a grade poor, so check it is "
                    "something only a poor answer does" + "".join(f"\n    {f.id}: {f.text}" for f in flags),
                )
            )
        points = [p.id for p in q.key_points if p.draft]
        if len(points) == len(q.key_points) < FEW_POINTS:
            notes.append(
                Note(
                    q.id,
                    "few_points",
                    f"only {counted(len(points), 'key point')} drafted: the great reference makes few claims the "
                    "others lack, and with so few one point decides a tier; add what a great answer must say",
                )
            )
        if points:
            notes.append(Note(q.id, "unreviewed", f"{counted(len(points), 'drafted key point')} not reviewed yet"))
    for i, (qa, pa, va) in enumerate(point_vecs):
        for qb, pb, vb in point_vecs[i + 1 :]:
            if qa != qb and float(va @ vb) >= SAME_ELSEWHERE:
                notes.append(Note(qa, "same_elsewhere", f"{pa} matches {pb} of {qb} (cosine {float(va @ vb):.2f})"))
    number = {q.id: q.number for q in rubric.questions}  # the bank's order, not the slugs' alphabet
    return sorted(notes, key=lambda n: (Note.ORDER.index(n.kind), number.get(n.question, 0)))


def _separation(q: Question, embed: Embed) -> list[Note]:
    great = claims(q.references.great) or [q.references.great]
    weaker = claims(q.references.mediocre or "") + claims(q.references.poor or "")
    if not weaker:
        return []
    points = [p for p in q.key_points if p.draft]
    if not points:
        return []
    vecs = embed([p.quote or p.text for p in points] + great + weaker)
    pv, gv, wv = vecs[: len(points)], vecs[len(points) : len(points) + len(great)], vecs[len(points) + len(great) :]
    out = []
    for p, v in zip(points, pv, strict=True):
        to_great, to_weaker = float((gv @ v).max()), float((wv @ v).max())
        if to_weaker >= to_great - NOT_SEPARATED:
            out.append(
                Note(
                    q.id,
                    "not_separated",
                    f"{p.id} is as close to a weaker reference ({to_weaker:.2f}) as to the great one ({to_great:.2f})",
                )
            )
    return out


@dataclass(frozen=True)
class ReferenceGrade:
    """How the self-test graded one reference, as a candidate with itself hidden from the exemplars."""

    case: str  # ref-01-great
    question: str
    tier: str  # the reference's own tier
    graded: str  # the tier it got, or "failed" / "rejected"
    red_flags: tuple[str, ...]

    @property
    def misgraded(self) -> bool:
        return self.graded != self.tier

    def line(self) -> str:
        flags = f", {'red flag' if len(self.red_flags) == 1 else 'red flags'} {', '.join(self.red_flags)}"
        got = f"graded {self.graded}" if self.graded in TIER_NAMES else f"could not be graded ({self.graded})"
        return f"{self.question}: the {self.tier} reference ({self.case}) {got}" + (flags if self.red_flags else "")


TIER_NAMES = ("great", "mediocre", "poor")


@dataclass
class SelfTest:
    """What `self_test` measured: per suite, its figures; and how each reference was graded."""

    figures: dict[str, dict[str, Any]]
    references: list[ReferenceGrade]

    @property
    def misgraded(self) -> list[ReferenceGrade]:
        """The references graded to another tier than their own (or not graded)."""
        return [r for r in self.references if r.misgraded]


def flags_on_references(references: Sequence[ReferenceGrade]) -> list[Note]:
    """A red flag the grader shows on a question's own great or mediocre reference (graded as a candidate,
    whatever tier it then got) marks answers like it: first on the list to review (a trial's drafted flag
    fired on the great reference, and so on strong answers, and the list said nothing)."""
    shown: dict[tuple[str, str], list[ReferenceGrade]] = {}
    for r in references:
        if r.tier in ("great", "mediocre"):
            for flag in r.red_flags:
                shown.setdefault((r.question, flag), []).append(r)
    notes = []
    for (question, flag), on in shown.items():
        which = " and ".join(r.tier for r in on) + (" reference" if len(on) == 1 else " references")
        got = " and ".join(dict.fromkeys(r.graded for r in on))
        notes.append(
            Note(
                question,
                "flag_on_reference",
                f"red flag {flag} is shown on the {which} (graded {got}): a red flag makes a grade poor, so "
                f"answers like {'it' if len(on) == 1 else 'them'} can be; delete the flag, or reword it to what only "
                "a poor answer does and run this again to see whether it still fires",
            )
        )
    return notes


async def self_test(rubric: Rubric, backend: Any) -> SelfTest:
    """The references suite (leave-one-out) and the generated perturbations, graded on `rubric`."""
    from grader.eval.report import summarize
    from grader.eval.runner import run_suite
    from grader.eval.suites import perturbations_suite, references_suite

    out: dict[str, dict[str, Any]] = {}
    graded: list[ReferenceGrade] = []
    for suite in (references_suite(rubric), perturbations_suite(rubric, hand_written=False)):
        results = await run_suite(suite, backend)
        report = summarize(suite.name, results, backend=backend.name, model=getattr(backend, "model", ""))
        # Without `grader eval`'s eight hand-written perturbations: named so, since its figures differ.
        out["perturbations (generated only)" if suite.name == "perturbations" else suite.name] = {
            "cases": report.cases,
            "accuracy": report.overall.accuracy,
            "qwk": report.overall.qwk,
            "pass_rate": report.pass_rate,
            "fairness_flips": report.counts.fairness_flips,
            "needs_review": report.needs_review,
        }
        if suite.name == "references":
            graded = [
                ReferenceGrade(
                    r.case.id,
                    r.case.question,
                    r.case.label.value,
                    r.verdict,
                    tuple(r.grade.red_flags) if r.grade is not None else (),
                )
                for r in results
            ]
    return SelfTest(out, graded)
