"""HTML pages: Jinja templates shipped in the package, autoescaped, rendered by one cached environment.

Every page extends `base.html.jinja`, so each is self-contained: inline CSS, figures as PNG data URIs, no
script and no outside resource. Autoescaping means candidate text can never become markup.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

import jinja2


def data_uri(png: bytes) -> str:
    """A PNG as a `data:` URI, for an `<img src>` that needs no file next to the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grader.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["data_uri"] = data_uri
    return env


def render(template: str, **context: Any) -> str:
    """`template` (a file under grader/reports/templates/) rendered with `context`."""
    return environment().get_template(template).render(**context)
