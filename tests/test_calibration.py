"""`grader calibrate`: interviewers against model grades, on hand-made data whose answers are known.

The data set: 18 answers the model graded great (a01-a06), mediocre (a07-a12) and poor (a13-a18),
graded by four interviewers:
- alice agrees with the model on every answer;
- bob is one tier lenient (mediocre -> great, poor -> mediocre; great stays great);
- carol is "random": within each model tier she gives two greats, two mediocres and two poors, so her
  grades carry no information about the model's;
- dave graded only three answers.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from grader.calibration import pair_with_model_grades
from grader.calibration.data import TIER_SYNONYMS, parse_tier, read_human_grades, read_model_grades
from grader.calibration.metrics import (
    Interval,
    agreement,
    alpha,
    human_agreement,
    kappa,
    kappa_from_tables,
    rank_counts,
    rank_table,
    ranks,
    resample_tables,
)
from grader.calibration.report import (
    CalibrationReport,
    build_report,
    disagreement_answers,
    human_lines,
    in_short,
    kappa_reading,
    metric_cells,
    to_html,
    to_markdown,
    write_reports,
)
from grader.calibration.settings import Settings
from grader.cli import app
from grader.errors import CalibrationDataError, EncodingError, InputFileError
from grader.grading.contract import Grade, Tier
from grader.reports import plots
from tests.conftest import reply_for

Q1 = "debugging-a-production-issue"
Q2 = "api-design"
ANSWERS = [f"a{i:02d}" for i in range(1, 19)]
MODEL = ["great"] * 6 + ["mediocre"] * 6 + ["poor"] * 6
ALICE = list(MODEL)
BOB = ["great"] * 12 + ["mediocre"] * 6
CAROL = ["great", "great", "mediocre", "mediocre", "poor", "poor"] * 3
DAVE = {"a01": "great", "a07": "poor", "a13": "poor"}

runner = CliRunner()


# --- metrics against tables worked by hand ---------------------------------------------------------


def test_a_perfectly_agreeing_interviewer():
    m = agreement(ALICE, MODEL, Settings())
    assert m.n == 18
    assert m.exact_agreement == Interval(value=1.0, ci=(1.0, 1.0), resamples_used=2000)
    assert m.kappa.value == 1.0 and m.qwk.value == 1.0
    assert m.leniency.value == 0.0 and m.leniency.ci == (0.0, 0.0)
    assert m.confusion.matrix == [[6, 0, 0], [0, 6, 0], [0, 0, 6]]
    assert m.bias == "no clear bias" and m.warnings == []


def test_a_one_tier_lenient_interviewer():
    # Table (rows bob, columns model; great, mediocre, poor):
    #   great    6 6 0
    #   mediocre 0 0 6
    #   poor     0 0 0
    # Agreement p_o = 6/18 = 1/3. Marginals: bob (2/3, 1/3, 0), model (1/3, 1/3, 1/3);
    # chance p_e = 2/3*1/3 + 1/3*1/3 + 0 = 1/3, so kappa = (1/3 - 1/3) / (1 - 1/3) = 0: plain kappa does
    # not see a systematic one-tier shift.
    # QWK on ranks (great 2, mediocre 1, poor 0), weights (i-j)^2/4: observed = 12/18 * 1/4 = 1/6;
    # expected = 2/3 * (4+1+0)/12 + 1/3 * (1+0+1)/12 = 10/36 + 2/36 = 1/3; QWK = 1 - (1/6)/(1/3) = 0.5.
    # Leniency = (6*0 + 6*1 + 6*1) / 18 = 2/3.
    m = agreement(BOB, MODEL, Settings())
    assert m.confusion.matrix == [[6, 6, 0], [0, 0, 6], [0, 0, 0]]
    assert m.exact_agreement.value == pytest.approx(1 / 3, abs=1e-4)
    assert m.kappa.value == pytest.approx(0.0, abs=1e-9)
    assert m.qwk.value == pytest.approx(0.5, abs=1e-4)
    assert m.leniency.value == pytest.approx(2 / 3, abs=1e-4)
    low, high = m.leniency.ci
    assert 0 < low < 2 / 3 < high <= 1
    assert m.bias == "lenient"


def test_the_same_interviewer_the_other_way_round_is_harsh():
    m = agreement(MODEL, BOB, Settings())
    assert m.leniency.value == pytest.approx(-2 / 3, abs=1e-4)
    assert m.bias == "harsh"


def test_a_random_interviewer():
    # Every cell of the table is 2: both marginals are (1/3, 1/3, 1/3), p_o = 6/18 = p_e = 1/3, so
    # kappa = 0; the weighted observed and expected disagreements are equal too, so QWK = 0; and the
    # signed differences cancel: leniency 0.
    m = agreement(CAROL, MODEL, Settings())
    assert m.confusion.matrix == [[2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert m.exact_agreement.value == pytest.approx(1 / 3, abs=1e-4)
    assert m.kappa.value == pytest.approx(0.0, abs=1e-9)
    assert m.qwk.value == pytest.approx(0.0, abs=1e-9)
    assert m.leniency.value == pytest.approx(0.0, abs=1e-9)
    assert m.kappa.ci[0] < 0 < m.kappa.ci[1]
    assert m.bias == "no clear bias"


def test_three_grades_give_their_figures_a_warning_and_no_interval():
    # dave: great/great, poor/mediocre, poor/poor. p_o = 2/3; marginals dave (1/3, 0, 2/3), model
    # (1/3, 1/3, 1/3); p_e = 1/9 + 2/9 = 1/3; kappa = (2/3 - 1/3) / (2/3) = 0.5.
    # QWK: observed = 1/3 * 1/4 = 1/12; expected = 1/3 * (4+1+0)/12 + 2/3 * (0+1+4)/12 = 5/12;
    # QWK = 1 - (1/12)/(5/12) = 0.8. Leniency = (0 - 1 + 0) / 3 = -1/3.
    m = agreement(list(DAVE.values()), ["great", "mediocre", "poor"], Settings())
    assert m.kappa.value == pytest.approx(0.5, abs=1e-4)
    assert m.qwk.value == pytest.approx(0.8, abs=1e-4)
    assert m.leniency.value == pytest.approx(-1 / 3, abs=1e-4)
    assert (m.exact_agreement.ci, m.kappa.ci, m.qwk.ci, m.leniency.ci) == (None, None, None, None)
    assert m.bias == "too few grades"
    assert m.warnings == ["only 3 grades, fewer than 10: too few to conclude"]
    # Resamples where both sides gave one and the same tier have no kappa: skipped and counted.
    assert 1500 < m.kappa.resamples_used < 2000
    assert m.leniency.resamples_used == 2000
    # Three grades that all agree resample to three that agree: an interval would be zero-width.
    same = agreement(["great", "poor", "poor"], ["great", "poor", "poor"], Settings())
    assert same.exact_agreement.value == 1.0 and same.exact_agreement.ci is None
    ten = agreement([*DAVE.values()] * 4, ["great", "mediocre", "poor"] * 4, Settings())
    assert ten.n == 12 and ten.exact_agreement.ci is not None and ten.exact_agreement.ci[0] < ten.exact_agreement.ci[1]


def test_kappa_is_undefined_when_everything_is_one_tier():
    m = agreement(["great"] * 12, ["great"] * 12, Settings())
    assert m.kappa == Interval(value=None, ci=None, resamples_used=0)
    assert m.exact_agreement.value == 1.0
    assert any("kappa undefined" in w for w in m.warnings)


def test_the_bootstrap_is_reproducible_and_follows_the_seed():
    a = agreement(CAROL, MODEL, Settings(seed=7))
    b = agreement(CAROL, MODEL, Settings(seed=7))
    c = agreement(CAROL, MODEL, Settings(seed=8))
    assert a == b
    assert a.kappa.ci != c.kappa.ci
    assert a.kappa.value == c.kappa.value


def test_resampled_tables_are_bootstrap_draws_of_the_grades():
    # Bob's table in rank order (rows human poor, mediocre, great): six (great, great), six
    # (great, mediocre), six (mediocre, poor).
    table = rank_table(ranks(BOB), ranks(MODEL))
    assert table.tolist() == [[0, 0, 0], [6, 0, 0], [0, 6, 6]]
    draws = resample_tables(table, 4000, np.random.default_rng(0))
    assert (draws.sum(axis=(1, 2)) == 18).all()
    assert (draws[:, table == 0] == 0).all()  # never a pair of tiers nobody gave
    assert np.abs(draws.mean(axis=0) - table).max() < 0.25
    # A cell of a bootstrap resample of 18 grades is Binomial(18, 1/3): variance 18 * 1/3 * 2/3 = 4.
    assert draws[:, 2, 2].var() == pytest.approx(4, rel=0.1)


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("weights", [None, "quadratic"], ids=["plain", "quadratic"])
def test_vectorised_bootstrap_kappa_equals_scikit_learn(seed, weights):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 25))
        h = rng.integers(0, 3, n)
        m = h.copy() if rng.random() < 0.2 else rng.integers(0, 3, n)
        fast = kappa_from_tables(rank_table(h, m)[None], weights=weights)[0]
        if len(set(h) | set(m)) < 2:
            assert np.isnan(fast) and kappa(h, m, weights=weights) is None
        else:
            assert fast == pytest.approx(cohen_kappa_score(h, m, labels=[0, 1, 2], weights=weights), abs=1e-12)


def test_krippendorff_alpha_on_a_tiny_table_worked_by_hand():
    # Two interviewers, three answers, ranks: u1 (2, 2), u2 (1, 0), u3 (0, 0).
    # Value counts n_0 = 3, n_1 = 1, n_2 = 2, n = 6. Ordinal distances
    # d(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2: d(0,1) = (4 - 2)^2 = 4, d(0,2) = (6 - 2.5)^2 = 12.25,
    # d(1,2) = (3 - 1.5)^2 = 2.25. Coincidences: o_01 = o_10 = 1 (unit 2), the rest on the diagonal.
    # alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck
    #       = 1 - 5 * (4 + 4) / (2 * (3*1*4 + 3*2*12.25 + 1*2*2.25)) = 1 - 40 / 180 = 7/9.
    table = np.array([[2, 1, 0], [2, 0, 0]], dtype=float)  # (interviewers, answers)
    assert rank_counts(table).tolist() == [[0, 0, 2], [1, 1, 0], [2, 0, 0]]
    assert alpha(rank_counts(table)) == pytest.approx(7 / 9, abs=1e-9)
    # the package's other entry point, the raw (raters, answers) matrix, agrees
    assert krippendorff.alpha(reliability_data=table, level_of_measurement="ordinal") == pytest.approx(7 / 9)
    assert alpha(rank_counts(np.array([[2, 2], [2, 2]], dtype=float))) is None  # one tier in play
    assert alpha(rank_counts(np.array([[2, np.nan], [np.nan, 1]]))) is None  # no answer graded twice


def test_human_agreement_next_to_the_models():
    grades = [("x", "u1", "great"), ("y", "u1", "great"), ("x", "u2", "mediocre"), ("y", "u2", "poor")]
    grades += [("x", "u3", "poor"), ("y", "u3", "poor"), ("x", "u4", "great")]  # u4: one grade, not shared
    model = {"u1": "great", "u2": "poor", "u3": "mediocre", "u4": "great"}
    h = human_agreement(grades, model, Settings())
    assert h.answers == 3 and h.interviewers == 2 and h.grades == 6
    assert h.alpha.value == pytest.approx(7 / 9, abs=1e-4)  # the table above
    # With the model as a third rater: u1 (2,2,2), u2 (1,0,0), u3 (0,0,1). n_0 = 4, n_1 = 2, n_2 = 3, n = 9.
    # d(0,1) = (6 - 3)^2 = 9, d(0,2) = (9 - 3.5)^2 = 30.25, d(1,2) = (5 - 2.5)^2 = 6.25.
    # Each unit of 3 values contributes its ordered pairs with weight 1/2: u2 and u3 each give
    # o_01 = o_10 = 1, so sum o_ck d_ck = 4 * 9 = 36. Expected: 2 * (4*2*9 + 4*3*30.25 + 2*3*6.25) = 945.
    # alpha = 1 - (9 - 1) * 36 / 945 = 1 - 288/945 = 0.6952: adding the model lowers alpha.
    assert h.alpha_with_model.value == pytest.approx(1 - 288 / 945, abs=1e-4)
    assert h.human_pairs == 3 and h.human_pairwise_agreement == pytest.approx(2 / 3, abs=1e-4)
    assert h.model_pairs == 6 and h.model_pairwise_agreement == pytest.approx(3 / 6, abs=1e-4)
    assert any("too few" in w for w in h.warnings)
    assert human_agreement([("x", "u1", "great")], model, Settings()).answers == 0


# --- tiers and the CSV ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "tier"),
    [
        ("great", Tier.great),
        ("Great", Tier.great),
        (" STRONG ", Tier.great),
        ("excellent", Tier.great),
        ("3", Tier.great),
        ("Mediocre", Tier.mediocre),
        ("average", Tier.mediocre),
        ("OK", Tier.mediocre),
        ("2", Tier.mediocre),
        ("poor", Tier.poor),
        ("Weak", Tier.poor),
        ("1", Tier.poor),
        ("good", None),
        ("4", None),
        ("0", None),
        ("great!", None),
        ("", None),
        ("3.0", None),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_tier_synonyms(cell, tier):
    assert parse_tier(cell) == tier


def test_the_synonym_table_covers_every_tier_and_the_readme_lists_it():
    assert set(TIER_SYNONYMS.values()) == set(Tier)
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Calibration", 1)[1].split("\n## ", 1)[0]
    for word in TIER_SYNONYMS:
        assert f"`{word}`" in section, word


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


GOOD = ["interviewer", "question", "tier", "id"]


@pytest.mark.parametrize(
    ("text", "join", "message"),
    [
        ("interviewer,question,id\nalice,1,a01\n", "id", r"human\.csv:1: missing column tier"),
        ("interviewer,tier,id\nalice,great,a01\n", "id", r"human\.csv:1: missing column question"),
        ("question,tier,id\n1,great,a01\n", "id", r"human\.csv:1: missing column interviewer"),
        (
            "interviewer,question,tier\nalice,1,great\n",
            "id",
            r"human\.csv:1: missing column id .*joined to the model.s grade of the same answer by `id`",
        ),
        ("interviewer,question,tier,id\nalice,1,great,a01\n", "answer", r"human\.csv:1: missing column answer"),
        ("interviewer,question,tier,tier,id\n", "id", r"human\.csv:1: column 'tier' appears twice"),
        ("", "id", r"human\.csv: empty file"),
        ("interviewer,question,tier,id\n", "id", r"human\.csv: no grades"),
        (
            "interviewer,question,tier,id\nalice,1,great,a01\nbob,1,excelent,a01\n",
            "id",
            r"human\.csv:3: unknown tier 'excelent' \(use great/mediocre/poor",
        ),
        ("interviewer,question,tier,id\nalice,1,,a01\n", "id", r"human\.csv:2: empty tier"),
        ("interviewer,question,tier,id\n ,1,great,a01\n", "id", r"human\.csv:2: empty interviewer"),
        ("interviewer,question,tier,id\nalice,1,great,\n", "id", r"human\.csv:2: empty id"),
        (
            "interviewer,question,tier,id\nalice,1,great\n",
            "id",
            r"human\.csv:2: the row ends before the id column \(3 cells",
        ),
        ("interviewer,question,tier,id\nalice,1\n", "id", r"human\.csv:2: the row ends before the tier column"),
        ('interviewer,question,tier,id\nalice,1,"great,a01\nbob,1,poor,a02\n', "id", r"human\.csv:\d: malformed CSV"),
        (
            "interviewer,question,tier,id\nalice,1,great,a01,extra\n",
            "id",
            r"human\.csv:2: 5 cells but the header has 4",
        ),
        (
            "interviewer,question,tier,answer\nalice,1,great\n",
            "answer",
            r"human\.csv:2: the row ends before the answer",
        ),
        (
            'interviewer,question,tier,answer\nalice,1,great,"a\nlong answer"\nbob,1,meh,x\n',
            "answer",
            r"human\.csv:4: unknown tier 'meh'",  # line 4: the quoted answer spans lines 2-3
        ),
    ],
    ids=[
        "no-tier-column",
        "no-question-column",
        "no-interviewer-column",
        "no-id-column-with-model-grades",
        "no-answer-column-without-model-grades",
        "duplicate-column",
        "empty-file",
        "header-only",
        "bad-tier-names-the-row",
        "empty-tier",
        "blank-interviewer",
        "empty-id",
        "short-row-without-id",
        "short-row",
        "unclosed-quote",
        "long-row",
        "short-row-without-answer",
        "line-numbers-after-a-multiline-answer",
    ],
)
def test_malformed_human_csv(tmp_path, text, join, message):
    path = tmp_path / "human.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalibrationDataError, match=message) as caught:
        read_human_grades(path, join=join)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 20


def test_the_csv_reader_tolerates_what_spreadsheets_write(tmp_path):
    path = tmp_path / "human.csv"
    text = "\ufeffInterviewer , QUESTION,Tier,ID,notes,Candidate\r\n alice ,1,Strong,a01,x,Sam\r\n\r\nbob,2,1,a02,,\r\n"
    path.write_bytes(text.encode("utf-8"))
    rows = read_human_grades(path, join="id")
    assert [(r.line, r.interviewer, r.question, r.tier, r.id, r.candidate) for r in rows] == [
        (2, "alice", "1", Tier.great, "a01", "Sam"),
        (4, "bob", "2", Tier.poor, "a02", None),
    ]


def test_unreadable_human_csv(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_human_grades(tmp_path / "missing.csv", join="id")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("interviewer,question,tier,id\nJos\xe9,1,great,a01\n".encode("latin-1"))
    with pytest.raises(EncodingError, match="latin1.csv:.*not UTF-8"):
        read_human_grades(bad, join="id")


# --- model grades --------------------------------------------------------------------------------


def grade(question: str, tier: str, answer_id: str) -> Grade:
    prefix = "q01" if question == Q1 else "q02"
    return Grade(
        question_id=question,
        tier=tier,
        justification=f"Model justification for {answer_id}.",
        missed_points=[f"{prefix}.missed-in-{answer_id}"],
        backend="fake",
        model="scripted",
    )


GRADE_JSON = grade(Q1, "poor", "a01").model_dump_json()


def question_of(answer_id: str) -> str:
    return Q1 if int(answer_id[1:]) <= 9 else Q2


def model_grade_lines() -> list[str]:
    """The 18 model grades in the three accepted shapes, and a failed batch row (a19)."""
    lines = []
    for answer_id, tier in zip(ANSWERS, MODEL, strict=True):
        g = grade(question_of(answer_id), tier, answer_id).model_dump(mode="json")
        number = int(answer_id[1:])
        if number <= 6:  # a Grade with an id next to its fields
            lines.append(json.dumps({"id": answer_id, **g}))
        elif number <= 12:  # wrapped
            lines.append(json.dumps({"id": answer_id, "grade": g}))
        else:  # a `grader batch` row: input columns, flattened grade (`grade_` where names collide), error
            row = {"id": answer_id, "question": question_of(answer_id), "answer": f"Answer text of {answer_id}."}
            row["tier"] = "great"  # an input column named like a Grade field: the grade's is `grade_tier`
            row |= {("grade_tier" if k == "tier" else k): v for k, v in g.items() if k != "confidence_source"}
            lines.append(json.dumps(row | {"error": None, "error_kind": None}))
    failed = {"id": "a19", "question": Q1, "answer": "Answer text of a19."}
    failed |= dict.fromkeys(("question_id", "grade_tier", "justification", "missed_points", "backend", "model"))
    lines.append(json.dumps(failed | {"error": "no valid grade after 3 attempts", "error_kind": "invalid_output"}))
    return lines


def human_rows() -> list[list[str]]:
    """interviewer, question, tier, id, candidate: the CSV's question as a number for Q1, a slug for Q2."""
    rows = []
    for name, tiers in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        for answer_id, tier in zip(ANSWERS, tiers, strict=True):
            rows.append([name, "1" if question_of(answer_id) == Q1 else Q2, tier, answer_id, f"cand-{answer_id}"])
    for answer_id, tier in DAVE.items():
        rows.append(["dave", "1" if question_of(answer_id) == Q1 else Q2, tier.upper(), answer_id, ""])
    rows.append(["alice", "1", "great", "a19", ""])  # its model grade failed
    rows.append(["alice", "1", "poor", "a20", ""])  # no model grade at all
    return rows


@pytest.fixture
def calibration_files(tmp_path) -> tuple[Path, Path]:
    human = write_csv(tmp_path / "human.csv", ["interviewer", "question", "tier", "id", "candidate"], human_rows())
    grades = tmp_path / "grades.jsonl"
    grades.write_text("\n".join(model_grade_lines()) + "\n\n", encoding="utf-8")
    return human, grades


def test_the_three_model_grade_shapes_are_read(calibration_files):
    _, path = calibration_files
    grades = read_model_grades(path)
    assert len(grades) == 19
    assert [grades[a].grade.tier.value for a in ANSWERS] == MODEL
    assert grades["a13"].grade.tier is Tier.poor  # `grade_tier`, not the input column `tier`
    assert grades["a13"].answer == "Answer text of a13."
    assert grades["a19"].grade is None and grades["a19"].failure.message == "no valid grade after 3 attempts"
    assert grades["a19"].failure.kind.value == "invalid_output"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"grades\.jsonl:2: invalid JSON"),
        ("[1, 2]", r"grades\.jsonl:2: expected a JSON object, got list"),
        ('{"tier": "great"}', r"grades\.jsonl:2: no `id`"),
        ('{"id": "", "tier": "great"}', r"grades\.jsonl:2: no `id`"),
        ('{"id": true, "tier": "great"}', r"grades\.jsonl:2: no `id`"),
        ('{"id": "a01", "grade": ' + GRADE_JSON + "}", r"grades\.jsonl:2: id 'a01' already on line 1"),
        ('{"id": "b", "grade": "great"}', r"grades\.jsonl:2: `grade` must be a Grade object"),
        (
            '{"id": "b", "grade": {"question_id": "x", "tier": "great"}}',
            r"grades\.jsonl:2: grade\.justification: missing",
        ),
        (
            '{"id": "b", "question_id": "x", "tier": "excellent", "justification": "j", "backend": "b", "model": "m"}',
            r"grades\.jsonl:2: tier: Input should be 'great', 'mediocre' or 'poor'",
        ),
    ],
    ids=[
        "invalid-json",
        "not-an-object",
        "missing-id",
        "empty-id",
        "boolean-id",
        "duplicate-id",
        "grade-not-an-object",
        "grade-missing-field",
        "bad-tier",
    ],
)
def test_malformed_model_grades(tmp_path, line, message):
    path = tmp_path / "grades.jsonl"
    first = {"id": "a01", **grade(Q1, "great", "a01").model_dump(mode="json")}
    path.write_text(json.dumps(first) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CalibrationDataError, match=message):
        read_model_grades(path)


def test_numeric_ids_join_with_the_csv(tmp_path):
    human = write_csv(tmp_path / "h.csv", GOOD, [["alice", "1", "great", "7"]])
    grades = tmp_path / "g.jsonl"
    grades.write_text(json.dumps({"id": 7, "grade": grade(Q1, "poor", "7").model_dump(mode="json")}) + "\n")
    (pair,) = pair_with_model_grades(human, grades)
    assert pair.status == "paired" and pair.model.tier is Tier.poor


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [["alice", "1", "great", "a01"], ["bob", "1", "poor", "a01"], ["alice", "1", "poor", "a01"]],
            r"h\.csv:4: 'alice' already graded answer 'a01' on line 2",
        ),
        ([["alice", "api-design", "great", "a01"]], r"h\.csv:2: question 'api-design' does not match .*g\.jsonl:1"),
        ([["alice", "1", "great", "a01"], ["bob", "2", "great", "a01"]], r"h\.csv:3: id 'a01' is question '2' here"),
        ([["alice", "nope", "great", "a01"]], r"h\.csv:2: question 'nope' does not match"),
    ],
    ids=["duplicate-row", "question-mismatch", "one-id-two-questions", "unknown-question"],
)
def test_joining_catches_what_cannot_be_paired(tmp_path, rows, message):
    human = write_csv(tmp_path / "h.csv", GOOD, rows)
    grades = tmp_path / "g.jsonl"
    grades.write_text(json.dumps({"id": "a01", **grade(Q1, "great", "a01").model_dump(mode="json")}) + "\n")
    with pytest.raises(CalibrationDataError, match=message):
        pair_with_model_grades(human, grades)


# --- the report from model grades ----------------------------------------------------------------


def test_the_report_on_the_hand_made_data(calibration_files):
    human, grades = calibration_files
    pairs = pair_with_model_grades(human, grades)
    report = build_report(pairs, settings=Settings(), human_path=str(human), model_grades_path=str(grades))

    assert report.counts.model_dump() == {
        "rows": 18 * 3 + 3 + 2,
        "paired": 57,
        "failed": 1,
        "unmatched": 1,
        "interviewers": 4,
        "questions": 2,
        "answers": 20,
    }
    assert [r.model_dump() for r in report.failed] == [
        {
            "line": 59,
            "interviewer": "alice",
            "question": Q1,
            "id": "a19",
            "candidate": None,
            "error": "no valid grade after 3 attempts",
        }
    ]
    assert [(r.line, r.id) for r in report.unmatched] == [(60, "a20")]
    people = report.interviewers
    assert people["alice"].n == 18  # the failed and unmatched rows stay out
    assert {name: m.bias for name, m in people.items()} == {
        "alice": "no clear bias",
        "bob": "lenient",
        "carol": "no clear bias",
        "dave": "too few grades",
    }
    assert people["bob"].qwk.value == 0.5 and people["bob"].kappa.value == 0.0
    assert people["dave"].warnings == ["only 3 grades, fewer than 10: too few to conclude"]
    # Overall: alice 18 + bob 6 + carol 6 + dave 2 agreements out of 57.
    assert report.overall.n == 57
    assert report.overall.exact_agreement.value == pytest.approx(32 / 57, abs=1e-4)
    assert report.overall.leniency.value == pytest.approx((12 + 0 - 1) / 57, abs=1e-4)
    assert report.questions[Q1].n == 9 * 3 + 2 and report.questions[Q2].n == 9 * 3 + 1

    h = report.human_agreement
    assert h.answers == 18 and h.interviewers == 4 and h.grades == 57
    # Pairs of interviewers: 3 pairs on each of 15 answers, 6 on a01, a07, a13 -> 63. They agree on
    # alice-bob 6, alice-carol 6, bob-carol 6 (the great blocks' first two, the poor block's mediocres),
    # and with dave: a01 all three, a07 none, a13 alice only -> 22.
    assert h.human_pairs == 63 and h.human_pairwise_agreement == pytest.approx(22 / 63, abs=1e-4)
    assert h.model_pairs == 57 and h.model_pairwise_agreement == pytest.approx(32 / 57, abs=1e-4)
    assert -1 <= h.alpha.value <= 1 and h.alpha.ci[0] <= h.alpha.value <= h.alpha.ci[1]

    dis = report.disagreements
    assert len(dis) == 57 - 32
    assert [(d.interviewer, d.id, d.difference) for d in dis[:4]] == [
        ("carol", "a05", -2),
        ("carol", "a06", -2),
        ("carol", "a13", 2),
        ("carol", "a14", 2),
    ]
    assert all(abs(d.difference) == 1 for d in dis[4:])
    first = dis[0]
    assert first.human == "poor" and first.model == "great"
    assert first.justification == "Model justification for a05."
    assert first.missed_points == ["q01.missed-in-a05"] and first.candidate == "cand-a05"
    assert dis[2].answer == "Answer text of a13."  # from the batch row: the CSV has no answer column
    assert CalibrationReport.model_validate_json(report.to_json()) == report


def test_markdown_report(calibration_files):
    human, grades = calibration_files
    report = build_report(
        pair_with_model_grades(human, grades), settings=Settings(), human_path="human.csv", model_grades_path="g"
    )
    md = to_markdown(report)
    assert "| bob | 18 | 0.333 [" in md and "| +0.667 [" in md and "| lenient |" in md
    assert "- dave: only 3 grades, fewer than 10: too few to conclude" in md
    assert "| great | 6 | 6 | 0 |" in md  # bob's confusion matrix
    # one answer once, with every interviewer who differs on it, the largest gap first
    assert (
        "### 1. a13 (api-design; candidate cand-a13): the model gave poor; carol gave great (+2); bob gave mediocre (+1)"
        in md
    )
    assert md.count("### ") - len(report.interviewers) == 16 == len({d.id for d in report.disagreements})
    assert "- human.csv lines 32, 50" in md and "- human.csv line 42" in md
    assert (
        "### 3. a05 (debugging-a-production-issue; candidate cand-a05): the model gave great; carol gave poor (-2)"
        in md
    )
    assert "- missed points: q01.missed-in-a05" in md
    assert "Krippendorff's alpha (ordinal) among interviewers" in md
    assert "## Model grades that failed (1)" in md and "## Rows with no model grade (1)" in md


def test_the_report_says_in_short_what_it_found(calibration_files):
    human, grades = calibration_files
    report = build_report(pair_with_model_grades(human, grades), settings=Settings(), human_path="human.csv")
    lines = in_short(report)
    qwk = report.overall.qwk.value
    assert 0.4 < qwk <= 0.6  # so the reading is "moderate"
    assert (
        lines[0]
        == f"the interviewers gave the model's tier on 32 of 57 grades (56.1%); QWK {qwk:.3f}: moderate agreement beyond chance"
    )
    assert "bob (+0.667) grades higher than the model (lenient)" in lines
    overall = report.overall.leniency
    said = f"taken together, the interviewers grade higher than the model ({overall.value:+.3f})"
    assert (said in lines) is (overall.ci[0] > 0)  # said only where the interval leaves out zero
    assert "alice (0.000), carol (0.000) grade neither clearly higher nor lower than the model" in lines
    assert "dave has too few grades to tell" in lines
    worst, best = sorted(report.questions, key=lambda q: report.questions[q].exact_agreement.value)
    assert any(
        line.startswith(f"they differ from the model most on {worst} (") and f"least on {best} (" in line
        for line in lines
    )
    assert lines[-1].startswith("next: read the disagreements (25 grades on 16 answers, 4 of them two tiers apart)")
    assert sum(1 for d in disagreement_answers(report.disagreements) if d.largest == 2) == 4


@pytest.mark.parametrize(
    ("kappa", "reading"),
    [
        (None, None),
        (-0.1, "worse than chance: they disagree more than at random"),
        (0.0, "no agreement beyond chance"),
        (0.2, "slight agreement beyond chance"),
        (0.21, "fair agreement beyond chance"),
        (0.4, "fair agreement beyond chance"),
        (0.41, "moderate agreement beyond chance"),
        (0.6, "moderate agreement beyond chance"),
        (0.61, "substantial agreement beyond chance"),
        (0.8, "substantial agreement beyond chance"),
        (0.81, "almost perfect agreement beyond chance"),
        (1.0, "almost perfect agreement beyond chance"),
    ],
)
def test_kappa_in_words_on_landis_and_koch_s_scale(kappa, reading):
    assert kappa_reading(kappa) == reading


def test_pairs_of_interviewers_are_named_when_they_differ(tmp_path):
    # ann and ben agree on all 10 answers, ann and cy on 2 of 10 (ben and cy as well): min-n 10 makes them conclusive
    rows, lines = [], []
    for i in range(10):
        answer_id = f"a{i:02d}"
        tier = ("great", "mediocre", "poor")[i % 3]
        other = tier if i < 2 else ("poor" if tier != "poor" else "great")
        rows += [["ann", "1", tier, answer_id], ["ben", "1", tier, answer_id], ["cy", "1", other, answer_id]]
        lines.append(json.dumps({"id": answer_id, **grade(Q1, tier, answer_id).model_dump(mode="json")}))
    human = write_csv(tmp_path / "h.csv", GOOD, rows)
    grades = tmp_path / "g.jsonl"
    grades.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = build_report(pair_with_model_grades(human, grades), settings=Settings(resamples=100), human_path="h.csv")
    said = in_short(report)
    # ann and cy, and ben and cy, tie at the least alike: both named, not the first by name
    assert (
        "most alike: ann and ben (the same tier on 10 of 10 answers); least alike: ann and cy; ben and cy (20.0% of their)"
        in said
    )
    assert "ann (0.000), ben (0.000), cy (-0.200) grade neither clearly higher nor lower than the model" in said
    # the model gave ann's and ben's tiers, so it agrees with the interviewers more than they with each other
    assert any(
        "the model agrees with them more often than they agree with each other (73.3% against" in x for x in said
    )


def _pairs(rows: list[tuple[str, str, str, str, str]]):
    """Paired grades from (interviewer, answer id, question, human tier, model tier)."""
    from grader.calibration.data import HumanGrade, Pair

    out = []
    for i, (who, answer_id, question, human, model) in enumerate(rows):
        graded = Grade(question_id=question, tier=Tier(model), justification="j", backend="fake", model="m")
        out.append(
            Pair(
                HumanGrade(i + 2, who, question, Tier(human), id=answer_id), question, answer_id, "paired", model=graded
            )
        )
    return out


def test_in_short_reads_a_reversal_a_tie_and_a_lone_interviewer_in_plain_words():
    """'QWK -1.000: no better than chance agreement beyond chance'; a 'most' and a 'least' of a tie; 'the
    interviewers' for one person, and the overall leniency said twice."""
    flip = {"great": "poor", "poor": "great", "mediocre": "mediocre"}
    rows = [("ann, smith", f"a{i}", Q1 if i % 2 else Q2, t, flip[t]) for i, t in enumerate(["great", "poor"] * 6)]
    said = in_short(build_report(_pairs(rows), settings=Settings(resamples=100), human_path="h.csv"))
    assert (
        said[0]
        == "ann, smith gave the model's tier on 0 of 12 grades (0.0%); QWK -1.000: worse than chance: they disagree more than at random"
    )
    assert not any(line.startswith("taken together") for line in said)  # one interviewer: said once, by name
    assert not any("differ from the model most" in line for line in said)  # both questions at 0 %: a tie
    assert said[-1].startswith(
        "next: read the disagreements (12 grades on 12 answers, all two tiers apart), largest first below"
    )
    two = _pairs([("Smith, John", "b1", Q1, "great", "great"), ("Doe", "b1", Q1, "great", "great")])
    lines = in_short(build_report(two, settings=Settings(resamples=100), human_path="h.csv"))
    assert "Doe; Smith, John have too few grades to tell" in lines  # a comma inside a name is not a second name
    # one answer graded by both: too few shared answers to compare the model with the interviewers' agreement
    assert not any("agree with each other" in line for line in lines)
    # two questions tied at the bottom, one at the top: both named
    rows = [("ann", f"c{i}", q, "great", model) for i, (q, model) in enumerate([(Q1, "poor")] * 3 + [(Q2, "poor")] * 3)]
    rows += [("ann", f"d{i}", "code-quality", "great", "great") for i in range(3)]
    lines = in_short(build_report(_pairs(rows), settings=Settings(resamples=100, min_n=2), human_path="h.csv"))
    assert (
        f"they differ from the model most on {Q2} and {Q1} (0.0% the same tier) and least on code-quality (100.0%)"
        in lines
    )
    assert kappa_reading(0.0) == "no agreement beyond chance"


def test_past_the_answers_listed_the_pages_say_how_many_more_in_good_grammar(monkeypatch):
    import grader.calibration.report as report_module

    monkeypatch.setattr(report_module, "SHOWN_DISAGREEMENTS", 2)
    rows = [("ann", f"a{i}", Q1, "great", "poor") for i in range(3)]
    report = build_report(_pairs(rows), settings=Settings(resamples=100), human_path="h.csv")
    assert "1 more answer in calibration.json (its `disagreements`, one per grade)." in to_markdown(report)
    assert "<p>1 more answer in calibration.json (its `disagreements`, one per grade).</p>" in to_html(report)


def test_heatmaps_are_shaded_by_each_row_s_share_on_one_scale_for_every_chart(monkeypatch):
    """Shaded by count against each chart's own largest cell, one interviewer's single cell of 4 was as dark as
    the overall chart's 46: each cell is its share of its row now, 0 to 1 in every chart."""
    drawn = []

    def draw(size, paint):  # the real axes, kept to be read back
        fig, ax = plots.pyplot().subplots(figsize=size)
        paint(ax)
        image = ax.images[0]
        drawn.append((np.asarray(image.get_array()).tolist(), image.get_clim(), [t.get_text() for t in ax.texts]))
        plots.pyplot().close(fig)
        return b""

    monkeypatch.setattr(plots, "draw", draw)
    for matrix in (
        [[4, 0, 0], [0, 0, 0], [0, 0, 0]],
        [[46, 0, 0], [0, 46, 0], [0, 0, 46]],
        [[4, 4, 0], [2, 0, 6], [0, 0, 0]],
    ):
        plots.heatmap_png(matrix, "t", rows="interviewer", columns="model")
    (alone, alone_scale, alone_texts), (many, many_scale, _), (split, _, split_texts) = drawn
    assert alone_scale == many_scale == (0, 1)  # one scale for every chart
    assert alone[0][0] == many[0][0] == many[1][1] == 1  # a whole row is the darkest shade, whatever its count
    assert split[0][:2] == [0.5, 0.5] and split[1] == [0.25, 0, 0.75] and split[2] == [0, 0, 0]
    assert alone_texts[0] == "4" and split_texts[5] == "6"  # the counts are still what is written


def invoke(*args: str):
    return runner.invoke(app, ["calibrate", *args])


def test_calibrate_command_with_model_grades(calibration_files, tmp_path):
    human, grades = calibration_files
    out = tmp_path / "report"
    result = invoke(str(human), "--model-grades", str(grades), "-o", str(out), "--resamples", "500")
    assert result.exit_code == 0, result.output
    assert "bob" in result.stdout and "lenient" in result.stdout and "disagreements: 25" in result.stdout
    assert "grader: warning: dave: only 3 grades" in result.stderr
    report = json.loads((out / "calibration.json").read_text())
    assert report["settings"] == {"min_n": 10, "resamples": 500, "level": 0.95, "seed": 0}
    assert report["interviewers"]["bob"]["leniency"]["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["interviewers"]["bob"]["kappa"]["resamples_used"] == 500
    assert report["inputs"]["graded_by"] == ["fake · scripted"]
    page = (out / "calibration.html").read_text()
    # overall and four interviewers' heatmaps, and the leniency chart
    assert page.count('src="data:image/png;base64,') == 6
    assert "<script" not in page and "http" not in page.split("<body>", 1)[1]
    assert (out / "calibration.md").read_text().startswith("# Calibration")


def test_a_stricter_small_n_rule_and_another_seed(calibration_files, tmp_path):
    human, grades = calibration_files
    result = invoke(str(human), "-g", str(grades), "--min-n", "20", "--bootstrap-seed", "3", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "calibration.json").read_text())
    assert report["interviewers"]["bob"]["bias"] == "too few grades"  # 18 < 20
    assert report["settings"]["seed"] == 3


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("interviewer,question,tier\nalice,1,great\n", "human.csv:1: missing column id"),
        ("interviewer,question,tier,id\nalice,1,brilliant,a01\n", "human.csv:2: unknown tier 'brilliant'"),
    ],
    ids=["missing-column", "bad-tier"],
)
def test_bad_input_is_one_line_and_exit_20(tmp_path, calibration_files, csv_text, message):
    _, grades = calibration_files
    human = tmp_path / "human.csv"
    human.write_text(csv_text, encoding="utf-8")
    result = invoke(str(human), "--model-grades", str(grades))
    assert result.exit_code == 20
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_an_output_folder_that_is_a_file(calibration_files, tmp_path):
    human, grades = calibration_files
    (tmp_path / "taken").write_text("x")
    result = invoke(str(human), "-g", str(grades), "-o", str(tmp_path / "taken"), "--resamples", "100")
    assert result.exit_code == 15
    assert f"cannot write {tmp_path / 'taken'}: a file is there, where a folder is expected" in result.stderr


def test_a_report_run_again_into_its_folder_says_it_replaced_the_earlier_one(calibration_files, tmp_path):
    human, grades = calibration_files
    out = tmp_path / "report"
    first = invoke(str(human), "-g", str(grades), "-o", str(out), "--resamples", "100")
    assert first.exit_code == 0, first.output
    assert "replacing" not in first.output
    earlier = datetime(2026, 11, 2, 10, 14).timestamp()
    os.utime(out / "calibration.json", (earlier, earlier))
    os.utime(out / "calibration.html", (earlier - 60, earlier - 60))
    again = invoke(str(human), "-g", str(grades), "-o", str(out), "--resamples", "100")
    assert again.exit_code == 0, again.output
    assert f"wrote {out / 'calibration.json'}" in again.stdout
    # the newest of the files replaced: calibration.md was written by the first run, just now
    assert "(replacing the report written " in again.stdout
    assert "2026-11-02" not in again.stdout
    os.utime(out / "calibration.md", (earlier, earlier))
    os.utime(out / "calibration.json", (earlier, earlier))
    os.utime(out / "calibration.html", (earlier, earlier))
    third = invoke(str(human), "-g", str(grades), "-o", str(out), "--resamples", "100")
    assert "(replacing the report written 2026-11-02 10:14)" in third.stdout


def test_installed_entry_point_reports_a_bad_row(tmp_path):
    write_csv(tmp_path / "human.csv", GOOD, [["alice", "1", "great", "a01"], ["bob", "1", "??", "a01"]])
    grades = tmp_path / "grades.jsonl"
    grades.write_text(json.dumps({"id": "a01", **grade(Q1, "great", "a01").model_dump(mode="json")}) + "\n")
    exe = Path(sys.executable).with_name("grader")
    if not exe.exists():
        pytest.fail("the `grader` entry point is not installed: pip install '.[test]'")
    proc = subprocess.run(
        [str(exe), "calibrate", "human.csv", "--model-grades", "grades.jsonl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 20
    assert proc.stderr.strip() == (
        "grader: error: human.csv:3: unknown tier '??' (use great/mediocre/poor, strong/average/weak or 3/2/1; "
        "see the README's synonym table)"
    )


def test_tables_written_to_a_file_or_a_pipe_are_never_cut(calibration_files, tmp_path):
    """Not on a terminal, rich drew tables 80 columns wide: a log read QWK -0.333 as "-0.3…"."""
    human, grades = calibration_files
    exe = Path(sys.executable).with_name("grader")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # as a shell piping to a file has it
    proc = subprocess.run(
        [str(exe), "calibrate", str(human), "--model-grades", str(grades), "--resamples", "100"],
        capture_output=True,
        text=True,
        env=env | {"GRADER_CACHE_DIR": str(tmp_path / "cache")},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    report = build_report(
        pair_with_model_grades(human, grades), settings=Settings(resamples=100), human_path=str(human)
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("│ bob ")]
    assert len(rows) == 1  # one line: no cell wrapped onto another
    assert all(cell in rows[0] for cell in metric_cells(report.interviewers["bob"]))


# --- grading the answers first -------------------------------------------------------------------


def test_calibrate_grades_each_distinct_answer_once_with_the_fake_backend(tmp_path, monkeypatch, rubric):
    q1 = rubric.find(1)
    answers = [
        "I read the logs, reproduce it in staging, roll back and write a post-mortem.",
        "I look at the logs and fix it.",
        "I restart the server.",
    ]
    replies = tmp_path / "replies.jsonl"
    replies.write_text("\n".join(json.dumps(reply_for(q1, tier=t)) for t in ("great", "mediocre", "poor")) + "\n")
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
    monkeypatch.setenv("GRADER_MODE", "holistic")  # the scripted replies are holistic ones
    rows = [["alice", "1", t, a] for a, t in zip(answers, ("great", "mediocre", "poor"), strict=True)]
    rows += [["bob", "q01", t, a] for a, t in zip(answers, ("great", "great", "mediocre"), strict=True)]
    rows += [["carol", q1.id, "poor", "   "]]  # an empty answer cannot be graded: a failed row, not a grade
    human = write_csv(tmp_path / "human.csv", ["interviewer", "question", "tier", "answer"], rows)

    result = invoke(str(human), "--backend", "fake", "--concurrency", "1", "--no-cache", "-o", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "graded 4 distinct answers (0 from cache, 1 failed)" in result.stderr
    report = json.loads((tmp_path / "r" / "calibration.json").read_text())
    # Three replies were scripted: had an answer been graded twice, a grade would have failed.
    assert report["counts"] == {
        "rows": 7,
        "paired": 6,
        "failed": 1,
        "unmatched": 0,
        "interviewers": 3,
        "questions": 1,
        "answers": 4,
    }
    assert report["failed"][0]["error"] == f"{human}:8: answer is empty"
    assert report["interviewers"]["alice"]["exact_agreement"]["value"] == 1.0
    assert report["interviewers"]["bob"]["leniency"]["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert [g["id"] for g in report["grades"]] == [f"{q1.id}#{i}" for i in (1, 2, 3, 1, 2, 3, 4)]
    assert report["inputs"]["model_grades"] is None and report["inputs"]["graded_by"] == ["fake · scripted"]
    h = report["human_agreement"]
    assert h["answers"] == 3 and h["human_pairwise_agreement"] == pytest.approx(1 / 3, abs=1e-4)


def test_an_unknown_question_in_the_csv_names_the_row(tmp_path):
    human = write_csv(
        tmp_path / "human.csv", ["interviewer", "question", "tier", "answer"], [["alice", "99", "great", "x y z"]]
    )
    result = invoke(str(human), "--backend", "fake")
    assert result.exit_code == 20
    assert "human.csv:2: unknown question '99'" in result.stderr


def test_when_no_answer_can_be_graded_the_error_is_raised(tmp_path, monkeypatch):
    replies = tmp_path / "replies.jsonl"
    replies.write_text("")
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
    monkeypatch.setenv("GRADER_MODE", "holistic")  # the scripted replies are holistic ones
    human = write_csv(
        tmp_path / "human.csv", ["interviewer", "question", "tier", "answer"], [["alice", "1", "great", "an answer"]]
    )
    result = invoke(str(human), "--backend", "fake", "--no-cache")
    assert result.exit_code == 11  # the fake backend's "no scripted reply left" is a BackendError
    assert "no scripted reply left" in result.stderr


def test_calibrate_with_the_local_backend_matches_grading_directly(tmp_path, rubric):
    from grader.api import agrade
    from grader.backends import get_backend

    q1 = rubric.find(1)
    answers = [(q1, tier, text) for tier, text in q1.references.items()]
    rows = [[name, q.id, tier, text] for name in ("alice", "bob") for q, tier, text in answers]
    human = write_csv(tmp_path / "human.csv", ["interviewer", "question", "tier", "answer"], rows)

    result = invoke(str(human), "--backend", "local", "-o", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "graded 3 distinct answers (0 from cache, 0 failed)" in result.stderr
    report = json.loads((tmp_path / "r" / "calibration.json").read_text())

    async def direct() -> list[str]:
        backend = get_backend("local")
        try:
            return [(await agrade(q, text, backend=backend)).tier.value for q, _, text in answers]
        finally:
            await backend.aclose()

    expected = asyncio.run(direct())
    assert [g["model"] for g in report["grades"]] == expected * 2
    assert report["inputs"]["graded_by"] == ["local · all-MiniLM-L6-v2-int8"]
    agree = sum(e == tier for e, (_, tier, _) in zip(expected, answers, strict=True)) / 3
    assert report["interviewers"]["alice"]["exact_agreement"]["value"] == pytest.approx(agree, abs=1e-4)

    again = invoke(str(human), "--backend", "local")  # the second run is served from the cache
    assert again.exit_code == 0 and "graded 3 distinct answers (3 from cache, 0 failed)" in again.stderr


# --- the page in a real browser ------------------------------------------------------------------


def test_the_html_report_in_a_headless_browser(calibration_files):
    from tests.support.browser import ARTIFACTS, check_page, require_chromium

    require_chromium()
    human, grades = calibration_files
    report = build_report(
        pair_with_model_grades(human, grades), settings=Settings(resamples=300), human_path="human.csv"
    )
    out = ARTIFACTS / "calibration"
    html_path = write_reports(report, out)[2]
    page = check_page(html_path, out / "calibration.png")
    assert page.errors == []
    # the overall heatmap, one per interviewer, and the leniency chart, all decoded
    assert page.images_total == 6 and page.images_loaded == 6
    assert "Disagreements, largest first (25 grades on 16 answers)" in page.text
    assert "In short" in page.text and "bob (+0.667) grades higher than the model (lenient)" in page.text
    assert "carol gave great (+2); bob gave mediocre (+1)" in page.text
    assert "lenient" in page.text and "too few grades" in page.text
    assert page.screenshot is not None and page.screenshot.stat().st_size > 0


EVIL = "<script>alert('x')</script>"


@pytest.fixture
def evil_report(tmp_path):
    """A disagreement whose answer, justification, interviewer and candidate carry markup."""
    human = write_csv(tmp_path / "h.csv", [*GOOD, "candidate"], [["<b>eve</b>", "1", "great", "a01", EVIL]])
    model = grade(Q1, "poor", "a01").model_copy(update={"justification": f"Poor: {EVIL}"})
    grades = tmp_path / "g.jsonl"
    line = {"id": "a01", "answer": f"I would {EVIL}", "grade": model.model_dump(mode="json")}
    grades.write_text(json.dumps(line) + "\n", encoding="utf-8")
    pairs = pair_with_model_grades(human, grades)
    return build_report(pairs, settings=Settings(resamples=100), human_path=f"h{EVIL}.csv")


def test_the_html_report_escapes_every_text(evil_report):
    page = to_html(evil_report)
    assert "<script" not in page and "<b>" not in page
    assert "I would &lt;script&gt;alert(" in page and "Poor: &lt;script&gt;alert(" in page
    assert "&lt;b&gt;eve&lt;/b&gt;" in page and "h&lt;script&gt;alert(" in page


def test_markup_in_the_html_report_shows_as_text_in_a_headless_browser(evil_report, tmp_path):
    from tests.support.browser import ARTIFACTS, check_page, require_chromium

    require_chromium()
    html_path = write_reports(evil_report, tmp_path)[2]
    page = check_page(html_path, ARTIFACTS / "calibration" / "escaped.png")
    assert page.errors == []
    assert page.images_total == page.images_loaded == 3  # overall and eve's heatmaps, the leniency chart
    assert f"I would {EVIL}" in page.text and f"Poor: {EVIL}" in page.text and "<b>eve</b>" in page.text


def test_ranks():
    assert ranks(["poor", "mediocre", "great", Tier.great]).tolist() == [0, 1, 2, 2]


def test_no_ids_in_common_is_an_error_not_a_table_of_na(tmp_path):
    from typer.testing import CliRunner

    from grader.cli import app

    human = tmp_path / "human.csv"
    human.write_text("interviewer,id,question,tier\nalice,x1,1,great\nbob,x2,2,poor\n")
    grades = tmp_path / "grades.jsonl"
    grade = {"id": "y1", "question_id": "debugging-a-production-issue", "tier": "great", "justification": "j"}
    grades.write_text(json.dumps(grade | {"backend": "local", "model": "m"}) + "\n")
    result = CliRunner().invoke(app, ["calibrate", str(human), "--model-grades", str(grades)])
    assert result.exit_code == 20
    assert "none of its 2 grade(s) could be paired" in result.stderr and "2 with no model grade" in result.stderr


def test_grader_batch_csv_output_is_read_as_its_jsonl_output(tmp_path):
    """The CSV `grader batch` writes (audit read it; calibrate said "invalid JSON")."""
    answers = tmp_path / "in.csv"
    with answers.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "answer"])
        for i, text in enumerate(
            ["I check the logs, reproduce it, roll back, then a post-mortem.", "I restart.", "No idea."]
        ):
            w.writerow([f"a{i}", "1", text])
    human = write_csv(
        tmp_path / "human.csv",
        ["interviewer", "question", "tier", "id"],
        [["dana", "1", t, f"a{i}"] for i, t in enumerate(["great", "mediocre", "poor"])],
    )
    reports = []
    for suffix in ("csv", "jsonl"):
        graded = tmp_path / f"graded.{suffix}"
        batch = CliRunner().invoke(app, ["batch", str(answers), "-o", str(graded), "-b", "local"])
        assert batch.exit_code == 0, batch.output
        result = invoke(str(human), "--model-grades", str(graded), "--format", "json")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert reports[0]["counts"]["paired"] == 3
    assert reports[0]["grades"] == reports[1]["grades"] and reports[0]["overall"] == reports[1]["overall"]


def test_interviewer_names_differing_in_case_or_spacing_are_one_person(calibration_files, tmp_path):
    human, grades = calibration_files
    rows = human_rows()
    for row in rows:  # a spreadsheet where half of Bob's rows say "Bob " and one of Carol's "CAROL"
        if row[0] == "bob" and int(row[3][1:]) % 2 == 0:
            row[0] = " Bob"
    last_carol = max(i for i, r in enumerate(rows) if r[0] == "carol")
    rows[last_carol][0] = "CAROL"
    respelt = write_csv(tmp_path / "respelt.csv", ["interviewer", "question", "tier", "id", "candidate"], rows)
    result = invoke(str(respelt), "--model-grades", str(grades), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # as most often written, the first written of equals (bob: 9 rows " Bob", 9 "bob")
    assert sorted(report["interviewers"]) == ["alice", "bob", "carol", "dave"]
    assert report["interviewers"]["bob"]["n"] == 18 and report["counts"]["interviewers"] == 4
    expected = json.loads(invoke(str(human), "--model-grades", str(grades), "--format", "json").stdout)
    assert report["interviewers"]["bob"]["kappa"] == expected["interviewers"]["bob"]["kappa"]
    warning = (
        "interviewer names that differ only in Unicode form, case or spacing are read as one person: "
        f"'Bob' (line 21) as 'bob', 'CAROL' (line {last_carol + 2}) as 'carol'"
    )
    assert warning in report["overall"]["warnings"]
    printed = invoke(str(respelt), "--model-grades", str(grades))
    assert f"grader: warning: overall: {warning}" in printed.stderr


def test_a_question_written_as_the_batch_input_wrote_it_joins_and_a_missing_rubric_is_an_error(tmp_path):
    """The batch row's own `question` column ("7": the team's numbering) is the interviewer's question as
    well: calibrate refused it (exit 20) where audit took it. A --rubric that is not there was ignored."""
    grades = tmp_path / "graded.jsonl"
    grades.write_text(
        "".join(
            json.dumps({"id": f"a{i}", "question": "7", **grade(Q1, tier, f"a{i}").model_dump(mode="json")}) + "\n"
            for i, tier in enumerate(["great", "mediocre", "poor"])
        )
    )
    human = write_csv(
        tmp_path / "human.csv",
        ["interviewer", "question", "tier", "id"],
        [["dana", "7", t, f"a{i}"] for i, t in enumerate(["great", "poor", "poor"])],
    )
    result = invoke(str(human), "--model-grades", str(grades), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["paired"] == 3
    missing = invoke(str(human), "--model-grades", str(grades), "--rubric", str(tmp_path / "no-such.yaml"))
    assert missing.exit_code == 6 and "no-such.yaml" in missing.stderr, missing.output


# --- found by a trial of an interview programme's messy sheets -------------------------------------------


def test_one_answer_written_as_its_number_on_one_row_and_its_slug_on_another_is_one_question(calibration_files):
    """`1` and `debugging-a-production-issue` for the same id: each row alone was valid, together refused."""
    human, grades = calibration_files
    text = human.read_text(encoding="utf-8").splitlines()
    fixed = [line.replace(",1,", f",{Q1},", 1) if line.startswith("bob,") else line for line in text]
    human.write_text("\n".join(fixed) + "\n", encoding="utf-8")
    pairs = pair_with_model_grades(human, grades)
    assert sum(p.status == "paired" for p in pairs) == 57


def test_the_same_text_from_two_candidates_is_two_answers():
    """ "idk" from cand-017 and from cand-018 were one answer: Tom grading both was "already graded", and two
    interviewers who never saw the same candidate were scored as disagreeing."""
    from grader.calibration.data import HumanGrade, answer_ids

    rows = [
        HumanGrade(2, "Priya", "1", Tier.poor, answer="idk", candidate="cand-017"),
        HumanGrade(3, "Tom", "1", Tier.mediocre, answer="idk", candidate="cand-018"),
        HumanGrade(4, "Tom", "1", Tier.poor, answer="idk ", candidate="CAND-017"),
        HumanGrade(5, "Ann", "1", Tier.poor, answer="idk"),
    ]
    assert answer_ids(rows, [Q1] * 4) == [f"{Q1}#1", f"{Q1}#2", f"{Q1}#1", f"{Q1}#3"]


def test_a_spreadsheet_s_semicolons_tabs_and_number_cells_are_read(tmp_path, calibration_files):
    human, grades = calibration_files
    rows = list(csv.reader(io.StringIO(human.read_text(encoding="utf-8"))))
    for delimiter, suffix in ((";", "csv"), ("\t", "tsv")):
        path = tmp_path / f"sheet.{suffix}"
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(
            [row[:1] + ["1.0" if row[1] == "1" else row[1].upper()] + row[2:] for row in rows]
        )
        path.write_bytes(out.getvalue().encode("utf-8-sig"))
        pairs = pair_with_model_grades(path, grades)
        assert sum(p.status == "paired" for p in pairs) == 57, delimiter


def test_a_workbook_or_a_nul_in_a_cell_is_not_text(tmp_path, calibration_files):
    """A NUL inside a name made a ninth interviewer, 'Ch\\x00en'; a workbook was 'missing columns'."""
    human, grades = calibration_files
    nul = tmp_path / "nul.csv"
    nul.write_text(human.read_text(encoding="utf-8").replace("bob,", "b\0ob,", 1), encoding="utf-8")
    with pytest.raises(EncodingError, match=r"nul\.csv:\d+: not UTF-8 text \(a NUL character in a cell"):
        pair_with_model_grades(nul, grades)
    workbook = tmp_path / "human.xlsx"
    workbook.write_bytes(b"PK\x03\x04" + b"interviewer,question,tier,id\x00\x00" * 4)
    result = invoke(str(workbook), "--model-grades", str(grades))
    assert result.exit_code == 7 and "a spreadsheet workbook (.xlsx, .ods)" in result.stderr
    assert "save it as 'CSV UTF-8'" in result.stderr


def test_grades_of_one_answer_are_resampled_together():
    """Four interviewers' grades of one answer share its model grade: resampled one by one, the interval
    was too narrow. With one grade per answer nothing changes."""
    settings = Settings()
    # 15 answers, 4 grades each: the interviewers agree with the model on 10 answers, all four, and not on 5
    human = ["great"] * 40 + ["poor"] * 20
    model = ["great"] * 60
    alone = agreement(human, model, settings)
    assert agreement(human, model, settings, [f"a{i}" for i in range(60)]) == alone
    together = agreement(human, model, settings, [f"a{i // 4}" for i in range(60)])  # 15 answers, 4 grades each
    assert together.exact_agreement.value == alone.exact_agreement.value
    width = lambda m: m.exact_agreement.ci[1] - m.exact_agreement.ci[0]  # noqa: E731
    assert width(together) > 1.3 * width(alone)


def test_a_single_tier_is_said_and_a_few_shared_answers_get_no_interval():
    settings = Settings()
    same = agreement(["mediocre"] * 20, ["great", "poor"] * 10, settings)
    assert same.kappa.value == 0.0 and any("every grade here is mediocre" in w for w in same.warnings)
    few = human_agreement([("ann", "a1", "great"), ("bob", "a1", "poor")], {"a1": "great"}, settings)
    assert few.alpha is not None and few.alpha.ci is None and few.alpha_with_model.ci is None


def test_figures_are_printed_rounded_once_and_the_markdown_names_its_file(calibration_files, tmp_path):
    from grader.calibration.report import _num

    assert (
        _num(agreement(["great"] * 116 + ["poor"] * 106, ["great"] * 222, Settings()).exact_agreement.value) == "0.523"
    )
    human, grades = calibration_files
    renamed = tmp_path / "panel-march.csv"
    renamed.write_bytes(human.read_bytes())
    out = tmp_path / "r"
    assert invoke(str(renamed), "--model-grades", str(grades), "-o", str(out)).exit_code == 0
    md = (out / "calibration.md").read_text()
    assert "- panel-march.csv line " in md and "- human.csv line" not in md


def test_long_interviewer_names_are_printed_whole_and_questions_get_a_table(tmp_path, calibration_files):
    human, grades = calibration_files
    text = human.read_text(encoding="utf-8")
    text = text.replace("alice,", "Alexandra Konstantinopoulou-Smith,").replace(
        "bob,", "Alexandra Konstantinopoulou-Smithson,"
    )
    human.write_text(text, encoding="utf-8")
    result = invoke(str(human), "--model-grades", str(grades))
    assert result.exit_code == 0, result.output
    assert (
        "Alexandra Konstantinopoulou-Smithson " in result.stdout
        and "Alexandra Konstantinopoulou-Smith " in result.stdout
    )
    assert "questions: the interviewers against the model" in result.stdout and Q2 in result.stdout
    assert "ids with no model grade 1 (a20)" in result.stdout


def test_an_interviewer_is_named_as_most_often_written():
    """Named as first written, 'priya' (one row) stood for the 'Priya' of three, where `grader audit` shows a
    category as its most common spelling."""
    from grader.calibration.data import HumanGrade, one_spelling, respelt

    names = ["priya", "Priya", "PRIYA", "Priya", "Priya", "PRIYA", "tom"]
    rows = one_spelling([HumanGrade(i + 2, name, "1", Tier.poor, id=f"a{i}") for i, name in enumerate(names)])
    assert [r.interviewer for r in rows] == ["Priya"] * 6 + ["tom"]
    assert [r.written for r in rows] == ["priya", None, "PRIYA", None, None, "PRIYA", None]
    assert respelt(rows) == (
        "interviewer names that differ only in Unicode form, case or spacing are read as one person: "
        "'priya' (line 2) as 'Priya', 'PRIYA' (line 4) as 'Priya'"
    )


def test_interviewers_are_listed_in_alphabetical_order_whatever_their_case_and_unicode_forms_are_said():
    import unicodedata

    from grader.calibration.data import HumanGrade, Pair, one_spelling, respelt

    def model_grade(question: str, tier: str) -> Grade:
        return Grade(question_id=question, tier=Tier(tier), justification="j", backend="fake", model="m")

    rows = one_spelling(
        [
            HumanGrade(2, "Zo\u00eb", "1", Tier.poor, id="a"),
            HumanGrade(3, unicodedata.normalize("NFD", "Zo\u00eb"), "1", Tier.poor, id="b"),
            HumanGrade(4, "zo\u00eb ", "1", Tier.poor, id="c"),
        ]
    )
    said = respelt(rows) or ""
    assert "(line 3) as 'Zoë' (the same letters in another Unicode form)" in said
    assert "'zoë ' (line 4) as 'Zoë'," not in said and said.endswith("'zoë ' (line 4) as 'Zoë'")
    pairs = [
        Pair(HumanGrade(i, name, "1", Tier.great, id=f"a{i}"), Q1, f"a{i}", "paired", model=model_grade(Q1, "great"))
        for i, name in enumerate(["tom", "Sofia", "ann", "Marek"])
    ]
    assert list(build_report(pairs, settings=Settings(), human_path="h.csv").interviewers) == [
        "ann",
        "Marek",
        "Sofia",
        "tom",
    ]


def test_every_row_that_cannot_be_read_is_listed_at_once(tmp_path, calibration_files):
    """A messy sheet took one run per bad row: 'meh' on line 7, fixed, then an empty tier on line 11..."""
    _, grades = calibration_files
    human = write_csv(
        tmp_path / "h.csv",
        ["interviewer", "question", "tier", "id"],
        [
            ["ann", "1", "meh", "a01"],
            ["bob", "1", "", "a02"],
            ["cat", "1", "great", "a03"],
            ["dan", "1", "so-so", "a04"],
        ],
    )
    result = invoke(str(human), "--model-grades", str(grades))
    assert result.exit_code == 20
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"grader: error: {human}: 3 rows cannot be read, nothing was scored:"
    assert [line.split(": ", 1)[0].strip() for line in lines[1:]] == [f"{human}:2", f"{human}:3", f"{human}:5"]


def test_the_report_says_whether_the_model_s_confidence_means_anything():
    """Calibrate compared tiers only: whether a confident grade agrees with people more often, and what
    needs_review buys, could not be read from it."""
    from grader.calibration.data import HumanGrade, Pair

    def pair(i: int, human: str, model: str, confidence: float, review: bool = False) -> Pair:
        grade = Grade(
            question_id=Q1,
            tier=Tier(model),
            justification="j",
            backend="fake",
            model="m",
            confidence=confidence,
            needs_review=review,
        )
        return Pair(HumanGrade(i, "ann", "1", Tier(human), id=f"a{i}"), Q1, f"a{i}", "paired", model=grade)

    pairs = [pair(i, "great", "great", 0.95) for i in range(6)]  # sure and right
    pairs += [pair(10 + i, "poor", "great", 0.92) for i in range(2)]  # sure and wrong
    pairs += [pair(20 + i, "poor", "great", 0.45, review=True) for i in range(2)]  # unsure, sent for review
    report = build_report(pairs, settings=Settings(), human_path="h.csv")
    m = report.model_confidence
    assert m.calibration.n == 10 and m.calibration.accuracy == 0.6
    assert [(b.start, b.n, b.accuracy) for b in m.calibration.bins if b.n] == [(0.4, 2, 0.0), (0.9, 8, 0.75)]
    assert m.review_flagged == 2 and m.agreement_flagged == 0.0 and m.agreement_unflagged == 0.75
    md = to_markdown(report)
    assert "## The model's confidence against the interviewers" in md
    assert "| 0.9-1.0 | 8 | 75.0% |" in md and "sent for review (needs_review): 2 grades" in md
    assert "The model's confidence against the interviewers" in to_html(report)


def test_the_confidence_share_is_printed_from_the_count_as_the_agreement_is():
    """116 of 222 is 52.25 %: stored to four places first, the confidence section printed 52.2 % where the
    agreement, from the same grades, printed 52.3 %."""
    from grader.reports.confidence import confidence_metrics

    metrics = confidence_metrics([(0.9, i < 116) for i in range(222)])
    assert f"{metrics.accuracy:.1%}" == f"{116 / 222:.1%}" == "52.3%"
    assert [f"{b.accuracy:.1%}" for b in metrics.bins if b.n] == ["52.3%"]


def test_each_pair_of_interviewers_is_compared_on_the_answers_both_graded():
    """Only the pooled figure was given: which interviewers grade alike could not be read."""
    grades = [("ann", f"a{i}", "great") for i in range(12)] + [("bob", f"a{i}", "great") for i in range(12)]
    grades += [("Cy", f"a{i}", "poor" if i < 6 else "great") for i in range(12)] + [("dee", "a0", "great")]
    h = human_agreement(grades, {}, Settings())
    assert [(p.first, p.second, p.answers, p.exact_agreement, p.too_few) for p in h.pairs] == [
        ("ann", "bob", 12, 1.0, False),
        ("ann", "Cy", 12, 0.5, False),
        ("bob", "Cy", 12, 0.5, False),
        ("ann", "dee", 1, 1.0, True),
        ("bob", "dee", 1, 1.0, True),
        ("Cy", "dee", 1, 0.0, True),
    ]
    assert h.pairs[1].qwk == round(cohen_kappa_score([2] * 12, [0] * 6 + [2] * 6, weights="quadratic"), 6)


def test_counts_of_one_are_singular_between_interviewers():
    h = human_agreement([("ann", "a1", "great"), ("bob", "a1", "great")], {"a1": "great"}, Settings(resamples=100))
    assert "only 1 answer graded by several interviewers: too few to conclude" in h.warnings
    report = build_report(
        _pairs([("ann", "a1", Q1, "great", "great"), ("bob", "a1", Q1, "great", "great")]),
        settings=Settings(resamples=100),
        human_path="h.csv",
    )
    assert any(line.endswith("of 1 pair of grades") for line in human_lines(report.human_agreement))
