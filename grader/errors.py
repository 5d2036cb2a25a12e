"""Typed errors. Each carries a one-line message that says what to do next and a distinct exit code.

The CLI turns any `GraderError` into that line and exit code; nothing else should reach the user as a
traceback.
"""

from __future__ import annotations

from typing import Any


class GraderError(Exception):
    """Base class for every error grader raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UnknownQuestionError(GraderError):
    """The question id or number is not in the rubric."""

    exit_code = 3

    def __init__(self, ref: str, suggestions: list[str]) -> None:
        hint = ("did you mean " + ", ".join(suggestions) + "?") if suggestions else "see `grader rubric list`"
        super().__init__(f"unknown question {ref!r}", hint=hint)
        self.ref = ref
        self.suggestions = suggestions


class EmptyAnswerError(GraderError):
    exit_code = 4


class AnswerTooLongError(GraderError):
    exit_code = 5


class InputFileError(GraderError):
    """A file could not be read (missing, a directory, permissions)."""

    exit_code = 6


class EncodingError(GraderError):
    """A file is not valid UTF-8."""

    exit_code = 7


class BackendNotConfiguredError(GraderError):
    exit_code = 8


class RubricError(GraderError):
    """A rubric or question bank is invalid; the message names the file, line or field."""

    exit_code = 9


class GradingFailedError(GraderError):
    """The model did not produce a valid grade within the allowed attempts."""

    exit_code = 10

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        usage: Any = None,
        last_output: str | None = None,
        kind: str = "invalid_output",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.attempts = attempts
        self.usage = usage
        self.last_output = last_output
        self.kind = kind


class BackendError(GraderError):
    """The backend refused the request for a reason retrying cannot fix (auth, bad model name...)."""

    exit_code = 11


class TemplateError(GraderError):
    """A prompt template is missing or uses an undefined variable."""

    exit_code = 12


class CalibrationDataError(GraderError):
    """Interviewer grades or model grades for `grader calibrate` are invalid; names the file and line."""

    exit_code = 20


class TranscriptError(GraderError):
    """A transcript cannot be read as an interview: unknown format, no speakers, no interviewer or candidate."""

    exit_code = 14
