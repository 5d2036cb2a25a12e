"""The service's command-line side, without a server: `grader tokens`, `grader calibrate --db`,
`--learn-from DB` on the grading commands, and `grader serve` refusing to start with one line."""

from __future__ import annotations

import json
import socket
import sqlite3
import stat

import pytest
from typer.testing import CliRunner

from grader.cli import app
from grader.grading.contract import CoveredPoint, Grade, Tier
from grader.rubric import load_rubric
from grader.service.store import TOKEN_PREFIX, Store
from tests.support.service import Server

runner = CliRunner()
Q1 = load_rubric().questions[0]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def a_grade(tier: Tier = Tier.mediocre, question: str = Q1.id) -> Grade:
    return Grade(
        question_id=question,
        tier=tier,
        justification="because",
        covered_points=[CoveredPoint(id=Q1.key_points[0].id, evidence="logs")],
        missed_points=[p.id for p in Q1.key_points[1:]],
        backend="fake",
        model="m",
    )


def test_tokens_create_prints_the_token_alone_on_its_last_line_and_stores_only_its_hash(tmp_path):
    db = tmp_path / "s.sqlite"
    result = invoke("tokens", "create", "alice", "--db", str(db))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert token not in db.read_bytes().decode("latin-1")  # hashed, never stored as is
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    store = Store(db)
    assert store.authenticate(token).name == "alice"
    assert store.authenticate(token + "x") is None
    listed = json.loads(invoke("tokens", "list", "--db", str(db), "--format", "json").stdout)
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("alice", None)]
    assert invoke("tokens", "revoke", "alice", "--db", str(db)).exit_code == 0
    assert store.authenticate(token) is None
    again = invoke("tokens", "revoke", "alice", "--db", str(db))
    assert again.exit_code == 2 and "no live token 'alice'" in again.output
    store.close()


def test_a_second_live_token_for_one_name_says_both_sign_as_that_name(tmp_path):
    db = str(tmp_path / "s.sqlite")
    first = invoke("tokens", "create", "dana", "--db", db)
    assert first.exit_code == 0 and "already has" not in first.stderr
    second = invoke("tokens", "create", "dana", "--db", db)
    assert second.exit_code == 0 and second.stdout.strip().splitlines()[-1].startswith(TOKEN_PREFIX)
    assert "dana already has 1 live token; reviews through any of them are signed dana" in second.stderr
    assert "grader tokens revoke 1;" in second.stderr


def test_a_blank_token_name_and_a_missing_database_are_one_line_errors(tmp_path):
    blank = invoke("tokens", "create", "  ", "--db", str(tmp_path / "s.sqlite"))
    assert blank.exit_code == 2 and "non-empty NAME" in blank.output
    missing = invoke("tokens", "list", "--db", str(tmp_path / "absent.sqlite"))
    assert missing.exit_code == 17 and "no database at" in missing.output
    assert not (tmp_path / "absent.sqlite").exists()
    (tmp_path / "junk.sqlite").write_text("not a database, just text\n" * 100)
    junk = invoke("tokens", "list", "--db", str(tmp_path / "junk.sqlite"))
    assert junk.exit_code == 17 and "cannot open the database" in junk.output and "Traceback" not in junk.output


def test_serve_says_in_one_line_that_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke("serve", "--db", str(tmp_path / "s.sqlite"), "--port", str(port), "--backend", "fake")
    assert result.exit_code == 18 and f"port {port} on 127.0.0.1 is already in use" in result.output


def _reviewed_db(tmp_path):
    """A service database with three grades of Q1 and reviews of them by two reviewers."""
    db = tmp_path / "s.sqlite"
    store = Store(db)
    answers = {
        "g1": "I start with the logs and metrics, reproduce it, then roll back and find the root cause.",
        "g2": "I restart the server and hope.",
        "g3": "I look at the dashboards, find the pattern, and write a postmortem afterwards.",
    }
    for gid, text in answers.items():
        store.add_grade(gid, Q1.id, text, "cand-" + gid, a_grade(), by="alice")
    store.add_review("g1", "alice", Tier.great, None, None, None)
    store.add_review("g2", "alice", Tier.poor, [], [], "restarts only")
    store.add_review("g2", "bob", Tier.mediocre, None, None, None)
    store.add_review("g2", "bob", Tier.poor, None, None, "changed my mind")  # the latest counts
    store.add_review("g3", "bob", Tier.mediocre, None, None, None)
    store.close()
    return db, answers


def test_serve_stopped_by_sigterm_ends_by_that_signal_as_servers_do(tmp_path):
    """The one-shot commands treat SIGTERM as Ctrl-C (exit 130); a server stopped by `systemctl stop` shuts
    down and ends by the signal, as systemd expects of a service (review)."""
    import signal

    server = Server(tmp_path / "s.sqlite", backend="nearest").start()
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == -signal.SIGTERM
    assert "interrupted" not in server.log()


def test_calibrate_reads_the_reviews_from_the_database_as_interviewer_grades(tmp_path):
    db, _ = _reviewed_db(tmp_path)
    result = invoke("calibrate", "--db", str(db), "--format", "json", "--resamples", "200")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["paired"] == 4  # alice g1, g2; bob g2 (latest), g3
    assert {name: m["n"] for name, m in report["interviewers"].items()} == {"alice": 2, "bob": 2}
    # Every model grade is mediocre: alice agrees on none, bob on g3 only.
    assert report["interviewers"]["alice"]["exact_agreement"]["value"] == 0.0
    assert report["interviewers"]["bob"]["exact_agreement"]["value"] == 0.5
    both = invoke("calibrate", str(tmp_path / "x.csv"), "--db", str(db))
    assert both.exit_code == 2 and "one of them" in both.output
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    none = invoke("calibrate", "--db", str(empty))
    assert none.exit_code == 20 and "no reviews yet" in none.output


def test_learn_from_shows_the_most_similar_reviewed_answers_with_a_grade(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    db, answers = _reviewed_db(tmp_path)
    answer = "First I read the logs and the metrics, reproduce the bug, roll back, then dig for the root cause."
    plain = invoke("grade", "-q", Q1.id, "-a", answer, "-b", "local", "--format", "json", "--no-cache")
    learned = invoke("grade", "-q", Q1.id, "-a", answer, "-b", "local", "--format", "json", "--learn-from", str(db))
    assert plain.exit_code == 0 and learned.exit_code == 0, learned.output
    notes = json.loads(learned.stdout)["notes"]
    assert not any("reviewed" in n for n in json.loads(plain.stdout)["notes"])
    shown = [n for n in notes if n.startswith("shown reviewed answers: ")]
    assert shown and shown[0].split(": ", 1)[1].startswith("g1 (great)"), notes  # the most similar first
    missing = invoke("grade", "-q", Q1.id, "-a", answer, "-b", "local", "--learn-from", str(tmp_path / "no.sqlite"))
    assert missing.exit_code == 17 and "no database at" in missing.output


def test_the_reviewer_of_a_stored_review_is_kept_per_review_and_reviews_join_their_grade(tmp_path):
    db, answers = _reviewed_db(tmp_path)
    store = Store(db)
    joined = {(r.grade_id, r.reviewer): r for r in store.reviewed_grades()}
    assert set(joined) == {("g1", "alice"), ("g2", "alice"), ("g2", "bob"), ("g3", "bob")}
    assert joined[("g2", "bob")].tier is Tier.poor  # bob's latest
    # A review that keeps the model's points takes them from the stored grade; an explicit list wins.
    assert joined[("g1", "alice")].covered == (Q1.key_points[0].id,)
    assert joined[("g2", "alice")].covered == ()
    assert joined[("g1", "alice")].answer == answers["g1"]
    store.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("select count(*) from reviews").fetchone()[0] == 5  # nothing overwritten


@pytest.mark.parametrize("url", ["postgresql://nobody@127.0.0.1:9/none", "mysql+nodriver://x/y"])
def test_a_database_url_that_cannot_be_opened_is_one_line(url):
    result = invoke("tokens", "list", "--db", url)
    assert result.exit_code == 17 and "cannot open the database" in result.output
    assert "Traceback" not in result.output


# --- found by a user's trial of the review flow ----------------------------------------------------------


def test_calibrate_db_reads_reviewers_differing_only_in_case_as_one_person(tmp_path):
    db, _ = _reviewed_db(tmp_path)
    store = Store(db)
    store.add_review("g3", "Bob ", Tier.great, None, None, None)  # bob's latest of g3, through another token
    store.add_review("g1", "ALICE", Tier.poor, None, None, None)  # and alice's of g1
    store.close()
    result = invoke("calibrate", "--db", str(db), "--format", "json", "--resamples", "200")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {name: m["n"] for name, m in report["interviewers"].items()} == {"alice": 2, "bob": 2}
    assert report["counts"]["paired"] == 4  # each person's latest review of a grade, once
    grades = {(g["interviewer"], g["id"]): g["human"] for g in report["grades"]}
    assert grades[("alice", "g1")] == "poor" and grades[("bob", "g3")] == "great"
    assert "'ALICE'" in json.dumps(report["overall"]["warnings"]) and "as 'alice'" in json.dumps(report)


def test_a_token_named_like_another_but_for_case_says_they_are_one_reviewer(tmp_path):
    db = str(tmp_path / "s.sqlite")
    assert invoke("tokens", "create", "alice", "--db", db).exit_code == 0
    other = invoke("tokens", "create", "Alice", "--db", db)
    assert other.exit_code == 0 and other.stdout.strip().splitlines()[-1].startswith(TOKEN_PREFIX)
    assert "note: 'alice' differs from 'Alice' only in case, spacing or Unicode form" in other.stderr
    assert "one reviewer" in other.stderr
    assert "differs" not in invoke("tokens", "create", "bob", "--db", db).stderr


def test_a_conflict_names_what_differs_in_good_grammar():
    from grader.service.store import conflict

    assert str(conflict("c01-q1", ["candidate"])).endswith("(its candidate differs)")
    assert str(conflict("c01-q1", ["question", "answer"])).endswith("(its question and answer differ)")
