"""Eval cases and suites: validated files (or code that generates them) naming what a grade should be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grader.errors import GraderError
from grader.grading.contract import Tier
from grader.rubric import Rubric

Outcome = Literal["great", "mediocre", "poor", "rejected"]


class Exemplar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Tier
    text: str = Field(min_length=1)


class EvalCase(BaseModel):
    """One answer to grade, and what counts as right."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(description="Question id in the suite's rubric.")
    answer: str
    label: Tier = Field(description="The true tier, for accuracy, kappa and the confusion matrix.")
    expected: list[Outcome] = Field(
        default_factory=list,
        description="Acceptable outcomes; defaults to [label]. 'rejected' means refusing to grade is right "
        "(an empty answer).",
    )
    kind: str = Field(default="reference", description="reference, or the perturbation that made it.")
    base: str | None = Field(default=None, description="Id of the case this one was derived from.")
    group: str | None = Field(default=None, description="Cases in one group must get the same tier (fairness).")
    hide_reference: Tier | None = Field(
        default=None, description="Hide this reference from the exemplars (leave-one-out)."
    )
    exemplars: list[Exemplar] | None = Field(
        default=None, description="Explicit exemplars, replacing the question's references."
    )
    covered: list[str] | None = Field(
        default=None,
        description="Key-point ids the answer makes, graded by hand: per-point precision and recall are "
        "measured on cases that have them.",
    )
    red_flags: list[str] | None = Field(default=None, description="Red-flag ids the answer shows, by hand.")
    meta: dict[str, str | float | int] = Field(default_factory=dict)

    @field_validator("expected", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        """`[Great]` as `label: Great` is read (Tier reads any case)."""
        if isinstance(value, list):
            return [v.strip().lower() if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _default_expected(self) -> EvalCase:
        if not self.expected:
            self.expected = [self.label.value]
        return self


class Suite(BaseModel):
    """A rubric and the cases graded against it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    rubric: Rubric
    cases: list[EvalCase]

    @model_validator(mode="after")
    def _cases_fit_the_rubric(self) -> Suite:
        ids = {q.id for q in self.rubric.questions}
        seen: set[str] = set()
        for case in self.cases:
            if case.question not in ids:
                raise ValueError(f"case {case.id}: unknown question {case.question!r}")
            if case.id in seen:
                raise ValueError(f"duplicate case id {case.id!r}")
            question = self.rubric.find(case.question)
            for name, known in (("covered", question.point_ids), ("red_flags", [f.id for f in question.red_flags])):
                unknown = set(getattr(case, name) or ()) - set(known)
                if unknown:
                    raise ValueError(f"case {case.id}: {name}: {sorted(unknown)} not in question {question.id}")
            seen.add(case.id)
        return self


def load_suite_file(path: Path) -> Suite:
    """A suite stored as JSON: {"name", "description", "rubric": {...}, "cases": [...]}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GraderError(f"{path}: no such suite file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraderError(f"{path}: not a JSON suite file ({exc})") from None
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise GraderError(f"{path}: {where}: {err['msg']}") from None
