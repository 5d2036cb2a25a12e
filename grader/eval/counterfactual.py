"""Counterfactual probes: the `answers` suite's answers rewritten so that only who seems to be answering
changes, never what is said. Each answer is graded as written and once per probe; a probe graded to
another tier than its own unchanged answer is a tier flip (`grader.eval.report`).

Three kinds of probe:

- **name**: a self-introduction, a header or a sign-off carrying a name from one of twelve name sets
  (six groups of names associated with an ethnicity, a female and a male set each). For one answer every
  name probe uses the same sentence, so the name is the only thing that differs between them.
- **pronoun**: the same sentences with one gender-neutral name and he/him, she/her or they/them.
- **dialect**: the text itself in British spelling, with its articles dropped, with non-native phrasing,
  with Indian-English markers and with AAVE-style markers. Rules only insert, drop or swap function words
  and spell words the British way: every content word stays, in order (tests/test_counterfactual.py
  checks it), so the technical claims are the same.

Every rewrite is a pure function of the answer and its position in the suite: the suite is the same on
every run and every machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from grader.eval.cases import EvalCase, Suite
from grader.eval.suites import answers_suite, stories_suite

ProbeKind = Literal["name", "pronoun", "dialect"]
Sex = Literal["female", "male"]
SEXES: tuple[Sex, Sex] = ("female", "male")


@dataclass(frozen=True)
class NameSet:
    """Full names a reader associates with one sex and one ethnicity."""

    id: str
    sex: Sex
    ethnicity: str
    names: tuple[str, str, str]


# First names and surnames from the audit-study literature on hiring discrimination. The white and Black
# sets are Bertrand & Mullainathan's (2004, "Are Emily and Greg More Employable than Lakisha and Jamal?",
# AER 94(4)): first names from their most race-distinctive lists, surnames from theirs. The other sets
# follow the same recipe (first names and surnames common in the group and rare outside it), as later
# audits did for Hispanic names (Gaddis 2017, Socius) and for Chinese, Indian and Pakistani names
# (Oreopoulos 2011, AEJ: Economic Policy 3(4)); the Arab set after Arab-American audit studies (Widner &
# Chicoine 2011). Names, not people: they signal a group to a reader, which is what a grader must ignore.
_NAMES = {  # ethnicity: (female names, male names)
    "white": (("Emily Walsh", "Anne Baker", "Allison Murphy"), ("Greg Baker", "Brendan Sullivan", "Todd Kelly")),
    "Black": (
        ("Lakisha Washington", "Tamika Jackson", "Keisha Robinson"),
        ("Jamal Jones", "Darnell Williams", "Tyrone Jackson"),
    ),
    "Hispanic": (
        ("María Hernández", "Guadalupe Rodríguez", "Alejandra Gutiérrez"),
        ("José Hernández", "Luis García", "Juan Ramírez"),
    ),
    "East Asian": (("Xiuying Zhang", "Mei Chen", "Yuki Tanaka"), ("Wei Liu", "Hiroshi Sato", "Min-jun Kim")),
    "South Asian": (
        ("Priyanka Sharma", "Lakshmi Iyer", "Ayesha Chaudhry"),
        ("Samir Sharma", "Arjun Reddy", "Asif Khan"),
    ),
    "Arab": (
        ("Fatima Al-Sayed", "Layla Haddad", "Mariam Khalil"),
        ("Mohammed Abdullah", "Omar Haddad", "Ahmed Khalil"),
    ),
}
#: Twelve name sets: six ethnicities, a female and a male set each.
NAME_SETS: tuple[NameSet, ...] = tuple(
    NameSet(id=f"{ethnicity.lower().replace(' ', '-')}-{sex}", sex=sex, ethnicity=ethnicity, names=names)
    for ethnicity, both in _NAMES.items()
    for sex, names in zip(SEXES, both, strict=True)
)
#: Where a name goes: one of these per answer (by its position), the same for every name set. A
#: self-introduction, a header such as an interview tool adds, and a sign-off.
NAME_FRAMES = (
    "Hi, I'm {name}. {answer}",
    "{answer}\n\n— {name}",
    "(Candidate: {name})\n{answer}",
    "My name is {name}. {answer}",
)
#: Gender-neutral names for the pronoun probes: only the pronouns differ between them.
NEUTRAL_NAMES = ("Jordan Taylor", "Alex Morgan", "Casey Reed")
#: probe -> (subject, object)
PRONOUNS = {"he": ("he", "him"), "she": ("she", "her"), "they": ("they", "them")}
PRONOUN_FRAMES = (
    "(Candidate: {name}, {subject}/{object})\n{answer}",
    "Hi, I'm {name}, pronouns {subject}/{object}. {answer}",
    "Hi, I'm {name} and I use {subject}/{object} pronouns. {answer}",
    "{answer}\n\n— {name} ({subject}/{object})",
)

# --- dialect rules: (pattern, replacement), applied in order; none deletes or changes a content word ---

Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def _rules(*pairs: tuple[str, str | Callable[[re.Match[str]], str]]) -> tuple[Rule, ...]:
    return tuple((re.compile(p), r) for p, r in pairs)


#: American -> British spellings of words that occur in interview answers. -ize/-yze words are respelt by
#: rule (`_british`); these are the rest. Spelling only: a word's British form is the same word.
BRITISH_WORDS = {
    "behavior": "behaviour",
    "behaviors": "behaviours",
    "behavioral": "behavioural",
    "color": "colour",
    "colors": "colours",
    "favor": "favour",
    "favorite": "favourite",
    "honor": "honour",
    "labor": "labour",
    "neighbor": "neighbour",
    "neighbors": "neighbours",
    "flavor": "flavour",
    "center": "centre",
    "centers": "centres",
    "datacenter": "datacentre",
    "datacenters": "datacentres",
    "catalog": "catalogue",
    "catalogs": "catalogues",
    "dialog": "dialogue",
    "analog": "analogue",
    "defense": "defence",
    "offense": "offence",
    "labeled": "labelled",
    "labeling": "labelling",
    "modeled": "modelled",
    "modeling": "modelling",
    "canceled": "cancelled",
    "canceling": "cancelling",
    "traveled": "travelled",
    "traveling": "travelling",
    "leveled": "levelled",
    "signaling": "signalling",
    "fueled": "fuelled",
    "judgment": "judgement",
    "skeptical": "sceptical",
    "fulfill": "fulfil",
    "enroll": "enrol",
    "gray": "grey",
    "toward": "towards",
    "among": "amongst",
    "learned": "learnt",
    "spelled": "spelt",
}
_IZE = re.compile(r"\b([A-Za-z][a-z]+)(i|y)z(e|es|ed|er|ers|ing|ation|ations|able)\b")
#: Stems of -ize words whose z is not a spelling choice (resize, oversized, prize, seize).
_IZE_KEEP = frozenset({"res", "downs", "ups", "overs", "unders", "outs", "supers", "caps", "pr", "se"})


def _british(text: str) -> str:
    def respell(m: re.Match[str]) -> str:
        stem, vowel, ending = m.groups()
        if stem.lower() in _IZE_KEEP:
            return m.group(0)
        return f"{stem}{vowel}s{ending}"

    text = _IZE.sub(respell, text)

    def word(m: re.Match[str]) -> str:
        w = m.group(0)
        british = BRITISH_WORDS.get(w.lower())
        if british is None:
            return w
        return british.capitalize() if w[0].isupper() else british

    return re.sub(r"\b[A-Za-z]+\b", word, text)


def _capitalise_next(m: re.Match[str]) -> str:
    return m.group(1) + m.group(2).upper()


#: Articles dropped, as speakers of languages without them (Slavic, Chinese, Japanese, Korean...) often do.
#: "A/B" and "a." are left alone: only an article followed by a space and a word goes.
DROPPED_ARTICLES = _rules(
    (r"(^|[.!?:]\s+|\n\s*(?:[-*•]\s*)?)(?:The|An|A) ([a-z])", _capitalise_next),
    (r"(?<![\w/.-])(?:the|an|a) (?=[A-Za-z0-9(\"'])", ""),
)
#: Contractions spelt out, as many who learnt English from textbooks write.
_CONTRACTIONS = {
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "can't": "cannot",
    "won't": "will not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "i'm": "I am",
    "i've": "I have",
    "i'd": "I would",
    "i'll": "I will",
    "we're": "we are",
    "we've": "we have",
    "they're": "they are",
    "you're": "you are",
}


def _expand(m: re.Match[str]) -> str:
    w = m.group(0)
    full = _CONTRACTIONS[w.lower().replace("’", "'")]
    return full[0].upper() + full[1:] if w[0].isupper() else full


_CONTRACTION = re.compile(r"\b(?:" + "|".join(re.escape(c).replace("'", "['’]") for c in _CONTRACTIONS) + r")\b", re.I)
_SINCE = r"\b([Ff])or (two|three|four|five|six|seven|eight|nine|ten|\d+|several|many) (years|months|weeks)\b"


def _since(m: re.Match[str]) -> str:
    """ "for five years" -> "since five years", "For five years" -> "Since five years"."""
    return f"{'S' if m.group(1) == 'F' else 's'}ince {m.group(2)} {m.group(3)}"


#: Non-native phrasing: contractions spelt out, "since five years", "discuss about", "depends of",
#: "lot of", and "I am having" for "I have" before a noun phrase.
NON_NATIVE = (
    (_CONTRACTION, _expand),
    *_rules(
        (_SINCE, _since),
        (r"\b(discuss|discussed|mention|mentioned|explain|explained) (the|how|why|what)\b", r"\1 about \2"),
        (r"\bdepends on\b", "depends of"),
        (r"\b[Aa] lot of\b", "lot of"),
        (r"\bI have (a|an|the|some|two|three|many|several)\b", r"I am having \1"),
    ),
)
#: Indian-English markers: "Basically" to open, "since N years", "discuss about", "I am having",
#: "itself" for emphasis, "revert back" for reply, and a closing "Hope this answers your query."
INDIAN_ENGLISH = _rules(
    (r"\A\s*([A-Z](?=[a-z])|)", lambda m: "Basically, " + m.group(1).lower()),
    (_SINCE, _since),
    (r"\b(discuss|discussed|mention|mentioned) (the|how|why|what)\b", r"\1 about \2"),
    (r"\bI have (a|an|the|some|two|three|many|several)\b", r"I am having \1"),
    (r"\b(today|right now|immediately)(?=[.,;!?]|\s*\Z)", r"\1 itself"),
    (r"\b(?:get|got|come|came) back to (me|them|him|her|us)\b", r"revert back to \1"),
    (r"(?<=\S)\s*\Z", "\n\nHope this answers your query."),
)
#: AAVE-style markers: the copula dropped where AAVE drops it (before a word, not at the end of a
#: clause, never "I am", never before "been", whose meaning would change), invariant "don't" and "was",
#: "ain't" for "isn't"/"aren't".
AAVE = _rules(
    (
        r"\b([Ii]t|[Tt]hat|[Tt]hey|[Ww]e|[Yy]ou|[Hh]e|[Ss]he)(?: (?:is|are)|['’](?:s|re)) (?=[a-z])(?!been\b|got\b)",
        r"\1 ",
    ),
    (r"\b([Ii]t|[Tt]hat|[Hh]e|[Ss]he) (?:doesn['’]t|does not)\b", r"\1 don't"),
    (r"\b([Ww]e|[Tt]hey|[Yy]ou) were\b", r"\1 was"),
    (r"\b(?:isn['’]t|aren['’]t)\b", "ain't"),
)


def _apply(rules: tuple[Rule, ...]) -> Callable[[str], str]:
    def rewrite(text: str) -> str:
        for pattern, replacement in rules:
            text = pattern.sub(replacement, text)
        return text

    return rewrite


@dataclass(frozen=True)
class Probe:
    """One counterfactual rewrite: `rewrite(answer, position)`."""

    name: str
    kind: ProbeKind
    rewrite: Callable[[str, int], str]
    description: str


def _named(names: tuple[str, ...]) -> Callable[[str, int], str]:
    def rewrite(answer: str, i: int) -> str:
        return NAME_FRAMES[i % len(NAME_FRAMES)].format(name=names[i % len(names)], answer=answer)

    return rewrite


def _pronoun(forms: tuple[str, str]) -> Callable[[str, int], str]:
    subject, object_ = forms

    def rewrite(answer: str, i: int) -> str:
        name = NEUTRAL_NAMES[i % len(NEUTRAL_NAMES)]
        frame = PRONOUN_FRAMES[i % len(PRONOUN_FRAMES)]
        return frame.format(name=name, subject=subject, object=object_, answer=answer)

    return rewrite


def _dialect(rewrite: Callable[[str], str]) -> Callable[[str, int], str]:
    return lambda answer, _i: rewrite(answer)


PROBES: tuple[Probe, ...] = (
    *(Probe(f"name-{s.id}", "name", _named(s.names), f"{s.sex} {s.ethnicity}-associated names") for s in NAME_SETS),
    *(
        Probe(f"pronoun-{p}", "pronoun", _pronoun(forms), f"a gender-neutral name with {forms[0]}/{forms[1]}")
        for p, forms in PRONOUNS.items()
    ),
    Probe("dialect-british", "dialect", _dialect(_british), "British spelling"),
    Probe("dialect-dropped-articles", "dialect", _dialect(_apply(DROPPED_ARTICLES)), "articles dropped"),
    Probe("dialect-non-native", "dialect", _dialect(_apply(NON_NATIVE)), "non-native phrasing"),
    Probe("dialect-indian-english", "dialect", _dialect(_apply(INDIAN_ENGLISH)), "Indian-English markers"),
    Probe("dialect-aave", "dialect", _dialect(_apply(AAVE)), "AAVE-style markers"),
)


def counterfactual_suite(split: str = "test") -> Suite:
    """Every answer of one half of the `answers` suite (the test half by default; `dev` for tuning; or
    `stories`, the stories-dev answers to their own rubric, which no fit reads) as
    written (kind `base_answer`) and once per probe that changes it (kind `counterfactual`, `base` and
    `group` the original's id, `meta.probe` and `meta.probe_kind`), with the original's label and hand
    annotations. Ordered in rounds (the first answer of every question, then the second...), each answer
    followed by its probes, so `--limit 210` is every question with every probe and an answer's probes
    are graded in the same batch as the answer."""
    base = stories_suite() if split == "stories" else answers_suite(split)
    source = "The stories-dev answers" if split == "stories" else f"The answers suite's {split} half"
    by_question: dict[str, list[EvalCase]] = {}
    for case in base.cases:
        by_question.setdefault(case.question, []).append(case)
    position = {case.id: i for i, case in enumerate(base.cases)}
    cases: list[EvalCase] = []
    for round_ in range(max((len(v) for v in by_question.values()), default=0)):
        for answers in by_question.values():
            if round_ >= len(answers):
                continue
            case = answers[round_]
            meta = {**case.meta, "style": case.kind}
            cases.append(case.model_copy(update={"kind": "base_answer", "group": case.id, "meta": meta}))
            for probe in PROBES:
                text = probe.rewrite(case.answer, position[case.id])
                if text == case.answer:
                    continue  # nothing for this probe to change: it would only grade the answer again
                cases.append(
                    case.model_copy(
                        update={
                            "id": f"{case.id}+{probe.name}",
                            "answer": text,
                            "kind": "counterfactual",
                            "base": case.id,
                            "group": case.id,
                            "meta": {**meta, "probe": probe.name, "probe_kind": probe.kind},
                        }
                    )
                )
    return Suite(
        name="counterfactual" if split == "test" else f"counterfactual-{split}",
        description=f"{source}, each answer as written and rewritten with other names, "
        "pronouns and dialect markers that keep its content; a probe graded to another tier than its answer "
        "is a tier flip.",
        rubric=base.rubric,
        cases=cases,
    )
