"""grader: grade written interview answers against a rubric with a language model.

The Python API (`grade`, `grade_many`, `agrade`, `agrade_many`, see `grader.api`) is imported on first
use, so the command line does not pay for it at start-up.
"""

import logging
from typing import TYPE_CHECKING, Any

from grader.grading.contract import FailureKind, Grade, GradeFailure, Outcome, Tier
from grader.rubric import Question, Rubric, load_rubric

if TYPE_CHECKING:
    from grader.api import agrade, agrade_many, grade, grade_many

_API = ("agrade", "agrade_many", "grade", "grade_many")

# A library says nothing unless its user asks: the retry layer's notes (`grader.retry`, a long wait) reach
# stderr only through a handler the application (or the command line) sets, not Python's last resort.
logging.getLogger("grader").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _API:
        from grader import api

        return getattr(api, name)
    raise AttributeError(f"module 'grader' has no attribute {name!r}")


__all__ = [
    "FailureKind",
    "Grade",
    "GradeFailure",
    "Outcome",
    "Question",
    "Rubric",
    "Tier",
    "agrade",
    "agrade_many",
    "grade",
    "grade_many",
    "load_rubric",
]
__version__ = "0.1.0"
