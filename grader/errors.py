"""Typed errors. Each carries a one-line message that says what to do next and a distinct exit code.

The CLI turns any `GraderError` into that line and exit code; nothing else should reach the user as a
traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from grader.grading.contract import FailureKind, GradeFailure, Usage


class GraderError(Exception):
    """Base class for every error grader raises on purpose."""

    exit_code: int = 1
    #: What this error is when it stops one answer's grade (`failure()`); a subclass sets its own, and a
    #: GradingFailedError says per instance (transport, invalid_output, invalid_response...).
    failure_kind: FailureKind = FailureKind.error

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        # Every message printed or stored goes through here: a key a server echoed back never leaves.
        return redact(f"{self.message} ({self.hint})" if self.hint else self.message)

    def failure(self, question_id: str | None = None) -> GradeFailure:
        """This error as data: the one conversion every feature uses."""
        return GradeFailure(kind=self.failure_kind, message=str(self), question_id=question_id)


def error_for(failure: GradeFailure) -> GraderError:
    """The error that ends a command on this failure, with the exit code of the error it came from."""
    if failure.kind not in _INPUT_KINDS:
        return GradingFailedError(
            failure.message,
            attempts=failure.attempts,
            usage=failure.usage,
            last_output=failure.last_output,
            kind=failure.kind,
        )
    # The subclass the failure's kind stands for (`except UnknownQuestionError` catches it); `error` is
    # every other error's kind, so which one is not known: the base class, exit 1.
    cls = GraderError
    if failure.kind is not FailureKind.error:
        cls = next((c for c in _subclasses(GraderError) if c.failure_kind is failure.kind), GraderError)
    error = cls.__new__(cls)
    GraderError.__init__(error, failure.message)  # the message as stored: its hint is already part of it
    if isinstance(error, UnknownQuestionError):
        error.ref, error.suggestions = failure.question_id or "", []
    return error


#: Failures that an error of their own stands for; every other kind is a model call that failed (exit 10).
_INPUT_KINDS = frozenset(
    {
        FailureKind.unknown_question,
        FailureKind.empty_answer,
        FailureKind.not_text,
        FailureKind.answer_too_long,
        FailureKind.refused,
        FailureKind.not_configured,
        FailureKind.template,
        FailureKind.output,
        FailureKind.error,
    }
)


def _subclasses(cls: type[GraderError]) -> list[type[GraderError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


class UnknownQuestionError(GraderError):
    """The question id or number is not in the rubric."""

    exit_code = 3
    failure_kind = FailureKind.unknown_question

    def __init__(self, ref: str, suggestions: list[str]) -> None:
        hint = (
            ("did you mean " + ", ".join(suggestions) + "?")
            if suggestions
            else "list them with `grader rubric list` given the same --rubric, or load_rubric() in Python"
        )
        super().__init__(f"unknown question {ref!r}", hint=hint)
        self.ref = ref
        self.suggestions = suggestions


class EmptyAnswerError(GraderError):
    exit_code = 4
    failure_kind = FailureKind.empty_answer


class AnswerTooLongError(GraderError):
    exit_code = 5
    failure_kind = FailureKind.answer_too_long


class InputFileError(GraderError):
    """A file could not be read (missing, a directory, permissions)."""

    exit_code = 6


class EncodingError(GraderError):
    """A file is not valid UTF-8, or an answer holds what no text does."""

    exit_code = 7
    failure_kind = FailureKind.not_text


class BackendNotConfiguredError(GraderError):
    exit_code = 8
    failure_kind = FailureKind.not_configured


class RubricError(GraderError):
    """A rubric or question bank is invalid; the message names the file, line or field."""

    exit_code = 9


class GradingFailedError(GraderError):
    """The model did not produce a valid grade within the allowed attempts."""

    exit_code = 10
    failure_kind = FailureKind.invalid_output

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        usage: Usage | None = None,
        last_output: str | None = None,
        kind: FailureKind = FailureKind.invalid_output,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.attempts = attempts
        self.usage = usage
        self.last_output = last_output
        self.failure_kind = kind

    def failure(self, question_id: str | None = None) -> GradeFailure:
        return GradeFailure(
            kind=self.failure_kind,
            message=str(self),
            question_id=question_id,
            attempts=self.attempts,
            usage=self.usage or Usage(),
            last_output=redact(self.last_output) if self.last_output is not None else None,
        )


class BackendError(GraderError):
    """The backend refused the request for a reason retrying cannot fix (auth, bad model name...)."""

    exit_code = 11
    failure_kind = FailureKind.refused
    status: int | None = None  # also on one `error_for` rebuilt from a stored failure, which has no status

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        #: The HTTP status, when a server answered: 400 is this request (too long for the model's context,
        #: say), 401/403/404 are the key, the permission or the model, and every request would get them.
        self.status = status


class TemplateError(GraderError):
    """A prompt template is missing or uses an undefined variable."""

    exit_code = 12
    failure_kind = FailureKind.template


class CalibrationDataError(GraderError):
    """Interviewer grades or model grades for `grader calibrate` are invalid; names the file and line."""

    exit_code = 20


class TranscriptError(GraderError):
    """A transcript cannot be read as an interview: unknown format, no speakers, no interviewer or candidate."""

    exit_code = 14


class OutputError(GraderError):
    """An output file or the grade cache cannot be written: a full disk, a missing permission, a path that
    is not a folder. The user's environment, not a bug: one line naming the path and the cause."""

    exit_code = 15
    failure_kind = FailureKind.output  # the same for every answer: a run stops at the first

    @classmethod
    def of(cls, path: object, exc: BaseException, *, hint: str | None = None) -> OutputError:
        """`cannot write PATH: CAUSE`, the cause in the system's words (`No space left on device`)."""
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        if isinstance(exc, FileExistsError | NotADirectoryError):  # the system's words for "a file is in the way"
            blocking = next((p for p in Path(str(path)).parents if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                cause = f"{blocking} is a file, not a folder"
            elif Path(str(path)).exists() and not Path(str(path)).is_dir():
                cause = "a file is there, where a folder is expected"
        return cls(f"cannot write {path}: {cause}", hint=hint)


class OutputLockedError(GraderError):
    """Another `grader batch` is writing the same output file; the message names its process."""

    exit_code = 16


class DatabaseError(GraderError):
    """The service's database cannot be opened or used: a bad URL, a file that is not a database, a
    server that is down or refuses the login."""

    exit_code = 17


class ServiceError(GraderError):
    """`grader serve` cannot start: the port is taken or the address cannot be bound."""

    exit_code = 18


class AuditDataError(GraderError):
    """`grader audit`: grades or demographics it cannot audit (names the file and line or column)."""

    exit_code = 19


class ThresholdsError(GraderError):
    """`grader eval --thresholds`: a file that is no thresholds file (names the file, line and key)."""

    exit_code = 21


class EvalCasesError(GraderError):
    """`grader eval --cases`: a file that is no cases file, or a case that does not fit the rubric (names the
    file, line and field)."""

    exit_code = 22


class UsageError(GraderError):
    """The command line asks for something it cannot do: a missing or contradictory option, an unknown
    backend or suite, an output that exists. Exit 2, as the CLI framework's own usage errors."""

    exit_code = 2


# --- secrets --------------------------------------------------------------------------------------

#: What a secret is replaced with in every message grader prints or stores.
REDACTED = "[redacted]"
#: Shorter values are not treated as secrets: redacting them would garble ordinary words.
_MIN_SECRET = 8
_SECRETS: set[str] = set()
# `Bearer TOKEN` anywhere, and an `Authorization: SCHEME CREDENTIALS` header quoted back.
_BEARER = re.compile(r"\b(Bearer|Authorization[\"']?\s*[:=]\s*[\"']?\w+)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


def add_secret(value: str | None) -> None:
    """Remember a credential (a backend's API key) so that `redact` hides it wherever it shows up."""
    if value and len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` without secrets: the configured API keys (OPENAI_API_KEY and any a backend was given),
    `Bearer ...` tokens, quoted `Authorization` headers, and the `user:password@` of URLs."""
    secrets = {*_SECRETS, os.environ.get("OPENAI_API_KEY") or ""}
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
