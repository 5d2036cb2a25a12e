"""Who asks and who answers, and the question -> answer exchanges of an interview.

An interviewer turn that asks something opens an exchange; the candidate's turns, and the interviewer's
follow-ups ("can you say more about X?"), belong to it until the next question. Every interviewer
question ends up in exactly one place: a rubric question (matched by `match`), an unmatched question
(its own exchange, listed, not graded), a follow-up of the exchange it refers back to, or small talk
(greetings, logistics, personal chat and closing questions: listed, never graded). A question that is
none of the first three is never folded into the exchange above it: when in doubt it stands alone.

ASR noise is expected: filler words, questions split over two turns (with a "mm-hmm" between them),
missing question marks and capitals, a question after a preamble in one run-on sentence ("got it ok so
moving on how would you..."), a candidate asking a clarifying question, an answer running over many cues.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from grader.errors import TranscriptError
from grader.transcripts.parse import Transcript, Turn

#: An unmatched interviewer question of at most this many words (fillers aside) may be a follow-up.
FOLLOWUP_MAX_WORDS = 14
#: A candidate question of at most this many words is a clarifying question, not part of the answer.
CLARIFY_MAX_WORDS = 25

# --- wording --------------------------------------------------------------------------------------

_FILLER = re.compile(r"\b(?:u+m+|u+h+|e+r+m*|a+h+|h+m+|m+h*m+|mhm|uh-huh|mm-hmm|you know|i mean)\b[,.]?\s*", re.I)
_SENTENCE = re.compile(r"[^.?!]+[.?!]*")
# Acknowledgements and transitions an interviewer puts before a question ("Nice. Last one: ...").
_OPENER = re.compile(
    r"^(?:(?:so|okay|ok|alright|all right|right|and|well|now|great|cool|next|then|nice|perfect|awesome|"
    r"excellent|lovely|good|sure|yeah|yes|thanks|thank you|got it|gotcha|makes sense|sounds good|interesting|"
    r"anyway|moving on|(?:last|final|next|first|quick) (?:one|question)|one more(?: thing| question)?|"
    r"switching gears)\b[,.:]?\s*)+",
    re.I,
)
_ASKS = re.compile(
    r"^(?:how|what|what's|whats|why|when|where|which|who|whom|whose|"
    r"(?:can|could|would|will|do|did|does|have|has|had|are|were|is|was|should|shall)\s+(?:you|we|i|there|it)|"
    r"tell (?:me|us)|describe|walk (?:me|us) through|talk (?:me|us) through|talk (?:to me|to us) about|explain|"
    r"give (?:me|us)|share|let's talk about|lets talk about|let us talk about|i'd (?:like|love) to (?:hear|know)|"
    r"i (?:want|wanted) to (?:ask|hear|know)|next question|moving on to|any thoughts on|"
    r"anything else|what else|go on|say more|elaborate|expand on)\b",
    re.I,
)
# Where a question starts inside a run-on sentence: a strong question or prompt opening (not after a
# question word, so "how do you" stays whole), or a transition. ASR text has no other boundaries.
_CLAUSE_BREAK = re.compile(
    r"(?<=[:;])\s+|(?<=\w)(?<!\bhow)(?<!\bwhat)(?<!\bwhy)(?<!\bwhen)(?<!\bwhere)(?<!\bwhich)(?<!\bso)(?<!\band)"
    r",?\s+(?=(?:tell (?:me|us)|walk (?:me|us) through|talk (?:me|us) through|"
    r"how (?:do|did|would|will|have|can|could|should|does) you|"
    r"what (?:do|did|would|will|are|were|does) you|what (?:is|was|are|were) your|what'?s your|why did you|"
    r"(?:can|could|would) you (?:tell|walk|talk|describe|explain|give|share|say)|have you (?:ever )?\w+ed|"
    r"do you have|i'?d (?:like|love) to (?:hear|know)|let'?s talk about|moving on|switching gears|"
    r"(?:last|final|next|first|quick) (?:one|question)|one more (?:thing|question))\b)",
    re.I,
)
# A change of question: whatever follows opens a new exchange, never a follow-up.
_TRANSITION = re.compile(
    r"\b(?:(?:last|final|next|first) (?:one|question)|one more (?:thing|question)|moving on|move on|"
    r"switching gears|switch gears|(?:a )?(?:different|new) topic|going back to|back to (?:the|your) \w+ question)\b",
    re.I,
)
_FOLLOWUP = re.compile(
    r"\b(?:(?:say|tell me|talk|speak) (?:a (?:bit|little) )?more|elaborate|expand on|go (?:a bit |a little )?deeper|"
    r"dig into (?:that|this)|what do you mean|can you clarify|how so|why is that|go on|"
    r"and then what|what happened (?:next|then|after)|anything else|what else|do (?:it |that )?differently|"
    r"in hindsight|looking back|(?:give|share) (?:me |us )?(?:an|a concrete|a specific|one) example|"
    r"how did (?:that|it) (?:go|turn out|work out|end)|what was the (?:result|outcome|impact))\b|"
    r"(?:such as|like what|for (?:example|instance))\W*$",
    re.I,
)
# Small talk whose reply is chat, not an answer: the candidate's reply to it is skipped.
_SOCIAL = re.compile(
    r"^(?:hi|hey|hello|good (?:morning|afternoon|evening))\b|\bhow (?:are|r) (?:you|things)\b|"
    r"\bhow(?:'s| is| was|s) (?:your|the) (?:day|week|weekend|morning|afternoon|evening|weather|trip|commute|"
    r"journey|flight|holiday|vacation)\b|\bweather\b|"
    r"\bwhere are you (?:based|located|calling from|dialing in from|from)\b|\bwhere(?:'s| is) home\b|"
    r"\b(?:grow|grew) up\b|\boriginally from\b|\bhome ?town\b|\btime ?zone\b|"
    r"\b(?:holiday|vacation|weekend) plans\b|\bplans for the (?:weekend|holidays?|summer)\b|"
    r"\bfor fun\b|\b(?:free|spare) time\b|\bhobb(?:y|ies)\b|\bdo you play\b|"
    r"\bfind (?:us|the (?:place|building|office|link))\b",
    re.I,
)
# Logistics: the candidate's next words are still the answer ("sorry, you cut out, could you repeat that?").
_LOGISTICS = re.compile(
    r"\b(?:hear|see) (?:me|us)\b|\bmy screen\b|\bon mute\b|\b(?:cut|cutting|broke|breaking) (?:out|up)\b|"
    r"\b(?:repeat|say) (?:that|the last (?:part|bit))(?: again)?\b|\bready to (?:get started|start|begin)\b|"
    r"\bquick break\b|\bstill there\b|\blost you\b|\byou froze\b|\b(?:now|this|it) (?:still )?a good time\b|"
    r"\bhard stop\b|\bshare your screen\b|\bok(?:ay)? if (?:i|we) record\b",
    re.I,
)
_CLOSING = re.compile(
    r"\bquestions? for (?:me|us)\b|\b(?:anything|questions?) (?:else )?(?:that )?you(?:'d| would) like to ask\b|"
    r"\bany (?:other |more |final |last )?questions\b|"
    r"\bthanks? (?:you )?(?:so much |very much )?for (?:your time|joining|coming|talking)\b|\bbe in touch\b|"
    r"\b(?:salary|compensation) expectations\b|\bwhen (?:could|can|would) you (?:be able to )?start\b|"
    r"\bnotice period\b|\bthat'?s (?:all|everything|it|time)\b(?: (?:from me|i had|we have|for today))?|"
    r"\bwrap (?:it |things )?up\b|\bnext steps\b",
    re.I,
)
# Small talk that asks even without a question mark or a question opening ("hi jon how are you doing").
_CHAT_ASKS = re.compile(
    r"\b(?:how(?:'s| is| was| are| r|s) (?:you|your|things|the)|(?:can|could) you (?:hear|see)|"
    r"are you (?:still )?there|is (?:now|this|it) (?:still )?a good time|"
    r"any (?:other |more |final |last )?questions)\b",
    re.I,
)
# "And how did you...", also after an acknowledgement ("ok and what do you look for in a review").
_CONNECTIVE = re.compile(
    r"^(?:(?:ok|okay|so|right|got it|great|cool|nice|alright|well)\b[,.]?\s*)*(?:and|but|also|plus)\b", re.I
)
# Acknowledgements, whose "it" or "that" points at nothing.
_ACKNOWLEDGED = re.compile(r"\b(?:got it|i see|that makes sense|that's (?:great|good|fair|interesting))\b[,.!]?", re.I)
# Words that point back at what was just said.
_ANAPHORA = re.compile(r"\b(?:that|this|it|those|these|them|there|you mentioned|you said|earlier)\b", re.I)
_BACKCHANNEL_WORDS = frozenset(
    "mm hmm mhm mm-hmm uh-huh uh um yeah yes yep yup ok okay right sure got it i see cool great nice alright "
    "interesting gotcha sounds good makes sense thanks thank you perfect totally exactly understood".split()
)
# A leading turn made only of these asks nothing and says nothing: it is not part of the question.
_PLEASANTRY_WORDS = _BACKCHANNEL_WORDS | frozenset(
    "good well doing fine glad to hear that too pretty not bad same here ha haha lovely welcome "
    "can heard loud and clear now back".split()  # "I heard it fine", "I can hear you now": a reply to logistics
)
# Words too common in interviews to show that a question refers back to the answer.
_COMMON = frozenset(
    """what when where which while whom whose with would could should about your yours yourself have having been
    were does doing done from into like just really some something anything everything thing things time times
    tell know think make made going good great okay yeah well also much many more most very other others here
    there they them their then than that this these those kind sort each every ever even only over after before
    again still same right sure want need said says mean able usually always never maybe probably actually
    basically next last first quick question questions thanks thank talk walk give example approach handle
    team teams work working worked people someone using used ways year years back little bit""".split()
)
_WORD = re.compile(r"[\w'-]+")


def strip_fillers(text: str) -> str:
    """Text without um/uh/you know and without stuttered repeats ("the the")."""
    text = _FILLER.sub("", text)
    text = re.sub(r"\b(\w+)(?:[\s,]+\1\b)+", r"\1", text, flags=re.I)
    return " ".join(text.split()).strip(" ,")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def clauses(text: str) -> list[str]:
    """Sentences, each cut where a question, prompt or transition starts inside it ("great so lets get
    started how do you..." is two): ASR output is often one sentence a turn."""
    out: list[str] = []
    for sentence in sentences(text):
        start = 0
        for cut in _CLAUSE_BREAK.finditer(sentence):
            piece = sentence[start : cut.start()].strip(" ,")
            if piece:
                out.append(piece)
            start = cut.end()
        if sentence[start:].strip(" ,"):
            out.append(sentence[start:].strip(" ,"))
    return out


def asks(sentence: str) -> bool:
    """A clause that asks something: a question mark, or a question or prompt opening (ASR often drops '?')."""
    cleaned = _OPENER.sub("", strip_fillers(sentence))
    return sentence.rstrip().endswith("?") or bool(_ASKS.match(cleaned))


def question_sentences(text: str) -> list[str]:
    """The clauses that ask something and are not small talk."""
    return [s for s in clauses(text) if asks(s) and not _chat(s)]


def small_talk_questions(text: str) -> list[str]:
    """The clauses that ask something and are small talk, logistics or closing chat; a logistics request
    is one even when it has no question form ("sorry you broke up there")."""
    return [s for s in clauses(text) if _chat(s) and (asks(s) or _CHAT_ASKS.search(s) or _LOGISTICS.search(s))]


def asked_text(text: str) -> str:
    """What an interviewer run asks, with its context ("Say queries get slow. How would you speed them
    up?"), small talk left out; "" when it asks nothing. A transition with a topic ("Moving on. Scaling.")
    asks too."""
    kept = [s for s in clauses(text) if not _chat(s)]
    if not any(asks(s) for s in kept) and not (
        _TRANSITION.search(text) and _stems(_TRANSITION.sub("", " ".join(kept)))
    ):
        return ""
    return " ".join(kept)


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
    others, the one who says the most in turns that ask nothing is the candidate. Other speakers count as
    interviewers. Questions from the closing "any questions for us?" on are not counted: there the
    candidate asks."""
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
    closing = False
    for turn in transcript.turns:
        asked = sum(asks(x) for x in sentences(turn.text))
        # From "any questions for us?" on, the candidate asks: their questions say nothing about who interviews.
        if not closing:
            questions[turn.speaker] += asked
            closing = any(_CLOSING.search(c) for c in clauses(turn.text)) and asked > 0
        if not asked:  # what answers: a panelist's long question, or the candidate's own questions, do not
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
    """One question and everything said about it until the next question."""

    opening: list[int]  # the interviewer turns that ask the question (a split question has several)
    asked: str = ""  # the opening without its small talk: what the matcher compares
    turns: list[int] = field(default_factory=list)  # every turn of the exchange, in order
    answer: list[int] = field(default_factory=list)  # candidate turns that are graded
    followups: list[int] = field(default_factory=list)  # interviewer follow-up questions
    clarifications: list[int] = field(default_factory=list)  # the candidate's clarifying questions
    question_id: str | None = None  # set by the matcher
    reasked: list[int] = field(default_factory=list)  # openings of later exchanges on the same question
    together: list[str] = field(default_factory=list)  # rubric questions asked in the same breath, one answer

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
class Aside:
    """An interviewer question that is small talk, logistics or closing chat ("Where did you grow up?",
    "Can you hear me?", "Any questions for me?"): listed, never graded."""

    turn: int
    text: str  # the question itself, not the rest of the turn
    replies: list[int] = field(default_factory=list)  # the candidate's turns after it, skipped


@dataclass
class Segmentation:
    exchanges: list[Exchange]
    skipped: list[int]  # small talk and turns outside any exchange
    small_talk: list[Aside] = field(default_factory=list)


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
    """The exchanges of an interview, its small talk, and the turns outside both.

    Given `match` (the rubric matcher), a short question that matches another rubric question opens a
    new exchange instead of being taken for a follow-up; without it, wording alone decides.
    """
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
    # Two rubric questions asked at once ("How do you handle disagreements? And how do you mentor juniors?"),
    # or in two turns in a row: each is a question of its own, answered by the same reply.
    together: dict[int, list[tuple[str, str]]] = {}  # block -> (question id, the clause that asks it), in order
    if match is not None:
        asked_clauses = {b: [c for c in clauses(text) if asks(c)] for b, text in asking.items()}
        pairs = [(b, c) for b, cs in asked_clauses.items() if len(cs) >= 2 for c in cs]
        if pairs:
            for (b, clause), qid in zip(pairs, match([c for _, c in pairs]), strict=True):
                if qid is not None and qid not in [q for q, _ in together.get(b, [])]:
                    together.setdefault(b, []).append((qid, clause))
            together = {b: found for b, found in together.items() if len(found) >= 2}

    exchanges: list[Exchange] = []
    skipped: list[int] = []
    small_talk: list[Aside] = []
    asked_with: dict[int, list[tuple[str, str]]] = {}  # id() of an exchange -> the other questions asked with it
    current: Exchange | None = None
    chatting = False  # after small talk: the candidate's reply is chat, not part of the answer
    reply_to: Aside | None = None  # the small talk question that reply answers
    for b, block in enumerate(blocks):
        if not block.interviewer:
            if current is None or chatting:
                skipped += block.turns
                if reply_to is not None:
                    reply_to.replies += [i for i in block.turns if not roles.is_interviewer(turns[i].speaker)]
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
        own = [i for i in block.turns if roles.is_interviewer(turns[i].speaker)]
        asides = [Aside(i, q) for i in own for q in small_talk_questions(turns[i].text)]
        small_talk += asides
        text = " ".join(turns[i].text for i in block.turns)
        if b not in asking:
            if any(_CLOSING.search(c) for c in clauses(text)):
                skipped += block.turns  # closing chat: nothing after it is an answer
                current, chatting, reply_to = None, True, (asides[-1] if asides else None)
            elif asides and (current is None or any(_SOCIAL.search(a.text) for a in asides)):
                skipped += block.turns  # small talk: the candidate's reply is chat too
                chatting, reply_to = True, asides[-1]
            elif current is not None and not chatting:
                current.turns += block.turns  # a remark, a logistics question, the answer to a clarifying question
            else:
                skipped += block.turns
            continue
        question = asking[b]
        if current is not None and _is_followup(question, current, matched.get(b), match is not None, turns):
            current.turns += block.turns
            current.followups += own
            chatting, reply_to = False, None
            continue
        start = block.turns.index(openings[b][0])
        skipped += block.turns[:start]
        current = Exchange(opening=openings[b], asked=question, turns=block.turns[start:], question_id=matched.get(b))
        if b in together:
            ids = [q for q, _ in together[b]]
            if current.question_id not in ids:  # the whole text matched none of them: the first clause's
                current.question_id, current.asked = together[b][0]
            current.together = [q for q in ids if q != current.question_id]
            asked_with[id(current)] = [(q, c) for q, c in together[b] if q != current.question_id]
        exchanges.append(current)
        chatting, reply_to = False, None
    return Segmentation(_with_companions(exchanges, asked_with), skipped, small_talk)


def _with_companions(exchanges: list[Exchange], asked_with: dict[int, list[tuple[str, str]]]) -> list[Exchange]:
    """Each exchange followed by one for every other rubric question asked with it, answered by its reply."""
    out: list[Exchange] = []
    for ex in exchanges:
        out.append(ex)
        for qid, clause in asked_with.get(id(ex), []):
            out.append(
                Exchange(
                    opening=list(ex.opening),
                    asked=clause,
                    turns=list(ex.turns),
                    answer=list(ex.answer),
                    followups=list(ex.followups),
                    clarifications=list(ex.clarifications),
                    question_id=qid,
                    together=[q for q in [ex.question_id, *ex.together] if q is not None and q != qid],
                )
            )
    return out


def _opening(own: list[int], turns: Sequence[Turn]) -> list[int]:
    """Leading turns that ask nothing and are small talk ("Can you hear me?"), pleasantries ("Doing well,
    thanks") or another interviewer's aside ("I'm Marco, I'll mostly listen") are not part of the question."""
    asker = turns[own[-1]].speaker
    while (
        len(own) > 1
        and not question_sentences(turns[own[0]].text)
        and (_chat(turns[own[0]].text) or _pleasantry(turns[own[0]].text) or turns[own[0]].speaker != asker)
    ):
        own = own[1:]
    return own


def _chat(text: str) -> bool:
    """Greetings, logistics, personal small talk or closing chat."""
    return any(_SOCIAL.search(s) or _LOGISTICS.search(s) or _CLOSING.search(s) for s in clauses(text))


def _pleasantry(text: str) -> bool:
    found = [w.lower() for w in _WORD.findall(text)]
    return 0 < len(found) <= 6 and all(w in _PLEASANTRY_WORDS for w in found)


def _stems(text: str) -> set[str]:
    """The content words of a text, cut to five letters ("deployed" and "deploy" meet)."""
    return {w[:5] for w in (x.lower() for x in _WORD.findall(text)) if len(w) >= 4 and w not in _COMMON}


def _is_followup(
    question: str, current: Exchange, question_id: str | None, matching: bool, turns: Sequence[Turn]
) -> bool:
    """Whether an interviewer question carries on the current exchange. A transition ("last one:",
    "moving on") never does; a short explicit follow-up ("can you say more") always does; another
    rubric question never does; otherwise only a short question that refers back to what was said ("how long
    did that take?", or a word of the answer: "which dashboards?") does. Anything else opens an
    exchange of its own, so that its answer is never merged into the current one."""
    if _TRANSITION.search(question):
        return False
    short = word_count(question) <= FOLLOWUP_MAX_WORDS
    if _FOLLOWUP.search(question) and short:
        return True
    if matching and question_id is not None:
        return question_id == current.question_id  # another rubric question opens its own exchange
    if not short:
        return False
    if _CONNECTIVE.match(strip_fillers(question)):
        return True  # "And how did you handle breaking changes?" carries on the same topic
    # What it says beyond "Got it. Okay so": an acknowledgement's "it" points at nothing.
    own = " ".join(_OPENER.sub("", c) for c in clauses(_ACKNOWLEDGED.sub("", question)))
    if _ANAPHORA.search(own):
        return True
    said = " ".join([current.asked, *(turns[i].text for i in current.answer + current.followups)])
    return bool(_stems(own) & _stems(said))
