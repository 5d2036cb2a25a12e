"""A team's own bank: ids that stay put across import and edits, key points drafted by contrasting the
three references, the review notes, and `grader rubric new` end to end."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from grader import api
from grader.backends.local.embedder import Embedder
from grader.cli import app
from grader.errors import RubricError
from grader.resources import data_dir
from grader.rubric import load_rubric
from grader.rubric.contrast import KEY_POINTS, MAX_WORDS, RED_FLAGS, draft_offline, statement
from grader.rubric.importer import import_bank, parse_bank
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
    ],
)
def test_statement_turns_a_first_person_claim_into_a_third_person_point(claim, expected):
    assert statement(claim) == expected


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
    assert ("unreviewed", q2.id) in kinds
    assert [k for k, _ in kinds].index("no_points") < [k for k, _ in kinds].index("unreviewed")


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
