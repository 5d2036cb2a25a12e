"""Start the real `grader serve` process on loopback for tests and benchmarks.

    with Server(tmp_path / "db.sqlite", backend="openai", env={"OPENAI_BASE_URL": llm.base_url}) as server:
        token = server.token("alice")
        httpx.post(server.url + "/v1/grades", headers=server.auth(token), json={...})

`Server` runs `python -m grader serve` as a child process on a free port, waits for `/healthz` to answer
200, and stops it on exit (`kill()` sends SIGKILL, to test what survives). Tokens are made with the real
`grader tokens create` command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def grader_env(extra: dict[str, str] | None = None, cache_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "OPENAI_", "OLLAMA_"))}
    if cache_dir is not None:
        env["GRADER_CACHE_DIR"] = str(cache_dir)
    env.update(extra or {})
    return env


class Server:
    """A `grader serve` child process; see the module docstring."""

    def __init__(
        self,
        db: Path | str,
        *,
        backend: str = "local",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cache_dir: Path | None = None,
        port: int | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.db = str(db)
        self.backend = backend
        self.args = args
        self.env = grader_env(env, cache_dir)
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(str(db) + f".serve-{self.port}.log") if "://" not in str(db) else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def token(self, name: str, *options: str) -> str:
        """A new token for `name`, from `grader tokens create` (its last line of stdout)."""
        done = subprocess.run(
            [sys.executable, "-m", "grader", "tokens", "create", name, "--db", self.db, *options],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> Server:
        command = [sys.executable, "-m", "grader", "serve", "--db", self.db, "--port", str(self.port)]
        command += ["--backend", self.backend, *self.args]
        if self.log_path is not None:
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the handle
                self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        else:
            self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"grader serve exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"grader serve was not ready in {self.ready_timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: nothing is flushed or closed, as when a machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
