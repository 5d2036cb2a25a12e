"""`grader serve` (the HTTP API and the review pages) and `grader tokens` (who may call it)."""

from __future__ import annotations

import errno
import gc
import socket
from typing import Annotated

import typer
from rich.table import Table

from grader.backends import BackendOptions
from grader.cli._common import (
    DEFAULT_OPTIONS,
    BackendOpt,
    FormatOpt,
    MaxAnswerCharsOpt,
    ReviewThresholdOpt,
    RubricOpt,
    TableFormat,
    console,
    err_console,
    print_table,
    with_backend_options,
)
from grader.config import DEFAULT_MAX_ANSWER_CHARS, DEFAULT_REVIEW_THRESHOLD
from grader.errors import ServiceError, UsageError
from grader.wording import counted, named

DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="GRADER_DB",
        help="The service's database: a SQLite file, or a URL (postgresql://user@host/name).",
    ),
]

tokens_app = typer.Typer(help="Create, list and revoke the tokens that may call `grader serve`.", no_args_is_help=True)


@with_backend_options
def serve(
    db: DbOpt = "grader.sqlite",
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 8000,
    backend: BackendOpt = "auto",
    rubric: RubricOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Grades in flight.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse grades from earlier runs.")] = True,
    review_threshold: ReviewThresholdOpt = DEFAULT_REVIEW_THRESHOLD,
    max_answer_chars: MaxAnswerCharsOpt = DEFAULT_MAX_ANSWER_CHARS,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1024, help="Largest request body accepted (413 above).")
    ] = 10 * 1024 * 1024,
    options: BackendOptions = DEFAULT_OPTIONS,
) -> None:
    """Serve the HTTP API (/v1, /docs) and the review pages (/review, /) until interrupted."""
    import logging
    import signal
    import sys

    import uvicorn

    # A server stopped by SIGTERM (systemctl stop) ends as servers do, by that signal (status 143), after
    # uvicorn's graceful shutdown: not as the one-shot commands' Ctrl-C (`grader.cli._terminated`).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    from grader.service.app import Service, Settings, create_app

    settings = Settings(
        db=db,
        backend=backend,
        options=options,
        rubric=rubric,
        cache=cache,
        concurrency=concurrency,
        review_threshold=review_threshold,
        max_answer_chars=max_answer_chars,
        max_body_bytes=max_body_bytes,
    )
    listener = _bind(host, port)
    service = Service(settings)  # the database, rubric and backend: an error here is one line and an exit code
    if not service.store.tokens():
        err_console.print(
            f"grader: warning: no tokens in {service.store.label}: create one with `grader tokens create NAME "
            f"--db {db}`",
            markup=False,
            highlight=False,
        )
    if others := service.store.grades_outside(service.rubric):
        err_console.print(
            f"grader: warning: {service.store.label} holds {counted(sum(others.values()), 'grade')} of "
            f"{counted(len(others), 'question')} this rubric lacks ({named(sorted(others)[:5], len(others))}): "
            f"{'it is' if sum(others.values()) == 1 else 'they are'} kept, but not listed for review; started with "
            "another --rubric?",
            markup=False,
            highlight=False,
        )
    bound = listener.getsockname()[1]
    err_console.print(
        f"grader: serving on http://{host}:{bound} (backend {service.backend.name}, "
        f"{service.rubric.label(settings.rubric)}, database {service.store.label})",
        markup=False,
        highlight=False,
    )
    # The service's own lines (an erasure and who asked for it, batch grading stopped) on stderr, as uvicorn's.
    service_log = logging.getLogger("grader.service")
    if not service_log.handlers:  # once, should `serve` run twice in one process
        said = logging.StreamHandler(sys.stderr)
        said.setFormatter(logging.Formatter("grader: %(message)s"))
        service_log.addHandler(said)
    config = uvicorn.Config(create_app(settings, service), log_level="warning", lifespan="on", access_log=False)
    # The cyclic GC, tuned for one long-lived process (issue 15): what start-up loaded (200k objects: the
    # modules, the rubric, the backend) is frozen out of every collection, where it made each full one a
    # 70-80 ms pause; and the first generation is collected after 10,000 new objects, not 700, which 64
    # requests in flight reach every few milliseconds (0.1 ms of CPU a grade, and stalls).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    uvicorn.Server(config).run(sockets=[listener])


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything slow is loaded: a port in use is said at once."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # The protocol too (IPPROTO_TCP, not 0): asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
        # sockets that say they are TCP, and with it on every response waited 40 ms for a delayed ACK
        # between its headers and its body (issue 15).
        listener = socket.socket(info[0], info[1], info[2])
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(info[4])
            listener.listen(2048)
        except OSError:
            listener.close()
            raise
    except socket.gaierror as exc:
        raise ServiceError(f"cannot listen on {host}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServiceError(f"port {port} on {host} is already in use", hint="pick another with --port") from None
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(True)
    return listener


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The reviewer this token speaks for (reviews are signed with it).")],
    db: DbOpt = "grader.sqlite",
    service: Annotated[
        bool,
        typer.Option(
            "--service",
            help="A program's token (a hiring system's): it grades, reads and erases, but cannot review or log "
            "in to the review pages, so its name is never counted as a reviewer.",
        ),
    ] = False,
) -> None:
    """Create a token; it is printed once, alone on the last line (only its hash is stored)."""
    from grader.calibration.data import person_key
    from grader.service.store import Store

    store = Store(db)
    try:
        live = [t.id for t in store.tokens() if t.name == name.strip() and t.revoked_at is None]
        others = sorted(
            {t.name for t in store.tokens() if t.name != name.strip() and person_key(t.name) == person_key(name)}
        )
        token = store.create_token(name, "service" if service else "reviewer")
    finally:
        store.close()
    kind = "a service token" if service else "a token"
    err_console.print(f"created {kind} for {name.strip()} in {store.label}; keep it secret", markup=False)
    if live:
        # One name, one reviewer: a second person given the same name would have their reviews counted as one.
        err_console.print(
            f"note: {name.strip()} already has {len(live)} live token{'s' if len(live) > 1 else ''}; reviews through "
            f"any of them are signed {name.strip()} (revoke the old once this one works: "
            + ", ".join(f"grader tokens revoke {n}" for n in live)
            + "; revoking by name would revoke this one too)",
            markup=False,
        )
    if others:
        err_console.print(
            f"note: {', '.join(map(repr, others))} differ{'s' if len(others) == 1 else ''} from {name.strip()!r} only "
            "in case, spacing or Unicode form: calibration reads them as one reviewer (give two people two names)",
            markup=False,
        )
    typer.echo(token)


@tokens_app.command("list")
def list_(db: DbOpt = "grader.sqlite", output_format: FormatOpt = TableFormat.text) -> None:
    """The tokens: number, name, role, created, revoked (never the tokens themselves)."""
    import json

    from grader.service.store import Store

    store = Store(db, create=False)
    try:
        rows, roles = store.tokens(), store.roles()
    finally:
        store.close()
    if output_format is TableFormat.json:
        data = [
            {
                "id": r.id,
                "name": r.name,
                "role": roles.get(r.id, "reviewer"),
                "created_at": r.created_at.isoformat(),
                "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
            }
            for r in rows
        ]
        console.out(json.dumps(data, indent=2))
        return
    table = Table(title=f"tokens in {store.label}", title_justify="left")
    for column in ("id", "name", "role", "created", "revoked"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.name,
            roles.get(r.id, "reviewer"),
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        )
    print_table(table)


@tokens_app.command("revoke")
def revoke(
    ref: Annotated[
        str, typer.Argument(help="The token's number (see `grader tokens list`) or its name (all of them).")
    ],
    db: DbOpt = "grader.sqlite",
) -> None:
    """Revoke tokens: calls with them, and sessions opened with them, get 401 from then on."""
    from grader.service.store import Store

    store = Store(db, create=False)
    try:
        count = store.revoke(ref)
    finally:
        store.close()
    if not count:
        raise UsageError(f"no live token {ref!r} in {store.label}", hint="see `grader tokens list`")
    console.print(f"revoked {count} token(s)", markup=False)
