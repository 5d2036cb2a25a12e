"""Rubrics: the validated model and its files (`model`), the recruiters' text format (`importer`), and
drafting key points and red flags for a new question bank (`draft`)."""

from grader.rubric.model import (
    KeyPoint,
    Question,
    RedFlag,
    References,
    Rubric,
    default_rubric_path,
    dump_rubric,
    load_rubric,
    parse_rubric,
    save_rubric,
)

__all__ = [
    "KeyPoint",
    "Question",
    "RedFlag",
    "References",
    "Rubric",
    "default_rubric_path",
    "dump_rubric",
    "load_rubric",
    "parse_rubric",
    "save_rubric",
]
