"""Running grader as a real process the way a terminal does, to send it Ctrl-C and watch what it leaves."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence


def wait_until(ready: Callable[[], bool], *, seconds: float) -> None:
    """Poll another process's visible state (a file, /proc) until `ready()` or `seconds` pass: it waits on
    that process, it is not a timed assertion (the caller asserts the state afterwards)."""
    deadline = time.monotonic() + seconds
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.02)


def foreground_job(cmd: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`cmd` in its own process group, as a terminal's foreground job: `os.killpg(proc.pid, SIGINT)` is
    Ctrl-C, reaching it and its workers. A job a non-interactive shell puts in the background
    (`bash -c '... &'`, as a CI runner may) has SIGINT ignored, and an ignored signal stays ignored across
    exec: give the child Ctrl-C as a terminal would (a handled signal is reset to its default on exec)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    finally:
        signal.signal(signal.SIGINT, previous)
