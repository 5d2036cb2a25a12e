"""Options and helpers shared by the command modules."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from grader.backends import BackendOptions
from grader.errors import EncodingError, InputFileError
from grader.retry import RetryPolicy, TransientError
from grader.textfiles import read_text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

BackendOpt = Annotated[
    str,
    typer.Option("--backend", "-b", envvar="GRADER_BACKEND", help="auto, openai, local or fake.", show_default=True),
]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", envvar="GRADER_MODEL", help="Model name.")]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible server URL (default: $OPENAI_BASE_URL).")
]
RubricOpt = Annotated[
    Path | None, typer.Option("--rubric", "-r", envvar="GRADER_RUBRIC", help="Rubric file (default: packaged).")
]
PromptsOpt = Annotated[
    Path | None, typer.Option("--prompts", envvar="GRADER_PROMPTS", help="Folder with your own prompt templates.")
]
TemperatureOpt = Annotated[float, typer.Option("--temperature", envvar="GRADER_TEMPERATURE", min=0.0, max=2.0)]
SeedOpt = Annotated[int | None, typer.Option("--seed", envvar="GRADER_SEED", help="Sampling seed.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", envvar="GRADER_TIMEOUT", min=0.1, help="Seconds per request.")]
AttemptsOpt = Annotated[
    int, typer.Option("--max-attempts", envvar="GRADER_MAX_ATTEMPTS", min=1, help="Requests per model call.")
]
ReasksOpt = Annotated[
    int, typer.Option("--reasks", envvar="GRADER_REASKS", min=0, max=5, help="Re-asks after an invalid reply.")
]
ReviewThresholdOpt = Annotated[
    float,
    typer.Option(
        "--review-threshold",
        envvar="GRADER_REVIEW_THRESHOLD",
        min=0.0,
        max=1.0,
        help="Flag grades whose confidence is below this for human review.",
    ),
]
MaxAnswerCharsOpt = Annotated[
    int, typer.Option("--max-answer-chars", envvar="GRADER_MAX_ANSWER_CHARS", min=1, help="Longest answer graded.")
]
ModelPathOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-path", envvar="GRADER_LOCAL_MODEL", help="Local backend: a sentence-transformers ONNX export."
    ),
]


def backend_options(
    *,
    model: str | None,
    base_url: str | None,
    temperature: float,
    seed: int | None,
    timeout: float,
    max_attempts: int,
    reasks: int,
    prompts: Path | None,
    model_path: Path | None = None,
    on_transient: Callable[[TransientError], None] | None = None,
) -> BackendOptions:
    return BackendOptions(
        model=model,
        base_url=base_url,
        temperature=temperature,
        seed=seed,
        timeout=timeout,
        prompts_dir=prompts,
        model_path=model_path,
        policy=RetryPolicy(attempts=max_attempts, reasks=reasks, on_transient=on_transient),
    )


def read_input(path: Path) -> str:
    """Read a UTF-8 text file, or standard input for `-`."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodingError(f"standard input: not UTF-8 text (invalid byte at offset {exc.start})") from None
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; grade a folder with `grader batch`")
    return read_text(path)
