"""The local backend's decision rule: embedding similarities -> point verdicts -> tier probabilities.

Three small logistic models, fitted by `scripts/fit_local.py` on the dev half of the `answers` suite
(fresh answers graded by hand, never the references the rubric was written from) and shipped in
`params.json`:

- a key point is covered with probability `point(features)`, from how well the answer's best span,
  best two-sentence window and whole text match it, each relative to how well the question's own great
  and poor references match it (a per-question yardstick: some points are easy to match, some hard);
- a red flag is shown with probability `flag(features)`, the same way, the poor reference as yardstick;
- the tier comes from the share of points covered, the strongest red flag, and how close the answer is to
  each tier's reference answer, through a multinomial logistic model whose probability for the chosen
  tier is the grade's `confidence`.

A question whose key points and red flags carry no `phrasings` (a team's own bank, drafted offline or
written without them) is graded by a companion rule, `params-unphrased.json`: the same three models
fitted on the dev half with the hand-written points stripped of their phrasings (the tier model on those,
on an offline draft of the same questions, or on both, whichever `scripts/fit_local.py` finds better),
because the default models lean on the phrasings and misjudge points without them
(`TierRule.for_question`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import numpy as np

from grader.errors import UsageError
from grader.grading.contract import TIERS

if TYPE_CHECKING:
    from grader.rubric.model import Question

#: What decides whether a key point is made, and (with the poor reference as yardstick instead of the
#: great one) whether a red flag is shown: the same signals, built by `_match_features`.
MATCH_FEATURES = (
    "span",
    "window",
    "whole",
    "above_yardstick",
    "above_opposite",
    "words_span",
    "words_whole",
    "said",
    "specific",
    "phrased",
    "over_rival",
)
TIER_FEATURES = (
    "covered_share",
    "expected_share",
    "flag_max",
    "flags_expected",
    "near_great",
    "near_poor",
    "log_words",
    "p_half",
    "p_flag_any",
    "sim_great",
)
VERSION = 2
#: Length counts only up to here: a short answer rarely makes half the points, but padding a fair answer
#: with more words must not raise its tier.
WORDS_CAP = 60


@dataclass(frozen=True)
class Match:
    """How one key point (or red flag) matches one answer."""

    span: np.ndarray  # (K,) best similarity over sentences, clauses and word chunks
    window: np.ndarray  # (K,) best over those and two-sentence windows
    whole: np.ndarray  # (K,) similarity to the whole answer
    best: np.ndarray  # (K,) index into the answer's evidence spans of the best match
    level_great: np.ndarray  # (K,) the great reference's own best span similarity (nan: not shown)
    level_poor: np.ndarray  # (K,) the poor reference's (nan: not shown)
    words_span: np.ndarray  # (K,) best share of the point's content words found in one span or window
    words_whole: np.ndarray  # (K,) share of the point's content words found anywhere in the answer
    said: np.ndarray  # (K,) best similarity to the way the reference says it (nan: no such reference)
    specific: np.ndarray  # (K,) best span's similarity to this point minus its best to any other
    phrased: np.ndarray  # (K,) best similarity of a span to one of the point's phrasings (nan: none written)
    rival: np.ndarray  # (K,) the best span's similarity here minus its best to the other side (flags for points)

    @classmethod
    def empty(cls) -> Match:
        z = np.zeros(0)
        return cls(z, z, z, np.zeros(0, int), z, z, z, z, z, z, z, z)


@dataclass(frozen=True)
class Analysis:
    """What the embeddings and the text say about one answer, before any decision."""

    points: Match
    flags: Match
    tier_similarity: dict[str, float]  # tier -> best similarity of the whole answer to that tier's exemplars
    topical: float  # best similarity of the whole answer to the question or an exemplar
    topic_level: float  # the same for the references among themselves: what on-topic looks like here
    prose: float  # share of function words
    n_words: int
    repetition: float
    order: float  # OrderModel score: prose > 0, shuffled words <= 0 (nan: too short to tell)
    elsewhere: float  # best similarity to another question's references or text, minus `topical`
    elsewhere_id: str | None  # that question
    echo: float  # share of the answer's words that are the question's
    negated: float  # share of sentences with a negation
    negations: int = 0  # how many sentences those are


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic model over standardised features (binary: one row of coef)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (classes or 1, n_features)
    intercept: np.ndarray
    fill: dict[str, float] = field(default_factory=dict)  # what a missing (nan) feature is taken to be

    @classmethod
    def from_dict(cls, data: dict[str, Any], expected: tuple[str, ...]) -> Logistic:
        if tuple(data["features"]) != expected:
            raise ValueError("params.json was fitted for other features; rerun scripts/fit_local.py")
        return cls(
            features=tuple(data["features"]),
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            coef=np.atleast_2d(np.asarray(data["coef"], dtype=np.float64)),
            intercept=np.atleast_1d(np.asarray(data["intercept"], dtype=np.float64)),
            fill=dict(data.get("fill", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": np.round(self.mean, 6).tolist(),
            "scale": np.round(self.scale, 6).tolist(),
            "coef": np.round(self.coef, 6).tolist(),
            "intercept": np.round(self.intercept, 6).tolist(),
            "fill": {k: round(v, 6) for k, v in self.fill.items()},
        }

    def _z(self, X: np.ndarray) -> np.ndarray:
        X = np.array(X, dtype=np.float64, copy=True)
        for j, name in enumerate(self.features):
            X[np.isnan(X[:, j]), j] = self.fill.get(name, self.mean[j])
        return (X - self.mean) / self.scale

    def positive(self, X: np.ndarray) -> np.ndarray:
        """P(yes) for each row of a binary model."""
        logit = self._z(X) @ self.coef[0] + self.intercept[0]
        return 1.0 / (1.0 + np.exp(-logit))

    def classes(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (rows: samples, columns: TIERS) of a multinomial model."""
        logits = self._z(X) @ self.coef.T + self.intercept
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Guards:
    """Texts that are not answers are poor whatever they match; thresholds are in the rule's file."""

    min_words: int
    prose: float  # under this share of function words: a keyword list
    topic: float  # under this share of the references' own topicality: off-topic
    repetition: float  # the most frequent word pair takes more than this share: glued or pasted text
    order: float  # a long answer's word order scoring under this is sent for review (shuffled words)
    elsewhere: float  # closer than this to another question than to its own: it answers that one
    echo: float  # more of the question's own words than this: the question pasted back
    negated: float  # a larger share of negated sentences is sent for review (not graded down by itself)


@dataclass(frozen=True)
class TierRule:
    point: Logistic
    flag: Logistic
    tier: Logistic
    guards: Guards
    point_threshold: float = 0.5
    flag_threshold: float = 0.5
    #: An answer that says it in the reference's own words (a span this similar to the great reference's
    #: sentence for a point, or the poor reference's for a red flag) makes it, whatever the model says.
    verbatim: float = 1.01
    #: The rule for questions with no phrasings at all (None: this rule grades every question).
    unphrased: TierRule | None = None
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, name: str | None = None) -> TierRule:
        """A packaged rule by name: `default` (params.json, fitted on the answers suite's dev half) or
        `saf` (params-saf.json, its tier model refitted on SAF's training split)."""
        packaged = {"default": "params.json", "saf": "params-saf.json"}
        if (name or "default") not in packaged:
            raise UsageError(f"unknown local rule {name!r}", hint=f"packaged rules: {', '.join(packaged)}")
        here = files("grader.backends.local")
        rule = cls.from_dict(json.loads((here / packaged[name or "default"]).read_text(encoding="utf-8")))
        if (name or "default") == "default":
            companion = json.loads((here / "params-unphrased.json").read_text(encoding="utf-8"))
            rule = replace(rule, unphrased=cls.from_dict(companion))
        return rule

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TierRule:
        if data.get("version") != VERSION or tuple(data.get("tiers", ())) != TIERS:
            raise ValueError("params.json is from another version of the rule; rerun scripts/fit_local.py")
        return cls(
            point=Logistic.from_dict(data["point"], MATCH_FEATURES),
            flag=Logistic.from_dict(data["flag"], MATCH_FEATURES),
            tier=Logistic.from_dict(data["tier"], TIER_FEATURES),
            guards=Guards(**data["guards"]),
            point_threshold=data["point_threshold"],
            flag_threshold=data["flag_threshold"],
            verbatim=data["verbatim"],
            source=data,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "tiers": list(TIERS),
            "point_threshold": self.point_threshold,
            "flag_threshold": self.flag_threshold,
            "verbatim": self.verbatim,
            "guards": self.guards.__dict__,
            "point": self.point.to_dict(),
            "flag": self.flag.to_dict(),
            "tier": self.tier.to_dict(),
        }

    @property
    def fingerprint(self) -> str:
        data = self.to_dict()
        if self.unphrased is not None:
            data["unphrased"] = self.unphrased.fingerprint
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def for_question(self, question: Question) -> TierRule:
        """The rule that grades `question`: the companion for a question none of whose key points and red
        flags has phrasings (when this rule has one), else this one."""
        if self.unphrased is None or any(item.phrasings for item in [*question.key_points, *question.red_flags]):
            return self
        return self.unphrased

    def point_probabilities(self, a: Analysis) -> np.ndarray:
        if not a.points.span.size:
            return np.zeros(0)
        return self._verbatim(self.point.positive(point_features(a.points)), a.points)

    def flag_probabilities(self, a: Analysis) -> np.ndarray:
        if not a.flags.span.size:
            return np.zeros(0)
        return self._verbatim(self.flag.positive(flag_features(a.flags)), a.flags)

    def _verbatim(self, p: np.ndarray, m: Match) -> np.ndarray:
        said = np.nan_to_num(m.said, nan=-1.0)
        return np.where(said >= self.verbatim, np.maximum(p, 0.99), p)

    def probabilities(self, a: Analysis) -> dict[str, float]:
        x = tier_features(
            a, self.point_probabilities(a), self.flag_probabilities(a), self.point_threshold, self.flag_threshold
        )
        p = self.tier.classes(x[None, :])[0]
        return {tier: float(v) for tier, v in zip(TIERS, p, strict=True)}


def point_features(m: Match) -> np.ndarray:
    """MATCH_FEATURES for each key point: the great reference is the yardstick it should reach."""
    return _match_features(m, yardstick=m.level_great, opposite=m.level_poor)


def flag_features(m: Match) -> np.ndarray:
    """MATCH_FEATURES for each red flag: the poor reference is the yardstick it should reach."""
    return _match_features(m, yardstick=m.level_poor, opposite=m.level_great)


def _match_features(m: Match, *, yardstick: np.ndarray, opposite: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [
            m.span,
            m.window,
            m.whole,
            m.span - yardstick,
            m.span - opposite,
            m.words_span,
            m.words_whole,
            m.said,
            m.specific,
            m.phrased,
            m.rival,
        ]
    )


def tier_features(
    a: Analysis, p_points: np.ndarray, p_flags: np.ndarray, point_threshold: float, flag_threshold: float
) -> np.ndarray:
    sims = a.tier_similarity
    g, m, p = (sims.get(t, np.nan) for t in TIERS)
    return np.array(
        [
            float((p_points >= point_threshold).mean()) if p_points.size else 0.0,
            float(p_points.mean()) if p_points.size else 0.0,
            float(p_flags.max()) if p_flags.size else 0.0,
            float((p_flags >= flag_threshold).sum()) if p_flags.size else 0.0,
            g - np.nanmax([m, p]) if not np.isnan(g) and not (np.isnan(m) and np.isnan(p)) else np.nan,
            p - np.nanmax([g, m]) if not np.isnan(p) and not (np.isnan(g) and np.isnan(m)) else np.nan,
            float(np.log1p(min(a.n_words, WORDS_CAP))),
            at_least_half(p_points),
            float(1.0 - np.prod(1.0 - p_flags)) if p_flags.size else 0.0,
            g,
        ],
        dtype=np.float64,
    )


def at_least_half(p: np.ndarray) -> float:
    """P(at least half the points, rounded up, are covered) if each is covered independently with its
    probability: the grading policy's line between great and the rest, read off the point verdicts."""
    if not p.size:
        return 0.0
    dist = np.zeros(p.size + 1)
    dist[0] = 1.0
    for q in p:  # Poisson-binomial, by convolution
        dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
        dist[0] *= 1 - q
    return float(dist[int(np.ceil(p.size / 2)) :].sum())
