"""How the local backend reads an answer (`grader.backends.local.reading`): identity and courtesy lines
away, British spelling read as American, evidence mapped back to the answer as written."""

from __future__ import annotations

import re

import pytest

from grader.backends.local.reading import american, identity_lines, read
from grader.backends.local.text import Span
from grader.eval.counterfactual import PROBES
from grader.eval.suites import answers_suite

BODY = "I add an index on the filtered column and check the query plan."


@pytest.mark.parametrize(
    "framed",
    [
        f"Hi, I'm Jordan Taylor. {BODY}",
        f"(Candidate: Jordan Taylor, she/her)\n{BODY}",
        f"{BODY}\n\n— Lakisha Washington",
        f"Hello, my name is Wei Liu (he/him). {BODY}",
        f"{BODY} Hope this answers your query.",
        f"Hi, I'm Alex Morgan and I use they/them pronouns. {BODY}",
    ],
)
def test_identity_and_courtesy_lines_are_read_away(framed):
    assert read(framed).text.strip() == BODY


def test_an_introduction_that_says_something_stays():
    answer = f"I'm Sam, a backend engineer with five years of Postgres. {BODY}"
    assert read(answer).text == answer
    assert identity_lines(BODY) == []


def test_nothing_but_identity_is_read_as_written():
    assert read("Hi, I'm Jordan Taylor.").text == "Hi, I'm Jordan Taylor."


def test_british_spelling_read_as_american_and_american_words_kept():
    assert read("We normalise the behaviour, then analyse the catalogue.").text == (
        "We normalize the behavior, then analyze the catalog."
    )
    for word in ("advise", "exercise", "promise", "otherwise", "comprise"):
        assert american(word) == word
    assert american("labelled") == "labeled" and american("centre") == "center"
    assert read("Organise it").text == "Organize it"


@pytest.mark.parametrize("answer", [a.answer for a in answers_suite("dev").cases[:12]])
def test_spans_of_the_reading_map_back_to_the_answer_as_written(answer):
    framed = f"Hi, I'm Priyanka Sharma. {answer.replace('ize', 'ise')}\n\n— Priyanka"
    r = read(framed)
    assert len(r.starts) == len(r.text) == len(r.ends)
    for m in re.finditer(r"\S+", r.text):
        source = r.source(Span(m.group(0), m.start(), m.end()))
        assert source.text == framed[source.start : source.end]
        assert american(source.text.lower().strip(".,;:!?()\"'")) == m.group(0).lower().strip(".,;:!?()\"'")
    assert "Priyanka" not in r.text


def test_name_pronoun_and_british_probes_read_the_same_as_the_answer():
    """Why no name, pronoun or spelling probe can move a local grade: the reading is the same text."""
    cases = answers_suite("dev").cases
    kept = [p for p in PROBES if p.kind in ("name", "pronoun") or p.name == "dialect-british"]
    assert len(kept) == 16
    for i, case in enumerate(cases):
        base = read(case.answer).text
        for probe in kept:
            assert read(probe.rewrite(case.answer, i)).text == base, (probe.name, case.id)
