"""Prompt templates: Jinja files in `prompts/` (shipped as package data) or a user's own folder.

Templates render with `StrictUndefined`, so a typo in a variable name is an error, not an empty string.
The candidate's answer is data: it is wrapped in delimiters it cannot close (`fence_answer`).
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from grader.errors import TemplateError
from grader.resources import data_dir

PROMPTS_ENV = "GRADER_PROMPTS"
ANSWER_TAG = "candidate_answer"
_TAG_LIKE = re.compile(r"<\s*/?\s*" + ANSWER_TAG + r"\b[^>]*>", re.IGNORECASE)


def fence_answer(answer: str) -> str:
    """Neutralise anything in the answer that looks like our delimiters, so it cannot end the data block."""
    return _TAG_LIKE.sub("[tag removed]", answer)


class Prompts:
    """A folder of templates. Precedence: explicit folder > $GRADER_PROMPTS > packaged templates."""

    def __init__(self, directory: str | Path | None = None) -> None:
        chosen = directory or os.environ.get(PROMPTS_ENV)
        self.directory = Path(chosen) if chosen else data_dir("prompts")
        if not self.directory.is_dir():
            raise TemplateError(f"{self.directory}: prompts folder not found")

    @cached_property
    def _env(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.directory)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return env

    @cached_property
    def fingerprint(self) -> str:
        """Hash of every template, so a changed prompt is never served a cached grade."""
        digest = hashlib.sha256()
        for path in sorted(self.directory.glob("*.jinja")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]

    def render(self, name: str, **context: Any) -> str:
        try:
            return self._env.get_template(name).render(**context).strip()
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{self.directory / name}: template not found") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.directory / name}: {exc.message}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
