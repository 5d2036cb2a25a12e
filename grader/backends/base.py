"""The backend interface: one async method that turns a request into a validated Grade."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from grader.grading.contract import Grade, GradeRequest
from grader.rubric import Question, Rubric


class Backend(ABC):
    """Grades answers. Implementations: `openai` (any OpenAI-compatible server), `ollama` (Ollama's native
    API), `local` (offline embeddings), `nearest` (the floor: the tier of the most similar reference),
    `fake` (scripted replies, for tests)."""

    name: ClassVar[str]
    #: Whether repeated grades of one answer can differ (so `--samples k` measures agreement).
    stochastic: ClassVar[bool] = True
    #: How many grades to have in flight at once by default (a server's patience, or a batch size).
    default_concurrency: ClassVar[int] = 8
    #: Whether `grader batch` may shard a run across forked worker processes, each building its own
    #: backend (true for HTTP clients; a local model batches in one process instead).
    multiprocess: ClassVar[bool] = False

    @property
    @abstractmethod
    def model(self) -> str:
        """The model that grades, as printed in every Grade."""

    def cache_key(self, rubric: Rubric | None = None) -> str:  # noqa: ARG002 - most grade each question alone
        """Everything about this backend that decides a grade of `rubric`'s questions, for the grade cache."""
        return f"{self.name}:{self.model}"

    @abstractmethod
    async def grade(self, request: GradeRequest) -> Grade:
        """Grade one answer; raise a GraderError subclass when no valid grade can be had."""

    def combine_samples(self, question: Question, results: list[Grade | BaseException]) -> Grade:  # noqa: ARG002
        """One grade from `--samples k` grades of one answer: by default the majority tier, with the share
        of samples agreeing as its confidence."""
        from grader.grading.review import combine_samples

        return combine_samples(results)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or models."""
