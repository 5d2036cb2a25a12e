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
from grader.rubric.model import UniqueKeyLoader
from grader.textfiles import read_text

Thresholds = dict[str, dict[str, dict[str, float]]]

#: The per-kind and per-probe counterfactual metrics: `max_flips.name`, `max_unreviewed_flips.dialect-aave`.
PER_PROBE = ("max_flips.", "max_unreviewed_flips.")
MAX_THRESHOLDS_CHARS = 1_000_000


def load_thresholds(path: Path, *, backends: tuple[str, ...], suites: tuple[str, ...]) -> Thresholds:
    """The thresholds in `path`, each key and value checked."""
    text = read_text(path, limit=MAX_THRESHOLDS_CHARS)
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        where = f":{exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ThresholdsError(f"{path}{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    node = yaml.compose(text, Loader=UniqueKeyLoader)  # for the line numbers; it parsed once already

    def fail(keys: list[str], message: str) -> ThresholdsError:
        return ThresholdsError(f"{path}:{_line(node, keys)}: {'.'.join(keys) + ': ' if keys else ''}{message}")

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


def _line(node: Any, keys: list[str]) -> int:
    """The 1-based line of the key at `keys` (of the file's first line when it names none)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if str(k.value) == key), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return line
