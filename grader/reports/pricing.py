"""Estimated cost of tokens, for eval and batch summaries."""

from __future__ import annotations

# USD per million tokens (input, output) for models whose price is public; override with
# --price-in / --price-out for anything else. Batch API requests cost half (BATCH_DISCOUNT).
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}
BATCH_DISCOUNT = 0.5


def estimate_cost(
    model: str,
    prompt: int,
    completion: int,
    price_in: float | None = None,
    price_out: float | None = None,
    *,
    discount: float = 1.0,
) -> float | None:
    """USD for the tokens used (0 when none were); None when the model's price is unknown."""
    if not (prompt or completion):
        return 0.0
    known_in, known_out = PRICES.get(model, (None, None))
    pin = price_in if price_in is not None else known_in
    pout = price_out if price_out is not None else known_out
    if pin is None or pout is None:
        return None
    return round((prompt / 1e6 * pin + completion / 1e6 * pout) * discount, 4)
