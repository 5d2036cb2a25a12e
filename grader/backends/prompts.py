"""Prompt templates: Jinja files in `prompts/` (shipped as package data) or a user's own folder.

Templates render with `StrictUndefined`, so a typo in a variable name is an error, not an empty string.
The candidate's answer is data: it is wrapped in delimiters it cannot close (`fence_answer`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from grader.errors import TemplateError
from grader.resources import data_dir
from grader.rubric import Question

PROMPTS_ENV = "GRADER_PROMPTS"
ANSWER_TAG = "candidate_answer"

# Invisible characters a candidate can hide inside a tag: zero-width spaces and joiners, word joiner, BOM,
# soft hyphen, bidirectional controls.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"))
_INVISIBLE.update(dict.fromkeys(range(0x202A, 0x202F)))
_INVISIBLE.update(dict.fromkeys(range(0x2066, 0x206A)))
# Latin look-alikes from Cyrillic and Greek, one character for one, so positions in the folded text are
# positions in the answer. Used only to find tags, never to change the answer's other words.
_LOOKALIKE = str.maketrans(
    "аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅαεορτυνιΑΒΕΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwABEKMHOPCTXIJSaeoptuviABEHIKMNOPTYX",
)
_HAS_INVISIBLE = re.compile("[" + "".join(map(chr, _INVISIBLE)) + "]")
_HAS_LOOKALIKE = re.compile("[" + "".join(map(chr, _LOOKALIKE)) + "]")
_OPEN = r"(?:<|&lt;?|&#0*60;?|&#x0*3c;?|‹|〈|⟨)"
_CLOSE = r"(?:>|&gt;?|&#0*62;?|&#x0*3e;?|›|〉|⟩)"
# Our tag in any near-miss form: with or without brackets (HTML-escaped or look-alike ones too), a slash,
# spaces, a Cyrillic letter. Nothing after the name is swallowed but one closing bracket, so a stray `>`
# later in the answer keeps the text before it.
_NAME = ANSWER_TAG.replace("_", r"[\s_-]*")
_TAG_LIKE = re.compile(
    rf"(?:{_OPEN}\s*/?\s*|/\s*){_NAME}(?:\s*/?\s*{_CLOSE})?"  # a bracket or slash before: loose spelling
    rf"|{ANSWER_TAG.replace('_', '[_-]')}\s*/?\s*{_CLOSE}",  # no opener: the name and a closing bracket
    re.I,
)
# Chat-template control tokens (ChatML, Llama, Gemma, Mistral): many servers tokenise these in message
# text as the real special tokens, which would let an answer end its turn and open a system turn.
_TEMPLATE_TOKEN = re.compile(
    r"<\|[^|<>\n]{1,40}\|>|\[/?INST\]|<<\s*/?\s*SYS\s*>>|</?s>|<(?:start|end)_of_turn>",
    re.I,
)


# Text in an answer that speaks to the grader rather than to the question: instructions to ignore the
# rubric, a tier requested, a "system" note, our tag or a chat-template token, a verdict in our reply
# formats. The fence keeps such text data; this finds it so a person can look (whatever the tier).
_ADDRESSED = re.compile(
    r'(?=[igmsrtoanp"\[])(?:'  # every alternative starts with one of these: the scan skips other positions
    r"ignore\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier)?\s*(?:instructions|rubric|rules)"
    r"|\b(?:grade|mark|score|rate|rank)\s+(?:it|this|me|this\s+answer|the\s+answer)\s+(?:as\s+)?(?:great|excellent|top)"
    r"|\b(?:return|respond\s+with|give|output|assign)\s+(?:it\s+)?(?:the\s+|a\s+)?tier\b"
    r"|\btier\s+(?:is\s+|should\s+be\s+|=\s*)?great\b"
    r"|\bsystem(?:\s+note)?\s*(?:to\s+the\s+grader)?\s*:"
    r"|\bnote\s+to\s+the\s+(?:grader|reviewer|evaluator)"
    r"|pre-?approved\s+by"
    r'|"(?:tier|verdict|covered)"\s*:'
    r"|\[tag removed\]|\[template token removed\])",
    re.I,
)


def addressed_to_grader(answer: str) -> list[str]:
    """Snippets of the (fenced) answer that speak to the grader instead of answering the question."""
    return [m.group(0) for m in _ADDRESSED.finditer(fence_answer(answer))]


def visible(text: str) -> str:
    """`text` without the invisible characters `fence_answer` drops (zero-width spaces, soft hyphens...)."""
    return text.translate(_INVISIBLE) if _HAS_INVISIBLE.search(text) else text


@functools.lru_cache(maxsize=64)  # each answer is fenced for its prompt and looked at by the review policy
def fence_answer(answer: str) -> str:
    """Make the answer safe to place between our delimiters: Unicode-normalise it (NFKC folds full-width
    brackets into ASCII), drop invisible characters, neutralise anything that looks like our tag (in any
    near-miss form) and chat-template control tokens. What the answer says is otherwise untouched."""
    text = unicodedata.normalize("NFKC", answer)
    text = visible(text)  # str.translate walks every character: only when there is one to drop
    text = _TEMPLATE_TOKEN.sub("[template token removed]", text)
    folded = text.translate(_LOOKALIKE) if _HAS_LOOKALIKE.search(text) else text
    pieces, last = [], 0
    for match in _TAG_LIKE.finditer(folded):
        pieces += [text[last : match.start()], "[tag removed]"]
        last = match.end()
    return "".join(pieces) + text[last:] if pieces else text


#: Stands for the answer when the text around it is rendered once (see `Prompts.render_answer`).
_ANSWER_SLOT = "\x00answer-slot\x00"
_RENDERS_KEPT = 1024


def _identity(value: Any) -> Any:
    """What a template context value renders from: a rubric question by its fingerprint."""
    return value.fingerprint() if isinstance(value, Question) else value


class Prompts:
    """A folder of templates. Precedence: explicit folder > $GRADER_PROMPTS > packaged templates."""

    def __init__(self, directory: str | Path | None = None) -> None:
        chosen = directory or os.environ.get(PROMPTS_ENV)
        self.directory = Path(chosen) if chosen else data_dir("prompts")
        if not self.directory.is_dir():
            raise TemplateError(f"{self.directory}: prompts folder not found")
        self._rendered: dict[tuple[str, str], str] = {}  # see render

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
        """The template rendered with `context`, once per context: the system messages and the text
        around an answer (`render_answer`) are the same for every answer to a question."""
        key = (name, repr(sorted((k, _identity(v)) for k, v in context.items())))
        if (text := self._rendered.get(key)) is None:
            if len(self._rendered) >= _RENDERS_KEPT:
                self._rendered.clear()
            text = self._rendered[key] = self._render(name, **context).strip()
        return text

    def render_answer(self, name: str, answer: str, **context: Any) -> str:
        """`render(name, answer=answer, **context)`, with the text around the answer rendered once per
        context (the question, its exemplars, the checklist). A template that does more with the answer
        than print it is rendered whole each time (and not kept: every answer differs)."""
        pieces = self.render(name, answer=_ANSWER_SLOT, **context).split(_ANSWER_SLOT)
        if len(pieces) != 2:
            return self._render(name, answer=answer, **context).strip()
        return (pieces[0] + answer + pieces[1]).strip()

    def _render(self, name: str, **context: Any) -> str:
        try:
            return self._env.get_template(name).render(**context)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{self.directory / name}: template not found") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.directory / name}: {exc.message}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
