"""Offline drafting by contrast: key points are what the great reference says that the mediocre and poor
ones do not; red flags are what the poor reference does that the great one does not.

1. Each reference is cut into claims: sentences (a line that goes on in lower case after one with no
   stop is the same sentence, wrapped), and clauses joined by `;`, a dash, `, and then`,
   `, while`, `, but`... (a list such as "logs, error messages, and recent deployments" stays whole).
   A clause that opens with the speaker ("I ...", "We ...", after a short lead such as "For
   authorization,") is cut again where they go on to a second act: "I follow the principle of least
   privilege and implement role-based access controls" is two claims (a verb after "and" from `_VERBS`,
   or one the reference puts after "I" or "we"; not after an infinitive, "to share knowledge and
   maintain...", nor where either side would be too short). Before an unspaced dash that the speaker
   follows ("Testing is crucial—I write unit tests..."), a claim is cut too. A reference pasted from a
   document is read as an answer would say it: list markers ("●", "○", "▪", "2)") are no words (and a
   list item of two content words is a claim, "● Discovery of topology"), a score the bank gives a claim
   ("(0.25)", "(2 points)") is dropped, and so is a note to whoever grades ("Note: an answer that only
   names..."). A line ending in a colon opens a list ("The controller's tasks are:"): what the list says
   is the point, so that line, like a scene (6), only tops up the minimum, and is no red flag.
2. Each claim of the great reference is scored by how far it is from the weaker references: one minus
   its highest cosine (the packaged MiniLM embedder) to any of their claims, plus the share of its
   content words they never use. The most distinct claims become key points (3 to 10), in the order the
   reference makes them, none a near-copy of another.
3. A point's text is the claim made checkable and short: first person turned into a description
   ("I try to reproduce the issue..." -> "Tries to reproduce the issue...", and "...and check the
   server" -> "...and checks the server"), trailing asides cut at
   `while`, `since`, `because`, `if possible`... to at most `MAX_WORDS` words, ending where a phrase ends
   ("...identified a connection pool issue", not "...issue where they"). A claim too long for the
   limit loses its occasion rather than its act ("If there are delays from other teams, I escalate to..."
   -> "Escalates to..."; a scope, "For smaller teams,", stays), and is never cut down to a leading clause
   alone. "never", "only", "just"... stay ("I never skip review" -> "Never skips review"), and "don't"
   reads "doesn't". Its `quote` is the claim verbatim, so a reviewer sees where it came from.
4. Its id is `qNN.` plus two or three of its content words, the most distinctive first chosen and then
   kept in the order they are written: `q01.reproduce-controlled-environment`, not `q01.i-start-by`.
   The same references always give the same ids.
5. Red flags: the poor reference's claims farthest from the great one (and from the mediocre one),
   with a bonus for words that mark a shortcut ("rather than", "instead of", "just", "skip"...).
6. What a story answer says to set the scene is neither: a key point is not the situation the speaker
   was in ("We needed to select a message queue...", "I had incomplete requirements..."), and a red flag
   is something the speaker does or believes, said in the first person or as a shortcut, not what
   happened ("One of our services was throwing errors...", "The project was delivered on time"): such
   a flag would mark a great answer poor for telling the same kind of story. (Where the great reference
   does not speak in the first person in most of its claims, answers state facts, and a wrong statement
   is a red flag: that rule is for answers that tell what the speaker does.) A story question whose poor
   reference only tells what happened gets no red flag at all: none is better than one that marks a great
   answer poor. Where the question asks for a story ("Tell me about a time...", "Describe a problem you
   solved", `asks_for_a_story`), a reference's opening sentence sets its scene even with the speaker as
   its subject ("I shipped a change to our checkout service that...", "Last year I pushed an update on a
   Friday afternoon"): neither a key point nor, unless what it would say names a shortcut, a red flag
   (chosen on the stories-dev questions, `evals/stories/`).
7. Nor is a short claim that only says how much something matters ("Observability is essential in
   distributed systems", `frames`), or one that leans on the claim before it ("For the former, I push
   back more strongly"): such claims, like scenes, only top up the minimum of key points.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from grader.rubric.model import KeyPoint, Question, RedFlag, Rubric

MAX_WORDS = 16
KEY_POINTS = (3, 10)
RED_FLAGS = (1, 3)
#: A claim this close (cosine) to one already chosen is a repeat.
SAME = 0.82
#: Key points need at least this contrast unless fewer than the minimum would be left.
MIN_CONTRAST = 0.25
#: Red flags need at least this distance from the great reference.
MIN_FLAG_CONTRAST = 0.3

Embed = Callable[[Sequence[str]], np.ndarray]

#: A list item's marker, as a bank pasted from a document has them: "-", "•", "●", "○", "▪", "1.", "2)".
_BULLET = r"(?:[-*•●○◦▪▫■□‣⁃·]\s+|\d+[.)]\s+)"
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])|\s*\n+\s*")
#: A bank's note to whoever grades, not something an answer says: "Note: an answer that only names...".
_NOTE = re.compile(r"^\(?\s*(?:note|nb|n\.b\.|hint|grading note|marking note|grader'?s? note)\s*:", re.IGNORECASE)
#: The same as an aside in parentheses: "(Note: this is also possible with...)".
_NOTE_ASIDE = re.compile(r"\s*\(\s*(?:note|nb|n\.b\.)\s*:[^)]*\)?", re.IGNORECASE)
#: A score the bank gives a claim, at its end: "(0.25)", "(2 points)", "[1 mark]"; not a year, "(2019)".
_MARK = re.compile(
    r"\s*[(\[]\s*(?:\d+(?:[.,]\d+)?\s*(?:points?|pts?\.?|marks?|p)|\d{1,2}(?:[.,]\d+)?)\s*[)\]](?=[\s.,;:]*$)",
    re.IGNORECASE,
)
#: A line break inside a sentence (text pasted from a PDF or an e-mail): the line before ends without a
#: stop and the next goes on in lower case ("...act according to their flow\ntables and do not...").
_WRAPPED = re.compile(r"(?<![.!?:;\s])[ \t]*\n[ \t]*(?=[a-z])")
_CLAUSES = re.compile(
    r"\s*;\s+|\s+[—–]\s+|,\s+(?:and\s+)?then\s+|,\s+while\s+|,\s+but\s+|,\s+and\s+(?=(?:afterwards\s+|later\s+|finally\s+)?(?:I|we|We)\s)"
    # "Testing is crucial—I write...": the framing before an unspaced dash is no claim, the speaker's act is
    r"|[—–](?=(?:I|[Ww]e)[\s'’])"
)
#: The speaker's verbs that a reference goes on with after "and": "I follow least privilege and implement
#: role-based access controls" is two claims. Those the reference itself puts after "I" or "we" count too.
_VERBS = frozenset(
    """add adopt advocate analyse analyze apply ask automate avoid choose clean communicate conduct configure
    consider create debug define deploy document encourage enforce ensure escalate establish explain follow
    gather identify implement improve introduce investigate keep maintain make measure monitor optimise
    optimize prefer prioritize propose refactor reproduce restate review suggest try use validate verify
    write""".split()
)  # not "design", "build", "run", "set", "start", "track", "share", "push": "and design documents" is a noun
_LEAD = re.compile(
    r"^(?:first(?:ly)?|second(?:ly)?|then|next|finally|also|additionally|in addition|moreover|and|so|"
    r"for example|for instance|once resolved|after that|afterwards|later|beyond that|overall)\b[,:]?\s*",
    re.IGNORECASE,
)
_ASIDES = re.compile(
    # "while", not "for a while" ("If it locks the table for a while, ..." was cut to "...for a")
    r"\s*(?:,\s*)?\b(?:(?<!\b[Aa] )while|since|because|so that|which|if possible|as well as|as needed|"
    r"whenever possible|that might|that may|in order to|rather than|so (?:we|they|I) can)\b"
)
_FLAG_CUES = re.compile(
    r"\b(rather than|instead of|just|only|skip|don'?t|do not|never|no need|usually|quick(?:ly)?|"
    r"whatever|mostly|most of the time|later|if there is time|not really|honestly)\b",
    re.IGNORECASE,
)
STOP = frozenset(
    """a about above after again against all also always am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either etc even ever every
    few for from further get gets getting got had has have having he her here hers him his how i i'd i'll
    i'm i've if in into is it it's its itself just let like make makes making many may me might more most
    much must my myself need needs never no nor not now of off often on once one only or other our ours
    out over own per quite rather really same she should so some such than that the their them then there
    these they this those through thus to too try tries trying under until up upon us use used uses using
    usually very was we well were what when where whether which while who whom why will with within
    without would yet you your yours""".split()
)
#: A claim that sets the scene: the speaker's situation, not what they did ("We needed to...", "I had no
#: figures...", "We were seeing timeouts..."). Read narrowly: a claim this misses stays a candidate point,
#: while one it wrongly took would lose a point. Not: "we were able to" (a result), "I was careful to",
#: "I had to roll back", "I had already set up", "I had the team write" (things done).
_SETTING = re.compile(
    r"^(?:[^,]{0,40},\s*)?(?:I|[Ww]e)(?:\s+(?:also|then|just|still|first))?\s+"
    r"(?:needed|faced|(?:were|was)(?!\s+(?:able|careful|responsible|going)\b)"
    r"|had(?!\s+(?:to|already|just|also)\b)(?!\s+(?:the|my|our|a)\s+\w+\s+(?!to\b|of\b|for\b|in\b|on\b)[a-z]+\b))\b"
)
#: A claim that frames the answer rather than says what is done: "Testing is crucial", "Observability is
#: essential in distributed systems", "I've learned that effective service communication is critical".
_FRAMING = re.compile(
    r"^(?:(?:I|[Ww]e)(?:['’]ve|\s+have)?\s+(?:learned|found|believe|think|feel|know)\s+(?:that\s+)?)?"
    r"(?!(?:I|[Ww]e)\b)[^,:;]*?\b(?:is|are)\s+"  # what is said to matter comes first, not the speaker's act
    r"(?:(?:often|also|equally|especially|absolutely|always|particularly|the|most)\s+)*"
    r"(?:crucial|critical|essential|important|key|vital|fundamental|paramount|challenging)\b"
)
FRAMING_MAX_WORDS = 12
#: A second thing done in the same claim: "We faced a choice and picked...", "..., so I cut scope".
_THEN_DID = re.compile(
    r",?\s+(?:so|and|then)\s+(?:I|we)\b"
    r"|\band\s+(?:then\s+)?[a-z]+ed\s+(?:the|a|an|it|them|our|my|their|this|that|to|on|with|up|out)\b"
)
#: The speaker in a claim: "I", "we", "me", "us" and their contractions ("I'd", "we're"); not "I/O".
_SPEAKER = re.compile(r"\b(?:I(?![/\w])|[Ww]e|me|us)\b")
#: A claim that goes on from a sentence the speaker began starts with a verb, not with these.
_NOT_A_VERB = frozenset(
    "the a an this that these those it its their there they he she his her our my some many most all each".split()
)
_IRREGULAR = {"have": "has", "do": "does", "go": "goes", "am": "is"}
_MODALS = frozenset("can could will would should might may must".split())
#: Past forms a story answer uses ("I had", "we chose"): kept as they are.
_PAST = frozenset(
    """had was were did made found built took went got chose led saw wrote ran began knew thought felt kept
    set put left spent brought sent told gave became met learned learnt""".split()
)
_ADVERBS = r"(?:(?:also|usually|always|often|typically|then|first|still|just|really|generally|normally|actually|"
_ADVERBS += r"sometimes|never|rarely|seldom|only|(?!(?:rely|apply|reply|supply|comply|fly)\b)[a-z]+ly)\s+)*"
#: Adverbs that change what a claim says, kept in its statement: "I never skip review" is not "Skips review".
_KEPT_ADVERBS = frozenset("never rarely seldom hardly barely only just mostly sometimes occasionally".split())
#: A verb and its negation: "don't" -> "doesn't"; "can't", "didn't", "won't" stay as they are.
_VERB = r"([a-z]+n['’]t|[a-z]+)"
_PRONOUNS = (
    (r"\bI'm\b", "they're"),
    (r"\bI've\b", "they've"),
    (r"\bI'd\b", "they'd"),
    (r"\bI'll\b", "they'll"),
    (r"\b(?:I|we)\b", "they"),
    (r"\b(?:my|our)\b", "their"),
    (r"\b(?:me|us)\b", "them"),
    (r"\b(?:myself|ourselves)\b", "themselves"),  # "they fixed it myself" was drafted
    (r"\b(?:mine|ours)\b", "theirs"),
    (r"\bthey was\b", "they were"),
    (r"\bthey wasn't\b", "they weren't"),
    (r"\bthey am\b", "they are"),
)


@dataclass(frozen=True)
class Drafted:
    """One drafted point: its statement, the reference words it came from, and its contrast score."""

    text: str
    quote: str
    name: str
    contrast: float


def sets_scene(claim: str) -> bool:
    """Whether a claim only says what situation the speaker was in (no key point)."""
    claim = claim.strip()
    return bool(_SETTING.match(claim)) and not _THEN_DID.search(claim)


def frames(claim: str) -> bool:
    """Whether a short claim only says how much something matters ("Testing is crucial"): no key point."""
    return len(claim.split()) <= FRAMING_MAX_WORDS and bool(_FRAMING.match(claim.strip()))


#: A claim that leans on the one before it: "others are contained...", "For the former, I push back...".
_LEANS_BACK = re.compile(r"^(?:(?:[Ff]or|[Oo]f|[Ww]ith)\s+)?(?:[Tt]he\s+)?(?:[Oo]thers|former|latter|[Rr]est)\b")


def leans_back(claim: str) -> bool:
    """Whether a claim only makes sense after the one before it ("For the former, ..."): no key point."""
    return bool(_LEANS_BACK.match(claim.strip()))


#: A question that asks for a story: "Tell me about a time...", "Describe a problem you solved recently".
_STORY = re.compile(
    r"^(?:tell me about|describe|share|give (?:me )?an example of|walk me through)\b.*?\b(?:a time|an? "
    r"(?:occasion|situation|instance)|you(?:['’]ve| have)?\s+(?:made|led|had|built|took|ran|did|won|lost|"
    r"(?!(?:need|feed|seed|speed)\b)[a-z]{2,}ed))\b",
    re.IGNORECASE,
)


def asks_for_a_story(question: str) -> bool:
    """Whether a question asks for a story ("Tell me about a time you...") rather than how one works."""
    return bool(_STORY.match(question.strip()))


def opening(reference: str) -> str:
    """A reference's first sentence: where a story sets its scene ("I shipped a change to our checkout
    service that...", "Our product lead promised a partner that...")."""
    return _SENTENCES.split(reference.strip(), maxsplit=1)[0]


def not_a_point(claim: str) -> bool:
    """Whether a claim of the great reference is no key point, however distinct: it sets the scene, frames
    the answer, or leans on the claim before it."""
    return sets_scene(claim) or frames(claim) or leans_back(claim)


def is_conduct(claim: str) -> bool:
    """Whether a claim says what the speaker does or believes (a red flag can only be that): the speaker
    is in it, or it goes on with a verb from a sentence they began ("then clean up the code..."), or it
    names a shortcut. "The project was delivered on time" and "the old cluster kept failing" are none of
    these."""
    claim = claim.strip()
    first = claim.split()[0] if claim.split() else ""
    goes_on = first.islower() and first not in _NOT_A_VERB  # not "iOS users..." either
    return bool(_SPEAKER.search(claim) or goes_on or _FLAG_CUES.search(claim))


def _held_against(claim: str, personal: bool) -> bool:
    """Whether a claim of the poor reference can be a red flag: any, where answers state facts; else
    what the speaker does, not the scene (unless it names a shortcut: "I was just guessing")."""
    if not personal:
        return True
    return is_conduct(claim) and (not sets_scene(claim) or bool(_FLAG_CUES.search(claim)))


def _scenes(question: Question) -> tuple[str | None, str | None]:
    """The opening sentences of a story question's great and poor references (None, None for a question
    that asks how one works)."""
    if not asks_for_a_story(question.text):
        return None, None
    return opening(question.references.great), opening(question.references.poor or "")


def _can_flag(claim: str, personal: bool, poor_scene: str | None) -> bool:
    """Whether a claim of the poor reference may be a red flag (see the module's doc, 6)."""
    return _held_against(claim, personal) and not _sets_the_story(claim, poor_scene)


def _within(claim: str, scene: str | None) -> bool:
    return scene is not None and claim in scene


def _sets_the_story(claim: str, scene: str | None) -> bool:
    """Whether a poor story's claim is its opening, which sets the scene ("Last year I pushed an update on
    a Friday afternoon"), with no shortcut in what its flag would say: every story has a scene like it,
    so such a flag would mark great answers poor."""
    return _within(claim, scene) and not _FLAG_CUES.search(statement(claim))


def _speaks_of_itself(great: Sequence[str]) -> bool:
    """Whether the great reference speaks in the first person in most of its claims."""
    return sum(bool(_SPEAKER.search(c)) for c in great) > len(great) / 2


def _acts_first(candidates: Sequence[int], not_point: Callable[[int], bool]) -> list[int]:
    """The candidates that can be points, topped up with the others (scenes, framing: in the given order,
    the best first) only as far as `KEY_POINTS[0]` needs."""
    acts = [i for i in candidates if not not_point(i)]
    return acts + [i for i in candidates if not_point(i)][: max(0, KEY_POINTS[0] - len(acts))]


#: "I implement", "we also use": the verbs a reference puts after its speaker (not "don" of "don't").
_SAYS = re.compile(r"\b(?:I|[Ww]e)\s+(?:also\s+|then\s+|always\s+|usually\s+)?([a-z]{3,})\b(?!['’])")
#: The speaker opening a clause, after a short lead ("For authorization, I ...").
_SPEAKER_START = re.compile(r"^(?:[^,]{0,40},\s*|(?:First|Then|Next|Finally|Afterwards|Also|So)\s+)?(?:I|[Ww]e)\s+")
#: An infinitive the speaker's act goes on with: "to share knowledge" (an "and <verb>" after it is its own).
_TO_VERB = re.compile(r"\bto\s+(?!(?:the|a|an|my|our|their|them|us|me|it|this|that|each|every|all)\b)[a-z]+")


class Claim(NamedTuple):
    """A claim of a reference, verbatim, whether it goes on from the speaker's sentence (a second act cut
    from it, which starts with the speaker's verb: "implement role-based access controls"), and whether it
    ends in a colon that opens a list ("The controller's tasks are:"): what the list says is the claim."""

    text: str
    goes_on: bool = False
    opens_list: bool = False


def claims(text: str) -> list[str]:
    """The claims of a reference, verbatim (see `split_claims`)."""
    return [c.text for c in split_claims(text)]


def _sentences(text: str) -> list[tuple[str, bool]]:
    """A reference's sentences (wrapped lines joined), each without its list marker and whether it had one."""
    out = []
    for sentence in _SENTENCES.split(_WRAPPED.sub(" ", text.strip())):
        item = re.match(_BULLET, sentence)
        out.append((sentence[item.end() :], True) if item else (sentence, False))
    return out


def split_claims(text: str) -> list[Claim]:
    """The claims of a reference: sentences, cut at clause joints and where the speaker goes on to a
    second thing done ("..., and implement role-based access controls")."""
    verbs = _VERBS | {v for v in _SAYS.findall(text) if v not in STOP and not v.endswith(("ed", "ly"))}
    out: list[Claim] = []
    for sentence, listed in _sentences(text):
        if _NOTE.match(sentence):
            continue
        sentence = _MARK.sub("", _NOTE_ASIDE.sub("", sentence))
        spoken = bool(_SPEAKER_START.match(sentence))
        clauses = _CLAUSES.split(sentence)
        for j, clause in enumerate(clauses):
            # "..., then create tickets for...": the speaker's sentence going on with their verb
            first = clause.split()[0] if clause.split() else ""
            continues = j > 0 and spoken and first in verbs
            opens_list = j == len(clauses) - 1 and clause.rstrip().endswith(":")
            acts = _second_acts(clause, verbs)
            for i, part in enumerate(acts):
                part = part.strip(" ,;:—–-")
                if _long_enough(part, listed=listed):
                    # only the act the colon ends opens the list: "I follow least privilege and use these:"
                    out.append(Claim(part, goes_on=i > 0 or continues, opens_list=opens_list and i == len(acts) - 1))
    return out


def grading_notes(text: str) -> list[str]:
    """The notes to whoever grades that a reference carries ("Note: an answer that only names the pillars is
    mediocre", "(NB: either order is fine)"), verbatim: no claim is drafted from them, so a person reads
    them (`grader rubric new` lists them) and makes a point or flag of what they say."""
    out: list[str] = []
    for sentence, _listed in _sentences(text):
        if _NOTE.match(sentence):
            out.append(sentence.strip())
        else:
            out += [m.group(0).strip() for m in _NOTE_ASIDE.finditer(sentence)]
    return out


def _long_enough(part: str, listed: bool = False) -> bool:
    """Two content words, and four words unless the part is a list item ("● Discovery of topology")."""
    return len(content_words(part)) >= 2 and (listed or len(part.split()) >= 4)


def _second_acts(clause: str, verbs: frozenset[str] | set[str]) -> list[str]:
    """A clause the speaker begins ("I ...") cut before each "and <verb>" that starts another act: "I
    follow the principle of least privilege and implement role-based access controls" -> two. Not where
    the act before is under three words ("I go back and clean up..."), where what follows would be too
    short to be a claim, or where the verb goes on from an infinitive ("I review code to share knowledge
    and maintain consistent patterns": maintaining is what the review is for)."""
    if not _SPEAKER_START.match(clause):
        return [clause]
    parts: list[str] = []
    start = 0
    for m in re.finditer(r",?\s+and\s+(?:also\s+)?([a-z]+)\b(?![-'’])", clause):
        if m.group(1) not in verbs:
            continue
        head, rest = clause[start : m.start()], clause[m.start(1) :]
        act = _SPEAKER_START.sub("", head) if not parts else head
        if len(act.split()) >= 3 and not _TO_VERB.search(act) and _long_enough(rest.strip(" ,;:—–-")):
            parts.append(head)
            start = m.start(1)
    parts.append(clause[start:])
    return parts


def content_words(text: str) -> list[str]:
    """Words that carry content: no stop words, no contractions ("they've"; "Redis's" is "redis"), three
    letters or more."""
    out = []
    for w in re.findall(r"[a-z][a-z0-9'’-]+", text.lower()):
        w = re.sub(r"['’]s$", "", w)
        if w not in STOP and len(w) > 2 and not _CONTRACTED.search(w):
            out.append(w)
    return out


_CONTRACTED = re.compile(r"['’]")  # what is left with an apostrophe is a contraction


def _kept(adverbs: str) -> str:
    """The adverbs before a verb that change what is said ("never", "only"), with a trailing space."""
    return "".join(f"{a} " for a in adverbs.split() if a in _KEPT_ADVERBS)


def _third_person(verb: str) -> str:
    if re.search(r"n['’]t$", verb):  # "don't" -> "doesn't", "haven't" -> "hasn't"; "can't" as it is
        stem = verb[:-3]
        return {"do": "does", "have": "has"}.get(stem, stem) + verb[-3:]
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb in _MODALS or verb in _PAST or verb.endswith("ed"):
        return verb
    if re.search(r"(s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def statement(claim: str, goes_on: bool = False) -> str:
    """A claim as a short, checkable statement about the answer. `goes_on`: the claim is a second act cut
    from the speaker's sentence (`Claim.goes_on`), so it starts with their verb."""
    text = _LEAD.sub("", claim.strip()).strip()
    text = _LEAD.sub("", text).strip()  # "And then"
    if len(text.split()) > MAX_WORDS and (occasion := _OCCASION.match(text)):
        # "If there are delays or issues from other teams, I escalate to...": too long for both, so what
        # is done, not when
        text = text[occasion.end() :]
    subject = re.match(r"^(?:I|We|we)('d| would)?\s+(" + _ADVERBS + r")" + _VERB + r"\b", text)
    present = False  # the speaker's verb turned into the present's third person: "I print" -> "Prints"
    if subject:
        verb = subject.group(3)
        if not subject.group(1):
            present = _in_present(verb)
            verb = _third_person(verb)
            text = _kept(subject.group(2)) + verb + text[subject.end() :]
        elif not (verb in _PAST or verb.endswith("ed")):  # "We'd had" is "we had had", not "would had"
            text = (
                f"would {_kept(subject.group(2))}{verb}" + text[subject.end() :]
            )  # "would just run", not "just would"
        else:
            text = _kept(subject.group(2)) + verb + text[subject.end() :]
    elif goes_on and (bare := re.match(r"^" + _VERB + r"\b", text)):
        present = _in_present(bare.group(1))
        text = _third_person(bare.group(1)) + text[bare.end() :]
    elif lead := re.match(
        r"^((?:For|When|If|Once|In|After|Before|With)\b[^,]*),\s*(?:I|we)\s+(" + _ADVERBS + r")" + _VERB + r"\b", text
    ):
        present = _in_present(lead.group(3))
        text = f"{lead.group(1)}, {_kept(lead.group(2))}{_third_person(lead.group(3))}" + text[lead.end() :]
    if present:  # "...and check the server" -> "...and checks the server"; "..., verify the data" too
        text = _AND_VERB.sub(lambda m: m.group(1) + _third_person(m.group(2)), text)
        text = _COMMA_VERB.sub(lambda m: m.group(1) + _third_person(m.group(2)), text)
    for pattern, replacement in _PRONOUNS:
        text = re.sub(pattern, replacement, text)
    text = _shorten(text).rstrip(" .,;:")
    return text[:1].upper() + text[1:]


def _in_present(verb: str) -> bool:
    """Whether the speaker's verb is in the present and not negated ("print", not "can", "made", "don't")."""
    return not (verb in _MODALS or verb in _PAST or verb.endswith("ed") or re.search(r"n['’]t$", verb))


#: The speaker's second verb after "and", known by the object it goes on to ("...and check the server");
#: not a noun ("...and documentation for the team"), a plural ("...and queues"), nor "-ing" or "-ed".
_AND_VERB = re.compile(
    r"(,?\s+and\s+(?:then\s+)?)(?!(?:" + "|".join(sorted(STOP)) + r")\b)"
    r"([a-z]+(?<!ing)(?<!ed)(?<!ly)(?<![^su]s))\b"
    r"(?=\s+(?:the|a|an|my|our|their|its|it|them|that|this|those|these|each|every|all|any|what|how|why|whatever|whichever|everything|anything|something)\b)"
)


#: A verb of the speaker's in a series after a comma ("..., verify the data with checksums"): only the
#: known verbs, since after a comma a word before "the" is as often a preposition ("via the", "per the").
_COMMA_VERB = re.compile(
    r"(,\s+(?:then\s+)?)(" + "|".join(sorted(_VERBS)) + r")\b"
    r"(?=\s+(?:the|a|an|my|our|their|its|it|them|that|this|those|these|each|every|all|any)\b)"
)


_WHEN = r"If|When|Whenever|Once|After|Before|As soon as|Unless"
#: The occasion of a claim the speaker makes, up to the speaker: "If there are delays, bugs or regressions, ".
_OCCASION = re.compile(rf"^(?:{_WHEN})\b.*?,\s*(?=(?:I|[Ww]e)\s)")
#: A claim's leading clause alone ("For smaller teams", "If there are delays"): no place to cut a claim.
_ONLY_LEAD = re.compile(rf"^(?:{_WHEN}|For|In|With)\b[^,]*$")


def _shorten(text: str) -> str:
    """Cut trailing asides, then, if still long, at the word limit: at a comma when one is near (unless
    only a leading "If/For ..." clause would be left), else before the last joint ("where", "and",
    "with"...) in the second half, never on a dangling function word."""
    for m in _ASIDES.finditer(text):
        head = text[: m.start()].rstrip(" ,")
        if len(head.split()) >= 5:
            text = head
            break
    words = text.split()
    if len(words) <= MAX_WORDS:
        return text
    head = " ".join(words[:MAX_WORDS])
    comma = head.rfind(",")
    if comma > len(head) // 2 and not _ONLY_LEAD.match(head[:comma]):
        return head[:comma]
    # Not mid-phrase ("...identified a connection pool issue where they"): before the last joint in the
    # second half of what is kept, and without a dangling function word ("...quickly than").
    kept = words[:MAX_WORDS]
    joint = next((k for k in range(MAX_WORDS - 1, MAX_WORDS // 2, -1) if kept[k].lower() in _JOINTS), None)
    if joint is not None:
        kept = kept[:joint]
    while len(kept) > MAX_WORDS // 2 and kept[-1].lower().strip(".,;:") in STOP:
        kept.pop()
    return " ".join(kept).rstrip(" ,;:—–-")


#: Where a claim too long for the limit can end without leaving a phrase half said ("where", "and", "than";
#: not "to", which would leave "more important to get features to market quickly than").
_JOINTS = frozenset("and or where which that than for at with by as using including when while so but".split())


def _contrast(vectors: np.ndarray, against: np.ndarray) -> np.ndarray:
    if against.size == 0:
        return np.ones(len(vectors), dtype=np.float32)
    return 1.0 - (vectors @ against.T).max(axis=1)


def _lexical(claim: str, weaker: set[str]) -> float:
    words = set(content_words(claim))
    return len(words - weaker) / len(words) if words else 0.0


def _distinct(claims_: Sequence[str], vectors: np.ndarray, weaker: np.ndarray, weaker_words: set[str]) -> list[float]:
    """How much each claim of the great reference is its own: one minus its highest cosine to the weaker
    references' claims (and the question), blended with the share of its content words they never use."""
    semantic = _contrast(vectors, weaker)
    return [float(0.6 * semantic[i] + 0.4 * _lexical(c, weaker_words)) for i, c in enumerate(claims_)]


def name_for(text: str, weaker: set[str], rare: Callable[[str], float]) -> str:
    """Two or three content words of `text`, the most distinctive (absent from the weaker references,
    then rarest in the bank), in the order they appear."""
    words = list(dict.fromkeys(content_words(text)))
    if not words:
        return "point"
    ranked = sorted(words, key=lambda w: (w in weaker, -rare(w), words.index(w)))
    keep = set(ranked[:3])
    chosen = [re.sub(r"[^a-z0-9]+", "-", w).strip("-") for w in words if w in keep]
    return "-".join(c for c in chosen if c)[:40].strip("-") or "point"


def select(candidates: list[Drafted], vectors: np.ndarray, limits: tuple[int, int], floor: float) -> list[int]:
    """Indices of the chosen candidates: the most distinct first, no repeats, at least `limits[0]` when
    there are that many."""
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i].contrast)
    chosen: list[int] = []
    for i in order:
        if len(chosen) == limits[1]:
            break
        if candidates[i].contrast < floor and len(chosen) >= limits[0]:
            break
        if any(float(vectors[i] @ vectors[j]) > SAME for j in chosen):
            continue
        chosen.append(i)
    return sorted(chosen)


def draft_by_contrast(
    question: Question, embed: Embed, rare: Callable[[str], float] | None = None
) -> tuple[list[KeyPoint], list[RedFlag]]:
    """Key points and red flags for one question, from its three references (see the module's doc)."""
    refs = question.references
    rare = rare or (lambda _w: 0.0)
    great_claims = split_claims(refs.great) or [Claim(refs.great.strip())]
    poor_claims = split_claims(refs.poor or "")
    great, poor = [c.text for c in great_claims], [c.text for c in poor_claims]
    mediocre = claims(refs.mediocre or "")
    weaker_words = set(content_words(" ".join(filter(None, (refs.mediocre, refs.poor)))))
    all_claims = [*great, *mediocre, *poor, question.text]
    vectors = embed(all_claims)
    g, m, p = (
        vectors[: len(great)],
        vectors[len(great) : len(great) + len(mediocre)],
        vectors[len(great) + len(mediocre) : -1],
    )
    # A claim that restates the question ("I approach optimization methodically") is no point either.
    weaker = np.concatenate([m, p, vectors[-1:]])
    points = [
        Drafted(
            text=(text := statement(c.text, c.goes_on)),
            quote=c.text,
            name=name_for(text, weaker_words, rare),
            contrast=score,
        )
        for c, score in zip(great_claims, _distinct(great, g, weaker, weaker_words), strict=True)
    ]
    # The scene a story answer sets is no point, nor is framing or a claim that leans on the one before,
    # unless too few claims would be left without them (then only the most distinct come back, as many as
    # needed).
    by_contrast = sorted(range(len(great)), key=lambda i: -points[i].contrast)
    scene, poor_scene = _scenes(question)  # a story's opening sentences set its scene
    lead_in = {i for i, c in enumerate(great_claims) if c.opens_list}  # "The controller's tasks are:"
    acts = sorted(_acts_first(by_contrast, lambda i: i in lead_in or not_a_point(great[i]) or _within(great[i], scene)))
    chosen = select([points[i] for i in acts], g[acts], KEY_POINTS, MIN_CONTRAST)
    key_points = [points[acts[i]] for i in chosen]

    flags: list[Drafted] = []
    if poor:
        stronger_words = set(content_words(" ".join(filter(None, (refs.great, refs.mediocre)))))
        far = _contrast(p, np.concatenate([g, m]) if len(mediocre) else g)
        flags = [
            Drafted(
                text=(text := statement(c.text, c.goes_on)),
                quote=c.text,
                name=name_for(text, stronger_words, rare),
                contrast=float(far[i] + (0.15 if _FLAG_CUES.search(c.text) else 0.0)),
            )
            for i, c in enumerate(poor_claims)
        ]
        # Only what the speaker does can be held against an answer that tells what they do: what happened
        # to them cannot. (Where the great reference does not speak of itself in most of its claims, the
        # answers state facts, and a wrong one is a flag.)
        personal = _speaks_of_itself(great)
        conduct = np.array(
            [_can_flag(c.text, personal, poor_scene) and not c.opens_list for c in poor_claims], dtype=bool
        )
        flags, p = [f for f, ok in zip(flags, conduct, strict=True) if ok], p[conduct]
        flags = [flags[i] for i in select(flags, p, RED_FLAGS, MIN_FLAG_CONTRAST)]
        flags = [f for f in flags if f.contrast >= MIN_FLAG_CONTRAST] or flags[:1]
    return _as_points(question, key_points, flags)


def _as_points(
    question: Question, key_points: list[Drafted], flags: list[Drafted]
) -> tuple[list[KeyPoint], list[RedFlag]]:
    taken: set[str] = set()

    def ident(name: str) -> str:
        base = f"q{question.number:02d}.{name}"
        pid, n = base, 2
        while pid in taken:
            pid, n = f"{base}-{n}", n + 1
        taken.add(pid)
        return pid

    return (
        [KeyPoint(id=ident(d.name), text=d.text, quote=d.quote, draft=True) for d in key_points],
        [RedFlag(id=ident(d.name), text=d.text, quote=d.quote, draft=True) for d in flags],
    )


def screen(
    question: Question, key_points: list[KeyPoint], red_flags: list[RedFlag], embed: Embed | None = None
) -> tuple[list[KeyPoint], list[RedFlag], list[str]]:
    """A chat model's draft, checked as the offline one is chosen: a key point whose quote the weaker
    references say just as well (contrast under `MIN_CONTRAST`), or a red flag whose quote the great
    reference says too (under `MIN_FLAG_CONTRAST` from it), is dropped, keeping at least `KEY_POINTS[0]`
    key points (the most distinct). A red flag the great answer shares would mark a great answer poor, so
    none is kept for the count's sake; nor is one whose quote only says what happened, not what the
    speaker did, or is a story's opening sentence (see the module's doc, 6), nor, beyond the minimum, a key
    point whose quote only sets the scene (a story's opening included), frames the answer, leans on the
    claim before it (7) or opens a list (1). Returns the kept points, the kept flags
    and the dropped ids."""
    if embed is None:
        from grader.backends.local.embedder import Embedder

        embed = Embedder.load().embed
    refs = question.references
    great_claims = split_claims(refs.great)
    great = [c.text for c in great_claims] or [refs.great.strip()]
    weaker = [*claims(refs.mediocre or ""), *claims(refs.poor or "")]
    weaker_words = set(content_words(" ".join(filter(None, (refs.mediocre, refs.poor)))))
    quotes = [p.quote or p.text for p in key_points]
    flag_quotes = [f.quote or f.text for f in red_flags]
    vectors = embed([*quotes, *flag_quotes, *great, *weaker, question.text])
    # the points' quotes, the flags' quotes, the great claims, and the weaker claims with the question
    kv, fv, gv, wv = np.split(vectors, np.cumsum([len(quotes), len(flag_quotes), len(great)]))
    scores = _distinct(quotes, kv, wv, weaker_words)
    ranked = sorted(range(len(key_points)), key=lambda i: -scores[i])
    scene, poor_scene = _scenes(question)
    lead_in = {c.text for c in great_claims if c.opens_list}  # "The controller's tasks are:"
    acts = _acts_first(
        ranked, lambda i: quotes[i].strip(" .:") in lead_in or not_a_point(quotes[i]) or _within(quotes[i], scene)
    )
    keep = {i for i in acts if scores[i] >= MIN_CONTRAST} | set(acts[: KEY_POINTS[0]])
    personal = _speaks_of_itself(great)
    conduct = np.array([_can_flag(c, personal, poor_scene) for c in flag_quotes], dtype=bool)
    keep_flag = (_contrast(fv, gv) >= MIN_FLAG_CONTRAST) & conduct
    dropped = [p.id for i, p in enumerate(key_points) if i not in keep]
    dropped += [f.id for f, kept in zip(red_flags, keep_flag, strict=True) if not kept]
    return (
        [p for i, p in enumerate(key_points) if i in keep],
        [f for f, kept in zip(red_flags, keep_flag, strict=True) if kept],
        dropped,
    )


def rarity(rubric: Rubric) -> Callable[[str], float]:
    """How rare a word is across the bank's references (inverse document frequency, one document per
    question): words every question uses make poor ids."""
    counts: Counter[str] = Counter()
    for q in rubric.questions:
        counts.update(set(content_words(" ".join(text for _, text in q.references.items()))))
    n = len(rubric.questions)
    return lambda word: math.log((n + 1) / (counts[word] + 1))


def draft_offline(
    rubric: Rubric, embed: Embed | None = None
) -> Callable[[Question], tuple[list[KeyPoint], list[RedFlag]]]:
    """A drafter for the questions of `rubric`, with the packaged embedder unless `embed` is given."""
    if embed is None:
        from grader.backends.local.embedder import Embedder

        embed = Embedder.load().embed
    rare = rarity(rubric)
    assert embed is not None
    return lambda question: draft_by_contrast(question, embed, rare)
