"""Calibrating interviewers against model grades: who grades like the rubric, who is lenient or harsh,
and which answers they disagree on.

`data` reads and checks the inputs, `runner` grades answers that have no model grade yet, `metrics`
computes agreement with bootstrap intervals, and `report` writes JSON, Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grader.calibration.data import Pair, join_model_grades, read_human_grades, read_model_grades
from grader.errors import UnknownQuestionError
from grader.rubric import Rubric, load_rubric


def pair_with_model_grades(human_path: Path, grades_path: Path, rubric_path: Path | None = None) -> list[Pair]:
    """Read human.csv and the model grades and join them on `id`.

    The rubric is read only if a CSV question is not written as the grade's `question_id` (a number,
    say), to resolve it.
    """
    resolve = question_resolver(rubric_path)  # a rubric given is read now: a wrong path is an error, not ignored
    rows = read_human_grades(human_path, join="id")
    grades = read_model_grades(grades_path)
    return join_model_grades(human_path, rows, grades, grades_path, resolve, rubric_given=rubric_path is not None)


def question_resolver(rubric_path: Path | None = None) -> Callable[[str], str | None]:
    """A CSV's question (`3`, `q03`, a slug) as the rubric's question id, or None where it names none. A
    rubric given is read at once (a wrong path is an error); the packaged one only when first asked (a CSV
    that writes the grades' own ids never needs it)."""
    loaded: list[Rubric] = [load_rubric(rubric_path)] if rubric_path is not None else []

    def resolve(ref: str) -> str | None:
        if not loaded:
            loaded.append(load_rubric(rubric_path))
        try:
            return loaded[0].find(ref).id
        except UnknownQuestionError:
            return None

    return resolve


__all__ = ["Pair", "pair_with_model_grades", "question_resolver"]
