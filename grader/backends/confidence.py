"""Confidence from token log-probabilities: the probability mass of the chosen tier at the point where
the model wrote the tier's value.

Servers return the sampled tokens with their top alternatives. We find the token that starts the tier
value in the JSON reply (with llama.cpp this is often `"g`, the quote fused with the first letter), read
which tier each alternative would have started, and normalise over the three tiers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from grader.grading.contract import TIERS

_TIER_VALUE = re.compile(r'"tier"\s*:\s*"')


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: Sequence[tuple[str, float]] = ()


def tier_distribution(tokens: Sequence[TokenLogprob]) -> dict[str, float] | None:
    """Probability of each tier at the tier value's first character, or None if it cannot be read."""
    return value_distribution(tokens, _TIER_VALUE, TIERS)


def value_distribution(
    tokens: Sequence[TokenLogprob], opening: re.Pattern[str], labels: Sequence[str]
) -> dict[str, float] | None:
    """Probability of each label at the first character of the value that `opening` leads up to (its
    last match in the reply), renormalised over `labels`; None if the position or the labels cannot be
    read. `top_logprobs` come from the unconstrained distribution, so forbidden tokens are ignored."""
    if not tokens:
        return None
    joined = "".join(t.token for t in tokens)
    matches = list(opening.finditer(joined))
    if not matches:
        return None
    target = matches[-1].end()  # index of the value's first letter in the token stream
    start = 0
    for tok in tokens:
        end = start + len(tok.token)
        if start <= target < end:
            return _mass_at(tok, target - start, labels)
        start = end
    return None


def _mass_at(tok: TokenLogprob, offset: int, labels: Sequence[str]) -> dict[str, float] | None:
    prefix = tok.token[:offset]
    alternatives = list(tok.top) or [(tok.token, tok.logprob)]
    if all(alt != tok.token for alt, _ in alternatives):
        alternatives.append((tok.token, tok.logprob))
    mass = dict.fromkeys(labels, 0.0)
    for alt, logprob in alternatives:
        if not alt.startswith(prefix):
            continue
        fragment = alt[offset:].strip().lower()
        hits = [t for t in labels if fragment and (t.startswith(fragment) or fragment.startswith(t))]
        if len(hits) == 1:
            mass[hits[0]] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {label: m / total for label, m in mass.items()}


def tier_confidence(tokens: Sequence[TokenLogprob], chosen: str) -> float | None:
    dist = tier_distribution(tokens)
    if dist is None or dist.get(chosen, 0.0) <= 0:
        return None
    return round(dist[chosen], 4)
