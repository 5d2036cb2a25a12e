"""What the local backend reads of an answer: its content, without what says who wrote it.

A grade must not move with a candidate's name, pronouns, dialect or spelling (the `counterfactual` eval
suite measures it). An embedding model cannot be told to ignore them: every word moves a vector a
little, and an answer near a tier's boundary crosses it. So the backend reads the answer with:

- **identity and courtesy lines dropped**: a self-introduction ("Hi, I'm Jordan Taylor."), a header
  ("(Candidate: Jordan Taylor, she/her)"), a sign-off ("— Jordan"), a pronoun note, a greeting, a
  "Thank you" or "Hope this helps". Only whole sentences (or lines) made of nothing else go; an
  introduction that says something ("I'm Sam, a backend engineer") stays;
- **British spellings read as American** (-ise/-yse, -our, -re, -ogue, -ence, doubled l...).

Nothing else is changed: an answer with neither reads exactly as written, so the rule fitted on the dev
half sees what it was fitted on. Reading dialect away, in the answer and in the rubric texts alike, was
tried and measured (README, "Counterfactual probes"; the patches are in `benchmarks/experiments/`): it
makes every dialect probe invisible but costs the dev half 0.05 of leave-one-question-out accuracy with
the rule refitted (within noise on its own: 95 % interval -0.117 to +0.017), and did not help the
non-native and spoken answers it is meant for (2 and 3 fewer of 10 graded right); so answers written
in another English can still move a tier, and the suite reports by how much.

Evidence is still quoted from the answer as written: each character of the reading knows the stretch of
the answer it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grader.backends.local.text import Span, sentences

#: Part of the local backend's cache key: a change to how answers are read changes their grades.
READING_VERSION = 2

# --- lines that say who is answering, or are courtesy ---------------------------------------------------

_NAME_WORD = r"[A-ZÀ-ÖØ-Þ][\w'’.-]*"
_NAME = rf"{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,3}}"
_PRONOUNS = r"(?:he|she|they|ze|xe|e|it)/(?:him|her|them|hir|zir|xem|em|its|he|she|they)(?:/(?:his|hers|theirs))?"
_PRONOUN_NOTE = (
    r"(?:\s*,?\s*(?:(?i:and)\s+)?(?:(?i:i\s+use|my)\s+)?(?:(?i:pronouns?)\s*(?:(?i:are)|:)?\s*)?"
    rf"\(?{_PRONOUNS}\)?(?:\s+(?i:pronouns))?)"
)
_GREETING = r"(?i:hi|hello|hey|greetings|good\s+(?:morning|afternoon|evening))(?:\s+(?i:there|all|everyone|team))?"
_SIGN_OFF = r"(?:—|--|~|(?i:thanks|thank\s+you|regards|best|best\s+regards|kind\s+regards|cheers|sincerely))"
_IDENTITY = re.compile(
    r"\s*(?:"
    # a header an interview tool or a recruiter adds: "(Candidate: Jordan Taylor, he/him)"
    rf"\(?\s*(?i:candidate|applicant|interviewee|name|speaker)\s*[:–—-]\s*{_NAME}{_PRONOUN_NOTE}?\s*\)?"
    # a self-introduction, with or without a greeting: "Hi, I'm Jordan Taylor (she/her)."
    rf"|(?:{_GREETING}[\s,!.]*)?(?:(?i:i'm|i’m|i\s+am|my\s+name\s+is)\s+{_NAME}{_PRONOUN_NOTE}?)"
    rf"|{_GREETING}[\s,!.]*(?i:this\s+is|it's|it’s)\s+{_NAME}{_PRONOUN_NOTE}?"
    rf"|(?:(?i:my\s+)?(?i:pronouns?)\s*(?:(?i:are)|:)?\s*{_PRONOUNS})"
    rf"|{_GREETING}"
    # a sign-off: "— Jordan Taylor (he/him)", "Thanks, Jordan"
    rf"|{_SIGN_OFF}[\s,!.]*(?:{_NAME}{_PRONOUN_NOTE}?)?"
    # courtesy: "Hope this answers your query.", "Thank you for the question."
    r"|(?i:(?:i\s+)?hope\s+(?:this|that|it|my\s+answer)\s+(?:helps|answers|clarifies|covers)"
    r"(?:\s+(?:your|the)\s+(?:question|query|doubt))?)"
    r"|(?i:thanks?(?:\s+you)?(?:\s+(?:so\s+much|for\s+(?:the|your)\s+(?:question|time|asking)))?)"
    r")\s*[.!]?\s*"
)


#: Part of the local backend's cache key beside READING_VERSION: 1 reads redaction placeholders as nothing.
PERSONAL_VERSION = 1


def identity_lines(answer: str) -> list[tuple[int, int]]:
    """The stretches of `answer` that only say who is answering or are courtesy: whole sentences (or
    lines), each with the space after it (or, at the very end, the space before it); and, inside the other
    sentences, `--redact`'s placeholders (`grader.personal`): "call me on [PHONE_1]" reads "call me on ", where
    a placeholder had turned a great transcript answer poor on a red flag. Sorted, not overlapping."""
    from grader.personal import placeholder_spans

    out = []
    for s in sentences(answer):
        if not _IDENTITY.fullmatch(s.text):
            continue
        start, end = s.start, s.end
        while end < len(answer) and answer[end].isspace():
            end += 1
        if end == len(answer):
            while start > 0 and answer[start - 1].isspace():
                start -= 1
        out.append((start, end))
    if not (inline := placeholder_spans(answer)):
        return out
    merged: list[tuple[int, int]] = []
    for start, end in sorted([*out, *inline]):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


# --- words read another way ------------------------------------------------------------------------------

#: British spellings that no rule below covers, read as the American ones.
BRITISH = {
    "centre": "center",
    "centres": "centers",
    "centred": "centered",
    "datacentre": "datacenter",
    "datacentres": "datacenters",
    "metre": "meter",
    "metres": "meters",
    "litre": "liter",
    "fibre": "fiber",
    "theatre": "theater",
    "calibre": "caliber",
    "defence": "defense",
    "offence": "offense",
    "licence": "license",
    "pretence": "pretense",
    "catalogue": "catalog",
    "catalogues": "catalogs",
    "dialogue": "dialog",
    "dialogues": "dialogs",
    "analogue": "analog",
    "prologue": "prolog",
    "judgement": "judgment",
    "judgements": "judgments",
    "sceptical": "skeptical",
    "fulfil": "fulfill",
    "fulfils": "fulfills",
    "enrol": "enroll",
    "enrols": "enrolls",
    "grey": "gray",
    "towards": "toward",
    "amongst": "among",
    "whilst": "while",
    "learnt": "learned",
    "spelt": "spelled",
    "burnt": "burned",
    "dreamt": "dreamed",
    "programme": "program",
    "programmes": "programs",
    "maths": "math",
    "aluminium": "aluminum",
    "tyre": "tire",
    "cheque": "check",
    "ageing": "aging",
    "storey": "story",
    "practise": "practice",
    "practised": "practiced",
    "practising": "practicing",
}
#: Doubled l before a suffix (British) read single (American): labelled -> labeled.
_DOUBLED_L = frozenset(
    "label model cancel travel level signal fuel counsel total marshal channel tunnel funnel model "
    "tunnel jewel dial duel shovel equal rival parcel pencil cancel".split()
)
_LL = re.compile(r"([a-z]+l)l(ed|ing|er|ers)")
#: -ise/-yse words that are spelt so in American English too (advise, exercise...).
_ISE_WORDS = frozenset(
    "advertise advise apprise arise chastise circumcise comprise compromise concise demise despise devise "
    "disguise enfranchise enterprise excise exercise expertise franchise improvise incise merchandise noise "
    "otherwise paradise poise praise precise premise promise raise reprise revise supervise surmise surprise "
    "televise treatise likewise clockwise cruise bruise guise anise valise mortise porpoise tortoise turquoise "
    "appraise malaise mayonnaise chemise cerise concise counterclockwise anticlockwise".split()
)
_ISE = re.compile(r"([a-z]{2,})(i|y)s(e|es|ed|er|ers|ing|ation|ations|able)")
#: -our words (British) and their inflections, read -or (American): colour, behaviour, favourite...
_OUR = re.compile(r"([a-z]{2,})our(s|ed|ing|able|ably|ite|ites|al|ally|er|ers)?")
_OUR_WORDS = frozenset(
    "behavi col favo hon lab neighb flav hum rum harb vap arm endeav sav vig parl od cand clam glam ard "
    "splend vale rig tum".split()
)


def american(word: str) -> str:
    """A lowercase word in its American spelling (unchanged when it has none other)."""
    if word in BRITISH:
        return BRITISH[word]
    m = _ISE.fullmatch(word)
    if m and f"{m.group(1)}{m.group(2)}se" not in _ISE_WORDS:
        return f"{m.group(1)}{m.group(2)}z{m.group(3)}"
    m = _OUR.fullmatch(word)
    if m and m.group(1) in _OUR_WORDS:
        return f"{m.group(1)}or{m.group(2) or ''}"
    m = _LL.fullmatch(word)
    if m and m.group(1) in _DOUBLED_L:
        return f"{m.group(1)}{m.group(2)}"
    return word


# --- the reading -------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’]*")


@dataclass(frozen=True)
class Reading:
    """An answer as the grader reads it (`text`), and the answer with only its identity and courtesy
    lines dropped (`plain`). `starts[i]` and `ends[i]` are where the answer's stretch that character `i`
    of `text` came from begins and ends."""

    answer: str
    text: str
    plain: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def source(self, span: Span) -> Span:
        """The stretch of the answer as written that a span of `text` was read from."""
        if span.end <= span.start or not self.text:
            return span
        start, end = self.starts[span.start], self.ends[span.end - 1]
        return Span(self.answer[start:end], start, end)


def read(answer: str) -> Reading:
    """The reading of `answer` (see the module's docstring)."""
    dropped = identity_lines(answer)
    kept, cursor = [], 0
    for start, end in dropped:
        kept.append((cursor, start))
        cursor = end
    kept.append((cursor, len(answer)))
    kept = [(a, b) for a, b in kept if b > a]
    if not any(answer[a:b].strip() for a, b in kept):  # nothing but identity: read it all as written
        kept = [(0, len(answer))]
    plain = "".join(answer[a:b] for a, b in kept)

    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def emit(text: str, start: int, end: int) -> None:
        out.append(text)
        starts.extend([start] * len(text))
        ends.extend([end] * len(text))

    for a, b in kept:
        cursor = a
        for m in _TOKEN.finditer(answer, a, b):
            for k in range(cursor, m.start()):
                emit(answer[k], k, k + 1)
            word = m.group(0)
            spelt = american(word.lower()) if word[1:].islower() or len(word) == 1 else word.lower()
            if spelt == word.lower():
                for k in range(m.start(), m.end()):  # as written: each character keeps its own place
                    emit(answer[k], k, k + 1)
            else:
                emit(spelt.capitalize() if word[0].isupper() else spelt, m.start(), m.end())
            cursor = m.end()
        for k in range(cursor, b):
            emit(answer[k], k, k + 1)
    return Reading(answer=answer, text="".join(out), plain=plain, starts=tuple(starts), ends=tuple(ends))
