"""The shipped rubric, the seed importer and rubric validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grader.errors import RubricError, UnknownQuestionError
from grader.resources import data_dir
from grader.rubric import dump_rubric, load_rubric, parse_rubric
from grader.rubric.importer import import_bank, parse_bank, slugify

SEED = data_dir("rubric") / "recruiters-questions.txt"


def test_shipped_rubric_has_the_twenty_seed_questions(rubric):
    assert [q.number for q in rubric] == list(range(1, 21))
    assert rubric.find(1).id == "debugging-a-production-issue"
    for q in rubric:
        assert 4 <= len(q.key_points) <= 8, q.id
        assert 1 <= len(q.red_flags) <= 4, q.id
        for p in [*q.key_points, *q.red_flags]:
            assert re.fullmatch(rf"q{q.number:02d}\.[a-z0-9-]+", p.id), p.id
            assert len(p.text.split()) <= 16 and not p.draft


def test_reimporting_the_seed_reproduces_the_references_byte_for_byte(rubric):
    imported = import_bank(SEED).rubric
    raw = SEED.read_text(encoding="utf-8")
    for shipped, fresh in zip(rubric, imported, strict=True):
        assert shipped.references == fresh.references
        assert shipped.text == fresh.text
        for _, text in fresh.references.items():
            assert f'"{text}"' in raw  # exactly the text between the quotes of the source line


def test_import_reports_ignored_trailing_lines():
    result = import_bank(SEED)
    assert [text for _, text in result.ignored_lines] == ["Recruiter\u2019s Questions", "Last updated"]


def test_rubric_round_trips_through_yaml(rubric):
    assert parse_rubric(dump_rubric(rubric)) == rubric


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        ("How do you approach debugging a production issue?", "debugging-a-production-issue"),
        ("Describe your experience with API design.", "api-design"),
        (
            "Tell me about a time you had to make a technical decision with limited information.",
            "make-a-technical-decision",
        ),
    ],
)
def test_slugify(given, wanted):
    assert slugify(given) == wanted


GOOD_BANK = '1. Why?\nGreat Response: "a"\nMediocre Response: "b"\nPoor Response: "c"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("Title only\nLast updated\n", "no questions found", id="no-questions"),
        pytest.param("", "no questions found", id="empty-file"),
        pytest.param(
            '1. Why?\nGreat Response: "a"\nPoor Response: "c"\n',
            ":1: question 1 has no mediocre response (each question needs a great, a mediocre and a poor one",
            id="missing-tier",
        ),
        pytest.param(
            GOOD_BANK + GOOD_BANK.replace("Why", "How"),
            ":5: duplicate question number 1 (first at line 1)",
            id="duplicate-number",
        ),
        pytest.param(
            '1. Why?\nGreat Response: "a"\nGreat Response: "b"\n',
            ":3: question 1 has a second great response",
            id="twice",
        ),
        pytest.param(
            'Great Response: "a"\n', ":1: 'Great Response' before any numbered question", id="orphan-response"
        ),
        pytest.param(
            '1. Why?\nGreat Response: "a"\nstray words\n', ":3: unexpected text inside question 1", id="stray-text"
        ),
        pytest.param(
            '1. Why?\nGreat Response: ""\n', ":2: question 1: the great response is empty", id="empty-response"
        ),
        pytest.param('1. Why?\nGreat Response: "a\nb\n', "quote is never closed", id="unclosed-quote"),
    ],
)
def test_malformed_banks_name_the_line(text, message):
    with pytest.raises(RubricError) as info:
        parse_bank(text, label="bank.txt")
    assert str(info.value).startswith("bank.txt")
    assert message in str(info.value)


def test_curly_quotes_and_multiline_responses():
    text = (
        "Questions\n\n3) How do you test?\n"
        "Great Response: \u201cI write tests,\nthen more tests.\u201d\n"
        "mediocre response: unquoted answer\n"
        'Poor Response: "I don\'t."\nLast updated\n'
    )
    q = parse_bank(text).rubric.questions[0]
    assert q.number == 3
    assert q.references.great == "I write tests,\nthen more tests."
    assert q.references.mediocre == "unquoted answer"
    assert q.references.poor == "I don't."


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """name: t
questions:
- id: first
  number: 1
  text: Why?
  references:
    great: a
    mediocre: b
    poor: c
  key_points:
  - id: q01.one
    text: One thing
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            BASE.replace("  number: 1\n", "  number: 1\n  colour: red\n"),
            "r.yaml:5: question first: colour: unknown field",
            id="unknown-field",
        ),
        pytest.param(BASE + BASE.split("questions:\n")[1], "duplicate question id 'first'", id="duplicate-id"),
        pytest.param(
            BASE.replace("poor: c", "poor: ' '"),
            "r.yaml:9: question first: references.poor: must not be empty",
            id="empty-reference",
        ),
        pytest.param(
            BASE.replace("q01.one", "Q 1"), "r.yaml:11: question first: key_points[0].id: invalid id", id="bad-point-id"
        ),
        pytest.param(
            BASE.replace("    great: a\n", ""), "question first: references.great: Field required", id="missing-tier"
        ),
        pytest.param("name: t\nquestions: [\n", "r.yaml:3: invalid YAML", id="bad-yaml"),
        pytest.param("- a\n- b\n", "a rubric is a mapping", id="not-a-mapping"),
    ],
)
def test_invalid_rubrics_name_file_line_question_and_field(tmp_path, text, expected):
    with pytest.raises(RubricError) as info:
        load_rubric(_write(tmp_path, text))
    assert expected in str(info.value)


def test_duplicate_point_ids_across_questions(tmp_path):
    second = BASE.split("questions:\n")[1].replace("id: first", "id: second").replace("number: 1", "number: 2")
    with pytest.raises(RubricError, match="duplicate point id 'q01.one'"):
        load_rubric(_write(tmp_path, BASE + second))


@pytest.mark.parametrize("ref", ["1", "01", "q1", "Q01", "debugging-a-production-issue"])
def test_find_by_number_or_id(rubric, ref):
    assert rubric.find(ref).number == 1


def test_unknown_question_suggests_the_closest_ids(rubric):
    with pytest.raises(UnknownQuestionError) as info:
        rubric.find("debuging")
    assert info.value.suggestions[0] == "debugging-a-production-issue"
    with pytest.raises(UnknownQuestionError):
        rubric.find("21")


def test_fingerprint_is_stable_and_follows_edits(rubric):
    q = rubric.find(1)
    first = q.fingerprint()
    assert q.fingerprint() == first == load_rubric().find(1).fingerprint()  # a fresh load agrees
    edited = q.model_copy(update={"text": q.text + " Why?"})
    assert edited.fingerprint() != first  # the copy does not inherit the cached value
    assert q.model_copy().fingerprint() == first
