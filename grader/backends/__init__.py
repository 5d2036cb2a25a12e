"""Backends, picked by name from a small registry. Heavy imports happen inside each factory."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.backends.base import Backend
from grader.backends.retry import RetryPolicy
from grader.config import DEFAULT_MODE, openai_configured
from grader.errors import BackendNotConfiguredError, GraderError, UsageError
from grader.grading.contract import GradeRequest

if TYPE_CHECKING:
    from grader.backends.prompts import Prompts


@dataclass(frozen=True)
class BackendOptions:
    """Everything a user can set about a backend; each factory takes what applies to it."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # openai: else OPENAI_API_KEY; never printed
    temperature: float = 0.0
    seed: int | None = 42
    timeout: float = 120.0
    max_tokens: int | None = None
    prompts_dir: Path | None = None
    model_path: Path | None = None
    local_rule: str | None = None
    mode: str = DEFAULT_MODE
    checklist_rule: str | None = None
    prose: bool = False
    ask_tier: bool = False
    checklist_calls: str = "one"
    policy: RetryPolicy = RetryPolicy()


def _prompts(options: BackendOptions) -> Prompts:
    from grader.backends.prompts import Prompts

    return Prompts(options.prompts_dir)


def _http_chat(module: str, name: str) -> Callable[[BackendOptions], Backend]:
    """The factory of a chat backend over HTTP (`module.name`, a ChatBackend), imported when picked."""

    def build(options: BackendOptions) -> Backend:
        cls = getattr(importlib.import_module(module), name)
        keyed = {"api_key": options.api_key} if options.api_key is not None else {}
        if keyed and "api_key" not in inspect.signature(cls).parameters:
            raise UsageError(f"the {cls.name} backend takes no api_key")
        return cls(
            **keyed,
            model=options.model,
            base_url=options.base_url,
            temperature=options.temperature,
            seed=options.seed,
            timeout=options.timeout,
            max_tokens=options.max_tokens,
            prompts=_prompts(options),
            policy=options.policy,
            **_chat(options),
        )

    return build


def _chat(options: BackendOptions) -> dict[str, Any]:
    """The grading-mode settings every chat backend takes; refused when they are not valid settings, for
    every backend (`get_backend`): a bad GRADER_MODE is found before a key is ever set, not after."""
    from grader.backends.chat import check_mode
    from grader.backends.checklist import ChecklistRule

    if options.checklist_calls not in ("one", "per-item"):
        raise UsageError(f"unknown --checklist-calls {options.checklist_calls!r}", hint="choose one of: one, per-item")
    per_item = options.checklist_calls == "per-item"
    check_mode(options.mode, per_item=per_item, prose=options.prose, ask_tier=options.ask_tier)
    rule = ChecklistRule.load(options.checklist_rule)
    return {
        "mode": options.mode,
        "rule": rule,
        "prose": options.prose,
        "ask_tier": options.ask_tier,
        "per_item": per_item,
    }


def _local(options: BackendOptions) -> Backend:
    try:
        from grader.backends.local.backend import LocalBackend
    except ImportError as exc:  # pragma: no cover - the dependencies are required, but say so kindly
        raise GraderError(
            f"the local backend cannot load ({exc.name} is missing)", hint="reinstall grader: pip install ."
        ) from None
    from grader.backends.local.rule import TierRule

    try:
        return LocalBackend(model_path=options.model_path, rule=TierRule.load(options.local_rule))
    except (FileNotFoundError, ValueError) as exc:
        raise BackendNotConfiguredError(str(exc)) from None


def _nearest(options: BackendOptions) -> Backend:
    from grader.backends.local.backend import NearestReferenceBackend

    try:
        return NearestReferenceBackend(model_path=options.model_path)
    except FileNotFoundError as exc:
        raise BackendNotConfiguredError(str(exc)) from None


def _fake(options: BackendOptions) -> Backend:
    from grader.backends.fake import FakeBackend

    return FakeBackend.from_env(prompts=_prompts(options), policy=options.policy, **_chat(options))


REGISTRY: dict[str, Callable[[BackendOptions], Backend]] = {
    "openai": _http_chat("grader.backends.openai", "OpenAIBackend"),
    "ollama": _http_chat("grader.backends.ollama", "OllamaBackend"),
    "local": _local,
    "nearest": _nearest,
    "fake": _fake,
}


def resolve_name(name: str, options: BackendOptions | None = None) -> str:
    """`auto` means the OpenAI-compatible backend when OPENAI_API_KEY or OPENAI_BASE_URL is set, or a key
    or server URL is given (`--base-url`, `api_key=`)."""
    if name != "auto":
        return name
    given = options is not None and (options.api_key or options.base_url)
    return "openai" if given or openai_configured() else "local"


def get_backend(name: str = "auto", options: BackendOptions | None = None) -> Backend:
    resolved = resolve_name(name, options)
    try:
        factory = REGISTRY[resolved]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}", hint="choose one of: auto, " + ", ".join(REGISTRY)) from None
    options = options or BackendOptions()
    _chat(options)  # the chat settings are checked whichever backend is picked
    return factory(options)


__all__ = ["REGISTRY", "Backend", "BackendOptions", "GradeRequest", "get_backend", "resolve_name"]
