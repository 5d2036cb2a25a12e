"""A team's own bank: ids that stay put across import and edits, key points drafted by contrasting the
three references, the review notes, and `grader rubric new` end to end."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from grader import api
from grader.backends.local.embedder import Embedder
from grader.cli import app
from grader.errors import RubricError
from grader.resources import data_dir
from grader.rubric import load_rubric
from grader.rubric.contrast import (
    KEY_POINTS,
    MAX_WORDS,
    RED_FLAGS,
    asks_for_a_story,
    claims,
    draft_by_contrast,
    draft_offline,
    is_conduct,
    not_a_point,
    sets_scene,
    split_claims,
    statement,
)
from grader.rubric.importer import import_bank, parse_bank
from grader.rubric.model import KeyPoint, Question, RedFlag
from grader.rubric.selftest import review_notes

BANK = data_dir("rubric") / "recruiters-questions.txt"
runner = CliRunner()


@pytest.fixture(scope="module")
def embed():
    return Embedder.load().embed


def first_questions(n: int) -> str:
    """The first `n` questions of the packaged bank, in its own text format."""
    lines = BANK.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^\d+\. ", line)]
    return "\n".join(lines[: starts[n]]) + "\n"


def stripped(n: int = 20):
    return import_bank(BANK, known=load_rubric()).rubric.model_copy(
        update={"questions": import_bank(BANK, known=load_rubric()).rubric.questions[:n]}
    )


def question(qid: str, number: int, text: str, *, great: str, mediocre: str, poor: str):
    """A question of a team's bank with its three references, as a test writes one."""
    return Question.model_validate(
        {"id": qid, "number": number, "text": text, "references": {"great": great, "mediocre": mediocre, "poor": poor}}
    )


def test_importing_the_packaged_bank_gives_the_packaged_ids():
    packaged = [q.id for q in load_rubric().questions]
    assert [q.id for q in import_bank(BANK, known=load_rubric()).rubric.questions] == packaged
    fresh = [q.id for q in import_bank(BANK).rubric.questions]
    assert fresh != packaged and len(set(fresh)) == 20  # without them: slugs of the question texts


def test_an_edited_question_keeps_its_id_and_a_new_one_gets_a_slug():
    known = load_rubric()
    text = first_questions(2).replace("How do you approach debugging", "How would you approach debugging")
    text += (
        '3. How do you shard a write-heavy table?\nGreat Response: "By tenant, with a routing table."\n'
        'Mediocre Response: "By id."\nPoor Response: "I would not."\n'
    )
    ids = [q.id for q in parse_bank(text, known=known).rubric.questions]
    assert ids[:2] == [q.id for q in known.questions[:2]]
    assert ids[2] == "shard-a-write-heavy-table"
    unrelated = parse_bank(text.replace("debugging a production issue", "naming your pets"), known=known)
    assert unrelated.rubric.questions[0].id != known.questions[0].id  # too far from any known question


def test_drafted_points_are_short_quoted_and_readably_named(embed):
    rubric = stripped()
    draft = draft_offline(rubric, embed)
    for q in rubric.questions:
        key_points, red_flags = draft(q)
        assert KEY_POINTS[0] <= len(key_points) <= KEY_POINTS[1], q.id
        assert RED_FLAGS[0] <= len(red_flags) <= RED_FLAGS[1], q.id
        ids = [p.id for p in [*key_points, *red_flags]]
        assert len(set(ids)) == len(ids)
        for p, source in [*((p, q.references.great) for p in key_points), *((p, q.references.poor) for p in red_flags)]:
            assert p.draft and p.quote and p.quote in source, p.id
            assert len(p.text.split()) <= MAX_WORDS, p.text
            name = p.id.split(".", 1)[1]
            assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", name) and len(name) <= 40, p.id
            assert not re.search(r"(^|-)(i|the|a|most|start|by|they|ve|s)(-|$)", name), p.id


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("I start by gathering logs and recent deployments.", "Starts by gathering logs and recent deployments"),
        ("I usually add indexes to columns that are queried.", "Adds indexes to columns that are queried"),
        ("We'd roll back to the previous version.", "Would roll back to the previous version"),
        ("For hot paths, I cache the results in Redis.", "For hot paths, caches the results in Redis"),
        ("I rely on our security team.", "Relies on their security team"),
        ("I worked on the services I was assigned to.", "Worked on the services they were assigned to"),
        ("I work on whatever I am assigned to.", "Works on whatever they are assigned to"),
        ("We'd had good experiences with Django.", "Had good experiences with Django"),
        # too long: what is done, not when; a short one keeps its occasion ("For hot paths, caches...")
        (
            "If there are delays, bugs, or regressions from other teams, I escalate to project managers or team "
            "leads to help resolve them.",
            "Escalates to project managers or team leads to help resolve them",
        ),
        # a scope is kept, and the claim is not cut down to it
        (
            "For smaller teams working on a single product with continuous deployment, I prefer trunk-based "
            "development with short-lived feature branches.",
            "For smaller teams working on a single product with continuous deployment, prefers trunk-based development",
        ),
        # too long with no occasion to drop: cut at a joint, not mid-phrase ("...a connection pool issue where
        # they"), nor leaving a dangling word ("...to market quickly than")
        (
            "I created a test environment that simulated high concurrency and identified a connection pool issue "
            "where we were creating new database connections instead of reusing existing ones.",
            "Created a test environment that simulated high concurrency and identified a connection pool issue",
        ),
        (
            "In my experience, it's usually more important to get features to market quickly than to have perfectly "
            "clean code.",
            "In their experience, it's usually more important to get features to market quickly",
        ),
        # what changes the claim's meaning stays
        ("I never skip code review for a hotfix.", "Never skips code review for a hotfix"),
        ("In production, I never run migrations by hand.", "In production, never runs migrations by hand"),
        ("I don't write tests for small changes.", "Doesn't write tests for small changes"),
        ("I only test the happy path.", "Only tests the happy path"),
        ("I seldom write tests first.", "Seldom writes tests first"),
        ("I can't always reproduce it locally.", "Can't always reproduce it locally"),
        # "while" is an aside, "for a while" is not (it was cut to "If it locks the table for a")
        (
            "If it locks the table for a while, users will just have to retry.",
            "If it locks the table for a while, users will just have to retry",
        ),
        ("I keep the main build green while the team ships features.", "Keeps the main build green"),
        # every first person read as the third ("they fixed it myself" was drafted)
        ("When their code had bugs I just fixed it myself.", "When their code had bugs they just fixed it themselves"),
    ],
)
def test_statement_turns_a_first_person_claim_into_a_third_person_point(claim, expected):
    """What is done, in the third person, keeping what changes its meaning."""
    assert statement(claim) == expected


def test_a_second_act_is_turned_into_a_statement_only_when_it_is_one():
    assert statement("implement role-based access controls.", goes_on=True) == "Implements role-based access controls"
    assert statement("instrument the worst ones with spans", goes_on=True) == "Instruments the worst ones with spans"
    assert statement("design reviews catch most of it") == "Design reviews catch most of it"  # a noun
    assert [c.goes_on for c in split_claims("Once resolved, I document the incident, then create tickets for it.")] == [
        False,
        True,
    ]
    assert [c.goes_on for c in split_claims("I follow least privilege and implement role-based access controls.")] == [
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (
            "For authorization, I follow the principle of least privilege and implement role-based access controls.",
            ["For authorization, I follow the principle of least privilege", "implement role-based access controls."],
        ),
        # a list of things gathered is one act
        (
            "I start by gathering logs, error messages, and recent deployments.",
            ["I start by gathering logs, error messages, and recent deployments."],
        ),
        # "go back" is too short an act to stand alone
        (
            "If time allows, I go back and clean up the code, add more tests, or improve the design.",
            ["If time allows, I go back and clean up the code, add more tests, or improve the design."],
        ),
        # "integration" is no verb: one act
        (
            "I write unit tests and integration tests for every change.",
            ["I write unit tests and integration tests for every change."],
        ),
        # the framing before a dash is no claim; what the speaker does after it is
        (
            "Testing is crucial—I write unit tests focusing on edge cases.",
            ["I write unit tests focusing on edge cases."],
        ),
        # a verb the reference itself puts after "I" counts as one
        (
            "I instrument every handler. I profile the slow endpoints and instrument the worst ones with spans.",
            ["I instrument every handler.", "I profile the slow endpoints", "instrument the worst ones with spans."],
        ),
        (
            "I profile the slow endpoints and instrument the worst ones with spans.",
            ["I profile the slow endpoints and instrument the worst ones with spans."],
        ),
        # "design documents" is a noun
        (
            "I write the requirements and design documents for each feature.",
            ["I write the requirements and design documents for each feature."],
        ),
        # the verb goes on from "to": what the review is for, not a second act
        (
            "I believe in code reviews to share knowledge and maintain consistent patterns across the codebase.",
            ["I believe in code reviews to share knowledge and maintain consistent patterns across the codebase."],
        ),
        # what would follow is too short to be a claim: kept with its sentence
        (
            "I analyze query patterns, add appropriate indexes, and optimize query structure.",
            ["I analyze query patterns, add appropriate indexes, and optimize query structure."],
        ),
    ],
)
def test_claims_are_cut_where_the_speaker_goes_on_to_another_act(reference, expected):
    assert claims(reference) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        # a sentence wrapped across lines (pasted from a PDF) is one claim, not two
        (
            "Switches only have to act according to their flow\ntables and make no local routing decisions.",
            ["Switches only have to act according to their flow tables and make no local routing decisions."],
        ),
        # a new line after a stop or a colon, in capitals, or a bullet, still starts a claim ("Benefits:" is
        # too short to be one)
        (
            "Benefits:\n- switches stay simple and cheap\nRouting converges faster with a global view.",
            ["switches stay simple and cheap", "Routing converges faster with a global view."],
        ),
        (
            "Each node keeps its own routing table.\nthe table starts empty and fills as frames arrive.",
            ["Each node keeps its own routing table.", "the table starts empty and fills as frames arrive."],
        ),
        # a stop with spaces after it, or a blank line, still ends the line's sentence
        (
            "Each node keeps its own routing table. \nthe table starts empty and fills as frames arrive.",
            ["Each node keeps its own routing table.", "the table starts empty and fills as frames arrive."],
        ),
        (
            "Each node keeps its own routing table\n\nthe table starts empty and fills as frames arrive.",
            ["Each node keeps its own routing table", "the table starts empty and fills as frames arrive."],
        ),
    ],
)
def test_a_sentence_wrapped_across_lines_is_one_claim(reference, expected):
    assert claims(reference) == expected


def test_a_pasted_list_is_read_as_its_items_without_markers_scores_or_notes():
    """A reference pasted from a document: its list markers, the scores the bank gives items, and its notes
    to the grader are not what an answer says; the line that opens the list is marked as such."""
    reference = (
        "I cover the three pillars:\n"
        "● Structured logs with a request id on every line.\n"
        "○ Metrics with alerts on the SLOs (2 points)\n"
        "▪ Discovery of topology\n"
        "2) Tracing that keeps every failed request (0.25)\n"
        "Note: an answer that only names the pillars is mediocre.\n"
        "Sampling keeps the cost down (Note: head sampling is fine)."
    )
    got = split_claims(reference)
    assert [c.text for c in got] == [
        "I cover the three pillars",
        "Structured logs with a request id on every line.",
        "Metrics with alerts on the SLOs",
        "Discovery of topology",  # a list item is a claim with two content words; a sentence needs four words
        "Tracing that keeps every failed request",
        "Sampling keeps the cost down.",
    ]
    assert [c.opens_list for c in got] == [True, False, False, False, False, False]
    got = split_claims(
        "I follow the principle of least privilege and implement the controls below:\n● Role-based access"
    )
    assert [(c.text, c.opens_list) for c in got] == [
        ("I follow the principle of least privilege", False),  # an act of its own
        ("implement the controls below", True),
        ("Role-based access", False),
    ]
    assert claims("Discovery of topology") == []  # not a list item: too short to be a claim
    assert claims("I led our move to Kubernetes (2019).") == ["I led our move to Kubernetes (2019)."]  # a year
    assert claims("Benefits:\n● Faster convergence to a global optimum.") == ["Faster convergence to a global optimum."]


#: A question whose great reference was pasted from a document: a line opening a list, its items, a note.
PASTED = question(
    "observe",
    7,
    "How do you make a backend service observable?",
    great="I cover the three pillars:\n● Structured logs with a request id on every line.\n"
    "● Metrics for latency and errors, with alerts on the SLOs users feel.\n"
    "● Distributed tracing with OpenTelemetry for every failed request.\n"
    "Note: an answer that only names the pillars is mediocre.",
    mediocre="I add logging and some metrics, and I look at dashboards when something breaks.",
    poor="I print to stdout and check the server when users complain.",
)


def test_the_line_that_opens_a_list_only_tops_up_the_key_points(embed):
    key_points, red_flags = draft_by_contrast(PASTED, embed)
    assert [p.quote for p in key_points] == [
        "Structured logs with a request id on every line.",
        "Metrics for latency and errors, with alerts on the SLOs users feel.",
        "Distributed tracing with OpenTelemetry for every failed request.",
    ]
    assert [f.text for f in red_flags] == ["Prints to stdout and checks the server when users complain"]


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("I print to stdout and check the server.", "Prints to stdout and checks the server"),
        (
            "For big changes, I write a design doc and share it with the team.",
            "For big changes, writes a design doc and shares it with the team",
        ),
        ("I focus on tests and discuss the design.", "Focuses on tests and discusses the design"),
        ("I run it in production and fix whatever breaks.", "Runs it in production and fixes whatever breaks"),
        # not a verb: a noun, a plural, "-ing"; nor after a modal, a past or a negation
        ("I write code and documentation for the team.", "Writes code and documentation for the team"),
        ("I use Redis and queues for background jobs.", "Uses Redis and queues for background jobs"),
        ("I add logging and monitoring the same day.", "Adds logging and monitoring the same day"),
        ("I can print and check the logs.", "Can print and check the logs"),
        ("I printed it and checked the logs.", "Printed it and checked the logs"),
        ("I don't test and ship the code.", "Doesn't test and ship the code"),
    ],
)
def test_a_second_verb_after_and_is_turned_too(claim, expected):
    assert statement(claim) == expected


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        # a verb of a series after a comma, when it is one of the known verbs
        (
            "Then I switch reads behind a flag, verify the data with checksums.",
            "Switches reads behind a flag, verifies the data with checksums",
        ),
        ("I test each change, via the pipeline.", "Tests each change, via the pipeline"),  # no verb: as it is
        # an adverb stays after the modal it follows
        (
            "I would just run ALTER TABLE in production and wait for it.",
            "Would just run ALTER TABLE in production and wait for it",
        ),
    ],
)
def test_a_series_verb_after_a_comma_is_turned_and_an_adverb_stays_after_would(claim, expected):
    assert statement(claim) == expected


def test_a_sentence_opened_by_first_or_then_goes_on_with_the_speakers_verb():
    great = "First I add the new column without removing anything, then deploy code that writes to both schemas."
    drafted = [statement(c.text, c.goes_on) for c in split_claims(great)]
    assert drafted == ["Adds the new column without removing anything", "Deploys code that writes to both schemas"]


@pytest.mark.parametrize(
    ("claim", "point"),
    [
        ("Observability is essential in distributed systems.", False),
        ("I've learned that effective service communication is critical.", False),
        ("Database optimization is often the most challenging.", False),
        ("For the former, I push back more strongly.", False),
        ("Others are contained and can be addressed later.", False),
        # long enough to say what is done: a candidate
        ("Caching is crucial at multiple levels: Redis for hot data, a CDN for static assets, HTTP caching.", True),
        ("I use parameterized queries to prevent SQL injection.", True),
        ("It starts with coding standards that the team agrees on.", True),
        ("I prioritize the bugs by what is most important to our users.", True),  # the speaker's act
        ("REST endpoints should be versioned from day one.", True),  # not "the rest"
    ],
)
def test_framing_and_a_claim_that_leans_on_the_one_before_are_no_points(claim, point):
    assert not_a_point(claim) is not point


@pytest.mark.parametrize(
    ("claim", "scene", "conduct"),
    [
        ("We needed to pick a broker for a new billing system.", True, True),
        ("At my last job, I had two weeks and no requirements.", True, True),
        ("We were seeing timeouts on the checkout service.", True, True),
        ("We were able to cut p99 latency by half.", False, True),
        ("Our search service kept timing out under load.", False, False),
        ("The release went out on schedule, which was the main goal.", False, False),
        ("I picked the framework I already knew.", False, True),
        ("then ship it and clean up later", False, True),
        ("Tests are mostly a formality for the QA team.", False, True),  # "mostly": a shortcut named
        ("Version control is a backup, and the process does not matter to me.", False, True),
        ("I had the team write a decision record.", False, True),  # a thing done, not a situation
        ("I had to roll back the release.", False, True),
        ("I was careful to document every assumption.", False, True),
        ("We faced a choice and picked the simpler design.", False, True),
        ("We were going to miss the deadline, so I cut scope.", False, True),
        ("I had incomplete requirements and limited time.", True, True),
        ("the old cluster was still failing over every night.", False, False),  # lower case, no verb first
        ("iOS users saw the crash.", False, False),
        ("The I/O was slow.", False, False),
    ],
)
def test_a_story_scene_is_no_point_and_what_happened_is_no_red_flag(claim, scene, conduct):
    assert sets_scene(claim) is scene
    assert is_conduct(claim) is conduct


def test_a_story_question_is_drafted_from_what_the_speaker_did(embed):
    q = question(
        "hard-call",
        3,
        "Tell me about a time you made a technical decision under pressure.",
        great="We needed to choose a queue for a new payments pipeline within a week. "
        "I had no load figures and little time. I wrote down the must-have criteria first. "
        "I shortlisted three brokers against those criteria. I built a small load test for each one. "
        "I recorded the decision and the assumptions to revisit in an architecture record.",
        mediocre="We had to pick a database quickly. I read some comparisons online and chose "
        "PostgreSQL because we needed joins. It worked out, with some scaling pain later.",
        poor="Our old queue kept crashing in production. I went with the tool I already knew "
        "since there was no time to compare. The project shipped on time, which was what mattered.",
    )
    key_points, red_flags = draft_by_contrast(q, embed)
    assert not any(sets_scene(p.quote or "") for p in key_points), [p.quote for p in key_points]
    assert {p.quote for p in red_flags} <= {
        "I went with the tool I already knew since there was no time to compare."
    }, [p.quote for p in red_flags]
    assert red_flags  # the one thing the speaker did wrong is still a flag


@pytest.mark.parametrize(
    ("text", "story"),
    [
        ("Tell me about a time you had to make a technical decision with limited information.", True),
        ("Tell me about a time a change you made caused a problem in production.", True),
        ("Describe a challenging backend problem you solved recently.", True),
        ("Give an example of a migration you led.", True),
        ("Describe a situation where you disagreed with your lead.", True),
        ("Describe your experience with API design.", False),
        ("Describe how you handle database performance optimization.", False),
        ("How do you handle technical disagreements with team members?", False),
        ("Tell me about your approach to testing.", False),
        ("Describe what you need from a CI system.", False),
    ],
)
def test_which_questions_ask_for_a_story(text, story):
    assert asks_for_a_story(text) is story


STORY = question(
    "bad-change",
    21,
    "Tell me about a time a change you made caused a problem in production.",
    great="I shipped a change to our checkout service that swapped its HTTP client. "
    "I rolled the change back as soon as the error-rate alert fired. "
    "I posted updates in the incident channel for support. "
    "I reproduced the failure in staging and found a missing timeout. "
    "I added a test that asserts a timeout on every outbound client.",
    mediocre="I renamed a field in our user API and the mobile app crashed. I rolled back and fixed it the next day.",
    poor="Last year I pushed an update to our notification service on a Friday afternoon. "
    "Honestly, QA should have caught it. I changed the config directly on the server and moved on.",
)


def test_a_story_opening_sets_the_scene_so_is_no_point_and_no_red_flag(embed):
    """A story's first sentence is its scene even when the speaker is its subject ("I shipped a change..."):
    every answer to the question tells one like it, so as a point it credits the scene and as a flag it
    marks great answers poor (on stories-dev, such flags fired on great and mediocre answers)."""
    key_points, red_flags = draft_by_contrast(STORY, embed)
    assert "I shipped a change to our checkout service that swapped its HTTP client." not in {
        p.quote for p in key_points
    }
    assert len(key_points) >= KEY_POINTS[0]
    assert red_flags and all(not (f.quote or "").startswith("Last year I pushed") for f in red_flags)
    # the same claims, asked how one works rather than for a story, keep their opening
    how = STORY.model_copy(update={"text": "How do you roll out a change to an HTTP client library?"})
    assert "Last year I pushed an update to our notification service on a Friday afternoon." in {
        f.quote for f in draft_by_contrast(how, embed)[1]
    }


def _measure_drafting():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "measure_drafting.py"
    spec = importlib.util.spec_from_file_location("measure_drafting", script)
    assert spec is not None and spec.loader is not None
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    return measure


def test_measure_drafting_switches_each_story_rule_off(embed, monkeypatch):
    """`measure_drafting.py --without RULE`: the README's story-rule figures come from these switches."""
    from grader.rubric import contrast

    measure = _measure_drafting()
    assert set(measure.RULES) == {"scene", "conduct", "opening"}
    key_points, red_flags = draft_by_contrast(STORY, embed)
    quotes = {p.quote for p in [*key_points, *red_flags]}
    measure.switch_off(["opening"], monkeypatch.setattr)
    key_points, red_flags = draft_by_contrast(STORY, embed)
    back = {p.quote for p in [*key_points, *red_flags]} - quotes
    assert back & {
        "I shipped a change to our checkout service that swapped its HTTP client.",
        "Last year I pushed an update to our notification service on a Friday afternoon.",
    }
    assert contrast.sets_scene("We needed to pick a queue quickly.")
    measure.switch_off(["scene", "conduct"], monkeypatch.setattr)
    assert not contrast.sets_scene("We needed to pick a queue quickly.")
    assert not contrast._speaks_of_itself(["I do this.", "I do that."])


def test_measure_drafting_crosses_one_rubrics_key_points_with_anothers_red_flags(embed):
    """The README's "which half of a draft costs the grades" rows: key points from one rubric, red flags
    from the other, question by question."""
    measure = _measure_drafting()
    hand = stripped(3)
    hand = hand.with_questions([load_rubric().find(q.id) for q in hand.questions])
    draft = draft_offline(hand, embed)
    drafted = hand.with_questions(
        [q.model_copy(update=dict(zip(("key_points", "red_flags"), draft(q), strict=True))) for q in hand.questions]
    )
    mixed = measure.crossed(drafted, hand)
    for q, d, h in zip(mixed.questions, drafted.questions, hand.questions, strict=True):
        assert q.point_ids == d.point_ids != h.point_ids
        assert [f.id for f in q.red_flags] == [f.id for f in h.red_flags] != [f.id for f in d.red_flags]
        assert q.references == h.references


def test_measure_drafting_stands_in_for_review_with_the_mapped_points_phrasings(embed):
    """The README's "a reviewer's stand-in" row: a drafted point whose quote is a hand-written point's gets
    that point's phrasings; one that maps to no point gets none."""
    from grader.backends.local.embedder import Embedder

    measure = _measure_drafting()
    hand = load_rubric().with_questions([load_rubric().find(1)])
    h = hand.questions[0]
    target = h.key_points[0]
    mapped = target.model_copy(update={"id": "q01.drafted", "phrasings": [], "quote": target.text})
    unrelated = target.model_copy(
        update={"id": "q01.other", "phrasings": [], "text": "Enjoys jazz.", "quote": "I like jazz on Sundays."}
    )
    drafted = hand.with_questions([h.model_copy(update={"key_points": [mapped, unrelated], "red_flags": []})])
    reviewed = measure.with_borrowed_phrasings(drafted, hand, Embedder.load()).questions[0]
    assert reviewed.key_points[0].phrasings == target.phrasings and target.phrasings
    assert reviewed.key_points[1].phrasings == []


def test_measure_saf_points_grades_in_uqs_condition_with_the_great_reference_alone(monkeypatch):
    """`scripts/measure_saf_points.py`: the mechanical split and the contrast draft of the saf-ua rubric, as
    saf-ua shows it or from the great reference alone, as saf-uq has it."""
    import importlib.util
    from pathlib import Path

    from grader.eval.suites import load
    from grader.rubric.draft import draft_by_splitting
    from grader.rubric.model import References

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    monkeypatch.syspath_prepend(str(scripts))
    spec = importlib.util.spec_from_file_location("measure_saf_points", scripts / "measure_saf_points.py")
    assert spec is not None and spec.loader is not None
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    ua = load("saf-ua").rubric
    ua = ua.with_questions(ua.questions[:3])
    alone = measure.rubric_for(ua, "mechanical", one_reference=True)
    assert all(not q.references.mediocre and not q.references.poor and not q.red_flags for q in alone.questions)
    great_only = [q.model_copy(update={"references": References(great=q.references.great)}) for q in ua.questions]
    assert [q.point_ids for q in alone.questions] == [[p.id for p in draft_by_splitting(q)[0]] for q in great_only]
    shown = measure.rubric_for(ua, "drafted", one_reference=False)
    assert [q.references for q in shown.questions] == [q.references for q in ua.questions]
    assert all(p.draft and p.quote for q in shown.questions for p in q.key_points)


def test_a_chat_draft_of_a_story_loses_its_opening_too(embed):
    from grader.rubric.contrast import screen

    great = [s.strip() + "." for s in STORY.references.great.split(".") if s.strip()]
    kps = [KeyPoint(id=f"q21.p{i}", text=s, quote=s, draft=True) for i, s in enumerate(great)]
    opening = "Last year I pushed an update to our notification service on a Friday afternoon."
    rfs = [
        RedFlag(id="q21.friday", text="Pushes on a Friday", quote=opening, draft=True),
        RedFlag(id="q21.blame", text="Blames QA", quote="Honestly, QA should have caught it.", draft=True),
    ]
    kept, flags, dropped = screen(STORY, kps, rfs, embed)
    assert "q21.p0" in dropped and {"q21.p1", "q21.p2", "q21.p3", "q21.p4"} <= {p.id for p in kept}
    assert [f.id for f in flags] == ["q21.blame"]


def test_a_knowledge_question_is_drafted_one_act_per_point_without_its_framing(embed):
    q = question(
        "secure",
        6,
        "How do you secure an internal API?",
        great="Security is essential in every service. For authorization, I follow the principle of least "
        "privilege and implement role-based access controls. Input handling is critical—I validate every input "
        "on the server. I rotate credentials through a secrets manager.",
        mediocre="I put the API behind the VPN and check that requests come from our network.",
        poor="I rely on the network team's firewall to keep the API safe.",
    )
    key_points, _ = draft_by_contrast(q, embed)
    assert [p.text for p in key_points] == [
        "For authorization, follows the principle of least privilege",
        "Implements role-based access controls",
        "Validates every input on the server",
        "Rotates credentials through a secrets manager",
    ]


def test_scene_claims_only_top_up_the_minimum_of_key_points(embed):
    q = question(
        "outage",
        5,
        "Tell me about an outage you handled.",
        great="We needed to restore the billing service before the morning run. "
        "I had no runbook and two hours. I rolled traffic back to the previous build. "
        "I wrote a postmortem with three concrete follow-ups.",
        mediocre="I restarted things until the service came back.",
        poor="I waited for the on-call lead to fix it.",
    )
    key_points, _ = draft_by_contrast(q, embed)
    scene = [p.quote for p in key_points if sets_scene(p.quote or "")]
    assert len(key_points) == KEY_POINTS[0] and len(scene) == 1, [p.quote for p in key_points]


def test_a_wrong_fact_stays_a_red_flag_where_answers_state_facts(embed):
    q = question(
        "process",
        4,
        "What is the difference between a process and a thread?",
        great="A process has its own address space and resources. Threads of one process share "
        "its memory and open files. Switching between threads is cheaper than between processes.",
        mediocre="A process is a running program and threads run inside it.",
        poor="A process and a thread are the same thing with two names. We use both words.",
    )
    _, red_flags = draft_by_contrast(q, embed)
    assert "A process and a thread are the same thing with two names." in {f.quote for f in red_flags}


def test_review_notes_flag_alike_references_and_missing_points(embed):
    rubric = stripped(3)
    q0, q1, q2 = rubric.questions
    alike = q0.model_copy(update={"references": q0.references.model_copy(update={"mediocre": q0.references.great})})
    kps, rfs = draft_offline(rubric, embed)(q2)
    drafted = q2.model_copy(update={"key_points": kps, "red_flags": rfs})
    notes = review_notes(rubric.model_copy(update={"questions": [alike, q1, drafted]}), embed)
    kinds = [(n.kind, n.question) for n in notes]
    assert kinds[0] == ("too_alike", q0.id)
    assert ("no_points", q1.id) in kinds
    assert ("unreviewed_flags", q2.id) in kinds
    assert ("unreviewed", q2.id) in kinds
    order = [k for k, _ in kinds]
    # the drafted red flags come before the drafted key points: a flag shown makes a grade poor
    assert order.index("no_points") < order.index("unreviewed_flags") < order.index("unreviewed")
    flag_note = next(n for n in notes if n.kind == "unreviewed_flags")
    assert all(f"{f.id}: {f.text}" in flag_note.message.splitlines()[1 + i] for i, f in enumerate(rfs))


def test_review_notes_leave_reviewed_red_flags_alone(embed):
    """A draft whose red flags a person has reviewed (`draft` cleared) gets no red-flag note."""
    rubric = stripped(1)
    (q,) = rubric.questions
    kps, rfs = draft_offline(rubric, embed)(q)
    reviewed = [f.model_copy(update={"draft": False}) for f in rfs]
    notes = review_notes(
        rubric.with_questions([q.model_copy(update={"key_points": kps, "red_flags": reviewed})]), embed
    )
    assert "unreviewed_flags" not in {n.kind for n in notes}
    assert "unreviewed" in {n.kind for n in notes}


def test_a_note_to_whoever_grades_is_listed_for_review_not_dropped(embed):
    """The drafter leaves a reference's notes to the grader out of its claims; the review list shows them,
    verbatim and by reference, while the question's points are still drafts."""
    q = question(
        "observe",
        1,
        "How do you make a backend service observable?",
        great="I keep structured logs with a request id on every line. I alert on the SLOs that users feel. "
        "Note: an answer that only names the pillars is mediocre.",
        mediocre="I add logging and some metrics (NB: either tool is fine).",
        poor="I print to stdout and check the server when users complain.",
    )
    kps, rfs = draft_by_contrast(q, embed)
    assert not any("Note" in p.quote or "NB" in p.quote for p in [*kps, *rfs])
    drafted = q.model_copy(update={"key_points": kps, "red_flags": rfs})
    rubric = stripped(1).with_questions([drafted])
    (note,) = [n for n in review_notes(rubric, embed) if n.kind == "grading_notes"]
    assert "great: Note: an answer that only names the pillars is mediocre." in note.message
    assert "mediocre: (NB: either tool is fine)" in note.message
    reviewed = drafted.model_copy(
        update={
            "key_points": [p.model_copy(update={"draft": False}) for p in kps],
            "red_flags": [f.model_copy(update={"draft": False}) for f in rfs],
        }
    )
    assert "grading_notes" not in {n.kind for n in review_notes(rubric.with_questions([reviewed]), embed)}


def test_rubric_new_on_a_pasted_bank_counts_in_words_and_lists_its_note(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(
        "1. How do you make a backend service observable?\n"
        'Great Response: "I cover the three pillars:\n'
        "● Structured logs with a request id on every line.\n"
        "● Metrics for latency and errors, with alerts on the SLOs users feel (2 points)\n"
        "● Distributed tracing with OpenTelemetry for every failed request.\n"
        'Note: an answer that only names the pillars is mediocre."\n'
        'Mediocre Response: "I add logging and some metrics, and I look at dashboards when something breaks."\n'
        'Poor Response: "I print to stdout and check the server when users complain."\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["rubric", "new", str(bank), "-o", str(out), "--no-self-test", "-b", "local"])
    assert result.exit_code == 0, result.output
    assert "drafted 3 key points, 1 red flag (" in result.output
    assert "1 question, checked" in result.output
    assert "great: Note: an answer that only names the pillars is mediocre." in result.output
    (q,) = load_rubric(out).questions
    assert [p.text for p in q.key_points] == [
        "Structured logs with a request id on every line",
        "Metrics for latency and errors, with alerts on the SLOs users feel",
        "Distributed tracing with OpenTelemetry for every failed request",
    ]


def test_rubric_new_then_edit_keeps_ids_and_unchanged_points(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(first_questions(3), encoding="utf-8")
    result = runner.invoke(app, ["rubric", "new", str(bank), "-o", str(out), "--no-self-test", "-b", "local"])
    assert result.exit_code == 0, result.output
    first = load_rubric(out)
    assert [q.id for q in first.questions] == [q.id for q in load_rubric().questions[:3]]
    assert all(q.key_points and q.red_flags for q in first.questions)
    assert "Review first" in result.output

    text = bank.read_text(encoding="utf-8")
    poor = first.questions[2].references.poor or ""
    bank.write_text(text.replace(poor[:40], "Honestly I just ship it and see. " + poor[:40]), encoding="utf-8")
    again = runner.invoke(app, ["rubric", "new", str(bank), "-o", str(out), "--no-self-test", "-b", "local"])
    assert again.exit_code == 0, again.output
    assert "kept the points of 2 unchanged questions" in again.output
    second = load_rubric(out)
    assert [q.id for q in second.questions] == [q.id for q in first.questions]
    assert second.questions[0].key_points == first.questions[0].key_points
    assert second.questions[2].references.poor != poor


def test_rubric_new_refuses_a_bank_with_no_questions(tmp_path):
    bank = tmp_path / "empty.txt"
    bank.write_text("Recruiter's Questions\nnothing here\n", encoding="utf-8")
    result = runner.invoke(app, ["rubric", "new", str(bank), "-o", str(tmp_path / "x.yaml"), "--no-self-test"])
    assert result.exit_code == RubricError.exit_code
    assert "empty.txt" in result.output and "no questions found" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_question_without_points_is_sent_for_review_and_not_sure(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    q = stripped(1).questions[0]
    grade = api.grade(q, q.references.great, backend="local")
    assert grade.needs_review
    assert grade.confidence is not None and grade.confidence <= 0.5
    assert "no key points" in grade.justification


def test_a_chat_draft_is_tidied_where_nothing_is_lost_and_re_asked_where_something_is():
    from grader.rubric.draft import MAX_PHRASINGS, check_draft

    q = stripped(1).questions[0]
    quote = "I start by gathering relevant information"
    flag = {"quote": q.references.poor.split(".")[0], "name": "rush", "text": "Rushes a fix", "phrasings": []}
    points = [
        {"quote": quote, "name": f"g{i}", "text": t, "phrasings": ["I pull the logs before anything."]}
        for i, t in enumerate(TEXTS)
    ]
    # A small model's habits: the point explained after it, in the first person; too many phrasings, one
    # of them blank; one point quoting words the reference never says.
    points[0]["text"] = (
        "I gather the logs first. This helps me understand what changed recently and why the whole service broke."
    )
    points[1]["phrasings"] = ["  ", *[f"I check deploy number {n}." for n in range(MAX_PHRASINGS + 2)]]
    invented = {"quote": "I page the whole company", "name": "page", "text": "Pages everyone", "phrasings": []}
    check = check_draft(json.dumps({"key_points": [*points, invented], "red_flags": [flag]}), q)
    assert check.ok, check.errors
    assert [p.text for p in check.reply.key_points] == ["Gathers the logs first", *TEXTS[1:]]
    assert check.reply.key_points[1].phrasings == [f"I check deploy number {n}." for n in range(MAX_PHRASINGS)]
    assert check.dropped == ["key_points[3] (quote not in the reference)"]
    # Too few left once the invented ones go: the model is asked again, told which quote is wrong.
    few = check_draft(json.dumps({"key_points": [points[1], invented, invented], "red_flags": [flag]}), q)
    assert not few.ok
    assert "key_points[1].quote is not a verbatim quote of the great reference" in few.errors


TEXTS = ["Gathers logs first", "Checks recent deployments", "Looks for patterns in failures"]


def test_drafting_hands_over_the_rubric_after_each_question_so_a_killed_run_keeps_it(tmp_path):
    """`rubric draft` saves after every question: a run killed half way has the first questions drafted,
    and the next run drafts only the rest."""
    import asyncio

    from grader.rubric import save_rubric
    from grader.rubric.draft import draft_rubric

    bank = stripped(3)
    seen: list[list[int]] = []

    def on_drafted(rubric, line):
        assert line.startswith(rubric.questions[len(seen)].id + ": drafted")
        seen.append([len(q.key_points) for q in rubric.questions])
        if len(seen) == 2:
            save_rubric(rubric, tmp_path / "partial.yaml")
            raise KeyboardInterrupt  # killed after the second question

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(draft_rubric(bank, None, on_drafted))
    assert seen[0][0] > 0 and seen[0][1:] == [0, 0]
    assert seen[1][:2] == [seen[0][0], seen[1][1]] and seen[1][1] > 0 and seen[1][2] == 0
    partial = load_rubric(tmp_path / "partial.yaml")
    resumed, report = asyncio.run(draft_rubric(partial, None))
    assert [line.split(":")[0] for line in report] == [bank.questions[2].id]
    assert [q.key_points for q in resumed.questions[:2]] == [q.key_points for q in partial.questions[:2]]
    assert resumed.questions[2].key_points


def test_a_chat_draft_is_screened_like_an_offline_one(embed):
    """A model's key point the mediocre reference makes just as well, or a red flag the great reference
    shares, is dropped: such a flag would mark a great answer poor."""
    from grader.rubric import KeyPoint, RedFlag
    from grader.rubric.contrast import screen

    q = question(
        "incident",
        1,
        "How do you handle a production incident?",
        great="I reproduce the bug in a staging copy first. I write a regression test that fails. "
        "I run a blameless post-mortem afterwards. I check the application logs.",
        mediocre="I check the application logs and fix what is broken.",
        poor="I check the application logs. Then I just restart the server and hope it stays up.",
    )
    quotes = [s.strip() for s in q.references.great.split(".") if s.strip()]
    kps = [KeyPoint(id=f"q01.p{i}", text=s, quote=s, draft=True) for i, s in enumerate(quotes)]
    rfs = [
        RedFlag(id="q01.logs", text="Checks the logs", quote="I check the application logs", draft=True),
        RedFlag(id="q01.restart", text="Restarts and hopes", quote="I just restart the server", draft=True),
        RedFlag(id="q01.outage", text="Had an outage", quote="The server went down at night", draft=True),
    ]
    kept, flags, dropped = screen(q, kps, rfs, embed)
    assert [p.id for p in kept] == ["q01.p0", "q01.p1", "q01.p2"]
    assert [f.id for f in flags] == ["q01.restart"]
    assert dropped == ["q01.p3", "q01.logs", "q01.outage"]  # what happened is no flag: not the speaker's doing


def test_a_chat_draft_is_screened_for_framing_and_claims_that_lean_on_the_one_before(embed):
    from grader.rubric import KeyPoint
    from grader.rubric.contrast import screen

    q = question(
        "shortcuts",
        2,
        "How do you balance speed and quality?",
        great="Observability is essential in distributed systems. I ship small releases behind feature flags. "
        "I tell contained shortcuts from compounding ones. For the former, I push back harder. "
        "I schedule refactoring time every sprint.",
        mediocre="I try to write clean code but deadlines come first.",
        poor="I ship what the business asks for and fix problems later.",
    )
    quotes = [
        "Observability is essential in distributed systems",
        "I ship small releases behind feature flags",
        "I tell contained shortcuts from compounding ones",
        "For the former, I push back harder",
        "I schedule refactoring time every sprint",
    ]
    kps = [KeyPoint(id=f"q02.p{i}", text=t, quote=t, draft=True) for i, t in enumerate(quotes)]
    kept, _, dropped = screen(q, kps, [], embed)
    assert [p.id for p in kept] == ["q02.p1", "q02.p2", "q02.p4"]
    assert dropped == ["q02.p0", "q02.p3"]


def test_a_chat_draft_is_screened_for_a_line_that_opens_a_list(embed):
    from grader.rubric import KeyPoint
    from grader.rubric.contrast import screen

    quotes = [
        "I cover the three pillars:",
        "Structured logs with a request id on every line.",
        "Metrics for latency and errors, with alerts on the SLOs users feel.",
        "Distributed tracing with OpenTelemetry for every failed request.",
    ]
    kps = [KeyPoint(id=f"q03.p{i}", text=t, quote=t, draft=True) for i, t in enumerate(quotes)]
    kept, _, dropped = screen(PASTED, kps, [], embed)
    assert [p.id for p in kept] == ["q03.p1", "q03.p2", "q03.p3"]
    assert dropped == ["q03.p0"]


def test_a_chat_draft_of_a_story_is_screened_for_scenes_and_what_happened(embed):
    from grader.rubric import KeyPoint, RedFlag
    from grader.rubric.contrast import screen

    q = question(
        "hard-call",
        3,
        "Tell me about a time you made a technical decision under pressure.",
        great="We needed to choose a queue for a new payments pipeline within a week. "
        "I wrote down the must-have criteria first. I shortlisted three brokers against those criteria. "
        "I built a small load test for each one. I recorded the decision in an architecture record.",
        mediocre="I read some comparisons online and chose PostgreSQL because we needed joins.",
        poor="We needed to replace our old queue. Our old queue kept crashing in production. "
        "Honestly, I was just guessing at the cause. The project shipped on time.",
    )
    great = [s.strip() + "." for s in q.references.great.split(".") if s.strip()]
    kps = [KeyPoint(id=f"q03.p{i}", text=s, quote=s, draft=True) for i, s in enumerate(great)]
    rfs = [
        RedFlag(id="q03.crash", text="Queue crashed", quote="Our old queue kept crashing in production", draft=True),
        RedFlag(id="q03.guess", text="Guesses", quote="Honestly, I was just guessing at the cause", draft=True),
        RedFlag(id="q03.on-time", text="Shipped on time", quote="The project shipped on time", draft=True),
        RedFlag(id="q03.scene", text="Needed a queue", quote="We needed to replace our old queue", draft=True),
    ]
    kept, flags, dropped = screen(q, kps, rfs, embed)
    assert "q03.p0" in dropped and "q03.p0" not in {p.id for p in kept}  # the scene
    assert [f.id for f in flags] == ["q03.guess"]  # a scene with a shortcut named is held against it
    fact = question(
        "process",
        4,
        "What is the difference between a process and a thread?",
        great="A process has its own address space. Threads of one process share its memory.",
        mediocre="A process is a running program.",
        poor="Threads are a feature of the Java language only.",
    )
    wrong = RedFlag(
        id="q04.java", text="Java only", quote="Threads are a feature of the Java language only", draft=True
    )
    assert screen(fact, [], [wrong], embed)[1] == [wrong]  # answers that state facts: a wrong one is a flag


def test_the_draft_schema_bounds_a_self_hosted_model_and_stays_in_openais_strict_subset(tmp_path):
    """A small model explains each point for a paragraph until its context is full: a self-hosted
    server's grammar gets the lengths and item counts; OpenAI's strict mode, which refuses them, does not."""
    from grader.backends.chat import Conversation
    from grader.backends.openai import OpenAIBackend, ServerMemory
    from grader.grading.contract import GradeRequest
    from grader.rubric.draft import KEY_POINTS, MAX_CHARS, draft_schema

    q = stripped(1).questions[0]
    conversation = Conversation(messages=[{"role": "user", "content": "x"}], schema=draft_schema(), name="draft")
    request = GradeRequest(q, "")

    def sent(**kwargs):
        backend = OpenAIBackend(api_key="sk-x", memory=ServerMemory(tmp_path / "s.json"), **kwargs)
        return backend.request_body(conversation, request)["response_format"]["json_schema"]["schema"]

    local = sent(base_url="http://127.0.0.1:8765/v1")
    assert local["properties"]["key_points"]["maxItems"] == KEY_POINTS[1]
    assert local["$defs"]["DraftPoint"]["properties"]["text"]["maxLength"] == MAX_CHARS
    assert local["$defs"]["DraftPoint"]["properties"]["phrasings"]["items"]["maxLength"] == 200
    remote = json.dumps(sent())
    assert "maxLength" not in remote and "maxItems" not in remote


@pytest.mark.parametrize("status", [400, 401])
def test_a_request_the_server_refuses_falls_back_offline_but_a_bad_key_stops(status, tmp_path):
    """A 400 is this question's request (re-asks that outgrow a small model's context): that question is
    drafted offline and the run goes on. A 401 would meet every question: it stops the run."""
    import asyncio

    import httpx
    import httpx2
    import respx

    from grader.backends.openai import OpenAIBackend, ServerMemory
    from grader.errors import BackendError
    from grader.rubric.draft import draft_rubric
    from tests.conftest import respx_transport

    router = respx.Router(base_url="http://127.0.0.1:9/v1", assert_all_called=False)
    message = {400: "request (4114 tokens) exceeds the available context size (4096 tokens)", 401: "bad key"}
    router.post("/chat/completions").mock(
        return_value=httpx.Response(status, json={"error": {"message": message[status]}})
    )
    backend = OpenAIBackend(
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.AsyncClient(transport=respx_transport(router)),
        memory=ServerMemory(tmp_path / "servers.json"),
    )
    bank = stripped(1)
    if status == 401:
        with pytest.raises(BackendError, match="HTTP 401"):
            asyncio.run(draft_rubric(bank, backend))
        return
    drafted, report = asyncio.run(draft_rubric(bank, backend))
    assert drafted.questions[0].key_points and all(p.draft for p in drafted.questions[0].key_points)
    assert "offline, because the model gave no valid draft" in report[0] and "HTTP 400" in report[0]


def test_a_short_great_reference_with_few_drafted_points_is_listed_for_review(embed):
    q = question(
        "idempotent",
        6,
        "What makes an HTTP method idempotent?",
        great="Sending it twice leaves the server as sending it once does.",
        mediocre="It is safe to retry.",
        poor="It is fast.",
    )
    kps, rfs = draft_by_contrast(q, embed)
    assert 0 < len(kps) < 3, [p.text for p in kps]
    drafted = q.model_copy(update={"key_points": kps, "red_flags": rfs})
    notes = [n for n in review_notes(stripped(1).with_questions([drafted]), embed) if n.kind == "few_points"]
    assert [n.message.split(":")[0] for n in notes] == [f"only {len(kps)} key point{'s' * (len(kps) > 1)} drafted"]
    # Reviewed (or written by hand), a short list is the team's choice: no note.
    reviewed = [p.model_copy(update={"draft": False}) for p in kps]
    notes = review_notes(stripped(1).with_questions([drafted.model_copy(update={"key_points": reviewed})]), embed)
    assert "few_points" not in {n.kind for n in notes}


def test_the_self_test_names_its_perturbations_as_generated_only():
    """`grader eval --rubric` adds eight hand-written perturbations: the same name gave different figures."""
    import asyncio

    from grader.backends import get_backend
    from grader.eval.suites import perturbations_suite
    from grader.rubric.selftest import self_test

    rubric = load_rubric().with_questions(load_rubric().questions[:2])
    backend = get_backend("nearest")
    try:
        figures = asyncio.run(self_test(rubric, backend)).figures
    finally:
        asyncio.run(backend.aclose())
    assert list(figures) == ["references", "perturbations (generated only)"]
    generated = perturbations_suite(rubric, hand_written=False)
    assert figures["perturbations (generated only)"]["cases"] == len(generated.cases)
    assert len(perturbations_suite(rubric).cases) > len(generated.cases)


# A team's question from a trial: the offline drafter made a red flag of the poor reference's "Rate limiting
# usually annoys customers", and the grader found it in the great reference's "while enforcing an average rate".
RATE_LIMITING = (
    "1. How would you design rate limiting for a public API?\n"
    'Great Response: "I start by deciding what to limit on: per API key, per user and per IP, with separate limits '
    "for expensive endpoints. I usually pick a token bucket algorithm because it allows short bursts while "
    "enforcing an average rate, and I keep the counters in Redis with atomic Lua scripts so that every gateway "
    "instance shares the same state. When a client is over the limit I return HTTP 429 with a Retry-After header "
    "and expose the remaining quota in X-RateLimit headers so clients can back off gracefully. I decide up front "
    "whether to fail open or fail closed if Redis is unavailable, and I monitor rejection rates per client to tune "
    'the limits and spot abuse."\n'
    'Mediocre Response: "I would limit how many requests each user can make per minute, for example 100 requests. '
    "I'd store a counter somewhere like Redis and reset it every minute. If the user goes over the limit, the API "
    "returns an error so they stop sending requests. Most frameworks and API gateways have a plugin for this, so I "
    'would use that."\n'
    'Poor Response: "I would just add more servers behind the load balancer so we can handle all the traffic. If '
    "someone sends too many requests, we can block their IP address manually in the firewall. Rate limiting usually "
    "annoys customers, so I'd rather not limit them at all unless we are being attacked.\"\n"
)


def test_a_red_flag_the_grader_shows_on_the_great_reference_is_the_first_thing_to_review(tmp_path):
    """`rubric new` printed the self-test's accuracy and 'Nothing flagged for review' while a drafted red flag
    marked the bank's own great reference, and strong answers like it, poor."""
    import asyncio

    from grader.backends.local.backend import LocalBackend
    from grader.rubric.draft import draft_rubric
    from grader.rubric.selftest import flags_on_references, self_test

    bank = tmp_path / "bank.txt"
    bank.write_text(RATE_LIMITING, encoding="utf-8")
    drafted, _ = asyncio.run(draft_rubric(import_bank(bank).rubric, None))
    (q,) = drafted.questions
    assert "q01.limiting-annoys-customers" in q.flag_ids
    tested = asyncio.run(self_test(drafted, LocalBackend()))
    great = [m for m in tested.misgraded if m.tier == "great"]
    assert [(m.case, m.graded, m.red_flags) for m in great] == [
        ("ref-01-great", "poor", ("q01.limiting-annoys-customers",))
    ]
    assert great[0].line() == (
        f"{q.id}: the great reference (ref-01-great) graded poor, red flag q01.limiting-annoys-customers"
    )
    (note,) = flags_on_references(tested.references)
    assert note.kind == "flag_on_reference" and note.question == q.id
    assert note.message.startswith(
        "red flag q01.limiting-annoys-customers is shown on the great reference (graded poor)"
    )


def test_flags_on_references_name_each_flag_once_with_every_reference_it_is_shown_on():
    from grader.rubric.selftest import Note, ReferenceGrade, flags_on_references

    graded = [
        ReferenceGrade("ref-01-great", "q", "great", "poor", ("q01.a", "q01.b")),
        ReferenceGrade("ref-01-mediocre", "q", "mediocre", "poor", ("q01.a",)),
        ReferenceGrade(
            "ref-01-poor", "q", "poor", "mediocre", ()
        ),  # a poor reference not graded poor: no flag to blame
        ReferenceGrade("ref-02-poor", "r", "poor", "poor", ("q02.c",)),  # a flag on the poor reference is its job
        # graded great all the same (a chat model may show a flag and keep the tier): the flag is still named
        ReferenceGrade("ref-03-great", "s", "great", "great", ("q03.d",)),
    ]
    notes = flags_on_references(graded)
    assert [(n.question, n.message.split(":")[0]) for n in notes] == [
        ("q", "red flag q01.a is shown on the great and mediocre references (graded poor)"),
        ("q", "red flag q01.b is shown on the great reference (graded poor)"),
        ("s", "red flag q03.d is shown on the great reference (graded great)"),
    ]
    assert Note.ORDER[0] == "flag_on_reference"  # listed before every other note
    assert graded[0].line() == "q: the great reference (ref-01-great) graded poor, red flags q01.a, q01.b"
    assert graded[1].line() == "q: the mediocre reference (ref-01-mediocre) graded poor, red flag q01.a"
    failed = ReferenceGrade("ref-04-great", "t", "great", "failed", ())
    assert failed.misgraded and failed.line() == "t: the great reference (ref-04-great) could not be graded (failed)"


def test_rubric_new_s_self_test_gives_shares_of_its_own_size_and_names_the_references_it_misgraded(
    tmp_path, monkeypatch
):
    """'needs_review 12 | 12' read as the same, for 12 of 12 references against 12 of 60; and which references
    failed could only be dug out of an eval report."""
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(first_questions(2), encoding="utf-8")
    result = runner.invoke(app, ["rubric", "new", str(bank), "-o", str(out), "-b", "nearest"])
    assert result.exit_code == 0, result.output
    rows = {tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in result.output.splitlines() if "│" in line}
    assert ("references", "cases", "6", "60") in rows
    review = next(r for r in rows if r[:2] == ("references", "needs_review"))
    assert re.fullmatch(r"\d+ of 6", review[2]) and re.fullmatch(r"\d+ of 60", review[3])
    listed = re.search(r"References graded to another tier \((\d+) of 6\):\n((?:- .*\n)+)", result.output)
    assert listed is not None
    lines = listed.group(2).splitlines()
    assert len(lines) == int(listed.group(1)) > 0
    assert all(
        re.match(r"- [a-z-]+: the (great|mediocre|poor) reference \(ref-0[12]-\w+\) graded \w+", line) for line in lines
    )
    assert f"Mark a point or flag reviewed by deleting its `draft: true` in {out}" in result.output
    # notes of one kind in the bank's order (question 1 before 2), not the slugs' alphabetical order
    unreviewed = [
        line.split(":")[0] for line in result.output.splitlines() if line.endswith("key points not reviewed yet")
    ]
    assert unreviewed == ["- debugging-a-production-issue", "- api-design"]


def test_a_second_act_after_and_afterwards_i_is_a_claim_of_its_own():
    """'..., and afterwards I write a blameless postmortem with action items' stayed inside the claim before it,
    cut off by the point's length: a team's core point was never drafted (neither dev set has the form: both
    draft as before)."""
    text = (
        "Once the service is stable I dig into the root cause, and afterwards I write a blameless postmortem "
        "with action items that have owners and due dates."
    )
    parts = split_claims(text)
    assert [c.text for c in parts] == [
        "Once the service is stable I dig into the root cause",
        "afterwards I write a blameless postmortem with action items that have owners and due dates.",
    ]
    assert (
        statement(parts[1].text, parts[1].goes_on)
        == "Writes a blameless postmortem with action items that have owners and due dates"
    )
