"""How calibration metrics are computed: the defaults and the `Settings` every report records. Kept apart
from the metrics (numpy) so the command line can offer these defaults without importing them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Fewer grades than this in a group draw a "too few to conclude" warning.
MIN_N = 10
RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class Settings:
    """How the metrics are computed; part of every report."""

    min_n: int = MIN_N
    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
