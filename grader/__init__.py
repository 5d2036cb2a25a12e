"""grader: grade written interview answers against a rubric with a language model."""

from grader.grading.contract import Grade, Tier
from grader.rubric import Question, Rubric, load_rubric

__all__ = ["Grade", "Question", "Rubric", "Tier", "load_rubric"]
__version__ = "0.1.0"
