"""The one row codec: Grade and GradeFailure to a flat row and back, through real CSV and JSONL files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from grader.batch.files import Writer
from grader.grading.contract import CoveredPoint, FailureKind, Grade, GradeFailure, Outcome, Usage
from grader.grading.rows import OUTCOME_COLUMNS, column_names, decode_cells, from_record, to_record

NASTY = 'Line one, with a comma.\nLine two "quoted" and ünïcødé; =SUM(A1:A9) +1 -1 @cmd\ttab'

OUTCOMES: list[Outcome] = [
    Grade(question_id="q01", tier="great", justification="Short.", backend="local", model="minilm"),
    Grade(
        question_id="debugging-a-production-issue",
        tier="mediocre",
        justification=NASTY,
        covered_points=[CoveredPoint(id="q01.logs", evidence=NASTY), CoveredPoint(id="q01.rollback", evidence=None)],
        missed_points=["q01.postmortem"],
        red_flags=["q01.blame"],
        confidence=0.6123,
        confidence_source="logprobs",
        point_scores={"q01.logs": 0.97, "q01.blame": 0.51},
        needs_review=True,
        review_reasons=["confidence 0.61 is below the review threshold 0.70", NASTY],
        notes=["evidence dropped for q01.rollback: quote not found in the answer"],
        backend="openai",
        model="gpt-4.1-mini",
        usage=Usage(prompt_tokens=1022, completion_tokens=180, cached_tokens=786),
        attempts=2,
        rubric_version="3f2a9c",
    ),
    GradeFailure(kind=FailureKind.unknown_question, message="unknown question 'nope' (did you mean 1?)"),
    GradeFailure(
        kind=FailureKind.invalid_output,
        message="no valid reply after 3 model calls: points.q01.logs: missing",
        question_id="q01",
        attempts=3,
        usage=Usage(prompt_tokens=3000, completion_tokens=90),
        last_output='{"tier": "great", "note": ' + json.dumps(NASTY) + "}",
    ),
]
IDS = ["plain-grade", "every-field-set", "input-failure", "model-failure"]
# Input columns that share names with outcome columns (`tier`, `confidence`, `model`) must not clash.
INPUT = {"id": "a1", "question": "1", "answer": NASTY, "tier": "strong", "confidence": "high", "model": "human"}


def _write(path: Path, outcomes: list[Outcome]) -> Path:
    writer = Writer(path, column_names(list(INPUT)), append=False)
    for outcome in outcomes:
        writer.write(to_record(outcome, INPUT))
    writer.close()
    return path


@pytest.mark.parametrize("outcome", OUTCOMES, ids=IDS)
def test_jsonl_round_trip(tmp_path, outcome):
    (line,) = _write(tmp_path / "out.jsonl", [outcome]).read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert from_record(record) == outcome
    assert {k: record[k] for k in INPUT} == INPUT  # the input columns are carried unchanged


@pytest.mark.parametrize("outcome", OUTCOMES, ids=IDS)
def test_csv_round_trip(tmp_path, outcome):
    path = _write(tmp_path / "out.csv", [outcome])
    with path.open(encoding="utf-8", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert from_record(decode_cells(row)) == outcome
    assert {k: row[k] for k in INPUT} == INPUT


def test_every_field_of_grade_and_failure_has_a_column_in_every_output(tmp_path):
    header = column_names(list(INPUT))
    for name in Grade.model_fields:
        assert (f"grade_{name}" if name in INPUT else name) in header
    for name in GradeFailure.model_fields:
        assert name in Grade.model_fields or f"error_{name}" in header
    with _write(tmp_path / "out.csv", OUTCOMES).open(encoding="utf-8", newline="") as handle:
        assert next(csv.reader(handle)) == header
    for line in _write(tmp_path / "out.jsonl", OUTCOMES).read_text().splitlines():
        assert list(json.loads(line)) == header


def test_a_row_without_an_outcome_reads_as_none_and_a_malformed_cell_names_its_column():
    assert from_record({"id": "1", "answer": "x"}) is None
    with pytest.raises(ValueError, match="covered_points"):
        decode_cells({"tier": "great", "covered_points": "[not json"})


def test_without_carried_columns_nothing_is_prefixed():
    record = to_record(OUTCOMES[0])
    assert list(record) == list(OUTCOME_COLUMNS) and record["tier"] == "great"
