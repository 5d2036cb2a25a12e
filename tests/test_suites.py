"""Built-in eval suites with a rubric of the user's own."""

from __future__ import annotations

import json

import pytest

from grader.eval import suites
from grader.rubric import dump_rubric, load_rubric


def test_perturbations_keep_the_hand_written_cases_with_another_rubric(tmp_path):
    packaged = load_rubric()
    renamed = packaged.model_copy(
        update={"questions": [q.model_copy(update={"id": f"team-{q.id}"}) for q in packaged.questions[:5]]}
    )
    path = tmp_path / "team.yaml"
    path.write_text(dump_rubric(renamed), encoding="utf-8")
    hand = suites.hand_written_cases()
    suite = suites.load("perturbations", path)
    kept = [c for c in suite.cases if c.id.startswith("hand-")]
    assert sorted(c.id for c in kept) == sorted(c.id for c in hand)  # none dropped
    team_ids = {q.id for q in suites.load("references", path).rubric}
    assert all(c.question in team_ids for c in kept)
    assert {c.kind for c in kept} >= {"off_topic", "dont_know", "empty", "injection"}


def test_check_without_thresholds_for_what_was_run_is_broken_and_own_thresholds_are_read(tmp_path):
    from typer.testing import CliRunner

    from grader.cli import app

    runner = CliRunner()
    args = ["eval", "-b", "nearest", "-s", "adversarial", "--limit", "6", "--no-floor", "--no-cache", "--check"]
    none = runner.invoke(app, args)
    assert none.exit_code == 1 and "no thresholds for the nearest backend" in none.stderr
    assert "thresholds hold" not in none.stdout
    own = tmp_path / "mine.yaml"
    own.write_text("nearest:\n  adversarial:\n    max_failed: 0\n")
    held = runner.invoke(app, [*args, "--thresholds", str(own)])
    assert held.exit_code == 0 and "thresholds hold" in held.stdout, held.output
    own.write_text("nearest:\n  adversarial:\n    min_pass_rate: 0.5\n")  # the floor passes none of them
    broken = runner.invoke(app, [*args, "--thresholds", str(own)])
    assert broken.exit_code == 1 and "pass_rate 0.0 is below 0.5" in broken.stderr
    own.write_text("- not a mapping\n")
    bad = runner.invoke(app, [*args, "--thresholds", str(own)])
    assert bad.exit_code == 21 and "expected a mapping of backend -> suite -> metric: number" in bad.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("local:\n  answer:\n    min_accuracy: 0.6\n", ":2: local.answer: unknown suite (did you mean 'answers'?)"),
        ("locl:\n  answers: {}\n", ":1: locl: unknown backend (did you mean 'local'?)"),
        ("local:\n  answers:\n    min_acuracy: 0.6\n", ":3: local.answers.min_acuracy: unknown metric (did you mean"),
        ("local:\n  answers:\n    min_accuracy: high\n", ":3: local.answers.min_accuracy: 'high' is not a number"),
        ("local:\n  answers:\n    min_accuracy: 7\n", ":3: local.answers.min_accuracy: 7 is not a share from 0 to 1"),
        ("local:\n  answers:\n    max_failed: -1\n", "max_failed: -1 is not a count or share of at least 0"),
        (
            "local:\n  answers:\n    min_accuracy: 0.6\n    min_accuracy: 0.9\n",
            ":4: invalid YAML: duplicate key 'min_accuracy' (first on line 3)",
        ),
        ("local:\n  answers: {min_accuracy: [0.6\n", ": invalid YAML: "),
    ],
    ids=["suite", "backend", "metric", "not-a-number", "not-a-share", "negative", "twice", "syntax"],
)
def test_a_thresholds_file_is_checked_before_anything_is_graded(tmp_path, text, message):
    """Each was a crash after the run (exit 70), a misleading line, or the last value silently kept. The
    fake backend has no replies configured here: reaching it would be exit 8, not 21."""
    from typer.testing import CliRunner

    from grader.cli import app

    path = tmp_path / "gate.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["eval", "-b", "fake", "-s", "answers", "--check", "--thresholds", str(path)])
    assert result.exit_code == 21, result.output
    assert result.stderr.startswith(f"grader: error: {path}") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_report_folder_that_cannot_be_written_is_found_before_anything_is_graded(tmp_path):
    from typer.testing import CliRunner

    from grader.cli import app

    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(app, ["eval", "-b", "fake", "-s", "answers", "--out", str(tmp_path / "afile" / "r")])
    assert result.exit_code == 15 and "afile is a file, not a folder" in result.stderr, result.output


def test_with_a_rubric_of_your_own_eval_runs_the_suites_built_from_it(tmp_path):
    """The README's `grader eval --rubric my-rubric.yaml` (it failed: answers and injections refuse any
    rubric); the packaged rubric named by its path runs every suite."""
    from typer.testing import CliRunner

    from grader.cli import app

    packaged = load_rubric()
    own = packaged.model_copy(update={"questions": packaged.questions[:2]})
    path = tmp_path / "own.yaml"
    path.write_text(dump_rubric(own), encoding="utf-8")
    args = ["eval", "-b", "nearest", "--no-floor", "--no-cache", "--limit", "2", "--format", "json"]
    result = CliRunner().invoke(app, [*args, "--rubric", str(path)])
    assert result.exit_code == 0, result.output
    assert [r["suite"] for r in json.loads(result.stdout)] == ["references", "perturbations", "adversarial"]
    refused = CliRunner().invoke(app, [*args, "--rubric", str(path), "-s", "answers"])
    assert refused.exit_code == 2 and "cannot be run with --rubric" in refused.stderr
    named = CliRunner().invoke(app, [*args, "--rubric", str(suites.default_rubric_path()), "-s", "answers"])
    assert named.exit_code == 0 and json.loads(named.stdout)[0]["suite"] == "answers", named.output


def test_the_thresholds_file_knows_every_metric_the_gate_measures():
    """The file's checker (THRESHOLD_METRICS) and the gate (`measured`) name the same metrics."""
    from grader.eval.report import THRESHOLD_METRICS, measured, summarize

    assert list(measured(summarize("answers", [], backend="fake", model="m"))) == list(THRESHOLD_METRICS)
