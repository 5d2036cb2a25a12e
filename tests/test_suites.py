"""Built-in eval suites with a rubric of the user's own."""

from __future__ import annotations

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
    own.write_text("nearest:\n  adversarial:\n    min_pass_rate: 1.01\n")
    broken = runner.invoke(app, [*args, "--thresholds", str(own)])
    assert broken.exit_code == 1 and "pass_rate" in broken.stderr
    own.write_text("- not a mapping\n")
    bad = runner.invoke(app, [*args, "--thresholds", str(own)])
    assert bad.exit_code == 1 and "backend -> suite -> threshold" in bad.stderr
