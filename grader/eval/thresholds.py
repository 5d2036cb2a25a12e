"""The thresholds `grader eval --check` holds a run to: backend -> suite -> metric: number, read from YAML
and checked before anything is graded, so a typo costs one line, not a run.

Each metric is one `check_thresholds` measures (`min_accuracy`, `max_gamed`...; per counterfactual kind or
probe `max_flips.<kind>`); a `min_` share is a number from 0 to 1, a margin over the floor from -1 to 1,
and a `max_` count at least 0. An unknown backend, suite or metric, a key given twice, or a value that is
no such number is one line naming the file, line and key (exit 21).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from grader.errors import ThresholdsError
from grader.eval.report import THRESHOLD_METRICS as METRICS
from grader.rubric.model import UniqueKeyLoader, line_of, load_yaml
from grader.textfiles import read_text

Thresholds = dict[str, dict[str, dict[str, float]]]

#: The per-kind and per-probe counterfactual metrics: `max_flips.name`, `max_unreviewed_flips.dialect-aave`.
PER_PROBE = ("max_flips.", "max_unreviewed_flips.")
MAX_THRESHOLDS_CHARS = 1_000_000


def load_thresholds(path: Path, *, backends: tuple[str, ...], suites: tuple[str, ...]) -> Thresholds:
    """The thresholds in `path`, each key and value checked."""
    text = read_text(path, limit=MAX_THRESHOLDS_CHARS)
    data = load_yaml(text, str(path), ThresholdsError)
    if data is None:
        return {}
    node = yaml.compose(text, Loader=UniqueKeyLoader)  # for the line numbers; it parsed once already

    def fail(keys: list[str], message: str) -> ThresholdsError:
        line = line_of(node, keys) or 1  # the file's first line for the file as a whole
        return ThresholdsError(f"{path}:{line}: {'.'.join(keys) + ': ' if keys else ''}{message}")

    def mapping(value: Any, keys: list[str], what: str) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise fail(keys, f"expected a mapping of {what}")
        return value

    out: Thresholds = {}
    for backend, by_suite in mapping(data, [], "backend -> suite -> metric: number").items():
        _known(fail, [str(backend)], "backend", backends)
        out[backend] = {}
        for suite, limits in mapping(by_suite, [backend], "suite -> metric: number").items():
            _known(fail, [backend, str(suite)], "suite", suites)
            out[backend][suite] = {}
            for metric, value in mapping(limits, [backend, suite], "metric: number").items():
                keys = [backend, suite, str(metric)]
                if not str(metric).startswith(PER_PROBE):
                    _known(fail, keys, "metric", METRICS)
                out[backend][suite][metric] = _number(fail, keys, str(metric), value)
    return out


def _known(fail: Any, keys: list[str], what: str, known: tuple[str, ...]) -> None:
    if keys[-1] not in known:
        close = difflib.get_close_matches(keys[-1], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "one of " + ", ".join(known)
        raise fail(keys, f"unknown {what} ({hint})")


def _number(fail: Any, keys: list[str], metric: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # YAML's `true`, not Python's
        raise fail(keys, f"{shown} is not a number")
    if "margin" in metric:
        low, high, what = -1.0, 1.0, "a margin from -1 to 1"
    elif metric.startswith("min_"):
        low, high, what = 0.0, 1.0, "a share from 0 to 1"
    else:
        low, high, what = 0.0, float("inf"), "a count or share of at least 0"
    if not low <= value <= high:
        raise fail(keys, f"{value!r} is not {what}")
    return value  # an int stays one: "failed 1 is above 0", not "above 0.0"
