"""The one row codec: Grade and GradeFailure to a flat row and back, through real CSV and JSONL files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from grader.batch.files import Columns, Writer, row_fingerprint
from grader.grading.contract import CoveredPoint, FailureKind, Grade, GradeFailure, Outcome, Usage
from grader.grading.rows import OUTCOME_COLUMNS, column_names, decode_cells, encode_cell, from_record, to_record

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


# --- spreadsheet formula injection (OWASP "CSV Injection") ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        pytest.param('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")', id="equals"),
        pytest.param("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0", id="plus"),
        pytest.param("-2+3", "'-2+3", id="minus-formula"),
        pytest.param("- a bullet list", "'- a bullet list", id="minus-text"),
        pytest.param("@SUM(A1:A9)", "'@SUM(A1:A9)", id="at"),
        pytest.param("\t=1", "'\t=1", id="tab"),
        pytest.param("\r=1", "'\r=1", id="carriage-return"),
        pytest.param("'=1", "''=1", id="quoted-formula-keeps-its-quote"),
        pytest.param("''@x", "'''@x", id="two-quotes"),
        pytest.param("-1", "-1", id="negative-number-text"),
        pytest.param("+2.5e3", "+2.5e3", id="signed-number-text"),
        pytest.param("'tis fine", "'tis fine", id="quote-before-text"),
        pytest.param("a = b", "a = b", id="formula-char-inside"),
        pytest.param("", "", id="empty"),
        pytest.param(None, "", id="none"),
        pytest.param(-1, "-1", id="json-number"),
        pytest.param(-0.25, "-0.25", id="json-float"),
        pytest.param(["=x"], '["=x"]', id="json-list"),
        pytest.param(True, "true", id="json-bool"),
    ],
)
def test_encode_cell_neutralises_text_that_a_spreadsheet_would_run(value, cell):
    assert encode_cell(value) == cell
    if isinstance(value, str) and value:
        assert decode_cells({"answer": cell})["answer"] == value  # every column round-trips
        assert decode_cells({"justification": cell})["justification"] == value


def test_formula_cells_are_neutralised_in_the_file_and_round_trip(tmp_path):
    grade = Grade(
        question_id="q01",
        tier="poor",
        justification='=HYPERLINK("http://evil", "click")',
        covered_points=[CoveredPoint(id="q01.logs", evidence="@SUM(1+1)")],
        review_reasons=["-1 is not a confidence"],
        notes=["+cmd"],
        backend="openai",
        model="-model",
    )
    failure = GradeFailure(kind=FailureKind.invalid_output, message="x", last_output="=1+1")
    carried = {**INPUT, "id": "=1+1", "answer": "@risky answer", "score": "-3"}
    path = tmp_path / "out.csv"
    writer = Writer(path, column_names(list(carried)), append=False)
    writer.write(to_record(grade, carried))
    writer.write(to_record(failure, carried))
    writer.close()
    text = path.read_text(encoding="utf-8")
    with path.open(encoding="utf-8", newline="") as handle:
        raw = list(csv.DictReader(handle))
    # nothing a spreadsheet would evaluate starts a cell; a plain number stays a number
    starts = {cell[:1] for row in raw for cell in row.values()}
    assert not starts & set("=+@\t\r"), text
    assert raw[0]["id"] == "'=1+1" and raw[0]["answer"] == "'@risky answer" and raw[0]["score"] == "-3"
    assert raw[0]["justification"].startswith("'=HYPERLINK") and raw[0]["grade_model"] == "'-model"
    assert raw[1]["error_last_output"] == "'=1+1"
    decoded = [decode_cells(row) for row in raw]
    assert [from_record(row) for row in decoded] == [grade, failure]
    assert {k: decoded[0][k] for k in carried} == carried


# --- what `--resume` checks a written row against -----------------------------------------------------------


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_written_row_read_back_has_the_fingerprint_of_its_input_row(tmp_path, suffix):
    """`--resume` tells this input's rows from another's by id, question and answer: the row read back,
    from either format, must match the input row it carries (a JSON number included), and no other."""
    rows = [
        dict(INPUT),
        {**INPUT, "id": 7, "question": 3, "answer": 2.5},
        {**INPUT, "id": "=1+1", "question": "-1", "answer": '@x\n"y", \u00fc'},
    ]
    path = tmp_path / f"out.{suffix}"
    writer = Writer(path, column_names(list(INPUT)), append=False)
    for row in rows:
        writer.write(to_record(OUTCOMES[1], row))
    writer.close()
    if suffix == "csv":
        with path.open(encoding="utf-8", newline="") as handle:
            back = [decode_cells(r) for r in csv.DictReader(handle)]
    else:
        back = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    columns = Columns()
    assert [row_fingerprint(r, columns) for r in back] == [row_fingerprint(r, columns) for r in rows]
    for key in ("id", "question", "answer"):
        assert row_fingerprint({**back[0], key: "other"}, columns) != row_fingerprint(rows[0], columns), key
