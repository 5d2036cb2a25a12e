"""The shipped rubric, the seed importer and rubric validation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.cli import app
from grader.errors import OutputError, RubricError, UnknownQuestionError
from grader.resources import data_dir
from grader.rubric import dump_rubric, load_rubric, parse_rubric, save_rubric
from grader.rubric.importer import import_bank, parse_bank, slugify
from grader.rubric.model import KeyPoint, RedFlag

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
        # "would you" led every such id (a user trial): `would-you-design-an-idempotent`
        ("How would you design an idempotent ETL job?", "idempotent-etl-job"),
        ("How would you find and fix a slow Postgres query?", "find-and-fix-a-slow"),
        ("What would you do if a deploy broke checkout?", "deploy-broke-checkout"),
        ("How should you handle schema changes in event streams?", "schema-changes-in-event-streams"),
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


@pytest.mark.parametrize(
    "ref", ["1", "01", "q1", "Q01", "debugging-a-production-issue", "Debugging-A-Production-Issue", "1.0", " 1 "]
)
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


# --- writing rubrics never destroys what a person wrote (found by a user's trial) -------------------------

runner = CliRunner()
ONE = (
    "1. How do you roll out a risky database migration?\n"
    'Great Response: "I make it backward compatible, run it in batches behind a flag and keep a rollback ready."\n'
    'Mediocre Response: "I test it in staging first and run it at night."\n'
    'Poor Response: "I run it in production and fix whatever breaks."\n'
)


def rubric_new(bank: Path, out: Path, *more: str):
    return runner.invoke(app, ["rubric", "new", str(bank), "-o", str(out), "--no-self-test", "-b", "local", *more])


def test_rubric_new_never_replaces_a_rubric_it_cannot_read(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(ONE, encoding="utf-8")
    assert rubric_new(bank, out).exit_code == 0
    reviewed = out.read_text(encoding="utf-8").replace("red_flags:", "red_flgs:", 1)  # one typo in a reviewed file
    out.write_text(reviewed, encoding="utf-8")
    result = rubric_new(bank, out)
    assert result.exit_code == RubricError.exit_code, result.output
    assert "red_flgs" in result.output and f"{out} was not written" in result.output
    assert out.read_text(encoding="utf-8") == reviewed  # untouched
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n", encoding="utf-8")
    assert rubric_new(bank, notes).exit_code == RubricError.exit_code and notes.read_text() == "# my notes\n"
    same = rubric_new(bank, bank)
    assert same.exit_code == 2 and "is the question bank" in same.output and bank.read_text(encoding="utf-8") == ONE


def test_rubric_new_says_which_reviewed_points_an_edited_reference_drops_and_keeps_them(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(ONE, encoding="utf-8")
    assert rubric_new(bank, out).exit_code == 0
    out.write_text(out.read_text(encoding="utf-8").replace("draft: true", "draft: false"), encoding="utf-8")
    reviewed = load_rubric(out)
    (q,) = reviewed.questions
    # a reviewer's own point (no quote: written by hand), and a drafted flag reworded
    mine = KeyPoint(id="q01.dry-run", text="Rehearses the migration on a copy of production data")
    flag = q.red_flags[0].model_copy(update={"text": "Runs it straight in production and patches what breaks"})
    save_rubric(
        reviewed.with_questions(
            [q.model_copy(update={"key_points": [*q.key_points, mine], "red_flags": [flag, *q.red_flags[1:]]})]
        ),
        out,
    )
    reviewed = load_rubric(out)

    # The mediocre reference edited: every reviewed point and flag still stands on words the bank holds.
    bank.write_text(ONE.replace("at night", "at night, with a backup"), encoding="utf-8")
    result = rubric_new(bank, out)
    assert result.exit_code == 0, result.output
    backup = tmp_path / "mine.yaml.bak"
    assert (
        f"its references changed, so it was drafted again (the rubric before: {backup}); kept its reviewed "
        in result.output
    )
    assert "drafted again in place of" not in result.output
    (again,) = load_rubric(out).questions
    assert [p for p in again.key_points if not p.draft] == reviewed.questions[0].key_points
    assert again.red_flags[0] == flag  # the reviewed text, not the draft's own under the same id
    assert load_rubric(backup) == reviewed

    # The great reference rewritten: the points drafted from its old words go, the hand-written one stays.
    bank.write_text(
        ONE.replace("run it in batches behind a flag", "ship it dark behind a feature toggle"), encoding="utf-8"
    )
    result = rubric_new(bank, out)
    assert result.exit_code == 0, result.output
    (third,) = load_rubric(out).questions
    assert mine in third.key_points
    gone = [p.id for p in again.key_points if p.quote and p.quote not in third.references.great]
    assert gone and f"; drafted again in place of {', '.join(gone)}" in result.output
    # the backup the first run named is not overwritten: this run's is the next free name
    second = tmp_path / "mine.yaml.bak.1"
    assert f"(the rubric before: {second})" in result.output
    assert load_rubric(backup) == reviewed and all(
        p in load_rubric(second).questions[0].key_points for p in again.key_points
    )


def test_a_redrafted_question_keeps_the_order_its_reviewed_file_had(tmp_path, monkeypatch):
    """Trial N: after a redraft the kept points came first and the fresh ones after, so a reviewed file under
    version control moved (a hand-written point from last to third)."""
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(ONE, encoding="utf-8")
    assert rubric_new(bank, out).exit_code == 0
    (q,) = load_rubric(out).questions
    assert len(q.key_points) >= 2 and q.red_flags
    # the second point left to review (still a draft), the others reviewed; a point of the reviewer's own last;
    # the flags reordered by the reviewer
    points = [p if i == 1 else p.model_copy(update={"draft": False}) for i, p in enumerate(q.key_points)]
    mine = KeyPoint(id="q01.dry-run", text="Rehearses the migration on a copy of production data")
    flags = [f.model_copy(update={"draft": False}) for f in reversed(q.red_flags)]
    save_rubric(
        load_rubric(out).with_questions([q.model_copy(update={"key_points": [*points, mine], "red_flags": flags})]),
        out,
    )
    before = load_rubric(out).questions[0]

    bank.write_text(ONE.replace("at night", "at night, with a backup"), encoding="utf-8")
    result = rubric_new(bank, out)

    assert result.exit_code == 0, result.output
    (again,) = load_rubric(out).questions
    assert [p.id for p in again.key_points] == [p.id for p in before.key_points]
    assert [f.id for f in again.red_flags] == [f.id for f in before.red_flags]
    assert again.key_points[1].draft and again.key_points[-1] == mine


def test_a_rubric_is_written_through_a_link_and_never_over_a_device(tmp_path):
    rubric = parse_rubric(dump_rubric(load_rubric()), "packaged")
    shared = tmp_path / "shared.yaml"
    shared.write_text("old", encoding="utf-8")
    link = tmp_path / "link.yaml"
    link.symlink_to(shared)
    save_rubric(rubric, link)
    assert link.is_symlink() and load_rubric(shared) == rubric  # the shared file changed, the link stayed
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="not a regular file"):
        save_rubric(rubric, fifo)
    save_rubric(rubric, tmp_path / "new" / "folder" / "r.yaml")  # a folder that does not exist is made
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*file/r\.yaml: .*file is a file, not a folder"):
        save_rubric(rubric, tmp_path / "file" / "r.yaml")


def test_a_rubric_read_stops_at_its_size_bound_and_names_the_line_of_a_bad_byte(tmp_path, monkeypatch):
    import grader.rubric.model as model

    monkeypatch.setattr(model, "MAX_RUBRIC_BYTES", 1000)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"\0" * 5000)  # as `/dev/zero` reads: it would never end
    with pytest.raises(RubricError, match="not a rubric file"):
        load_rubric(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: x\nquestions:\n- text: caf\xe9\n")
    with pytest.raises(RubricError, match=r"latin\.yaml:3: not UTF-8 text \(invalid byte 0xe9\)"):
        load_rubric(latin)


def test_rubric_draft_to_an_existing_out_needs_force(tmp_path):
    source, out = tmp_path / "in.yaml", tmp_path / "out.yaml"
    runner.invoke(app, ["rubric", "import", str(SEED), "-o", str(source)])
    out.write_text("reviewed: yes\n", encoding="utf-8")
    result = runner.invoke(app, ["rubric", "draft", str(source), "-o", str(out), "-b", "local"])
    assert result.exit_code == 2 and "pass --force" in result.output and out.read_text() == "reviewed: yes\n"


@pytest.mark.parametrize(
    ("poor", "line"),
    [
        ("Poor Response: I run it in production\nand fix whatever breaks.", "and fix whatever breaks."),
        ('Poor Response: "I say "ship it"\nand fix whatever breaks."', 'and fix whatever breaks."'),
    ],
    ids=["unquoted-two-lines", "quote-closed-early"],
)
def test_a_last_response_on_two_lines_is_an_error_not_cut_short(poor, line):
    text = ONE.replace('Poor Response: "I run it in production and fix whatever breaks."', poor)
    with pytest.raises(RubricError, match=r"bank:5: text right after question 1's last response") as caught:
        parse_bank(text, label="bank")
    assert line[:20] in str(caught.value)
    assert parse_bank(ONE + "Last updated: May\n", label="bank").ignored_lines == [(5, "Last updated: May")]


def test_rubric_errors_name_a_typo_a_duplicates_line_and_a_bank_given_as_a_rubric():
    packaged = load_rubric()
    text = dump_rubric(packaged)
    with pytest.raises(RubricError, match=r"r\.yaml:9: .*refrences: unknown field \(did you mean 'references'\?\)"):
        parse_rubric(text.replace("references:", "refrences:", 1), "r.yaml")
    first, second = packaged.questions[0].id, packaged.questions[1].id
    twice = text.replace(f"id: {second}\n", f"id: {first}\n", 1)
    line = 1 + twice.splitlines().index(f"- id: {first}", 1 + twice.splitlines().index(f"- id: {first}"))
    with pytest.raises(RubricError, match=rf"r\.yaml:{line}: duplicate question id '{first}' \(first on line \d+\)"):
        parse_rubric(twice, "r.yaml")
    with pytest.raises(RubricError, match=r"reads as a question bank: make a rubric of it first \(grader rubric new"):
        load_rubric(SEED)


def test_slugs_that_would_clash_take_more_words_and_accents_are_folded():
    def bank(*questions: str) -> str:
        return "".join(
            f'{i}. {q}\nGreat Response: "a b c d e"\nMediocre Response: "a b"\nPoor Response: "a"\n\n'
            for i, q in enumerate(questions, start=1)
        )

    text = bank(
        "How do you set up an on-call rotation for a small team?",
        "How do you set up an on-call rotation for a small company?",
        "¿Cómo depuras un error en producción?",
    )
    assert [q.id for q in parse_bank(text).rubric.questions] == [
        "set-up-an-on-call-rotation-for-a-small-team",
        "set-up-an-on-call-rotation-for-a-small-company",
        "como-depuras-un-error-en",
    ]


def test_a_numbered_list_in_an_unquoted_response_is_named_as_the_cause():
    text = ONE.replace(
        'Great Response: "I make it backward compatible, run it in batches behind a flag and keep a rollback ready."',
        "Great Response: I do three things:\n1) make it backward compatible\n2) run it in batches",
    )
    with pytest.raises(RubricError, match=r"line 3 reads as the next question: a numbered list inside a response"):
        parse_bank(text, label="bank")


def test_rubric_import_and_new_refuse_a_pipe_or_a_folder_as_out_before_reading_it(tmp_path):
    bank = tmp_path / "bank.txt"
    bank.write_text(ONE, encoding="utf-8")
    fifo, folder = tmp_path / "pipe.yaml", tmp_path / "folder.yaml"
    os.mkfifo(fifo)  # read, it would never end
    folder.mkdir()
    for out in (fifo, folder):
        for args in (
            ["rubric", "import", str(bank), "-o", str(out), "--force"],
            ["rubric", "new", str(bank), "-o", str(out)],
        ):
            result = runner.invoke(app, args)
            assert result.exit_code == 15, result.output
            assert f"cannot write {out}: not a regular file" in result.output
    under = runner.invoke(app, ["rubric", "import", str(bank), "-o", str(bank / "r.yaml")])
    assert under.exit_code == 15 and f"{bank} is a file, not a folder" in under.output


def test_counts_of_one_are_singular(tmp_path):
    out = tmp_path / "one.yaml"
    (tmp_path / "bank.txt").write_text(ONE, encoding="utf-8")
    imported = runner.invoke(app, ["rubric", "import", str(tmp_path / "bank.txt"), "-o", str(out)])
    assert f"wrote {out}: 1 question;" in imported.output
    checked = runner.invoke(app, ["rubric", "check", str(out)])
    assert "ok, 1 question, 0 key points, 0 red flags" in checked.output
    assert "warning: 1 question without key points yet" in checked.output


def test_rubric_new_over_another_banks_rubric_names_the_questions_it_leaves_out(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "theirs.yaml"
    bank.write_text(ONE, encoding="utf-8")
    save_rubric(load_rubric(), out)
    result = rubric_new(bank, out)
    assert result.exit_code == 0, result.output
    assert f"{out}: 20 questions of it not in {bank} and left out: debugging-a-production-issue" in result.output
    assert load_rubric(tmp_path / "theirs.yaml.bak") == load_rubric()


def test_a_question_drafted_again_stays_within_its_limits_and_reads_quotes_as_the_drafter_does(tmp_path, monkeypatch):
    """12 reviewed points and 6 flags plus a fresh draft went over the limits: an internal error (exit 70).
    A reviewed quote with '...' or another case, accepted by the drafter, was taken for gone."""
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(ONE, encoding="utf-8")
    assert rubric_new(bank, out).exit_code == 0
    (q,) = load_rubric(out).questions
    points = [KeyPoint(id=f"q01.hand-{i}", text=f"Hand written point number {i}") for i in range(11)]
    points.append(
        KeyPoint(id="q01.compat", text="Backward compatible", quote="I make it Backward Compatible ... a rollback")
    )
    flags = [RedFlag(id=f"q01.flag-{i}", text=f"Hand written flag number {i}") for i in range(6)]
    save_rubric(load_rubric(out).with_questions([q.model_copy(update={"key_points": points, "red_flags": flags})]), out)
    bank.write_text(ONE.replace("at night", "at night, with a backup"), encoding="utf-8")
    result = rubric_new(bank, out)
    assert result.exit_code == 0, result.output
    (again,) = load_rubric(out).questions
    assert again.key_points == points and again.red_flags == flags  # every reviewed one kept, within the limits
    assert (
        "left out the drafted " in result.output
        and "no room beside the kept ones (12 points, 6 flags)" in result.output
    )


def test_a_killed_rubric_new_keeps_the_reviewed_points_of_the_questions_it_had_not_drafted_again(tmp_path, monkeypatch):
    import grader.cli.rubric as command

    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    two = ONE + (
        "2. How do you review a pull request?\n"
        'Great Response: "I read the description, run the tests locally, check the design and leave kind comments."\n'
        'Mediocre Response: "I look over the diff and approve it if it looks fine."\n'
        'Poor Response: "I approve it without reading so the author is not blocked."\n'
    )
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(two, encoding="utf-8")
    assert rubric_new(bank, out).exit_code == 0
    out.write_text(out.read_text(encoding="utf-8").replace("draft: true", "draft: false"), encoding="utf-8")
    reviewed = load_rubric(out)
    bank.write_text(two.replace("at night", "at night, with a backup").replace("looks fine", "looks fine to me"))
    saving = command._saving_to

    def killed_after_one(path, carry=lambda r: r):
        save = saving(path, carry)

        def once(rubric, line):
            save(rubric, line)
            raise KeyboardInterrupt

        return once

    monkeypatch.setattr(command, "_saving_to", killed_after_one)
    assert rubric_new(bank, out).exit_code == 130
    # a question drafted again is saved as it was until the end: its reviewed points and their references
    assert load_rubric(out).questions == reviewed.questions
    monkeypatch.setattr(command, "_saving_to", saving)
    rerun = rubric_new(bank, out)
    assert rerun.exit_code == 0, rerun.output
    second = load_rubric(out).questions[1]
    assert [p for p in second.key_points if not p.draft] == reviewed.questions[1].key_points
    assert f"question {second.id}: its references changed, so it was drafted again (the rubric before: " in rerun.output


def test_a_kept_point_and_a_fresh_flag_never_share_an_id(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    bank, out = tmp_path / "bank.txt", tmp_path / "mine.yaml"
    bank.write_text(ONE, encoding="utf-8")
    assert rubric_new(bank, out).exit_code == 0
    (q,) = load_rubric(out).questions
    flag_id = q.red_flags[0].id  # the id the drafter gives the poor reference's claim, again next time
    mine = KeyPoint(id=flag_id, text="A point of my own that happens to carry that id")
    save_rubric(load_rubric(out).with_questions([q.model_copy(update={"key_points": [mine], "red_flags": []})]), out)
    bank.write_text(ONE.replace("at night", "at night, with a backup"), encoding="utf-8")
    result = rubric_new(bank, out)
    assert result.exit_code == 0, result.output  # was an internal error: a duplicate point id
    (again,) = load_rubric(out).questions
    assert mine in again.key_points and flag_id not in again.flag_ids
