"""Where packaged data lives: prompts, the default rubric and eval cases.

In a wheel they sit under `grader/_data/` (copied there from the top-level `prompts/`, `rubric/` and
`evals/` folders at build time); in a source checkout they are read from those folders directly.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory of one kind of packaged data (`prompts`, `rubric` or `evals`)."""
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"grader's packaged {name}/ folder is missing: reinstall grader")
