"""Writing a report: the same three files (JSON, Markdown, HTML) for every kind of report."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from grader.errors import OutputError
from grader.textfiles import write_whole


class ReportModel(BaseModel):
    """Base of the report models. A field left unset (a metric that could not be measured, a floor that
    was not run) is left out of the JSON, so a report's JSON holds exactly what was measured."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


R = TypeVar("R", bound=ReportModel)


def report_folder(out: Path) -> Path:
    """Make the report folder `out` and check a file can be written in it, before a long run whose
    reports would go there (exit 15 naming the path, not after every case is graded)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".grader-probe-"):
            pass
    except OSError as exc:
        raise OutputError.of(out, exc) from None
    return out


class Written(list[Path]):
    """The paths of the report files written, and when the report they replaced had been written (None
    where there was none): a report run again into the same folder says so, not replacing last month's
    report without a word."""

    replaced: datetime | None = None

    def line(self) -> str:
        """'wrote a.json, a.md, a.html', with '(replacing the report written 2026-11-02 10:14)'."""
        text = "wrote " + ", ".join(str(p) for p in self)
        if self.replaced is not None:
            text += f" (replacing the report written {self.replaced:%Y-%m-%d %H:%M})"
        return text


def write_reports(
    report: R, out: Path, stem: str, to_markdown: Callable[[R], str], to_html: Callable[[R], str]
) -> Written:
    """`stem`.json, `stem`.md and `stem`.html under `out` (created if need be); their paths, with the
    time the newest of the files they replace was written."""
    paths = Written([out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.html"])
    texts = [report.to_json(), to_markdown(report), to_html(report)]
    try:
        out.mkdir(parents=True, exist_ok=True)
        times = [p.stat().st_mtime for p in paths if p.is_file()]
        paths.replaced = datetime.fromtimestamp(max(times)) if times else None
        for path, text in zip(paths, texts, strict=True):
            write_whole(path, text)
    except OSError as exc:
        raise OutputError.of(out, exc) from None
    return paths


def markdown_text(text: Any) -> str:
    """Text from the user's files inside Markdown: a `<` is written as `&lt;`, so a name or an answer
    cannot open an HTML tag where the Markdown is rendered (`<script>` shows as written)."""
    return str(text).replace("<", "&lt;")


def markdown_cell(text: Any) -> str:
    """One Markdown table cell: pipes, backslashes and line breaks cannot break the table, nor `<` open
    a tag."""
    return markdown_text(str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " "))


def markdown_table(head: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A Markdown table's lines."""
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return lines
