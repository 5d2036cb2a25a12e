"""The one Grade contract: what every backend returns, what the CLI prints, what the evals score.

Field descriptions are part of the JSON schema a model sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from grader.rubric import Question, Rubric


class Tier(StrEnum):
    great = "great"
    mediocre = "mediocre"
    poor = "poor"

    @classmethod
    def _missing_(cls, value: object) -> Tier | None:
        """`Great`, ` POOR `: a tier however it is capitalised or padded (a model in JSON mode, a person's
        file); anything else ('excellent') is still no tier."""
        if isinstance(value, str):
            return next((t for t in cls if t.value == value.strip().lower()), None)
        return None

    @property
    def rank(self) -> int:
        """Ordinal position: poor=0, mediocre=1, great=2 (for kappa and leniency)."""
        return {"poor": 0, "mediocre": 1, "great": 2}[self.value]


TIERS: tuple[str, ...] = tuple(t.value for t in Tier)
ConfidenceSource = Literal["logprobs", "samples", "margin"]


class Usage(BaseModel):
    """Tokens used, summed over every attempt (failed ones included)."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = Field(
        default=0, description="Prompt tokens the server read from its prefix cache, where it reports them."
    )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class CoveredPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Key-point id from the rubric.")
    evidence: str | None = Field(
        description="Verbatim quote from the candidate's answer that shows the point; null only when a "
        "quote the model gave could not be found in the answer and was dropped."
    )


class Grade(BaseModel):
    """A validated grade of one answer against one rubric question."""

    model_config = ConfigDict(extra="forbid")

    question_id: str = Field(description="Id of the rubric question that was graded.")
    tier: Tier = Field(description="great, mediocre or poor.")
    justification: str = Field(min_length=1, description="Why this tier, in terms of the rubric.")
    covered_points: list[CoveredPoint] = Field(
        default_factory=list, description="Key points the answer makes, each with a verbatim quote."
    )
    missed_points: list[str] = Field(default_factory=list, description="Ids of key points the answer misses.")
    red_flags: list[str] = Field(default_factory=list, description="Ids of the rubric's red flags the answer shows.")
    red_flag_evidence: dict[str, str] = Field(
        default_factory=dict,
        description="For a red flag shown (by id), the verbatim quote from the candidate's answer that shows it, "
        "where the backend gives one.",
    )
    confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Probability of the chosen tier from token log-probabilities, or the share of agreeing "
        "samples, or the local backend's decision margin; null when none is available. Never self-reported.",
    )
    confidence_source: ConfidenceSource | None = Field(
        default=None, description="Where confidence comes from: logprobs, samples, margin, or null."
    )
    point_scores: dict[str, float] = Field(
        default_factory=dict,
        description="Probability that the answer shows each key point and red flag (by id), where the backend "
        "can say: token log-probabilities of a checklist verdict, or the share of samples saying yes.",
    )
    needs_review: bool = Field(default=False, description="True when a human should look at this grade.")
    review_reasons: list[str] = Field(default_factory=list, description="Why needs_review is set.")
    notes: list[str] = Field(
        default_factory=list,
        description="Metadata about how the grade was obtained (dropped quotes, unreviewed draft points...).",
    )
    backend: str = Field(description="Backend that graded, e.g. openai or local.")
    model: str = Field(description="Model that graded.")
    usage: Usage = Field(default_factory=Usage)
    attempts: int = Field(default=1, ge=1, description="Model calls made, re-asks included.")
    rubric_version: str | None = Field(default=None, description="Fingerprint of the rubric question used.")

    @field_validator("justification")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("justification must not be blank")
        return value

    @model_validator(mode="after")
    def _lists_are_disjoint(self) -> Grade:
        covered = [p.id for p in self.covered_points]
        if len(set(covered)) != len(covered):
            raise ValueError("covered_points lists a point twice")
        if len(set(self.missed_points)) != len(self.missed_points):
            raise ValueError("missed_points lists a point twice")
        overlap = set(covered) & set(self.missed_points)
        if overlap:
            raise ValueError(f"points both covered and missed: {sorted(overlap)}")
        unshown = [f for f in self.red_flag_evidence if f not in self.red_flags]
        if unshown:
            raise ValueError(f"red_flag_evidence quotes flags that are not in red_flags: {unshown}")
        return self


# --- what cannot be graded ---------------------------------------------------------------------------


class FailureKind(StrEnum):
    """Why no grade could be had: one closed list for every feature's counts and reports."""

    unknown_question = "unknown_question"  # the question id or number is not in the rubric
    empty_answer = "empty_answer"
    not_text = "not_text"  # the answer holds what no text does: a lone UTF-16 surrogate, a NUL character
    answer_too_long = "answer_too_long"
    transport = "transport"  # the server kept failing (timeouts, 5xx, 429) until the attempts ran out
    invalid_output = "invalid_output"  # the model's replies failed validation after every re-ask
    invalid_response = "invalid_response"  # the server's answer is not a chat completion
    refused = "refused"  # the server refused the request (bad key, unknown model): the same for every answer
    not_configured = "not_configured"  # no backend, or a backend option it cannot use
    template = "template"  # a prompt template is missing or broken
    output = "output"  # the grade or vector cache (or another output) cannot be written
    missing_result = "missing_result"  # Batch API: no result line for this answer
    batch_error = "batch_error"  # Batch API: the provider reported the request failed
    error = "error"  # anything else grader refused on purpose

    @property
    def fatal(self) -> bool:
        """The same cause would fail every other answer: a run stops at the first one."""
        return self in (FailureKind.refused, FailureKind.not_configured, FailureKind.template, FailureKind.output)


class GradeFailure(BaseModel):
    """A grade that could not be obtained: stored, counted and reported the same way by every feature,
    and kept out of every aggregate (like inspect_ai's `Score.unscored`)."""

    model_config = ConfigDict(extra="forbid")

    kind: FailureKind = Field(description="Why, from one closed list.")
    message: str = Field(description="One line that says what went wrong and what to do.")
    question_id: str | None = Field(default=None, description="The rubric question, where it was known.")
    attempts: int = Field(default=0, ge=0, description="Model calls made before giving up.")
    usage: Usage = Field(default_factory=Usage, description="Tokens spent on the failed attempts.")
    last_output: str | None = Field(default=None, description="The model's last raw reply, where there was one.")


#: What grading one answer ends in.
Outcome = Grade | GradeFailure


class HoldsOutcome:
    """`grade` and `failure` for a record that holds an `outcome` (None while not graded yet)."""

    outcome: Outcome | None

    @property
    def grade(self) -> Grade | None:
        return self.outcome if isinstance(self.outcome, Grade) else None

    @property
    def failure(self) -> GradeFailure | None:
        return self.outcome if isinstance(self.outcome, GradeFailure) else None


# --- what is asked ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for one request that differ from the backend's own (`--samples k` raises the
    temperature so the samples can disagree)."""

    temperature: float | None = None

    def key(self) -> list[object]:
        return [self.temperature]


@dataclass(frozen=True)
class Reviewed:
    """An answer a person has graded (a review in the service's database, or a labelled training answer):
    shown with its human tier and points when a similar answer to the same question is graded."""

    id: str
    answer: str
    tier: Tier
    covered: tuple[str, ...] = ()  # key-point ids the reviewer ticked
    red_flags: tuple[str, ...] = ()
    similarity: float | None = None  # to the answer being graded, as the selection measured it

    def key(self) -> list[object]:
        return [self.id, self.answer, self.tier.value, list(self.covered), list(self.red_flags)]


@dataclass(frozen=True)
class GradeRequest:
    """One answer to grade against one rubric question.

    `exemplars` defaults to the question's three references; evals pass fewer to hide the reference
    being graded (leave-one-out). `reviewed` are the most similar answers people have graded (learning
    from reviews), shown after the references. `sample` numbers repeated grades of the same answer
    (`--samples k`). `bank` is the rubric the question is graded in (the engine's), for a backend that
    compares an answer with the other questions (the local backend's "answers another question").
    """

    question: Question
    answer: str
    exemplars: tuple[tuple[str, str], ...] | None = None
    sample: int = 0
    sampling: Sampling = field(default_factory=Sampling)
    reviewed: tuple[Reviewed, ...] = ()
    bank: Rubric | None = field(default=None, compare=False, repr=False)

    @property
    def reference_answers(self) -> tuple[tuple[str, str], ...]:
        if self.exemplars is not None:
            return self.exemplars
        return tuple(self.question.references.items())
