"""Read interview transcripts into turns: plain text with speaker labels, WebVTT, SRT, or JSON.

Every format becomes the same list of `Turn(speaker, text, start, end)`, one per line, cue or JSON item
(consecutive turns of one speaker are not merged here: a cue's own start time is what an evidence quote
is stamped with). A file in none of the formats, or with fewer than two speakers, is a `TranscriptError`
naming the file.
"""

from __future__ import annotations

import difflib
import html
import io
import itertools
import json
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from grader.errors import TranscriptError
from grader.textfiles import not_text, read_text

#: What `grader transcript FOLDER` picks up.
TRANSCRIPT_SUFFIXES = (".txt", ".vtt", ".srt", ".json")

FORMATS = ("text", "vtt", "srt", "json")

#: The longest transcript read (characters): about twenty hours of speech, where an interview is one or two.
MAX_TRANSCRIPT_CHARS = 2_000_000
#: The latest time a turn may start or end (seconds): a day, where an interview is an hour or two.
MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Turn:
    """One stretch of speech: who spoke, what they said, and when (seconds), where the transcript says."""

    speaker: str
    text: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Transcript:
    source: str
    format: str
    turns: list[Turn]
    #: What was read but left out, for the person running it (a JSON export's extra fields).
    notes: tuple[str, ...] = ()

    @property
    def speakers(self) -> list[str]:
        """Speakers in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self.turns))


# --- timestamps ------------------------------------------------------------------------------------

_TIME = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?"


def parse_time(value: str) -> float:
    """`01:02:03.5`, `1:02:03,500`, `02:03` -> seconds."""
    parts = value.strip().replace(",", ".").split(":")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return round(seconds, 3)


def format_time(seconds: float | None) -> str | None:
    """`MM:SS`, or `H:MM:SS` past the hour, as a transcript shows it."""
    if seconds is None:
        return None
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


# --- speaker labels --------------------------------------------------------------------------------

# A label is one to four words, the first starting with a letter and the others capitalised ("Dana",
# "Dana Lee", "Speaker 2", "Candidate (Sam)", "Élodie Durand"), or name particles ("Ana de la Cruz"), then
# a colon and a space (`_label` checks the capitals: a regular expression cannot tell case outside ASCII).
# A timestamp may come before it, in brackets or not, or after it in brackets: `[00:01:02] Dana:`,
# `00:01:02 Dana:`, `Dana (00:01:02):`, `Dana [1:02]:`.
_LABEL = r"[^\W\d_][\w.'’-]*(?:[ \t]+[\w(][\w.'’()-]*){0,5}"
_LINE = re.compile(
    rf"^\s*(?:[\[(]?(?P<t1>{_TIME})[\])]?\s*[-–—]?\s*)?"
    rf"(?P<speaker>{_LABEL}?)"
    rf"(?:\s*[\[(](?P<t2>{_TIME})[\])])?"
    r"\s*:(?:\s+|$)(?P<text>.*)$"
)
_BRACKET_LABEL = re.compile(r"^\s*\[(?P<speaker>[^\W\d_][^\]:]{0,40})\]\s*(?P<text>.*)$")
_TIME_ONLY = re.compile(rf"^\s*[\[(]?(?P<t>{_TIME})[\])]?\s*$")
# Otter's text export: the speaker and the time on a line of their own ("Dana Lee  0:06"), the speech below.
_HEADER = re.compile(rf"^\s*(?P<speaker>{_LABEL}?)[ \t]+(?P<t>{_TIME})\s*$")
# Words that open a line like a label does but are not speakers.
_NOT_SPEAKERS = frozenset(
    "note notes step example edit update warning error re subject ps todo tip http https ftp mailto "
    "summary agenda date time title transcript recording meeting attendees participants interview".split()
)


#: Lower-case words inside a name ("Ana de la Cruz", "Joost van der Berg", "Omar bin Said").
_PARTICLES = frozenset("de la le du des del della di da das dos van von der den ter ten bin ibn al el y".split())
#: What a transcriber writes for sounds, not speech: `[crosstalk]`, `[inaudible 00:12:03]`, `(laughter)`.
_NOISE = re.compile(
    r"[\[(](?:cross[- ]?talk|inaudible|unintelligible|indiscernible|laugh(?:s|ter|ing)?|music|silence|applause|"
    r"pause|noise|background noise|cough(?:s|ing)?|overlapping(?: speech)?|static|audio cuts? out|no audio|"
    r"phone rings|beep)(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?\s*[\])]",
    re.IGNORECASE,
)


def _label(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    speaker = " ".join(match.group("speaker").split())
    if not speaker or len(speaker) > 40 or speaker.lower() in _NOT_SPEAKERS or _NOISE.fullmatch(f"[{speaker}]"):
        return None
    words = speaker.split()
    named = [w for w in words[1:] if w not in _PARTICLES]
    if len(words) - len(named) > 3 or len(named) > 3 or words[-1] in _PARTICLES:
        return None
    if not all(w[0].isupper() or w[0].isdigit() or w[0] == "(" for w in named):  # "So I said: ..." is speech
        return None
    return speaker


# --- reading ---------------------------------------------------------------------------------------


def read_transcript(path: str | Path, *, speakers: Collection[str] = ()) -> Transcript:
    """Read and parse one transcript file; every failure names the file. A file over
    `MAX_TRANSCRIPT_CHARS` is refused after reading one character past the limit, not whole."""
    path = Path(path)
    text = read_text(path, limit=MAX_TRANSCRIPT_CHARS)
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise TranscriptError(
            f"{path}: over the limit of {MAX_TRANSCRIPT_CHARS:,} characters; is this one interview's transcript?",
            hint="split a longer recording into one transcript per interview",
        )
    return parse_transcript(text, label=str(path), suffix=path.suffix.lower(), speakers=speakers)


def parse_transcript(
    text: str, *, label: str = "<transcript>", suffix: str = "", speakers: Collection[str] = ()
) -> Transcript:
    """Parse transcript text: the format is sniffed from the content, the file suffix breaks ties. `speakers`
    (the names given with --interviewer and --candidate) are speaker labels even where seen once."""
    text = text.lstrip("\ufeff")
    stripped = text.strip()
    if not stripped:
        raise TranscriptError(f"{label}: the transcript is empty")
    kind = sniff(stripped, suffix)
    notes: list[str] = []
    if kind == "text":
        turns = _parse_text(text, label, speakers)
    else:
        turns = {"vtt": _parse_vtt, "srt": _parse_srt, "json": _parse_json}[kind](text, label, notes)
    turns = [t for t in turns if t.text]
    if not turns:
        raise TranscriptError(f"{label}: no speech found in the {_NAMES[kind]} transcript")
    found = list(dict.fromkeys(t.speaker for t in turns))
    if len(found) < 2:
        raise TranscriptError(
            f"{label}: only one speaker ({found[0]}) found; an interview needs an interviewer and a candidate",
            hint="label each turn with its speaker, e.g. 'Interviewer: ...' and 'Candidate: ...'",
        )
    return Transcript(source=label, format=kind, turns=turns, notes=tuple(notes))


_NAMES = {"vtt": "WebVTT", "srt": "SRT", "json": "JSON", "text": "plain-text"}
_SRT_HEAD = re.compile(rf"^\d+\s*\n\s*{_TIME}\s*-->\s*{_TIME}")


def sniff(stripped: str, suffix: str = "") -> str:
    """Which format a transcript is in: vtt, srt, json or text."""
    if stripped.startswith("WEBVTT"):
        return "vtt"
    if _SRT_HEAD.match(stripped):
        return "srt"
    if suffix == ".json" or stripped.startswith("{") or stripped.startswith("[{") or re.match(r"\[\s*[{\]]", stripped):
        return "json"
    if suffix in (".vtt", ".srt"):  # named like captions but not shaped like them
        return suffix[1:]
    return "text"


# --- plain text --------------------------------------------------------------------------------------


def _parse_text(text: str, label: str, known: Collection[str] = ()) -> list[Turn]:
    lines: list[tuple[str | None, str, float | None]] = []  # (speaker label or None, text, start)
    headers: dict[int, str] = {}  # lines that are a name and a time alone (Otter), as written
    pending_time: float | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        only_time = _TIME_ONLY.match(line)
        if only_time:  # a timestamp on a line of its own stamps the next turn
            pending_time = parse_time(only_time.group("t"))
            continue
        header = _HEADER.match(line)
        if (speaker := _label(header)) is not None and header is not None:
            lines.append((speaker, "", parse_time(header.group("t"))))
            headers[len(lines) - 1] = line.strip()  # the whole line again, should the name be no speaker
            pending_time = None
            continue
        match = _LINE.match(line)
        speaker = _label(match)
        if speaker is None:
            match = _BRACKET_LABEL.match(line)
            speaker = _label(match)
        if match is not None and speaker is not None:
            stamp = match.groupdict().get("t1") or match.groupdict().get("t2")
            lines.append((speaker, match.group("text"), parse_time(stamp) if stamp else pending_time))
            pending_time = None
        else:
            lines.append((None, line, None))
    speakers = _real_speakers(lines, known, headers)
    turns: list[list[Any]] = []
    for i, (speaker, body, start) in enumerate(lines):
        if speaker in speakers:
            turns.append([speaker, body.strip(), start])
        elif turns:  # a wrapped line, or a 'Word:' that is not a speaker, continues the turn above
            turns[-1][1] = f"{turns[-1][1]} {headers.get(i) or _unlabelled(speaker, body)}".strip()
        # lines before the first label (a title, a date) are not speech
    if not turns:
        raise TranscriptError(
            f"{label}: no recognisable speakers: not WebVTT, SRT or JSON, and no line starts with a speaker label",
            hint="expected lines like 'Interviewer: ...', 'Candidate: ...' or '[00:01:02] Name: ...'",
        )
    return [Turn(speaker, _clean(body), start) for speaker, body, start in turns]


def _real_speakers(
    lines: list[tuple[str | None, str, float | None]], known: Collection[str] = (), headers: Collection[int] = ()
) -> set[str]:
    """Labels that name speakers. Every label counts, except one seen once, without a timestamp, in a
    file where at least two other labels recur: that is a line of speech that happens to hold a colon.
    A label seen once still counts when it is a name given on the command line (`known`), or a full name
    ("Marcus Chen": two capitalised words) opening a turn of at least `_SPOKEN_WORDS` words: a panelist
    who asks one question. A header (`headers`: "Dana Lee  0:06" alone on its line, the speech below)
    always has a time, so its time says nothing; its turn is the lines below it."""
    counts: dict[str, int] = {}
    stamped: set[str] = set()
    longest: dict[str, int] = {}
    for i, (speaker, body, start) in enumerate(lines):
        if speaker is not None:
            counts[speaker] = counts.get(speaker, 0) + 1
            said = len(body.split())
            if i in headers:
                below = itertools.takewhile(lambda line: line[0] is None, itertools.islice(lines, i + 1, None))
                said = sum(len(text.split()) for _, text, _ in below)
            longest[speaker] = max(longest.get(speaker, 0), said)
            if start is not None and i not in headers:
                stamped.add(speaker)
    recurring = [s for s, n in counts.items() if n >= 2]
    keys = {" ".join(k.split()).casefold() for k in known}
    return {
        s
        for s, n in counts.items()
        if n >= 2
        or s in stamped
        or _ROLE_WORD.search(s)
        or len([r for r in recurring if r != s]) < 2
        or s.casefold() in keys
        or (len(s.split()) >= 2 and longest[s] >= _SPOKEN_WORDS)
    }


#: A once-seen full-name label opening a line this long is a speaker, not a colon in speech ("Root Cause: DB").
_SPOKEN_WORDS = 12


_ROLE_WORD = re.compile(
    r"^(?:interviewer|candidate|interviewee|recruiter|hiring manager|applicant|host|speaker)\b", re.IGNORECASE
)


def _unlabelled(speaker: str | None, body: str) -> str:
    """The whole line again, for a label that turned out not to be a speaker."""
    return body if speaker is None else f"{speaker}: {body}"


def _clean(text: str) -> str:
    """One line of speech: a transcriber's sound notes (`[crosstalk]`, `[laughter]`) out, spacing folded."""
    return " ".join(_NOISE.sub(" ", text).split())


# --- captions ----------------------------------------------------------------------------------------

_VOICE = re.compile(r"<v(?:\.[\w.-]+)?(?:\s+(?P<name>[^>]*))?>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>|<\d{1,2}:\d{2}[^>]*>")


#: A line meant as a cue's timing: two times with something arrow-like between them.
_TIMING_LIKE = re.compile(rf"^\s*{_TIME}\s*(?:[-–—=]+>?|>|to)\s*{_TIME}\b")
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s|$)")


def _check_timings(text: str, label: str, kind: str) -> None:
    """A cue whose timing line is mistyped (`00:00:12.500 -> 00:00:40.000`) is skipped by the caption reader
    without a word, and its speech with it: name the line instead."""
    for number, line in enumerate(text.splitlines(), 1):
        if _TIMING_LIKE.match(line) and not _TIMING.match(line):
            raise TranscriptError(
                f"{label}:{number}: not a {kind} cue timing: {line.strip()[:60]!r}",
                hint="a cue's timing line reads 'start --> end', e.g. 00:00:12.500 --> 00:00:40.000",
            )


def _parse_vtt(text: str, label: str, notes: list[str]) -> list[Turn]:
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    _check_timings(text, label, "WebVTT")

    try:
        captions = webvtt.from_buffer(io.StringIO(text), format="vtt").captions
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise TranscriptError(f"{label}: not a valid WebVTT file ({exc})") from None
    return _caption_turns(captions, label, "WebVTT", notes)


def _parse_srt(text: str, label: str, notes: list[str]) -> list[Turn]:
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    _check_timings(text, label, "SRT")

    try:
        captions = webvtt.from_buffer(io.StringIO(text), format="srt").captions
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise TranscriptError(f"{label}: not a valid SRT file ({exc})") from None
    return _caption_turns(captions, label, "SRT", notes)


def _caption_turns(captions: list[Any], label: str, kind: str, notes: list[str]) -> list[Turn]:
    """Speakers come from voice tags (`<v Dana>`) or a label in the cue text (`Dana: ...`, `[Dana] ...`);
    a cue with neither continues the speaker before it. Cues before the first speaker ("Recording
    started.") are nobody's: left out, and named in `notes`."""
    turns: list[Turn] = []
    named = False
    speaker = ""
    nobodys: list[str] = []
    for caption in captions:
        start = caption.start_time.in_milliseconds() / 1000
        end = caption.end_time.in_milliseconds() / 1000
        for voice, raw in _voices(caption.raw_text):
            body = _clean(html.unescape(_TAG.sub("", raw)))
            if voice:
                speaker, named = voice, True
            else:
                match = _LINE.match(body)
                found = _label(match)
                if found is None:
                    bracket = _BRACKET_LABEL.match(body)
                    found, match = (_label(bracket), bracket) if bracket else (None, None)
                if found is not None and match is not None:
                    speaker, named, body = found, True, match.group("text").strip()
            if body and not named:
                nobodys.append(body)
            elif body:
                turns.append(Turn(speaker, body, start, end))
    if nobodys and named:
        said = "; ".join(nobodys)
        notes.append(f"{label}: {len(nobodys)} cue(s) before the first speaker left out: {said[:80]!r}")
    if not captions:
        raise TranscriptError(f"{label}: the {kind} file has no cues")
    if not named:
        raise TranscriptError(
            f"{label}: no recognisable speakers in the {kind} cues",
            hint="speakers are read from voice tags (<v Dana>) or a 'Name: ' label at the start of a cue",
        )
    return turns


def _voices(raw: str) -> list[tuple[str | None, str]]:
    """Split a cue's raw text at voice tags: [(speaker or None, text), ...]."""
    raw = raw.replace("\n", " ")
    found = list(_VOICE.finditer(raw))
    if not found:
        return [(None, raw)]
    out: list[tuple[str | None, str]] = []
    if raw[: found[0].start()].strip():
        out.append((None, raw[: found[0].start()]))
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(raw)
        name = " ".join((match.group("name") or "").split()) or None
        out.append((name, raw[match.end() : end]))
    return out


# --- JSON ----------------------------------------------------------------------------------------------


def _too_deep(text: str, depth: int = 100) -> int:
    """The line where JSON nesting first goes deeper than `depth` (brackets inside strings aside)."""
    level, in_string, escaped, line = 0, False, False, 1
    for char in text:
        if char == "\n":
            line += 1
        elif in_string:
            escaped, in_string = (not escaped and char == "\\"), in_string and (escaped or char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            if level > depth:
                return line
        elif char in "]}":
            level -= 1
    return 1


class _JsonTurn(BaseModel):
    """One item of a JSON transcript: `{speaker, text, start?, end?}`; times in seconds or `HH:MM:SS.mmm`."""

    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(min_length=1, pattern=r"\S")
    text: str
    start: float | None = None
    end: float | None = None

    @field_validator("speaker", "text", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # JSON can carry what no UTF-8 file can: a lone UTF-16 surrogate ("\ud83d", half of a cut emoji),
        # which nothing downstream could encode (the grade cache's key, the scorecard file); and a NUL
        # ("\u0000"), binary data, refused in a file as it is here.
        if isinstance(value, str) and (found := not_text(value)):
            raise ValueError(f"contains {found[0]} (not text) at character {found[1]}")
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not re.fullmatch(_TIME, value.strip()):
                raise ValueError(f"{value!r} is not seconds or a HH:MM:SS timestamp")
            return parse_time(value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: float | None) -> float | None:
        # Python's json writes NaN and Infinity, which no time is; nor is a negative one or a year in.
        if value is not None and not 0 <= value <= MAX_SECONDS:
            raise ValueError(f"{value!r} is not a time in the interview (0 to {MAX_SECONDS:,} seconds)")
        return value


_JSON_FIELDS = ("speaker", "text", "start", "end")


def _meant(key: str, missing: list[str]) -> str | None:
    """The turn field a key stands for, when the turn lacks it: misspelt (`strat`) or dressed (`start_time`,
    `StartTime`). Read as an extra field, its value (the turn's time, say) would be lost."""
    bare = re.sub(r"[^a-z]", "", key.lower())
    for field in missing:
        if bare.startswith(field) or bare.endswith(field):
            return field
    close = difflib.get_close_matches(key.lower(), missing, 1, 0.75)
    return close[0] if close else None


def _parse_json(text: str, label: str, notes: list[str]) -> list[Turn]:
    """The turns of a JSON transcript. A field an ASR export adds (`confidence`, `words`) is left out and
    named in `notes`; one that looks like a misspelt turn field (`strat`) is an error, as its value would
    be lost."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptError(f"{label}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise TranscriptError(f"{label}:{_too_deep(text)}: JSON nested too deeply") from None
    if not isinstance(data, list):
        raise TranscriptError(f"{label}: a JSON transcript is a list of {{speaker, text, start?, end?}} turns")
    turns = []
    extra: Counter[str] = Counter()
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise TranscriptError(f"{label}: turn {i + 1}: expected an object with speaker and text")
        for key in [k for k in item if k not in _JSON_FIELDS]:
            if meant := _meant(key, [f for f in _JSON_FIELDS if f not in item]):
                raise TranscriptError(f"{label}: turn {i + 1}: {key}: unknown field (did you mean '{meant}'?)")
            extra[key] += 1
            item = {k: v for k, v in item.items() if k != key}
        try:
            turn = _JsonTurn.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "turn"
            message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            raise TranscriptError(f"{label}: turn {i + 1}: {field}: {message}") from None
        turns.append(Turn(" ".join(turn.speaker.split()), _clean(turn.text), turn.start, turn.end))
    if extra:
        read = ", ".join(f"{k} (in {n} of {len(data)} turns)" for k, n in extra.items())
        notes.append(f"{label}: fields not read: {read}; a turn is read from {', '.join(_JSON_FIELDS)}")
    return turns
