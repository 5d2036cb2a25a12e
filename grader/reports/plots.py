"""Figures for the HTML reports, rendered to PNG bytes with matplotlib (imported only when drawing)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from grader.grading.contract import TIERS


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()


def draw(size: tuple[float, float], paint: Callable[[Any], None]) -> bytes:
    """A PNG of one axes that `paint(ax)` draws on. Text is drawn as written: a `$` in a name or a title
    is not the start of a formula."""
    plt = pyplot()
    with plt.rc_context({"text.parse_math": False}):
        fig, ax = plt.subplots(figsize=size, dpi=100)
        paint(ax)
        fig.tight_layout()
        return to_png(fig)


def heatmap_png(
    matrix: list[list[int]], title: str, *, rows: str, columns: str, size: tuple[float, float] = (3.6, 3.2)
) -> bytes:
    """A 3x3 tier confusion matrix as a heatmap with its counts written in. Each cell is shaded by its share
    of its row (as scikit-learn's `normalize="true"`), on one scale from 0 to 1 for every chart: shaded by
    count, each chart against its own largest cell, one interviewer's single cell of 4 was as dark as the
    overall chart's 46."""
    shares = [[v / (sum(row) or 1) for v in row] for row in matrix]

    def paint(ax: Any) -> None:
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ticks = range(len(TIERS))
        ax.set_xticks(ticks, TIERS)
        ax.set_yticks(ticks, TIERS)
        ax.set_xlabel(columns)
        ax.set_ylabel(rows)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if shares[i][j] > 0.5 else "black")
        ax.set_title(title, fontsize=10)

    return draw(size, paint)
