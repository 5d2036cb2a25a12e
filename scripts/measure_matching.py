"""Measure the transcript matcher's threshold (grader/transcripts/match.py, README "Transcripts").

Scores, with the packaged MiniLM, (1) three interviewer-style wordings of each of the packaged rubric's
20 questions, (2) small talk and follow-ups that must match nothing, from
tests/data/transcripts/paraphrases.yaml, and (3) every question asked in the test transcripts, then
sweeps the threshold. Run from the repository root: python scripts/measure_matching.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from grader.backends.local.embedder import Embedder
from grader.rubric import load_rubric
from grader.transcripts.match import DEFAULT_MATCH_THRESHOLD, QuestionMatcher
from grader.transcripts.parse import read_transcript
from grader.transcripts.pipeline import prepare
from grader.transcripts.segment import detect_roles

DATA = Path("tests/data/transcripts")


def main() -> None:
    rubric = load_rubric()
    numbers = {q.number: q for q in rubric}
    matcher = QuestionMatcher(rubric, Embedder.load(), threshold=0.0)
    data = yaml.safe_load((DATA / "paraphrases.yaml").read_text(encoding="utf-8"))
    items = [(numbers[n].id, text) for n, texts in data["questions"].items() for text in texts]
    negatives = [*data["small_talk"], *data["followups"]]

    # The test transcripts: each exchange's opening, and each follow-up question, as the segmenter sees them.
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


if __name__ == "__main__":
    main()
