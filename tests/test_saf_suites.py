"""The shipped SAF eval suites (evals/saf/, built by scripts/build_saf.py; see evals/saf/SOURCE.md).

These read only the shipped JSON files, never the raw SAF data, so they run anywhere.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from grader.eval.cases import Suite, load_suite_file
from grader.resources import data_dir

SAF = data_dir("evals") / "saf"

# From evals/saf/SOURCE.md (== the SAF v2.0 split table).
COUNTS = {
    "saf-ua": {"questions": 26, "cases": 375, "great": 240, "mediocre": 114, "poor": 21},
    "saf-uq": {"questions": 5, "cases": 479, "great": 247, "mediocre": 190, "poor": 42},
}
PER_QUESTION = {
    "saf-ua": {
        "saf-1-6": 24,
        "saf-2-1-dll-v1-1": 15,
        "saf-2-2-dll": 12,
        "saf-2-3-dll-v1-1": 9,
        "saf-2-4": 17,
        "saf-4-1-lm-v1-0": 16,
        "saf-4-2-lm-v1-0": 14,
        "saf-4-3": 20,
        "saf-4-3-lm": 10,
        "saf-4-13": 13,
        "saf-5-7": 14,
        "saf-5-11": 23,
        "saf-5-12": 12,
        "saf-6-1-ipp": 8,
        "saf-6-2-ipp": 19,
        "saf-6-3": 24,
        "saf-6-3-ipp": 17,
        "saf-8-1-mm": 16,
        "saf-8-2-mm": 13,
        "saf-8-3-mm": 10,
        "saf-10-1-tc": 12,
        "saf-10-2-tc": 11,
        "saf-10-3-tc": 8,
        "saf-12-1-pe": 14,
        "saf-12-2-pe": 10,
        "saf-12-3-pe": 14,
    },
    "saf-uq": {"saf-1-2": 172, "saf-11-1-sdn": 76, "saf-11-2-sdn": 77, "saf-11-3-sdn": 78, "saf-11-4-sdn": 76},
}
# The two SAF answers labelled Correct although their score is below full marks (used as labelled).
LABEL_SCORE_EXCEPTIONS = {"11.3_SDN.376", "11.4_SDN.405"}


@pytest.fixture(scope="module", params=["saf-ua", "saf-uq"])
def suite(request: pytest.FixtureRequest) -> Suite:
    return load_suite_file(SAF / f"{request.param}.json")


@pytest.fixture(scope="module")
def ua() -> Suite:
    return load_suite_file(SAF / "saf-ua.json")


@pytest.fixture(scope="module")
def uq() -> Suite:
    return load_suite_file(SAF / "saf-uq.json")


def test_counts_per_split_and_label(suite):
    want = COUNTS[suite.name]
    assert suite.rubric.name == suite.name
    assert len(suite.rubric.questions) == want["questions"]
    assert len(suite.cases) == want["cases"]
    labels = Counter(c.label.value for c in suite.cases)
    assert labels == {t: want[t] for t in ("great", "mediocre", "poor")}
    assert Counter(c.question for c in suite.cases) == PER_QUESTION[suite.name]


def test_cases_point_at_existing_questions(suite):
    ids = {q.id for q in suite.rubric.questions}
    assert [q.number for q in suite.rubric.questions] == list(range(1, len(ids) + 1))
    for case in suite.cases:
        assert case.question in ids, case.id
        assert case.answer and case.answer == case.answer.strip(), case.id
        saf_question = case.id.rsplit(".", 1)[0]  # answer ids are <SAF question id>.<n>
        assert "saf-" + "-".join(re.findall(r"[a-z0-9]+", saf_question.lower())) == case.question, case.id
        assert case.kind == "saf" and case.expected == [case.label.value]
        assert case.meta["split"] == suite.name.removeprefix("saf-")
        assert isinstance(case.meta["feedback"], str) and case.meta["feedback"]


def test_labels_follow_the_human_scores(suite):
    """Every label comes from SAF's three: Correct = full marks, Incorrect = 0, Partially correct in between."""
    for case in suite.cases:
        score, top = case.meta["score"], case.meta["max_score"]
        assert isinstance(score, float) and isinstance(top, float) and 0 <= score <= top and top > 0
        if case.id in LABEL_SCORE_EXCEPTIONS:
            assert case.label.value == "great" and score < top
            continue
        expected = "great" if score == top else "poor" if score == 0 else "mediocre"
        assert case.label.value == expected, case.id


def test_no_key_point_or_red_flag_is_a_draft(suite):
    for q in suite.rubric.questions:
        assert q.key_points, q.id
        assert not q.draft_ids, q.id
        for p in [*q.key_points, *q.red_flags]:
            assert p.id.startswith(f"q{q.number:02d}."), p.id


def test_uq_is_zero_shot(uq):
    for q in uq.rubric.questions:
        assert q.references.mediocre is None and q.references.poor is None, q.id
        assert not q.red_flags, q.id
    assert all(c.exemplars is None for c in uq.cases)


def test_ua_exemplars_start_with_the_official_reference(ua):
    questions = {q.id: q for q in ua.rubric.questions}
    for case in ua.cases:
        q = questions[case.question]
        assert case.exemplars, case.id
        tiers = [e.tier.value for e in case.exemplars]
        assert tiers[0] == "great" and case.exemplars[0].text == q.references.great, case.id
        assert tiers == sorted(tiers, key=["great", "mediocre", "poor"].index), case.id
        assert 1 <= tiers.count("great") <= 3 and tiers.count("mediocre") <= 1 and tiers.count("poor") <= 1
        # The anchors in the exemplars are the question's mediocre and poor references.
        for tier in ("mediocre", "poor"):
            anchor = getattr(q.references, tier)
            assert [e.text for e in case.exemplars if e.tier.value == tier] == ([anchor] if anchor else [])
    # Anchors and extra exemplars are training answers, never a copy of a test answer to the same question
    # (SAF has verbatim duplicates across its splits; the build skips them).
    answers = {(c.question, " ".join(c.answer.split()).lower()) for c in ua.cases}
    for case in ua.cases:
        for e in case.exemplars[1:]:
            assert (case.question, " ".join(e.text.split()).lower()) not in answers, case.id
    assert all(q.red_flags == [] for q in ua.rubric.questions if q.references.poor is None)
