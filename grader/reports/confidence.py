"""Whether a grader's confidence means anything: expected calibration error over equal-width bins, and the
accuracy of its most confident grades, from (confidence, right) pairs. `grader eval` reads "right" as the
grade matching its hand label; `grader calibrate` as it matching an interviewer's tier."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import AliasChoices, Field

from grader.reports.files import ReportModel

#: Share of the most confident grades whose accuracy is reported (`accuracy_top_80`).
TOP = 0.8
#: Places a figure is stored to, here and in calibrate's metrics: the pages print a share to one decimal of a
#: per cent, and a share rounded to four places first printed 116 of 222 (52.25 %) as 52.2 % beside 52.3 %.
PLACES = 6


class ConfidenceBin(ReportModel):
    start: float = Field(validation_alias=AliasChoices("from", "start"), serialization_alias="from")
    to: float
    n: int
    accuracy: float | None


class ConfidenceMetrics(ReportModel):
    """How far `confidence` is from accuracy; only `n` when no grade has a confidence."""

    n: int
    ece: float | None = Field(default=None, description="Expected calibration error over equal-width bins.")
    mean_confidence: float | None = None
    accuracy: float | None = None
    accuracy_top_80: float | None = Field(default=None, description="Accuracy of the most confident 80 %.")
    bins: list[ConfidenceBin] | None = None


def confidence_metrics(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> ConfidenceMetrics:
    """ECE over `bins` equal-width bins of (confidence, right) pairs, and the accuracy of the most confident
    `TOP` share (what a team gets if it lets a person read the rest)."""
    if not pairs:
        return ConfidenceMetrics(n=0)
    conf = np.array([c for c, _ in pairs])
    right = np.array([ok for _, ok in pairs], dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = sum(
        abs(right[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    )
    keep = max(1, int(round(TOP * len(pairs))))
    order = np.argsort(-conf, kind="stable")[:keep]
    return ConfidenceMetrics(
        n=len(pairs),
        ece=round(float(ece), PLACES),
        mean_confidence=round(float(conf.mean()), PLACES),
        accuracy=round(float(right.mean()), PLACES),
        accuracy_top_80=round(float(right[order].mean()), PLACES),
        bins=[
            ConfidenceBin(
                start=round(float(edges[b]), 2),
                to=round(float(edges[b + 1]), 2),
                n=int((which == b).sum()),
                accuracy=round(float(right[which == b].mean()), PLACES) if (which == b).any() else None,
            )
            for b in range(bins)
        ],
    )
