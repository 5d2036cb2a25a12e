"""`grader backends`: which backends there are, whether each is configured here, and the model it would use."""

from __future__ import annotations

import asyncio
import json

from rich.table import Table

from grader.backends import REGISTRY, BackendOptions, get_backend, resolve_name
from grader.cli._common import DEFAULT_OPTIONS, FormatOpt, TableFormat, console, print_table, with_backend_options
from grader.errors import GraderError


@with_backend_options
def backends(
    output_format: FormatOpt = TableFormat.text,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """List the backends, whether each is configured (its settings found), and the model each would use."""
    rows = []
    auto = resolve_name("auto")
    for name in REGISTRY:
        row: dict[str, object] = {"name": name, "auto": name == auto, "configured": True, "model": None, "note": None}
        try:
            backend = get_backend(name, options)  # built as a command would build it: the same checks
        except GraderError as exc:
            row.update(configured=False, note=str(exc))
        else:
            row["model"] = backend.model
            asyncio.run(backend.aclose())
        rows.append(row)
    if output_format is TableFormat.json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"backends (auto picks {auto})", title_justify="left")
    for column in ("backend", "configured", "model", "note"):
        table.add_column(column)
    for row in rows:
        name = f"{row['name']} (auto)" if row["auto"] else str(row["name"])
        table.add_row(name, "yes" if row["configured"] else "no", str(row["model"] or ""), str(row["note"] or ""))
    print_table(table)
