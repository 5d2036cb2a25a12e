"""The `answers` suite (fresh answers graded by hand), the adversarial suite, the nearest-reference floor,
and the metrics reported on them: per-point precision/recall, calibration, gamed answers."""

from __future__ import annotations

import asyncio
import json
import math
import re

import pytest

from grader.errors import GraderError, UsageError
from grader.eval import suites
from grader.eval.cases import EvalCase
from grader.eval.report import calibration, gamed, point_metrics, review_metrics
from grader.eval.runner import CaseResult
from grader.grading.contract import CoveredPoint, Grade, GradeRequest, Tier


@pytest.fixture(scope="module")
def parsed():
    return suites.answers_file()


def _ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    w = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def test_the_suite_has_twelve_fresh_answers_per_question_four_per_tier(parsed):
    file, rubric = parsed
    assert len(file.cases) >= 240
    for q in rubric:
        cases = [c for c in file.cases if c.question == q.id]
        assert len(cases) >= 12, q.id
        for tier in Tier:
            assert sum(c.label is tier for c in cases) >= 4, (q.id, tier)
        assert len({c.kind for c in cases}) >= 6, q.id


def test_no_answer_is_a_copy_or_a_cut_of_a_reference(parsed):
    file, rubric = parsed
    for case in file.cases:
        refs = set().union(*(_ngrams(t) for _, t in rubric.find(case.question).references.items()))
        assert not (_ngrams(case.answer) & refs), case.id


def test_every_answer_is_annotated_and_its_tier_follows_the_written_policy(parsed):
    file, rubric = parsed
    assert "great" in file.policy and "red flag" in file.policy
    for case in file.cases:
        q = rubric.find(case.question)
        assert case.covered is not None and case.red_flags is not None, case.id
        great_by_points = not case.red_flags and len(case.covered) >= math.ceil(len(q.key_points) / 2)
        assert (case.label is Tier.great) == great_by_points, case.id
        if case.red_flags:
            assert case.label is Tier.poor, case.id


def test_dev_and_test_halves_split_by_question(parsed):
    file, rubric = parsed
    dev, test = set(file.splits["dev"]), set(file.splits["test"])
    assert not dev & test and dev | test == {q.id for q in rubric}
    test_suite, dev_suite = suites.load("answers"), suites.load("answers-dev")
    assert {c.question for c in test_suite.cases} == test
    assert {c.question for c in dev_suite.cases} == dev
    assert len(test_suite.cases) + len(dev_suite.cases) == len(file.cases)
    assert all(c.meta["split"] == "test" for c in test_suite.cases)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda t: t.replace("  covered:\n  - q01.gather-evidence", "  covered:\n  - q01.nope", 1),
            r"a01-01.*covered.*q01\.nope",
            id="unknown-point",
        ),
        pytest.param(
            lambda t: t.replace("  label: great", "  label: superb", 1),
            r"answers\.yaml:\d+: case a01-01: label: Input should be",
            id="bad-tier",
        ),
        pytest.param(
            lambda t: t.replace("cases:\n", "cases:\n  - [unclosed\n", 1),
            r"answers\.yaml:\d+: invalid YAML",
            id="bad-yaml",
        ),
    ],
)
def test_a_broken_answers_file_names_the_file_and_the_place(tmp_path, edit, message):
    source = (suites.data_dir("evals") / "answers.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "answers.yaml"
    broken.write_text(edit(source), encoding="utf-8")
    with pytest.raises(GraderError, match=message):
        suites.answers_suite("test", broken)


def test_answers_suite_refuses_another_rubric(tmp_path):
    with pytest.raises(UsageError, match=r"cannot be run with --rubric \(or GRADER_RUBRIC\)"):
        suites.load("answers", tmp_path / "r.yaml")


# --- stories-dev: story questions of its own, dev data ----------------------------------------------------


def test_stories_dev_has_fresh_answers_graded_by_the_same_policy(parsed):
    suite = suites.load("stories-dev")
    assert suite.name == "stories-dev" and len(suite.rubric.questions) == 4
    packaged = {q.id for q in parsed[1]} | {q.text for q in parsed[1]}
    for q in suite.rubric:
        assert q.id not in packaged and q.text not in packaged, q.id  # not the packaged bank's
        assert q.text.startswith("Tell me about a time"), q.id
        cases = [c for c in suite.cases if c.question == q.id]
        assert len(cases) == 12 and {sum(c.label is t for c in cases) for t in Tier} == {4}, q.id
        assert len({c.kind for c in cases}) >= 8, q.id
        refs = set().union(*(_ngrams(t) for _, t in q.references.items()))
        need = math.ceil(len(q.key_points) / 2)
        for case in cases:
            assert not (_ngrams(case.answer) & refs), case.id
            assert case.covered is not None and case.red_flags is not None, case.id
            assert (case.label is Tier.great) == (not case.red_flags and len(case.covered) >= need), case.id
            assert not case.red_flags or case.label is Tier.poor, case.id
        assert all(len(p.phrasings) == 4 for p in [*q.key_points, *q.red_flags]), q.id


def test_stories_dev_questions_file_imports_to_the_rubric_it_was_written_from():
    from grader.rubric.importer import import_bank

    suite = suites.load("stories-dev")
    bank = import_bank(suites.data_dir("evals") / "stories" / "questions.txt", known=suite.rubric).rubric
    assert [q.id for q in bank] == [q.id for q in suite.rubric]
    assert [q.references for q in bank] == [q.references for q in suite.rubric]
    assert all(not q.key_points for q in bank)  # questions and references only: what a team brings


def test_a_broken_stories_file_names_the_file_and_the_case(tmp_path):
    folder = suites.data_dir("evals") / "stories"
    for name in ("rubric.yaml", "questions.txt"):
        (tmp_path / name).write_text((folder / name).read_text(encoding="utf-8"), encoding="utf-8")
    source = (folder / "answers.yaml").read_text(encoding="utf-8")
    (tmp_path / "answers.yaml").write_text(source.replace("  - q21.", "  - q99.", 1), encoding="utf-8")
    with pytest.raises(GraderError, match=r"answers\.yaml: .*s21-01.*q99\."):
        suites.stories_suite(tmp_path)
    with pytest.raises(GraderError, match="brings its own rubric"):
        suites.load("stories-dev", tmp_path / "rubric.yaml")


# --- the adversarial suite ------------------------------------------------------------------------------


def test_adversarial_kinds_are_generated_for_every_question(rubric):
    suite = suites.adversarial_suite(rubric)
    kinds = {
        "negated",
        "appended_poor",
        "other_question",
        "question_echo",
        "question_echo_5",
        "word_salad",
        "keyword_glue",
    }
    assert {c.kind for c in suite.cases} == kinds
    assert len(suite.cases) == len(kinds) * len(rubric.questions)
    assert all(c.expected == ["poor"] and c.exemplars is None and c.hide_reference is None for c in suite.cases)
    by_id = {c.id: c for c in suite.cases}
    q1, q2 = rubric.find(1), rubric.find(2)
    assert by_id["other_question-01"].answer == q2.references.great
    assert by_id["question_echo_5-01"].answer.count(q1.text) == 5
    assert by_id["appended_poor-01"].answer.endswith(q1.references.poor)
    assert sorted(by_id["word_salad-01"].answer.split()) == sorted(q1.references.great.split())
    assert by_id["word_salad-01"].answer != q1.references.great
    assert by_id["keyword_glue-01"].answer.count(" and the ") >= 8


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("I start by gathering logs.", "I would NOT start by gathering logs."),
        (
            "We review every change. Tests run in CI.",
            "We would NOT review every change. It is NOT true that tests run in CI.",
        ),
        ("I would ship it.", "It is NOT true that I would ship it."),
    ],
)
def test_negate(text, negated):
    assert suites.negate(text) == negated


# --- metrics ------------------------------------------------------------------------------------------------


def _result(
    q,
    tier: str,
    *,
    label: str = "great",
    covered=(),
    flags=(),
    conf=None,
    review=False,
    truth=None,
    truth_flags=None,
    expected=None,
) -> CaseResult:
    case = EvalCase(
        id=f"c{id(covered)}{tier}{label}{conf}",
        question=q.id,
        answer="x",
        label=Tier(label),
        covered=truth,
        red_flags=truth_flags,
        expected=expected or [],
    )
    grade = Grade(
        question_id=q.id,
        tier=Tier(tier),
        justification="j",
        covered_points=[CoveredPoint(id=p, evidence="x") for p in covered],
        missed_points=[p for p in q.point_ids if p not in covered],
        red_flags=list(flags),
        confidence=conf,
        needs_review=review,
        backend="fake",
        model="m",
    )
    return CaseResult(case, grade)


def test_point_metrics_count_every_point_of_the_annotated_answers(q1):
    a, b, c = q1.point_ids[:3]
    results = [
        _result(q1, "great", covered=[a, b], truth=[a, c]),  # tp a, fp b, fn c
        _result(q1, "great", covered=[a], truth=[a]),  # tp a
        _result(q1, "great", covered=[b]),  # not annotated: left out
    ]
    m = point_metrics(results, "covered")
    assert (m.cases, m.tp, m.fp, m.fn) == (2, 2, 1, 1)
    assert m.precision == pytest.approx(2 / 3, abs=1e-4) and m.recall == pytest.approx(2 / 3, abs=1e-4)
    flag = q1.flag_ids[0]
    f = point_metrics(
        [_result(q1, "poor", flags=[flag], truth_flags=[flag]), _result(q1, "great", truth_flags=[])], "red_flags"
    )
    assert (f.tp, f.fp, f.fn, f.f1) == (1, 0, 0, 1.0)
    assert point_metrics([_result(q1, "great", truth_flags=[])], "red_flags").f1 is None  # nothing to find


def test_calibration_error_and_accuracy_of_the_most_confident(q1):
    # 10 grades at confidence 0.9 of which 9 right, 10 at 0.6 of which 3 right.
    results = [_result(q1, "great" if i < 9 else "poor", conf=0.9) for i in range(10)]
    results += [_result(q1, "great" if i < 3 else "poor", conf=0.6) for i in range(10)]
    cal = calibration(results)
    assert cal.n == 20
    assert cal.ece == pytest.approx(0.5 * abs(0.9 - 0.9) + 0.5 * abs(0.3 - 0.6), abs=1e-4)
    assert cal.accuracy_top_80 == pytest.approx(12 / 16, abs=1e-4)  # all ten 0.9s, then six 0.6s
    assert calibration([_result(q1, "great")]).n == 0  # no confidence, nothing to calibrate


def test_the_report_json_keeps_its_keys_and_reads_back(q1):
    from grader.eval.report import EvalReport, summarize

    report = summarize(
        "answers", [_result(q1, "great", conf=0.95), _result(q1, "poor", conf=0.35)], backend="f", model="m"
    )
    data = json.loads(report.to_json())
    assert data["calibration"]["bins"][9] == {"from": 0.9, "to": 1.0, "n": 1, "accuracy": 1.0}
    # what was not measured keeps its count only, and a floor that was not run is left out
    assert data["points"] == {"cases": 0} and "floor" not in data and "margin_over_floor" not in data
    assert EvalReport.model_validate(data) == report


def test_gamed_means_above_every_allowed_tier_and_not_sent_for_review(q1):
    results = [
        _result(q1, "great", label="poor"),  # gamed
        _result(q1, "great", label="poor", review=True),  # sent to a person: not gamed
        _result(q1, "mediocre", label="mediocre", expected=["mediocre", "poor"]),  # allowed
        _result(q1, "poor", label="mediocre"),  # too harsh is wrong, but not gamed
    ]
    assert gamed(results) == [results[0].case.id]
    rv = review_metrics(results)
    assert rv.flagged == 1 and rv.accuracy_flagged == 0.0


# --- the floor ----------------------------------------------------------------------------------------------


def test_the_floor_is_the_tier_of_the_most_similar_reference(rubric):
    from grader.backends import get_backend

    floor = get_backend("nearest")
    q = rubric.find(3)

    async def grade_all():
        return await asyncio.gather(*(floor.grade(GradeRequest(q, text)) for _, text in q.references.items()))

    grades = asyncio.run(grade_all())
    assert [g.tier.value for g in grades] == [t for t, _ in q.references.items()]
    assert all(g.backend == "nearest" and g.confidence is None and not g.covered_points for g in grades)
    hidden = asyncio.run(floor.grade(GradeRequest(q, q.references.great, exemplars=(("poor", q.references.poor),))))
    assert hidden.tier is Tier.poor  # only a poor exemplar left: the floor can only say poor


def test_thresholds_on_points_calibration_and_the_floor_are_checked(q1):
    from grader.eval.report import check_thresholds, summarize

    a = q1.point_ids[0]
    results = [_result(q1, "great", covered=[a], truth=[a], conf=0.9), _result(q1, "poor", truth=[a], conf=0.9)]
    floor = [_result(q1, "poor"), _result(q1, "poor")]
    report = summarize("answers", results, backend="fake", model="m", floor=("nearest", floor))
    assert report.floor.overall.accuracy == 0.0 and report.margin_over_floor.accuracy == 0.5
    assert check_thresholds(report, {"min_margin_over_floor": 0.5, "min_point_f1": 0.6, "max_ece": 0.45}) == []
    broken = check_thresholds(
        report,
        {"min_margin_over_floor": 0.6, "min_point_f1": 0.7, "max_ece": 0.3, "min_accuracy_top_80": 0.9, "max_gamed": 0},
    )
    assert [line.split(":")[1].split()[0] for line in broken] == [
        "margin_over_floor",
        "point_f1",
        "ece",
        "accuracy_top_80",
    ]
