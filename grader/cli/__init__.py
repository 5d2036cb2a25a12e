"""The `grader` command line: one module per command group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import typer
from typer._click.core import ParameterSource
from typer._click.exceptions import ClickException, UsageError  # typer >= 0.29 vendors click
from typer.core import TyperGroup

from grader.cli._common import err_console
from grader.errors import GraderError, redact


class _Notes(logging.Handler):
    """What the library logs while a command waits (a server's long Retry-After), as a line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"grader: note: {redact(record.getMessage())}", markup=False, highlight=False)


def _terminated(_signum: int, frame: FrameType | None) -> None:
    """`kill`, systemd or Kubernetes stopping a run (SIGTERM) stops it as Ctrl-C does: what is finished is
    kept and the command says so (batch: how many rows, and `--resume`). Only this process gets the signal,
    so its worker processes are sent the Ctrl-C a terminal would have sent them."""
    import multiprocessing

    for child in multiprocessing.active_children():
        if child.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGINT)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        # asyncio's, while a command's event loop runs: it cancels the command's task as Ctrl-C does. A
        # KeyboardInterrupt raised here instead lands in whichever task is running, and asyncio then logs
        # it as a task exception never retrieved, with its traceback.
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


class _Group(TyperGroup):
    """Turns every GraderError into one line on stderr and its exit code: never a traceback. A usage error
    (an unknown option, a value that is no integer) is one line too, exit 2, not typer's framed box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        retry_log = logging.getLogger("grader.retry")
        if not any(isinstance(h, _Notes) for h in retry_log.handlers):
            retry_log.addHandler(_Notes())
            retry_log.propagate = False
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminated)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except UsageError as exc:
            if not exc.format_message().strip():  # a group with no command: typer has shown its help
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if exc.ctx is not None else "grader"
            message = " ".join(_said_where(exc).replace("Value error, ", "").split())  # pydantic's prefix
            err_console.print(f"grader: error: {message} (see {where} -h)", markup=False, highlight=False)
            sys.exit(exc.exit_code)
        except ClickException as exc:  # a file option that cannot be opened, say
            err_console.print(f"grader: error: {' '.join(exc.format_message().split())}", markup=False)
            sys.exit(exc.exit_code)
        except typer.Abort:  # Ctrl-C at a prompt
            err_console.print("grader: interrupted", markup=False)
            sys.exit(130)
        except BrokenPipeError:  # `grader ... | head`: the reader has what it wanted; say nothing more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor fail flushing at exit
            sys.exit(1)  # as rich does when help meets a closed pipe, and Python's documentation advises
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:  # click's Context, vendored inside typer
        try:
            return super().invoke(ctx)
        except GraderError as exc:
            err_console.print(f"grader: error: {exc}", markup=False, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("grader: interrupted", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise
        except Exception as exc:
            if os.environ.get("GRADER_DEBUG"):
                raise
            shown = redact(str(exc))  # an exception's text may quote a request's credentials too
            err_console.print(
                f"grader: internal error: {type(exc).__name__}: {shown} (set GRADER_DEBUG=1 for the traceback)",
                markup=False,
                highlight=False,
            )
            raise typer.Exit(70) from None


# Help piped to a file or a pager is not cut at rich's 80-column fallback (a terminal gets its own width;
# a TERMINAL_WIDTH of the user's still wins).
if not sys.stdout.isatty():
    os.environ.setdefault("TERMINAL_WIDTH", "120")  # read by typer when it first formats help

app = typer.Typer(
    cls=_Group,
    help="Grade written interview answers against a rubric with a language model.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    context_settings={"max_content_width": 120, "help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from grader import __version__

        typer.echo(f"grader {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print grader's version and exit."
    ),
) -> None:
    """Grade written interview answers against a rubric with a language model."""


def _register() -> None:
    from grader.cli import audit, backends, batch, calibrate, grade, rubric, serve, transcript
    from grader.cli import eval as eval_cli

    app.command("backends")(backends.backends)
    app.command("grade")(grade.grade)
    app.add_typer(rubric.app, name="rubric")
    app.command("eval")(eval_cli.eval_)
    app.command("calibrate")(calibrate.calibrate)
    app.command("audit")(audit.audit)
    app.command("batch")(batch.batch)
    app.command("transcript")(transcript.transcript)
    app.command("serve")(serve.serve)
    app.add_typer(serve.tokens_app, name="tokens")


_register()


def main() -> None:
    sys.exit(app())


def _said_where(exc: UsageError) -> str:
    """A bad option's message names its environment variable only when the value came from it ("(from
    GRADER_MATCH_THRESHOLD)"): "(env var: ...)" after a flag typed on the command line sent people to
    look for a variable they never set."""
    message = exc.format_message()
    param = getattr(exc, "param", None)
    envvar = getattr(param, "envvar", None)
    if param is None or exc.ctx is None or not isinstance(envvar, str) or not param.name:
        return message
    from_env = exc.ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    return message.replace(f" (env var: '{envvar}')", f" (from {envvar})" if from_env else "")
