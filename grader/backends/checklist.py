"""Checklist grading for chat models: a yes/no verdict per key point and red flag, the tier by a written rule.

Small judges answer "does this answer make point X?" far better than they pick a holistic grade, and a
verdict read from token probabilities is better calibrated than a self-reported one. So the model is
asked for one short verdict per rubric item (`{"verdict": "yes", "quote": "..."}` or `{"verdict": "no"}`,
no quote and no prose for a "no"), the probability of each "yes" is read from the logprobs at the
verdict's first token, and the tier follows from the verdicts by `ChecklistRule`:

    a red flag shown (P(yes) >= flag_threshold)        -> poor
    fewer than `min_points` key points covered          -> poor
    at least ceil(great_share * K) of K points covered  -> great
    otherwise                                           -> mediocre

The packaged `policy` rule is the labelling policy of `evals/answers.yaml` (thresholds 0.5, great needs
half the points); a rule fitted on the dev half for one model ships beside it (`checklist_rules/`). The
confidence is the probability of the chosen tier when each verdict is an independent coin with its
(temperature-scaled) probability, so a grade resting on verdicts near the threshold says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from grader.backends.confidence import TokenLogprob, value_distribution
from grader.backends.replies import last_valid, not_json, one_line, quote_in_answer
from grader.errors import BackendNotConfiguredError, UsageError
from grader.grading.contract import CoveredPoint, Grade, Tier, Usage
from grader.rubric import Question
from grader.textfiles import read_text

RULES_DIR = Path(__file__).with_name("checklist_rules")
QUOTE_MAX_CHARS = 100
MAX_RULE_CHARS = 100_000  # a rule file is a few fields
VERDICTS = ("yes", "no")


@dataclass(frozen=True)
class Item:
    """One checklist item as the model sees it: a short key (p1.., f1..) and the rubric's text."""

    key: str
    id: str
    text: str
    flag: bool


def checklist_items(question: Question) -> list[Item]:
    points = [Item(f"p{i}", p.id, p.text, False) for i, p in enumerate(question.key_points, 1)]
    flags = [Item(f"f{i}", f.id, f.text, True) for i, f in enumerate(question.red_flags, 1)]
    return points + flags


def checklist_schema(question: Question, *, prose: bool = False, tier: bool = False) -> dict[str, Any]:
    """The reply schema: one property per item in rubric order (a constrained decoder follows that order),
    each either {"verdict": "yes", "quote": ...} or {"verdict": "no"}; then the optional prose and tier."""
    return _schema(tuple(i.key for i in checklist_items(question)), prose, tier)


@functools.lru_cache(maxsize=256)
def _schema(keys: tuple[str, ...], prose: bool, tier: bool) -> dict[str, Any]:
    yes = {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["yes"]},
            "quote": {"type": "string", "maxLength": QUOTE_MAX_CHARS},
        },
        "required": ["verdict", "quote"],
        "additionalProperties": False,
    }
    no = {
        "type": "object",
        "properties": {"verdict": {"type": "string", "enum": ["no"]}},
        "required": ["verdict"],
        "additionalProperties": False,
    }
    properties: dict[str, Any] = {key: {"anyOf": [yes, no]} for key in keys}
    if prose:
        properties["justification"] = {"type": "string", "maxLength": 600}
    if tier:
        properties["tier"] = {"type": "string", "enum": [t.value for t in Tier]}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


@functools.lru_cache(maxsize=4)
def item_schema() -> dict[str, Any]:
    """One item's reply (per-item calls): {"verdict": "yes", "quote": ...} or {"verdict": "no"}."""
    return _schema(("item",), False, False)["properties"]["item"]


@dataclass
class Verdict:
    item: Item
    yes: bool
    probability: float | None  # P(yes) from logprobs (or sample agreement); None if it could not be read
    quote: str | None = None
    quote_found: bool = False

    @property
    def p_yes(self) -> float:
        """The probability the rule uses: the logprob reading, else the hard verdict."""
        if self.probability is not None:
            return self.probability
        return 1.0 if self.yes else 0.0


class ErrorListCheck:
    """A reply check whose problems are a list of messages, all re-asked (none is acceptable)."""

    errors: list[str]

    @property
    def acceptable(self) -> bool:
        return False

    @property
    def problem(self) -> str:
        return self.errors[0] if self.errors else ""

    def feedback(self) -> str:
        return "Your reply was not valid:\n- " + "\n- ".join(self.errors) + "\nReply again with the JSON object only."


@dataclass
class ChecklistCheck(ErrorListCheck):
    """The outcome of checking one checklist reply (the `Check` protocol of `ChatBackend.ask`)."""

    verdicts: list[Verdict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    model_tier: Tier | None = None
    prose: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and not self.errors


def check_checklist(raw: str, question: Question, answer: str, *, prose: bool, tier: bool) -> ChecklistCheck:
    """Validate a reply against the question's checklist; the last JSON object in the reply that passes
    is the model's (an earlier one may be the candidate's fake verdict quoted back)."""
    items = checklist_items(question)
    return last_valid(raw, lambda data: _check(data, items, answer, prose=prose, tier=tier))


def _check(data: object, items: list[Item], answer: str, *, prose: bool, tier: bool) -> ChecklistCheck:
    check = ChecklistCheck()
    if isinstance(data, json.JSONDecodeError):
        check.errors.append(not_json(data))
        return check
    if not isinstance(data, dict):
        check.errors.append("the reply must be a JSON object")
        return check
    known = {i.key for i in items} | ({"justification"} if prose else set()) | ({"tier"} if tier else set())
    unknown = [k for k in data if k not in known]
    if unknown:
        check.errors.append(f"unknown keys {unknown}; use only {sorted(known)}")
    for item in items:
        value = data.get(item.key)
        if not isinstance(value, dict) or value.get("verdict") not in VERDICTS:
            check.errors.append(f'{item.key}: give {{"verdict": "yes", "quote": "..."}} or {{"verdict": "no"}}')
            continue
        yes = value["verdict"] == "yes"
        quote = value.get("quote") if yes else None
        quote = quote.strip() if isinstance(quote, str) and quote.strip() else None
        check.verdicts.append(
            Verdict(item, yes, None, quote, quote_found=bool(quote) and quote_in_answer(quote or "", answer))
        )
    if tier:
        try:
            check.model_tier = Tier(str(data.get("tier")))
        except ValueError:
            check.errors.append('tier: one of "great", "mediocre", "poor"')
    if prose:
        text = data.get("justification")
        if not isinstance(text, str) or not text.strip():
            check.errors.append("justification: a short explanation is required")
        else:
            check.prose = text.strip()
    if check.errors:
        check.verdicts = []
    return check


def check_item(raw: str, *, item: Item, answer: str) -> ChecklistCheck:
    """Validate a per-item reply: {"verdict": "yes", "quote": ...} or {"verdict": "no"}."""
    return last_valid(
        raw,
        lambda data: _check(
            {item.key: data} if isinstance(data, dict) else data, [item], answer, prose=False, tier=False
        ),
    )


ITEM_OPENING = re.compile(r'"verdict"\s*:\s*"')


def read_item_probability(verdict: Verdict, tokens: Sequence[TokenLogprob]) -> None:
    dist = value_distribution(tokens, ITEM_OPENING, VERDICTS)
    if dist is not None:
        verdict.probability = round(dist["yes"], 4)


def read_probabilities(verdicts: Sequence[Verdict], tokens: Sequence[TokenLogprob]) -> None:
    """Fill each verdict's P(yes) from the token logprobs at its first token, where they can be read."""
    for verdict in verdicts:
        opening = _opening(verdict.item.key)
        dist = value_distribution(tokens, opening, VERDICTS)
        if dist is not None:
            verdict.probability = round(dist["yes"], 4)


@functools.lru_cache(maxsize=64)
def _opening(key: str) -> re.Pattern[str]:
    return re.compile(r'"' + re.escape(key) + r'"\s*:\s*\{\s*"verdict"\s*:\s*"')


# --- the rule -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChecklistRule:
    """How verdicts become a tier; see the module docstring. Fitted values ship as JSON files."""

    name: str = "policy"
    point_threshold: float = 0.5
    flag_threshold: float = 0.5
    great_share: float = 0.5
    min_points: int = 1
    unquoted_counts: bool = True  # a "yes" whose quote is not in the answer still covers the point
    temperature: float = 1.0  # scales the verdicts' log-odds for the tier's confidence (fitted on dev)
    fitted_on: str = "the labelling policy of evals/answers.yaml (not fitted)"

    @classmethod
    def load(cls, name: str | None = None) -> ChecklistRule:
        """A packaged rule by name (`policy`, or a fitted one in checklist_rules/), or a JSON file."""
        name = name or "policy"
        path = Path(name)
        if path.suffix != ".json" and "/" not in name:  # a packaged name (names may hold dots: "1.5b")
            path = RULES_DIR / f"{name}.json"
            if not path.is_file():
                available = ", ".join(sorted(p.stem for p in RULES_DIR.glob("*.json")))
                raise UsageError(
                    f"--checklist-rule: no packaged rule {name!r}", hint=f"packaged: {available}; or a .json file"
                )
        text = read_text(path, limit=MAX_RULE_CHARS)  # missing, a folder, not UTF-8: one line naming it
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendNotConfiguredError(f"{path}: not a checklist rule (invalid JSON: {exc.msg})") from None
        if not isinstance(data, dict):
            raise BackendNotConfiguredError(f"{path}: not a checklist rule (a JSON object of its fields)")
        extra = sorted(set(data) - {f.name for f in fields(cls)})
        if extra:
            raise BackendNotConfiguredError(f"{path}: not a checklist rule (unknown fields {extra})")
        try:  # each field its type, before any model is asked: "x" is no threshold
            return TypeAdapter(cls).validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BackendNotConfiguredError(f"{path}: not a checklist rule ({problems})") from None

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def covers(self, verdict: Verdict) -> bool:
        if not self.unquoted_counts and verdict.yes and not verdict.quote_found:
            return False
        threshold = self.flag_threshold if verdict.item.flag else self.point_threshold
        return verdict.p_yes >= threshold

    def great_needs(self, n_points: int) -> int:
        return max(1, math.ceil(self.great_share * n_points - 1e-9)) if n_points else 0

    def tier(self, verdicts: Sequence[Verdict]) -> Tier:
        points = [v for v in verdicts if not v.item.flag]
        if any(self.covers(v) for v in verdicts if v.item.flag):
            return Tier.poor
        covered = sum(self.covers(v) for v in points)
        if covered < min(self.min_points, len(points)):
            return Tier.poor
        return Tier.great if covered >= self.great_needs(len(points)) else Tier.mediocre

    def shown_probability(self, verdict: Verdict) -> float:
        """P(the item counts), centred on the rule's threshold and scaled by its temperature."""
        if not self.unquoted_counts and verdict.yes and not verdict.quote_found:
            return 0.0
        threshold = self.flag_threshold if verdict.item.flag else self.point_threshold
        p = min(max(verdict.p_yes, 1e-4), 1 - 1e-4)
        z = (_logit(p) - _logit(threshold)) / self.temperature
        return 1 / (1 + math.exp(-z))

    def tier_probabilities(self, verdicts: Sequence[Verdict]) -> dict[Tier, float]:
        """Each tier's probability when every verdict is an independent coin (Poisson-binomial count)."""
        no_flag = math.prod(1 - self.shown_probability(v) for v in verdicts if v.item.flag)
        points = [self.shown_probability(v) for v in verdicts if not v.item.flag]
        count = [1.0]
        for p in points:
            count = [a * (1 - p) + b * p for a, b in zip([*count, 0.0], [0.0, *count], strict=True)]
        at_least = lambda k: sum(count[k:])  # noqa: E731
        great = no_flag * at_least(self.great_needs(len(points)))
        poor = (1 - no_flag) + no_flag * (1 - at_least(min(self.min_points, len(points))))
        return {Tier.great: great, Tier.mediocre: max(0.0, 1 - great - poor), Tier.poor: poor}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def checklist_grade(
    question: Question,
    verdicts: Sequence[Verdict],
    rule: ChecklistRule,
    *,
    backend: str,
    model: str,
    usage: Usage,
    attempts: int,
    confidence_source: str | None,
    model_tier: Tier | None = None,
    prose: str | None = None,
) -> Grade:
    """The Grade the verdicts and the rule decide (the model's own tier, if asked, only sets review)."""
    tier = rule.tier(verdicts)
    covered = [
        CoveredPoint(id=v.item.id, evidence=v.quote if v.quote_found else None)
        for v in verdicts
        if not v.item.flag and rule.covers(v)
    ]
    covered_ids = {c.id for c in covered}
    missed = [v.item.id for v in verdicts if not v.item.flag and v.item.id not in covered_ids]
    flags = [v.item.id for v in verdicts if v.item.flag and rule.covers(v)]
    flag_quotes = {v.item.id: v.quote for v in verdicts if v.item.id in flags and v.quote and v.quote_found}
    confidence = round(rule.tier_probabilities(verdicts)[tier], 4) if confidence_source else None
    notes = [
        f"quote for {v.item.id} not found in the answer: {_clip(v.quote or '')!r}"
        for v in verdicts
        if v.yes and v.quote and not v.quote_found
    ]
    reasons = []
    unquoted = [v.item.id for v in verdicts if v.yes and not v.quote_found and rule.covers(v)]
    if unquoted and (strict := replace(rule, unquoted_counts=False).tier(verdicts)) is not tier:
        # A "yes" whose quote is not in the answer still counts (a small model paraphrases its quotes),
        # but a tier that rests on such verdicts is unchecked: a model that invents its evidence.
        reasons.append(
            f"the tier rests on verdicts whose quotes are not in the answer ({', '.join(unquoted)}): "
            f"counting only quoted ones it would be {strict.value}"
        )
    if model_tier is not None and model_tier is not tier:
        reasons.append(f"the model's own tier ({model_tier.value}) differs from its checklist's ({tier.value})")
        notes.append(f"model's own tier: {model_tier.value}")
    return Grade(
        question_id=question.id,
        tier=tier,
        justification=prose or _justify(tier, verdicts, rule),
        covered_points=covered,
        missed_points=missed,
        red_flags=flags,
        red_flag_evidence=flag_quotes,
        confidence=confidence,
        confidence_source=confidence_source if confidence is not None else None,  # type: ignore[arg-type]
        point_scores={v.item.id: round(v.p_yes, 4) for v in verdicts},
        needs_review=bool(reasons),
        review_reasons=reasons,
        notes=notes,
        backend=backend,
        model=model,
        usage=usage,
        attempts=attempts,
        rubric_version=question.fingerprint(),
    )


def _justify(tier: Tier, verdicts: Sequence[Verdict], rule: ChecklistRule) -> str:
    points = [v for v in verdicts if not v.item.flag]
    covered = [v for v in points if rule.covers(v)]
    flags = [v for v in verdicts if v.item.flag and rule.covers(v)]
    n = len(points)
    parts = []
    if covered:
        listed = "; ".join(f'{v.item.id} ("{_clip(v.quote)}")' if v.quote else v.item.id for v in covered)
        parts.append(f"Covers {len(covered)} of {n} key points: {listed}.")
    elif n:
        parts.append(f"Covers none of the {n} key points.")
    missed = [v for v in points if v not in covered]
    if missed and covered:  # by id: every view lists the points' texts (and "covers none" names them all)
        parts.append(f"Misses {len(missed)}: {', '.join(v.item.id for v in missed)}.")
    if flags:
        parts.append("Shows red flag(s): " + "; ".join(f"{v.item.id} ({v.item.text.rstrip('.')})" for v in flags) + ".")
    why = {
        Tier.poor: "a red flag is shown" if flags else f"fewer than {rule.min_points} key point(s) covered",
        Tier.great: f"at least {rule.great_needs(n)} of {n} key points covered and no red flag",
        Tier.mediocre: f"no red flag, but fewer than {rule.great_needs(n)} of {n} key points covered",
    }[tier]
    parts.append(f"{tier.value.capitalize()} by the checklist rule: {why}.")
    return " ".join(parts)


def _clip(text: str | None) -> str:
    return one_line(text, 80)
