"""Measure the transcript matcher and segmenter (grader/transcripts/, README "Transcripts").

1. The threshold: scores, with the packaged MiniLM, three interviewer-style wordings of each of the
   packaged rubric's 20 questions and small talk and follow-ups that must match nothing
   (tests/data/transcripts/paraphrases.yaml), then sweeps the threshold.
2. The transcripts: runs segmentation and matching over every transcript that has a truth file beside it
   (tests/data/transcripts/**/*.truth.yaml: which interviewer turns are rubric questions and which
   question, which are follow-ups, small talk or unmatched, and which candidate turns answer each) and
   reports matching precision and recall, whether each question was put in the right place, and whether
   each rubric question's graded answer is exactly its own turns.

Run from the repository root: python scripts/measure_matching.py [--sweep-only | --transcripts-only]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grader.backends.local.embedder import Embedder
from grader.rubric import load_rubric
from grader.transcripts.match import DEFAULT_MATCH_THRESHOLD, QuestionMatcher
from grader.transcripts.parse import read_transcript
from grader.transcripts.pipeline import prepare
from grader.transcripts.segment import detect_roles

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "transcripts"
#: The truth files, under DATA.
TRUTHS = "**/*.truth.yaml"


# --- the truth of a transcript -------------------------------------------------------------------------


class TruthQuestion(BaseModel):
    """One interviewer question: its turn (a question split over several turns lists them all), a piece of
    what was said (a guard against renumbering), what it is, and for a rubric or unmatched question the
    candidate turns that answer it (follow-ups' answers included)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    turns: list[int] = Field(alias="turn")
    says: str
    is_: Literal["rubric", "unmatched", "followup", "small_talk"] = Field(alias="is")
    question: str | None = None
    answer: list[int] | None = None

    @field_validator("turns", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, int) else value

    @model_validator(mode="after")
    def _question_for_rubric_only(self) -> TruthQuestion:
        if (self.is_ == "rubric") != (self.question is not None):
            raise ValueError("a rubric question names its `question`, and only a rubric question does")
        return self


class Truth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transcript: str
    questions: list[TruthQuestion]


def load_truth(path: Path) -> Truth:
    try:
        return Truth.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise SystemExit(f"{path}: {exc}") from None


# --- measuring -------------------------------------------------------------------------------------------


@dataclass
class Result:
    """Counts over every truth question of every transcript."""

    questions: int = 0
    rubric: int = 0  # truth rubric questions (re-asked ones included)
    with_answer: int = 0  # truth questions with their answer turns listed (a rubric question's first asking, unmatched)
    predicted_rubric: int = 0  # questions the pipeline matched to some rubric question
    matched_right: int = 0  # ... to the truth's rubric question
    kinds_right: int = 0
    answers_right: int = 0  # ... whose exchange holds exactly those turns
    exchanges: int = 0
    merged: int = 0  # exchanges holding the answers to two questions, or a graded one holding a small-talk reply
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)  # (truth kind, predicted kind)
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched_right / self.predicted_rubric if self.predicted_rubric else 1.0

    @property
    def recall(self) -> float:
        return self.matched_right / self.rubric if self.rubric else 1.0


def measure(matcher: QuestionMatcher, paths: Iterable[Path]) -> Result:
    result = Result()
    for path in paths:
        truth = load_truth(path)
        transcript = read_transcript(path.parent / truth.transcript)
        prepared = prepare(transcript, detect_roles(transcript), matcher)
        accounted = prepared.accounted()
        answers = {i: ex.answer for ex in prepared.exchanges for i in ex.opening}
        owner = {i: q.turns[0] for q in truth.questions for i in q.answer or []}
        for ex in prepared.exchanges:
            owners = {owner.get(i) for i in ex.answer}
            result.exchanges += 1
            if len(owners - {None}) > 1 or (ex.question_id is not None and None in owners):
                result.merged += 1
                result.misses.append(f"{path.name} turn {ex.opening[0]}: answer turns {ex.answer} merge {owners}")
        for q in truth.questions:
            turn = q.turns[0]
            got = accounted.get(turn)
            kind = got.kind if got is not None else "lost"
            result.questions += 1
            result.confusion[(q.is_, kind)] += 1
            result.kinds_right += kind == q.is_
            if kind == "rubric":
                result.predicted_rubric += 1
            if q.is_ == "rubric":
                result.rubric += 1
            right = kind == "rubric" and got is not None and got.question_id == q.question
            result.matched_right += right and q.is_ == "rubric"
            if q.answer is not None:
                result.with_answer += 1
                if answers.get(turn) == q.answer:
                    result.answers_right += 1
                else:
                    result.misses.append(
                        f"{path.name} turn {turn}: answer turns {answers.get(turn)} (truth {q.answer})"
                    )
            if kind != q.is_ or (q.is_ == "rubric" and not right):
                said = (got.question_id or "") if got is not None else ""
                result.misses.append(
                    f"{path.name} turn {turn} {q.says!r}: {kind} {said} (truth {q.is_} {q.question or ''})"
                )
    return result


def report_transcripts(matcher: QuestionMatcher) -> None:
    paths = sorted(DATA.glob(TRUTHS))
    r = measure(matcher, paths)
    print(f"\ntranscripts: {len(paths)}; interviewer questions: {r.questions}; rubric questions: {r.rubric}")
    print(f"  matching precision {r.matched_right}/{r.predicted_rubric} = {r.precision:.3f}")
    print(f"  matching recall    {r.matched_right}/{r.rubric} = {r.recall:.3f}")
    print(f"  put in the right place (rubric, unmatched, follow-up, small talk): {r.kinds_right}/{r.questions}")
    print(f"  answers with exactly their own candidate turns: {r.answers_right}/{r.with_answer}")
    print(f"  exchanges that merge two questions' answers, or grade a small-talk reply: {r.merged}/{r.exchanges}")
    kinds = ["rubric", "unmatched", "followup", "small_talk"]
    print("  truth \\ found " + " ".join(f"{k:>10s}" for k in [*kinds, "lost"]))
    for t in kinds:
        print(f"  {t:13s} " + " ".join(f"{r.confusion[(t, k)]:10d}" for k in [*kinds, "lost"]))
    for miss in r.misses:
        print(f"  miss: {miss}")


# --- the threshold -----------------------------------------------------------------------------------------


def report_sweep(matcher: QuestionMatcher) -> None:
    rubric = matcher.rubric
    numbers = {q.number: q for q in rubric}
    data = yaml.safe_load((DATA / "paraphrases.yaml").read_text(encoding="utf-8"))
    items = [(numbers[n].id, text) for n, texts in data["questions"].items() for text in texts]
    negatives = [*data["small_talk"], *data["followups"]]

    # The four test transcripts: each exchange's opening, and each follow-up question, as the segmenter sees them.
    for path in sorted(DATA.glob("*")):
        if path.suffix not in (".txt", ".vtt", ".srt", ".json"):
            continue
        transcript = read_transcript(path)
        prepared = prepare(transcript, detect_roles(transcript), matcher)
        print(f"{path.name}:")
        for ex in prepared.exchanges:
            m = prepared.matches[ex.asked]
            print(f"  {m.score:.3f} {m.best.id:45s} {ex.asked[:70]!r}")
        for text, m in prepared.matches.items():
            if all(text != ex.asked for ex in prepared.exchanges):
                print(f"  {m.score:.3f} {'(follow-up) ' + m.best.id:45s} {text[:70]!r}")

    found = matcher.match([t for _, t in items])
    right = np.array([m.score for m in found])
    correct = np.array([m.best.id == qid for (qid, _), m in zip(items, found, strict=True)])
    own = matcher.scores([t for _, t in items])
    ids = [q.id for q in rubric]
    own_scores = np.array([own[i, ids.index(qid)] for i, (qid, _) in enumerate(items)])
    neg = np.array([m.score for m in matcher.match(negatives)])
    print(f"\nparaphrases: {len(items)}; top-1 correct {correct.sum()}/{len(items)}")
    print(
        f"  similarity to their own question: min {own_scores.min():.3f}, 5th percentile "
        f"{np.percentile(own_scores, 5):.3f}, median {np.median(own_scores):.3f}"
    )
    for (qid, text), m in zip(items, found, strict=True):
        if m.best.id != qid:
            print(f"  confused: {text!r} -> {m.best.id} {m.score:.3f} (own {qid})")
    print(f"small talk and follow-ups: {len(neg)}; best similarity to any rubric question: max {neg.max():.3f}")
    for score, text in sorted(zip(neg, negatives, strict=True), reverse=True)[:3]:
        print(f"  {score:.3f} {text!r}")
    print("\nthreshold  matched right  matched wrong  unmatched  negatives matched")
    for t in (0.30, 0.325, 0.35, 0.375, 0.40, 0.425, 0.45, 0.50):
        on = right >= t
        mark = "  <- default" if abs(t - DEFAULT_MATCH_THRESHOLD) < 1e-9 else ""
        print(
            f"{t:9.3f}  {int((on & correct).sum()):13d}  {int((on & ~correct).sum()):13d}  {int((~on).sum()):9d}  "
            f"{int((neg >= t).sum()):17d}{mark}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sweep-only", action="store_true", help="only the threshold sweep over paraphrases")
    which.add_argument("--transcripts-only", action="store_true", help="only precision/recall over the transcripts")
    args = parser.parse_args()
    rubric = load_rubric()
    embedder = Embedder.load()
    if not args.transcripts_only:
        report_sweep(QuestionMatcher(rubric, embedder, threshold=0.0))
    if not args.sweep_only:
        report_transcripts(QuestionMatcher(rubric, embedder))


if __name__ == "__main__":
    main()
