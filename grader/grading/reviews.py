"""Reviewed answers as exemplars: the grades people gave earlier answers to a question, picked for each new
answer to the same question by how similar it is (learning from reviews).

`ReviewBank` is the engine's `ReviewSource`: it holds (question id, `Reviewed`) pairs and, for an answer,
returns the `k` most similar reviewed answers to the same question, most similar first, with
`Reviewed.similarity` filled in. Similarity is TF-IDF cosine over each question's own reviewed answers
(word unigrams and bigrams, sublinear term frequency): no model to load, about half a millisecond per
answer, deterministic (ties keep the order the answers were added in). Each question's index is built
on first use and rebuilt only after `add` changed that question. The backend decides what to make of
the neighbours (a chat model reads them in its prompt; the local backend weighs their tiers by its own
embedding similarity).

A file of reviewed answers (`load_reviews`) is JSON: `{"name", "description", "source", "answers":
[{"id", "question", "answer", "tier", "covered"?, "red_flags"?}]}`; `evals/saf/saf-train.json` is one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.errors import GraderError
from grader.grading.contract import Reviewed, Tier
from grader.rubric import Question

#: Reviewed answers shown per grade: tuned on the dev data (answers-dev and SAF's training split, leave
#: one out) with the local backend, `python benchmarks/bench_learning.py --tune`.
DEFAULT_K = 6


@dataclass
class _Index:
    """One question's reviewed answers and, once built, their TF-IDF matrix."""

    answers: list[Reviewed]
    vectorizer: Any = None  # a fitted TfidfVectorizer; None: not built (or nothing to index)
    matrix: Any = None  # (n, vocabulary) sparse, rows L2-normalised
    built: bool = False


class ReviewBank:
    """The reviewed answers of every question, and the most similar ones to a new answer (a
    `grader.grading.engine.ReviewSource`)."""

    def __init__(
        self, reviewed: Iterable[tuple[str, Reviewed]] = (), *, k: int = DEFAULT_K, min_similarity: float | None = None
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.min_similarity = min_similarity
        self._questions: dict[str, _Index] = {}
        self._lock = threading.Lock()
        for question_id, item in reviewed:
            self._put(question_id, item)

    def __len__(self) -> int:
        return sum(len(index.answers) for index in self._questions.values())

    def answers(self, question_id: str) -> tuple[Reviewed, ...]:
        """Every reviewed answer to this question, in the order added."""
        index = self._questions.get(question_id)
        return tuple(index.answers) if index is not None else ()

    def add(self, question_id: str, reviewed: Reviewed) -> None:
        """Add a reviewed answer (a new review in a running service), or replace the one with the same id
        (a review changed); only this question's index is rebuilt, on its next use."""
        with self._lock:
            self._put(question_id, reviewed)

    def remove(self, ids: Collection[str]) -> int:
        """Forget the reviewed answers with these ids (their grades were erased); how many there were."""
        removed, ids = 0, set(ids)
        with self._lock:
            for question_id, index in list(self._questions.items()):
                kept = [r for r in index.answers if r.id not in ids]
                if len(kept) != len(index.answers):
                    removed += len(index.answers) - len(kept)
                    self._questions[question_id] = _Index(kept)
        return removed

    def _put(self, question_id: str, reviewed: Reviewed) -> None:
        index = self._questions.setdefault(question_id, _Index([]))
        kept = [r for r in index.answers if r.id != reviewed.id]
        kept.append(replace(reviewed, similarity=None))
        self._questions[question_id] = _Index(kept)

    def nearest(self, question: Question, answer: str, *, exclude: Collection[str] = ()) -> tuple[Reviewed, ...]:
        """The `k` reviewed answers to `question` most similar to `answer`, most similar first, each with
        its `similarity` (TF-IDF cosine, 0 to 1). `exclude` names reviewed ids to leave out (leave-one-out
        measurements: an answer is never its own neighbour)."""
        with self._lock:
            index = self._questions.get(question.id)
            if index is None or not index.answers:
                return ()
            if not index.built:
                _build(index)
            vectorizer, matrix, answers = index.vectorizer, index.matrix, index.answers
        if vectorizer is None:
            return ()
        query = vectorizer.transform([answer])
        sims = np.asarray((matrix @ query.T).toarray()).ravel()
        order = np.argsort(-sims, kind="stable")
        picked: list[Reviewed] = []
        for i in order:
            sim = float(sims[i])
            if self.min_similarity is not None and sim < self.min_similarity:
                break
            item = answers[int(i)]
            if item.id in exclude:
                continue
            picked.append(replace(item, similarity=round(sim, 4)))
            if len(picked) == self.k:
                break
        return tuple(picked)


def _build(index: _Index) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer  # imported here: the CLI starts without it

    index.built = True
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    try:
        index.matrix = vectorizer.fit_transform([r.answer for r in index.answers])
    except ValueError:  # no word in any answer ("empty vocabulary"): nothing is similar to anything
        index.vectorizer = index.matrix = None
        return
    index.vectorizer = vectorizer


# --- files of reviewed answers ----------------------------------------------------------------------


class ReviewedAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1, description="The rubric question's id.")
    answer: str = Field(min_length=1)
    tier: Tier = Field(description="The tier the person gave it.")
    covered: list[str] = Field(default_factory=list, description="Key-point ids the person ticked.")
    red_flags: list[str] = Field(default_factory=list)


class ReviewsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    source: str = ""
    answers: list[ReviewedAnswer]


def load_reviews(path: Path) -> list[tuple[str, Reviewed]]:
    """A file of reviewed answers as (question id, `Reviewed`) pairs, in file order, for a `ReviewBank`."""
    try:
        parsed = ReviewsFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise GraderError(f"{path}: cannot read the reviewed answers ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise GraderError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise GraderError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return [
        (a.question, Reviewed(a.id, a.answer, a.tier, tuple(a.covered), tuple(a.red_flags))) for a in parsed.answers
    ]
