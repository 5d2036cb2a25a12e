"""Match what the interviewer asked to the rubric's questions, by meaning, with the local embedder.

Interviewers never read the rubric's wording out ("so, um, say something breaks in prod at 2 a.m., what
do you do?"), so words are compared by sentence embeddings (the packaged all-MiniLM-L6-v2, whichever
backend grades). Each rubric question is represented by the centroid of its text (weight 2) and its great
reference answer, which carries the topic's vocabulary; an asked question is compared whole and sentence
by sentence, and the best cosine wins. Below `DEFAULT_MATCH_THRESHOLD` nothing is forced: the question is
reported as unmatched. The threshold was measured on paraphrases of the 20 packaged questions, small talk
and follow-ups (`scripts/measure_matching.py`; README, "Transcripts").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from grader.config import DEFAULT_MATCH_THRESHOLD
from grader.rubric import Question, Rubric
from grader.transcripts.segment import sentences

#: A runner-up this close to the best match is reported next to it, for a human to check.
AMBIGUOUS_MARGIN = 0.03
QUESTION_WEIGHT = 2.0


@dataclass(frozen=True)
class Match:
    """The best rubric question for one asked question; `question` is None below the threshold."""

    question: Question | None
    score: float
    best: Question
    runner_up: Question | None = None
    runner_up_score: float | None = None

    @property
    def ambiguous(self) -> bool:
        return (
            self.runner_up is not None
            and self.runner_up_score is not None
            and (self.score - self.runner_up_score < AMBIGUOUS_MARGIN)
        )


class Embeds(Protocol):
    """What matching needs of a sentence embedder: unit-length vectors, one row per text (the packaged
    MiniLM's `Embedder` is one)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class QuestionMatcher:
    def __init__(self, rubric: Rubric, embedder: Embeds, threshold: float = DEFAULT_MATCH_THRESHOLD) -> None:
        self.rubric = rubric
        self.embedder = embedder
        self.threshold = threshold
        questions = list(rubric)
        vectors = embedder.embed([q.text for q in questions] + [q.references.great for q in questions])
        anchors = QUESTION_WEIGHT * vectors[: len(questions)] + vectors[len(questions) :]
        self._anchors = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
        self._questions = questions

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), questions) similarities: each text's best over itself and its sentences."""
        candidates: list[list[str]] = []
        for text in texts:
            parts = sentences(text)
            candidates.append([text, *parts] if len(parts) > 1 else [text])
        flat = [c for group in candidates for c in group]
        if not flat:
            return np.zeros((0, len(self._questions)), dtype=np.float32)
        sims = self.embedder.embed(flat) @ self._anchors.T
        out, offset = [], 0
        for group in candidates:
            out.append(sims[offset : offset + len(group)].max(axis=0))
            offset += len(group)
        return np.stack(out)

    def match(self, texts: Sequence[str]) -> list[Match]:
        if not texts:
            return []
        result = []
        for row in self.scores(texts):
            order = np.argsort(-row, kind="stable")
            best, second = int(order[0]), (int(order[1]) if len(order) > 1 else None)
            score = round(float(row[best]), 4)
            result.append(
                Match(
                    question=self._questions[best] if score >= self.threshold else None,
                    score=score,
                    best=self._questions[best],
                    runner_up=self._questions[second] if second is not None else None,
                    runner_up_score=round(float(row[second]), 4) if second is not None else None,
                )
            )
        return result

    def ids(self, texts: Sequence[str]) -> list[str | None]:
        """The matched rubric question id of each text, or None: what `segment(match=...)` takes."""
        return [m.question.id if m.question is not None else None for m in self.match(texts)]
