"""Rubrics: validated YAML files holding questions, reference answers, key points and red flags."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from grader.errors import GraderError, InputFileError, OutputError, RubricError, UnknownQuestionError
from grader.resources import data_dir
from grader.textfiles import write_whole

DEFAULT_RUBRIC_NAME = "backend-engineering.yaml"
#: Read no further: the packaged rubric is 140 KB, and a device given as a rubric would never end.
MAX_RUBRIC_BYTES = 20 * 2**20
# libyaml's loader when PyYAML was built with it (the wheels are): the shipped rubric loads in 3 ms, not 45.
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a key given twice in one mapping: YAML keeps the last silently, so a
    second `text:` or `key_points:` would replace the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges; its keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first[key]})", key_node.start_mark
                    )
                first[key] = key_node.start_mark.line + 1
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
        return super().construct_mapping(node, deep=deep)


_LOADER = _Loader
#: For other YAML files a person writes (`evals/thresholds.yaml`): the same refusal of a key given twice.
UniqueKeyLoader = _Loader

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=80)]
PointId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$", max_length=80)]
Text = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyPoint(_Strict):
    """Something a great answer makes that a mediocre one does not: short and checkable."""

    id: PointId
    text: Annotated[Text, StringConstraints(max_length=200)]
    phrasings: list[Annotated[Text, StringConstraints(max_length=300)]] = Field(
        default_factory=list,
        max_length=8,
        description="Other ways a candidate may say the same thing; the offline backend matches these too.",
    )
    draft: bool = Field(default=False, description="Proposed by `grader rubric draft`, not reviewed yet.")
    quote: str | None = Field(
        default=None,
        max_length=2000,
        description="The reference's own words this point was drafted from (the great reference for a key "
        "point, the poor one for a red flag), kept so a reviewer sees where it came from.",
    )


class RedFlag(KeyPoint):
    """Something that makes an answer poor."""


class References(_Strict):
    """The reference answers, verbatim. A great one is required; a bank with only an official answer
    (a zero-shot benchmark) may leave out the mediocre and poor ones."""

    great: Text
    mediocre: Text | None = None
    poor: Text | None = None

    def items(self) -> list[tuple[str, str]]:
        return [(t, x) for t, x in (("great", self.great), ("mediocre", self.mediocre), ("poor", self.poor)) if x]


#: The most key points and red flags a question holds.
MAX_KEY_POINTS, MAX_RED_FLAGS = 12, 6


class Question(_Strict):
    id: Slug
    number: int = Field(ge=1)
    text: Text
    references: References
    key_points: list[KeyPoint] = Field(default_factory=list, max_length=MAX_KEY_POINTS)
    red_flags: list[RedFlag] = Field(default_factory=list, max_length=MAX_RED_FLAGS)

    @property
    def point_ids(self) -> list[str]:
        return [p.id for p in self.key_points]

    @property
    def flag_ids(self) -> list[str]:
        return [f.id for f in self.red_flags]

    @property
    def draft_ids(self) -> list[str]:
        return [p.id for p in [*self.key_points, *self.red_flags] if p.draft]

    def fingerprint(self) -> str:
        """Content hash of the question: part of every cache key, so an edited rubric is re-graded."""
        return self.content_hash

    @cached_property
    def content_hash(self) -> str:
        """`fingerprint()`, computed once per question object (every grade asks for it). Pydantic keeps
        cached properties out of equality and dumps; `model_copy` drops it, so an edited copy rehashes."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Question:
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("content_hash", None)
        return copy


class Rubric(_Strict):
    name: Text
    description: str | None = None
    source: str | None = None
    questions: list[Question] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Rubric:
        _no_duplicates("question id", [q.id for q in self.questions])
        _no_duplicates("question number", [str(q.number) for q in self.questions])
        _no_duplicates("point id", [p.id for q in self.questions for p in [*q.key_points, *q.red_flags]])
        return self

    def __iter__(self) -> Iterator[Question]:  # type: ignore[override]
        return iter(self.questions)

    def with_questions(self, questions: Sequence[Question]) -> Rubric:
        """This rubric with other questions (edited copies), validated again: duplicate ids are refused."""
        return Rubric.model_validate(self.model_copy(update={"questions": list(questions)}).model_dump())

    def find(self, ref: str | int) -> Question:
        """A question by slug id, in any case, or number (`3`, `03`, `q3`, `q03`, and `3.0` as a spreadsheet
        writes a number column with blanks in it)."""
        key = str(ref).strip()
        for q in self.questions:
            if q.id == key:
                return q
        folded = key.casefold()
        for q in self.questions:
            if q.id.casefold() == folded:
                return q
        match = re.fullmatch(r"[qQ]?0*(\d+)(?:\.0+)?", key)
        if match:
            for q in self.questions:
                if q.number == int(match.group(1)):
                    return q
        raise UnknownQuestionError(key, self._closest(key.lower()))

    def _closest(self, key: str, n: int = 3) -> list[str]:
        """Ids that look like `key`: whole-id similarity, or a close match to one word of the id."""

        def score(qid: str) -> float:
            whole = difflib.SequenceMatcher(None, key, qid).ratio()
            words = [
                difflib.SequenceMatcher(None, w, part).ratio()
                for w in re.findall(r"[a-z0-9]+", key)
                if len(w) > 3
                for part in qid.split("-")
            ]
            return max([whole, *words])

        scored = sorted(((score(q.id), q.id) for q in self.questions), reverse=True)
        return [qid for s, qid in scored[:n] if s >= 0.75]

    def fingerprint(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self, path: str | Path | None = None) -> str:
        """How a command names the rubric it grades by: 'rubric team-bank (team.yaml, 4 questions)', or
        'the packaged rubric (20 questions; --rubric for your own)': a team whose question numbers overlap the
        packaged 1-20 saw its answers graded against the packaged questions, and nothing said which."""
        n = len(self.questions)
        if path is None:
            return f"the packaged rubric {self.name} ({n} questions; --rubric or GRADER_RUBRIC for your own)"
        return f"rubric {self.name} ({path}, {n} question{'' if n == 1 else 's'})"


def _no_duplicates(what: str, values: Sequence[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


# --- files ---------------------------------------------------------------------------------------


def default_rubric_path() -> Path:
    return data_dir("rubric") / DEFAULT_RUBRIC_NAME


def load_rubric(path: str | Path | None = None) -> Rubric:
    """Load and validate a rubric file; errors name the file, line, question and field."""
    path = Path(path) if path is not None else default_rubric_path()
    label = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_RUBRIC_BYTES + 1)  # a bound: `/dev/zero` given by mistake never ends
    except FileNotFoundError:  # a file that cannot be read is exit 6 like any other, not an invalid rubric
        raise InputFileError(f"{label}: no such rubric file") from None
    except IsADirectoryError:
        raise InputFileError(f"{label}: is a directory, not a rubric file") from None
    except OSError as exc:
        raise RubricError(f"{label}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_RUBRIC_BYTES:
        raise RubricError(f"{label}: over {MAX_RUBRIC_BYTES // 2**20} MB: not a rubric file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RubricError(f"{label}:{line}: not UTF-8 text (invalid byte {raw[exc.start]:#04x})") from None
    return parse_rubric(text, label)


#: A line of the recruiters' text format: a question bank given where a rubric is expected.
_BANK_LINE = re.compile(r"^\s*(great|mediocre|poor)\s+(response|answer)\s*:", re.IGNORECASE | re.MULTILINE)


def load_yaml(text: str, label: str, error: type[GraderError], *, hint: str | None = None) -> Any:
    """YAML a person wrote (a rubric, a thresholds file), read with the safe loader that refuses a key
    given twice; invalid YAML is an `error` naming `label` and the line."""
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        where = f":{exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise error(f"{label}{where}: invalid YAML: {exc.problem or exc}", hint=hint) from None
    except yaml.YAMLError as exc:
        raise error(f"{label}: invalid YAML: {str(exc).splitlines()[0]}", hint=hint) from None


def parse_rubric(text: str, label: str = "<rubric>") -> Rubric:
    hint = (
        f"it reads as a question bank: make a rubric of it first (grader rubric new {label} -o rubric.yaml)"
        if _BANK_LINE.search(text)
        else None
    )
    data = load_yaml(text, label, RubricError, hint=hint)
    if not isinstance(data, dict):
        raise RubricError(f"{label}: a rubric is a mapping with `name` and `questions`", hint=hint)
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        node = yaml.compose(text, Loader=_LOADER)  # for the line numbers; it parsed once already
        raise RubricError(describe(exc, data, node, label)) from None


def describe(
    exc: ValidationError, data: Any, node: Any, label: str, *, items: str = "questions", item: str = "question"
) -> str:
    """A validation error of a YAML file a person wrote, in one line: file:line: question <id>: field.path:
    message (`items`/`item`: the list the file holds and what one entry is called, `cases`/`case` for a
    cases file). An unknown field is named before a missing one: `refrences:` is a typo of `references`,
    not a question without references."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(err["loc"])
    line = None
    message = err["msg"].removeprefix("Value error, ")
    if dup := re.match(r"duplicate (question id|question number|point id) '(.*)'$", message):
        lines = _lines_of_value(node, "number" if dup.group(1) == "question number" else "id", dup.group(2))
        if len(lines) > 1:
            line = lines[1]
            message = f"{message} (first on line {lines[0]})"
    if err["type"] == "extra_forbidden":
        missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == err["loc"][:-1]]
        close = difflib.get_close_matches(str(loc[-1]), missing, n=1) if loc else []
        message = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "id":
        message = f"invalid id {err.get('input')!r} (lowercase letters, digits, '-', '.')"
    elif err["type"] == "string_pattern_mismatch" and not str(err.get("input", "")).strip():
        message = "must not be empty"
    return locate(label, node, data, loc, message, items=items, item=item, line=line)


def locate(
    label: str,
    node: Any,
    data: Any,
    loc: list[Any],
    message: str,
    *,
    items: str = "questions",
    item: str = "question",
    line: int | None = None,
) -> str:
    """`message` about the value at `loc` of a YAML file, in one line: file:line: <item> <id>: field.path:
    message; the entry is named by its `id`, else its place (`case #3`). Every file a person writes (rubrics,
    cases, the packaged suites) reports its errors through here."""
    line = line or line_of(node, loc)
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == items and isinstance(loc[1], int):
        entries = data.get(items) if isinstance(data, dict) else None
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        ident = entry.get("id") if isinstance(entry, dict) else None
        parts.append(f"{item} {ident or '#' + str(loc[1] + 1)}")
        loc = loc[2:]
    if field := "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip("."):
        parts.append(field)
    where = f"{label}:{line}" if line else label
    return f"{where}: {': '.join([*parts, message])}"


def line_of(node: Any, loc: list[Any]) -> int | None:
    """The 1-based line of the YAML node at a location (a pydantic error's, a list of keys; best effort)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if k.value == key:
                    found = v
                    line = k.start_mark.line + 1
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            node = None
    return line


def _lines_of_value(node: Any, key: str, value: str) -> list[int]:
    """The lines where `key: value` is written anywhere in the YAML document, in order."""
    found: list[int] = []
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key and isinstance(v, yaml.ScalarNode) and v.value == value:
                found.append(k.start_mark.line + 1)
            found += _lines_of_value(v, key, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _lines_of_value(item, key, value)
    return found


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump_rubric(rubric: Rubric) -> str:
    data = rubric.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    # Empty lists stay visible: they show the user what `rubric draft` will fill in.
    for q_in, q_out in zip(rubric.questions, data["questions"], strict=True):
        q_out["key_points"] = [p.model_dump(exclude_defaults=True) for p in q_in.key_points]
        q_out["red_flags"] = [p.model_dump(exclude_defaults=True) for p in q_in.red_flags]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def rubric_target(path: str | Path) -> Path:
    """Where writing a rubric to `path` goes: the file a symbolic link names (a rubric shared by a link
    stays shared). Anything there but a regular file (a folder, a pipe, `/dev/null`) is an OutputError,
    found before it is read or written: a pipe read never ends."""
    given = Path(path)
    target = given.resolve() if given.is_symlink() else given
    if target.exists() and not target.is_file():
        raise OutputError(f"cannot write {given}: not a regular file", hint="give a .yaml file to write")
    return target


def save_rubric(rubric: Rubric, path: str | Path) -> None:
    """Write a rubric atomically (a crash never leaves half a file) to `rubric_target(path)`, keeping the
    file's permissions. A folder that does not exist yet is made."""
    path = rubric_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, dump_rubric(rubric))
    except OSError as exc:
        raise OutputError.of(path, exc) from None
