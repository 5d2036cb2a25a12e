"""Who asks and who answers, and the question -> answer exchanges of an interview.

An interviewer turn that asks something opens an exchange; the candidate's turns, and short follow-ups
("can you say more about X?"), belong to it until the next rubric question. Greetings, logistics and
closing chat are skipped. ASR noise is expected: filler words, questions split over two turns (with a
"mm-hmm" between them), missing question marks, a candidate asking a clarifying question, an answer
running over many cues.

`segment()` works from wording alone; given `match` (the rubric matcher), a short question that matches
another rubric question opens a new exchange instead of being taken for a follow-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from grader.errors import TranscriptError
from grader.transcripts.parse import Transcript, Turn

#: An unmatched interviewer question of at most this many words (fillers aside) is taken as a follow-up.
FOLLOWUP_MAX_WORDS = 14
#: A candidate question of at most this many words is a clarifying question, not part of the answer.
CLARIFY_MAX_WORDS = 25

# --- wording --------------------------------------------------------------------------------------

_FILLER = re.compile(r"\b(?:u+m+|u+h+|e+r+m*|a+h+|h+m+|m+h*m+|mhm|uh-huh|mm-hmm|you know|i mean)\b[,.]?\s*", re.I)
_SENTENCE = re.compile(r"[^.?!]+[.?!]*")
_OPENER = re.compile(r"^(?:(?:so|okay|ok|alright|all right|right|and|well|now|great|cool|next|then)\b[,.]?\s*)+", re.I)
_ASKS = re.compile(
    r"^(?:how|what|what's|whats|why|when|where|which|who|whom|whose|"
    r"(?:can|could|would|will|do|did|does|have|has|had|are|were|is|was|should|shall)\s+(?:you|we|i|there|it)|"
    r"tell (?:me|us)|describe|walk (?:me|us) through|talk (?:me|us) through|talk (?:to me|to us) about|explain|"
    r"give (?:me|us)|share|let's talk about|lets talk about|let us talk about|i'd (?:like|love) to (?:hear|know)|"
    r"i (?:want|wanted) to (?:ask|hear|know)|next question|moving on to|any thoughts on)\b",
    re.I,
)
_FOLLOWUP = re.compile(
    r"\b(?:(?:say|tell me|talk|speak) (?:a (?:bit|little) )?more|elaborate|expand on|go (?:a bit |a little )?deeper|"
    r"dig into (?:that|this)|what do you mean|can you clarify|how so|why is that|like what|such as|go on|"
    r"and then what|what happened (?:next|then|after)|anything else|what else|for (?:example|instance)\?)",
    re.I,
)
_SMALL_TALK = re.compile(
    r"^(?:hi|hey|hello|good (?:morning|afternoon|evening))\b|\bhow (?:are|r) (?:you|things)\b|"
    r"\bhow(?:'s| is| was) (?:your|the) (?:day|week|weekend|morning|afternoon|evening|weather|trip|commute)\b|"
    r"\b(?:hear|see) me\b|\bmy screen\b|\bon mute\b|\b(?:cut|cutting|broke|breaking) (?:out|up)\b|"
    r"\b(?:repeat|say) that(?: again)?\b|\bready to (?:get started|start|begin)\b|\bquick break\b|\bweather\b|"
    r"\bwhere are you (?:based|located|calling from|dialing in from)\b|"
    r"\bfind (?:us|the (?:place|building|office|link))\b",
    re.I,
)
_CLOSING = re.compile(
    r"\bquestions? for (?:me|us)\b|\b(?:anything|questions?) (?:else )?(?:that )?you(?:'d| would) like to ask\b|"
    r"\bthanks? (?:you )?(?:so much |very much )?for (?:your time|joining|coming|talking)\b|\bbe in touch\b|"
    r"\b(?:salary|compensation) expectations\b|\bwhen (?:could|can|would) you (?:be able to )?start\b|"
    r"\bnotice period\b|\bthat's (?:all|everything) (?:from me|i had|we have)\b|\bwrap (?:it |things )?up\b|"
    r"\bnext steps\b",
    re.I,
)
_CONNECTIVE = re.compile(r"^(?:and|but|also|plus)\b", re.I)
_BACKCHANNEL_WORDS = frozenset(
    "mm hmm mhm mm-hmm uh-huh uh um yeah yes yep yup ok okay right sure got it i see cool great nice alright "
    "interesting gotcha sounds good makes sense thanks thank you perfect totally exactly understood".split()
)
_WORD = re.compile(r"[\w'-]+")


def strip_fillers(text: str) -> str:
    """Text without um/uh/you know and without stuttered repeats ("the the")."""
    text = _FILLER.sub("", text)
    text = re.sub(r"\b(\w+)(?:[\s,]+\1\b)+", r"\1", text, flags=re.I)
    return " ".join(text.split()).strip(" ,")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def asks(sentence: str) -> bool:
    """A sentence that asks something: a question mark, or a question or prompt opening (ASR often drops '?')."""
    cleaned = _OPENER.sub("", strip_fillers(sentence))
    return sentence.rstrip().endswith("?") or bool(_ASKS.match(cleaned))


def question_sentences(text: str) -> list[str]:
    return [s for s in sentences(text) if asks(s) and not _chat(s)]


def asked_text(text: str) -> str:
    """What an interviewer run asks, with its context ("Say queries get slow. How would you speed them
    up?"), small talk left out; "" when it asks nothing."""
    if not question_sentences(text):
        return ""
    return " ".join(s for s in sentences(text) if not _chat(s))


def is_backchannel(text: str) -> bool:
    """ "Mm-hmm.", "Right, okay.", "Got it": listening noises, not content."""
    found = [w.lower() for w in _WORD.findall(text)]
    return 0 < len(found) <= 4 and all(w in _BACKCHANNEL_WORDS for w in found)


def word_count(text: str) -> int:
    return len(_WORD.findall(strip_fillers(text)))


# --- roles ------------------------------------------------------------------------------------------

_INTERVIEWER_LABEL = re.compile(r"^(?:interviewer|recruiter|hiring manager|host|q|question)\b", re.I)
_CANDIDATE_LABEL = re.compile(r"^(?:candidate|interviewee|applicant|a|answer)\b", re.I)


@dataclass(frozen=True)
class Roles:
    interviewers: frozenset[str]
    candidate: str
    detected: bool = True  # False when both came from the command line

    def is_interviewer(self, speaker: str) -> bool:
        return speaker in self.interviewers


def detect_roles(transcript: Transcript, *, interviewers: Sequence[str] = (), candidate: str | None = None) -> Roles:
    """Who interviews and who is the candidate: names given on the command line, else role labels
    ("Interviewer", "Candidate"), else the speaker who asks the most questions interviews and, of the
    others, the one who says the most is the candidate. Other speakers count as interviewers."""
    speakers = transcript.speakers
    by_key = {s.casefold(): s for s in speakers}

    def resolve(name: str, role: str) -> str:
        found = by_key.get(" ".join(name.split()).casefold())
        if found is None:
            raise TranscriptError(
                f"{transcript.source}: no speaker called {name!r} (the {role}); speakers: {', '.join(speakers)}"
            )
        return found

    given = {resolve(n, "interviewer") for n in interviewers}
    chosen = resolve(candidate, "candidate") if candidate else None
    if chosen is not None and chosen in given:
        raise TranscriptError(f"{transcript.source}: {chosen!r} cannot be both the interviewer and the candidate")
    if chosen is not None:
        return Roles(frozenset(s for s in speakers if s != chosen), chosen, detected=not given)
    questions = {s: 0 for s in speakers}
    words = {s: 0 for s in speakers}
    for turn in transcript.turns:
        questions[turn.speaker] += sum(asks(x) for x in sentences(turn.text))
        words[turn.speaker] += word_count(turn.text)
    if not given:
        labelled = [s for s in speakers if _INTERVIEWER_LABEL.match(s)]
        given = set(labelled) or {max(speakers, key=lambda s: (questions[s], -speakers.index(s)))}
    rest = [s for s in speakers if s not in given]
    if not rest:
        raise TranscriptError(
            f"{transcript.source}: every speaker is an interviewer; name the candidate with --candidate"
        )
    labelled_candidates = [s for s in rest if _CANDIDATE_LABEL.match(s)]
    chosen = labelled_candidates[0] if labelled_candidates else max(rest, key=lambda s: (words[s], -speakers.index(s)))
    return Roles(frozenset(s for s in speakers if s != chosen), chosen)


# --- exchanges --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """Where one candidate turn sits in an exchange's answer text."""

    turn: int  # index into the transcript's turns
    start: int
    end: int


@dataclass
class Exchange:
    """One question and everything said about it until the next rubric question."""

    opening: list[int]  # the interviewer turns that ask the question (a split question has several)
    asked: str = ""  # the opening without its small talk: what the matcher compares
    turns: list[int] = field(default_factory=list)  # every turn of the exchange, in order
    answer: list[int] = field(default_factory=list)  # candidate turns that are graded
    followups: list[int] = field(default_factory=list)  # interviewer follow-up questions
    clarifications: list[int] = field(default_factory=list)  # the candidate's clarifying questions
    question_id: str | None = None  # set by the matcher

    def question_text(self, turns: Sequence[Turn]) -> str:
        return " ".join(turns[i].text for i in self.opening)

    def answer_text(self, turns: Sequence[Turn]) -> tuple[str, list[Piece]]:
        """The candidate's graded text (follow-up answers included) and where each turn sits in it."""
        parts: list[str] = []
        pieces: list[Piece] = []
        cursor = 0
        for i in self.answer:
            text = turns[i].text
            if parts:
                cursor += 1  # the joining space
            pieces.append(Piece(i, cursor, cursor + len(text)))
            parts.append(text)
            cursor += len(text)
        return " ".join(parts), pieces

    def asked_at(self, turns: Sequence[Turn]) -> float | None:
        return turns[self.opening[0]].start


@dataclass
class Segmentation:
    exchanges: list[Exchange]
    skipped: list[int]  # small talk and turns outside any exchange


#: Given the question texts of a transcript, the rubric question id each matches (or None).
MatchFn = Callable[[Sequence[str]], Sequence[str | None]]


@dataclass
class _Block:
    interviewer: bool
    turns: list[int]


def _blocks(turns: Sequence[Turn], roles: Roles) -> list[_Block]:
    """Runs of one side. A backchannel from the other side ("mm-hmm") does not break a run, so a question
    split by one is still one question."""
    blocks: list[_Block] = []
    for i, turn in enumerate(turns):
        side = roles.is_interviewer(turn.speaker)
        if blocks and blocks[-1].interviewer == side:
            blocks[-1].turns.append(i)
        elif (
            blocks
            and is_backchannel(turn.text)
            and i + 1 < len(turns)
            and (roles.is_interviewer(turns[i + 1].speaker) == blocks[-1].interviewer)
        ):
            blocks[-1].turns.append(i)
        else:
            blocks.append(_Block(side, [i]))
    return blocks


def segment(transcript: Transcript, roles: Roles, *, match: MatchFn | None = None) -> Segmentation:
    turns = transcript.turns
    blocks = _blocks(turns, roles)
    # Every interviewer run that asks something: the turns that ask it, and its text for matching.
    openings: dict[int, list[int]] = {}
    asking: dict[int, str] = {}
    for b, block in enumerate(blocks):
        if block.interviewer:
            own = _opening([i for i in block.turns if roles.is_interviewer(turns[i].speaker)], turns)
            asked = asked_text(" ".join(turns[i].text for i in own))
            if asked:
                openings[b], asking[b] = own, asked
    matched: dict[int, str | None] = {}
    if match is not None and asking:
        keys = list(asking)
        matched = dict(zip(keys, match([asking[k] for k in keys]), strict=True))

    exchanges: list[Exchange] = []
    skipped: list[int] = []
    current: Exchange | None = None
    for b, block in enumerate(blocks):
        if not block.interviewer:
            if current is None:
                skipped += block.turns
                continue
            current.turns += block.turns
            for i in block.turns:
                text = turns[i].text
                if roles.is_interviewer(turns[i].speaker) or is_backchannel(text):
                    continue
                if text.rstrip().endswith("?") and word_count(text) <= CLARIFY_MAX_WORDS:
                    current.clarifications.append(i)
                else:
                    current.answer.append(i)
            continue
        text = " ".join(turns[i].text for i in block.turns)
        if b not in asking:
            closing = any(_CLOSING.search(s) for s in sentences(text))
            if current is not None and not closing:
                current.turns += block.turns  # a remark, or the answer to a clarifying question
            else:
                skipped += block.turns
                current = None if closing else current
            continue
        question = asking[b]
        if current is not None and _is_followup(question, current, matched.get(b), match is not None):
            current.turns += block.turns
            current.followups += [i for i in block.turns if roles.is_interviewer(turns[i].speaker)]
            continue
        own = openings[b]
        start = block.turns.index(own[0])
        skipped += block.turns[:start]
        current = Exchange(opening=own, asked=question, turns=block.turns[start:], question_id=matched.get(b))
        exchanges.append(current)
    return Segmentation(exchanges, skipped)


def _opening(own: list[int], turns: Sequence[Turn]) -> list[int]:
    """Leading turns that ask nothing and are small talk ("Can you hear me?") or another interviewer's
    aside ("I'm Marco, I'll mostly listen") are not part of the question."""
    asker = turns[own[-1]].speaker
    while (
        len(own) > 1
        and not question_sentences(turns[own[0]].text)
        and (_chat(turns[own[0]].text) or turns[own[0]].speaker != asker)
    ):
        own = own[1:]
    return own


def _chat(text: str) -> bool:
    """Greetings, logistics or closing chat."""
    return any(_SMALL_TALK.search(s) or _CLOSING.search(s) for s in sentences(text))


def _is_followup(question: str, current: Exchange, question_id: str | None, matching: bool) -> bool:
    if _FOLLOWUP.search(question):
        return True
    short = word_count(question) <= FOLLOWUP_MAX_WORDS
    if short and _CONNECTIVE.match(strip_fillers(question)):
        return True  # "And how did you handle breaking changes?" carries on the same topic
    if matching and question_id is not None:
        return question_id == current.question_id  # another rubric question opens its own exchange
    return short
