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
