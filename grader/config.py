"""Settings read from the environment, with the ecosystem's names where one exists.

Precedence everywhere: explicit argument > CLI flag > environment variable > default.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"
DEFAULT_REVIEW_THRESHOLD = 0.6
#: How chat backends grade: checklist (per-point verdicts, the tier by rule), holistic or tier.
DEFAULT_MODE = "checklist"
DEFAULT_MAX_ANSWER_CHARS = 20_000
#: Cosine similarity an asked question needs to its rubric question (measured: README, "Transcripts").
DEFAULT_MATCH_THRESHOLD = 0.40


def cache_dir() -> Path:
    """Where grader keeps what it learns between runs ($GRADER_CACHE_DIR, else ~/.cache/grader)."""
    base = os.environ.get("GRADER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "grader"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def openai_configured() -> bool:
    """True when the environment points at an OpenAI-compatible server."""
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
