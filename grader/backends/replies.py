"""What a chat model is asked to write (`GradeReply`, per-point verdicts first, the tier last, so the
model reasons over the rubric before it commits), how a reply is checked against the rubric question and
the answer, and how it becomes a Grade.

Problems come in two kinds: hard ones (unknown or missing point ids, unknown red flags, a covered point
with no quote, unparseable JSON) are always re-asked; quotes that are not in the answer are re-asked
too, but if they are the only problem left when the re-asks run out, the grade is kept with those quotes
dropped and flagged for review.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.grading.contract import ConfidenceSource, CoveredPoint, Grade, Tier, Usage
from grader.rubric import Question


class PointVerdict(BaseModel):
    """The model's verdict on one key point: the quote first, then the decision."""

    model_config = ConfigDict(extra="forbid")

    evidence: str = Field(
        description="The shortest verbatim quote from the candidate answer that shows this point, "
        'copied exactly; "" if the answer does not make the point.'
    )
    covered: bool = Field(description="True only if the answer clearly makes this point.")


class GradeReply(BaseModel):
    """What the language model writes. Property order is the order a constrained decoder follows."""

    model_config = ConfigDict(extra="forbid")

    points: dict[str, PointVerdict] = Field(
        description="One verdict for every key point of the rubric, keyed by key-point id."
    )
    red_flags: list[str] = Field(description="Ids of the rubric's red flags the answer shows; [] if none.")
    justification: str = Field(
        min_length=1, description="Two to four sentences: why this tier, citing covered and missed points."
    )
    tier: Tier = Field(description="great, mediocre or poor, decided from the verdicts above.")


def reply_schema(point_ids: list[str], flag_ids: list[str]) -> dict[str, Any]:
    """The JSON schema for one question's reply; cached and shared, so treat it as read-only.

    Every key point is a required property of `points`, so a constrained decoder cannot skip a verdict
    (an open `dict` would happily be emitted empty), and red flags are limited to the rubric's ids.
    """
    return _reply_schema(tuple(point_ids), tuple(flag_ids))


@functools.lru_cache(maxsize=256)
def _reply_schema(point_ids: tuple[str, ...], flag_ids: tuple[str, ...]) -> dict[str, Any]:
    schema = copy.deepcopy(_base_reply_schema())
    points = schema["properties"]["points"]
    verdict_ref = points["additionalProperties"]
    points.update(
        {
            "type": "object",
            "properties": {pid: verdict_ref for pid in point_ids},
            "required": list(point_ids),
            "additionalProperties": False,
        }
    )
    flags = schema["properties"]["red_flags"]
    flags["items"] = {"type": "string", "enum": list(flag_ids)} if flag_ids else {"type": "string"}
    if not flag_ids:
        flags["maxItems"] = 0
    schema["properties"]["justification"].pop("minLength", None)
    return _strictify(schema)


@functools.cache
def _base_reply_schema() -> dict[str, Any]:
    return GradeReply.model_json_schema()


def _strictify(node: Any) -> Any:
    """Make a schema acceptable to OpenAI strict mode: every object closed, every property required."""
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            del node["title"]
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
        for value in node.values():
            _strictify(value)
    elif isinstance(node, list):
        for value in node:
            _strictify(value)
    return node


class _Verdict(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def acceptable(self) -> bool: ...


C = TypeVar("C", bound=_Verdict)

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "`": "'", "“": '"', "”": '"', "„": '"', "‟": '"'})
_CURLY = re.compile("[" + "".join(chr(c) for c in _QUOTES) + "]")
_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|…)\s*")
_EDGE = " \t\n\"'.,;:!?-—–()[]"


def one_line(text: str | None, limit: int) -> str:
    """The text on one line (whitespace collapsed), cut to `limit` characters with an ellipsis."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def normalise(text: str) -> str:
    """Lower-case, straight quotes, single spaces: the form quotes and answers are compared in."""
    if _CURLY.search(text):  # str.translate walks every character: only when there is one to change
        text = text.translate(_QUOTES)
    return " ".join(text.lower().split())


def quote_in_answer(quote: str, answer: str) -> bool:
    """True if the quote (allowing `...` between verbatim pieces, in order) occurs in the answer."""
    haystack = normalise(answer)
    pos = 0
    pieces = [normalise(p).strip(_EDGE) for p in _ELLIPSIS.split(quote)]
    pieces = [p for p in pieces if p]
    if not pieces:
        return False
    for piece in pieces:
        found = haystack.find(piece, pos)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


@dataclass
class ReplyCheck:
    """The outcome of checking one reply."""

    reply: GradeReply | None = None
    errors: list[str] = field(default_factory=list)
    bad_quotes: dict[str, str] = field(default_factory=dict)  # point id -> the quote not found

    @property
    def ok(self) -> bool:
        return self.reply is not None and not self.errors and not self.bad_quotes

    @property
    def acceptable(self) -> bool:
        """Only quotes are wrong: keep the grade with them dropped rather than fail it."""
        return self.reply is not None and not self.errors and bool(self.bad_quotes)

    @property
    def problem(self) -> str:
        """The first thing wrong, in one line."""
        if self.errors:
            return self.errors[0]
        if self.bad_quotes:
            pid, quote = next(iter(self.bad_quotes.items()))
            return f"points.{pid}.evidence {quote!r} is not a verbatim quote from the candidate answer"
        return ""

    def feedback(self) -> str:
        """The message sent back to the model when re-asking."""
        lines = list(self.errors)
        lines += [
            f"points.{pid}.evidence {q!r} is not a verbatim quote from the candidate answer: copy the exact words, "
            'or set "covered" to false and "evidence" to ""'
            for pid, q in self.bad_quotes.items()
        ]
        return (
            "Your reply was not valid:\n- " + "\n- ".join(lines) + "\nReply again with the corrected JSON object only."
        )


def extract_json(text: str) -> str:
    """The JSON object in a reply, tolerating code fences and prose around it (the last one if several)."""
    found = json_objects(text)
    if found:
        return json.dumps(found[-1])
    stripped = text.strip()
    start, end = stripped.find("{"), stripped.rfind("}")
    return stripped[start : end + 1] if 0 <= start < end else stripped


def json_objects(text: str) -> list[dict[str, object]]:
    """Every top-level JSON object in a reply, in order (inside code fences or prose alike)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    pos = text.find("{")
    while pos >= 0:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        pos = text.find("{", end)
    return found


def last_valid(raw: str, check: Callable[[object], C]) -> C:
    """Check every JSON object in the reply, last first, and keep the first that passes: a non-strict
    server may quote the candidate's own fake verdict before writing its own, so the reply's last valid
    object is the model's. With none valid, the last object's problems are reported."""
    objects = json_objects(raw)
    if not objects:
        try:
            data = json.loads(raw.strip())
        except json.JSONDecodeError as exc:
            return check(exc)
        return check(data)
    first: C | None = None
    for data in reversed(objects):
        result = check(data)
        if result.ok or result.acceptable:
            return result
        first = first or result
    assert first is not None
    return first


def not_json(error: json.JSONDecodeError) -> str:
    """What to tell the model (and the user) of a reply that does not parse: an empty one says so (a
    server that sent no choices, or a message with no content), not "Expecting value at line 1 column 1"."""
    if not error.doc.strip():
        return "the reply is empty (no choices, or a message with no content)"
    return f"the reply is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"


def check_reply(raw: str, question: Question, answer: str) -> ReplyCheck:
    return last_valid(raw, lambda data: _check_data(data, question, answer))


def _check_data(data: object, question: Question, answer: str) -> ReplyCheck:
    check = ReplyCheck()
    if isinstance(data, json.JSONDecodeError):
        check.errors.append(not_json(data))
        return check
    try:
        reply = GradeReply.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors()[:6]:
            where = ".".join(str(p) for p in err["loc"]) or "reply"
            check.errors.append(f"{where}: {err['msg']}")
        return check
    check.reply = reply
    known = set(question.point_ids)
    unknown = [pid for pid in reply.points if pid not in known]
    missing = [pid for pid in question.point_ids if pid not in reply.points]
    if unknown:
        check.errors.append(f"points has ids that are not in the rubric: {unknown}; use only {sorted(known)}")
    if missing:
        check.errors.append(f"points is missing a verdict for: {missing}")
    bad_flags = [f for f in reply.red_flags if f not in question.flag_ids]
    if bad_flags:
        check.errors.append(f"red_flags has ids that are not in the rubric: {bad_flags}; use only {question.flag_ids}")
    if len(set(reply.red_flags)) != len(reply.red_flags):
        check.errors.append("red_flags lists an id twice")
    for pid, verdict in reply.points.items():
        if pid not in known or not verdict.covered:
            continue
        if not verdict.evidence.strip():
            check.errors.append(f"points.{pid} is covered but its evidence is empty: quote the answer")
        elif not quote_in_answer(verdict.evidence, answer):
            check.bad_quotes[pid] = verdict.evidence
    return check


def grade_from_reply(
    check: ReplyCheck,
    question: Question,
    *,
    backend: str,
    model: str,
    usage: Usage,
    attempts: int,
    confidence: float | None,
    confidence_source: ConfidenceSource | None,
) -> Grade:
    """Build the Grade from a reply whose only remaining problems (if any) are bad quotes."""
    assert check.reply is not None and not check.errors
    reply = check.reply
    covered = [
        CoveredPoint(id=pid, evidence=None if pid in check.bad_quotes else reply.points[pid].evidence.strip())
        for pid in question.point_ids
        if reply.points[pid].covered
    ]
    notes = [f"evidence dropped for {pid}: quote not found in the answer" for pid in check.bad_quotes]
    return Grade(
        question_id=question.id,
        tier=Tier(reply.tier),
        justification=reply.justification.strip() or "(no justification given)",
        covered_points=covered,
        missed_points=[pid for pid in question.point_ids if not reply.points[pid].covered],
        red_flags=list(reply.red_flags),
        confidence=confidence,
        confidence_source=confidence_source if confidence is not None else None,
        needs_review=bool(check.bad_quotes),
        review_reasons=["evidence quotes not found in the answer were dropped"] if check.bad_quotes else [],
        notes=notes,
        backend=backend,
        model=model,
        usage=usage,
        attempts=attempts,
        rubric_version=question.fingerprint(),
    )
