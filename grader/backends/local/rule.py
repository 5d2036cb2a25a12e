"""The local backend's decision rule: a few features of an answer -> tier probabilities.

The features come from embedding similarities (how well the answer's best span matches each key point
and red flag); the rule is a small multinomial logistic model whose parameters are fitted by
`scripts/fit_local.py` (leave-one-question-out on the seed references) and shipped in `params.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from grader.grade import TIERS

FEATURES = ("coverage", "point_similarity", "flag_similarity", "flags_hit")


@dataclass(frozen=True)
class Analysis:
    """What the embeddings say about one answer, before any decision."""

    point_best: np.ndarray  # (K,) best span similarity for each key point
    point_span: np.ndarray  # (K,) index of that span
    flag_best: np.ndarray  # (F,) best span similarity for each red flag
    flag_span: np.ndarray  # (F,)
    topical: float  # best similarity of the whole answer to the question or an exemplar
    prose: float  # share of function words
    n_words: int


@dataclass(frozen=True)
class TierRule:
    cover_threshold: float
    flag_threshold: float
    topic_threshold: float
    prose_threshold: float
    min_words: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (3, n_features), rows in TIERS order
    intercept: np.ndarray  # (3,)

    @classmethod
    def load(cls) -> TierRule:
        data = json.loads((files("grader.backends.local") / "params.json").read_text(encoding="utf-8"))
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> TierRule:
        if tuple(data["features"]) != FEATURES or tuple(data["tiers"]) != TIERS:
            raise ValueError("params.json was fitted for other features; rerun scripts/fit_local.py")
        return cls(
            cover_threshold=data["cover_threshold"],
            flag_threshold=data["flag_threshold"],
            topic_threshold=data["topic_threshold"],
            prose_threshold=data["prose_threshold"],
            min_words=data["min_words"],
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            coef=np.asarray(data["coef"], dtype=np.float64),
            intercept=np.asarray(data["intercept"], dtype=np.float64),
        )

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            [
                self.cover_threshold,
                self.flag_threshold,
                self.topic_threshold,
                self.prose_threshold,
                self.min_words,
                self.mean.tolist(),
                self.scale.tolist(),
                self.coef.tolist(),
                self.intercept.tolist(),
            ]
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def features(self, a: Analysis) -> np.ndarray:
        return feature_vector(a, self.cover_threshold, self.flag_threshold)

    def probabilities(self, a: Analysis) -> dict[str, float]:
        z = (self.features(a) - self.mean) / self.scale
        logits = self.coef @ z + self.intercept
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {tier: float(v) for tier, v in zip(TIERS, p, strict=True)}


def feature_vector(a: Analysis, cover_threshold: float, flag_threshold: float) -> np.ndarray:
    coverage = float((a.point_best >= cover_threshold).mean()) if a.point_best.size else 0.0
    point_sim = float(a.point_best.mean()) if a.point_best.size else 0.0
    flag_sim = float(a.flag_best.max()) if a.flag_best.size else 0.0
    flags_hit = float((a.flag_best >= flag_threshold).mean()) if a.flag_best.size else 0.0
    return np.array([coverage, point_sim, flag_sim, flags_hit], dtype=np.float64)
