"""`grader audit`: the rates and ratios against a table worked by hand, Fisher's test against scipy, every
kind of bad input, the interviewers' audit, a service database as the source, and the HTML in chromium."""

from __future__ import annotations

import csv
import json
import unicodedata
from fractions import Fraction
from pathlib import Path

import pytest
from scipy.stats import fisher_exact
from typer.testing import CliRunner

from grader.audit.data import read_grades, read_people
from grader.audit.metrics import Unit, above, dimension, ratio_interval
from grader.audit.report import build_report
from grader.cli import app
from grader.grading import rows
from grader.grading.contract import FailureKind, Grade, GradeFailure, Tier
from grader.rubric import dump_rubric, load_rubric
from tests.support.browser import ARTIFACTS, check_page

runner = CliRunner()
Q = load_rubric().questions[0].id

# The hand-worked table: (sex, race_ethnicity, great, mediocre, poor) candidates, one answer each.
# 100 candidates plus one graded candidate the demographics lack (poor). Scores: 27 poor (0), 35 mediocre (1),
# 39 great (2): the 51st of 101 sorted scores is 1, so the median is 1 and a candidate scores when great.
TABLE = [
    ("Male", "White", 10, 6, 4),
    ("Male", "Black", 6, 5, 4),
    ("Male", "Asian", 6, 6, 3),
    ("Female", "White", 6, 8, 6),
    ("Female", "Black", 3, 7, 5),
    ("Female", "Asian", 5, 3, 3),
    ("Female", "American Indian", 1, 0, 0),  # 1 of 101: under 2 %, excluded though its rate (100 %) is highest
    ("", "White", 1, 0, 1),  # sex unknown (blank)
    ("Male", "declined", 1, 0, 0),  # race unknown
]
# By hand, from TABLE:
#   sex: Male 51 (great 10+6+6+1 = 23), Female 47 (6+3+5+1 = 15), unknown 2 + the missing one = 3.
#   Female's ratio: (15/47) / (23/51) = 765/1081 = 0.7077 -> under 0.8.
#   race: White 42 (17), Black 30 (9), Asian 26 (11), American Indian 1 (excluded), unknown 1 + 1 = 2.
#   highest compared: Asian 11/26; White (17/42)/(11/26) = 0.9567, Black (9/30)/(11/26) = 0.7091.
#   sex x race: Male x White 10/20 is highest; Male x Black 6/15 -> exactly 0.8 (not under), Male x Asian
#   0.8, Female x White 6/20 -> 0.6, Female x Black 3/15 -> 0.4, Female x Asian 5/11 -> 0.9091; unknown 4.


def write_fixture(tmp_path: Path) -> tuple[Path, Path]:
    grades, people = [], [["candidate", "sex", "race_ethnicity"]]
    n = 0
    for sex, race, *counts in TABLE:
        for tier, count in zip((Tier.great, Tier.mediocre, Tier.poor), counts, strict=True):
            for _ in range(count):
                n += 1
                grades.append(record(f"c{n}", tier))
                people.append([f"c{n}", sex, race])
    grades.append(record("c-ghost", Tier.poor))  # graded, missing from the demographics
    people.append(["c-absent", "Female", "White"])  # in the demographics, never graded
    failure = GradeFailure(kind=FailureKind.transport, message="server down", question_id=Q)
    grades.append(rows.to_record(failure, {"id": "a-failed", "question": Q, "answer": "x", "candidate": "c1"}))
    grades.append(record("", Tier.great, answer_id="a-nobody"))  # no candidate
    grades_path, people_path = tmp_path / "graded.jsonl", tmp_path / "people.csv"
    grades_path.write_text("".join(json.dumps(g) + "\n" for g in grades), encoding="utf-8")
    with people_path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(people)
    return grades_path, people_path


def a_grade(tier: Tier) -> Grade:
    return Grade(question_id=Q, tier=tier, justification="j", backend="fake", model="m")


def record(candidate: str, tier: Tier, *, answer_id: str | None = None) -> dict:
    carried = {"id": answer_id or f"a-{candidate}", "question": Q, "answer": "text", "candidate": candidate}
    return rows.to_record(a_grade(tier), carried)


@pytest.fixture
def report(tmp_path):
    grades, people = write_fixture(tmp_path)
    return build_report(read_grades(str(grades)), read_people(people, None), selected=Tier.mediocre)


def test_counts_unknowns_and_left_out_rows_are_reported_not_dropped(report):
    c = report.counts
    assert (c.rows, c.graded, c.failed, c.no_candidate, c.units) == (103, 102, 1, 1, 101)
    assert (c.unknown_candidates, c.missing_from_demographics, c.not_graded) == (1, ["c-ghost"], 1)
    assert report.unknown == {"sex": 3, "race_ethnicity": 2}
    assert report.scoring.median == 1 and report.scoring.hits == 39


def test_scoring_rates_and_impact_ratios_match_the_table_worked_by_hand(report):
    sex = report.scoring.dimensions["sex"]
    assert (sex.categories["Male"].n, sex.categories["Male"].hits) == (51, 23)
    assert (sex.categories["Female"].n, sex.categories["Female"].hits) == (47, 15)
    assert sex.reference == "Male" and sex.categories["Male"].impact_ratio == 1.0
    assert sex.categories["Female"].impact_ratio == pytest.approx(float(Fraction(765, 1081)), abs=1e-4)
    assert sex.below_four_fifths == ["Female"] and sex.unknown == 3

    race = report.scoring.dimensions["race_ethnicity"]
    assert race.reference == "Asian"
    assert race.categories["White"].impact_ratio == pytest.approx((17 / 42) / (11 / 26), abs=1e-4)
    assert race.categories["Black"].impact_ratio == pytest.approx((9 / 30) / (11 / 26), abs=1e-4)
    assert race.below_four_fifths == ["Black"]


def test_a_category_under_two_percent_is_reported_but_kept_out_of_the_ratios(report):
    race = report.scoring.dimensions["race_ethnicity"]
    excluded = race.categories["American Indian"]
    assert excluded.excluded and excluded.n == 1 and excluded.rate == 1.0  # the highest rate, yet not the reference
    assert excluded.impact_ratio is None and race.excluded == ["American Indian"]
    data = json.loads(report.to_json())
    assert data["scoring"]["dimensions"]["race_ethnicity"]["categories"]["American Indian"]["impact_ratio"] is None
    assert data["scoring"]["dimensions"]["race_ethnicity"]["unknown"] == 2


def test_intersections_and_the_exact_four_fifths_boundary(report):
    cross = report.scoring.dimensions["sex × race_ethnicity"]
    assert cross.reference == "Male × White" and cross.unknown == 4
    ratios = {k: v.impact_ratio for k, v in cross.categories.items() if v.impact_ratio is not None}
    assert ratios == pytest.approx(
        {
            "Male × White": 1.0,
            "Male × Black": 0.8,
            "Male × Asian": 0.8,
            "Female × White": 0.6,
            "Female × Black": 0.4,
            "Female × Asian": (5 / 11) / 0.5,
        },
        abs=1e-4,
    )
    # 6/15 against 10/20 is exactly four fifths: not under the line.
    assert cross.below_four_fifths == ["Female × Black", "Female × White"]


def test_fisher_p_values_are_scipys_on_the_same_tables(report):
    female = report.scoring.dimensions["sex"].categories["Female"]
    assert female.fisher_p == pytest.approx(fisher_exact([[15, 32], [23, 28]]).pvalue, abs=1e-4)
    black = report.scoring.dimensions["race_ethnicity"].categories["Black"]
    assert black.fisher_p == pytest.approx(fisher_exact([[9, 21], [11, 15]]).pvalue, abs=1e-4)


def test_selection_at_a_tier_counts_units_reaching_it(report):
    assert report.selection is not None and report.selection.hits == 74  # 39 great + 35 mediocre
    sex = report.selection.dimensions["sex"]
    # Male: 23 great + 17 mediocre of 51; Female: 15 + 18 of 47. Male is highest.
    assert (sex.categories["Male"].hits, sex.categories["Female"].hits) == (40, 33)
    assert sex.categories["Female"].impact_ratio == pytest.approx((33 / 47) / (40 / 51), abs=1e-4)


def test_small_categories_and_wide_intervals_are_marked_not_trusted(report):
    sex = report.scoring.dimensions["sex"].categories["Female"]
    low, high = sex.ci_95
    assert low < sex.impact_ratio < high
    cross = report.scoring.dimensions["sex × race_ethnicity"].categories
    assert cross["Female × Asian"].trusted is False and "only 11 units" in cross["Female × Asian"].caution
    assert sex.trusted is False and "straddles 0.8" in sex.caution  # 47 vs 51 people: too few to be sure


def test_the_bootstrap_interval_narrows_as_the_sample_grows():
    small = ratio_interval([True] * 3 + [False] * 7, [True] * 5 + [False] * 5)
    large = ratio_interval([True] * 300 + [False] * 700, [True] * 500 + [False] * 500)
    assert small and large
    assert large[0] < 0.6 < large[1] and (large[1] - large[0]) < (small[1] - small[0]) / 5


def test_a_candidates_score_is_the_mean_of_their_answers(tmp_path):
    lines = [record("x", Tier.great, answer_id="1"), record("x", Tier.poor, answer_id="2")]
    lines += [record("y", Tier.great, answer_id="3"), record("y", Tier.great, answer_id="4")]
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    people = tmp_path / "p.csv"
    people.write_text("candidate,sex\nx,F\ny,M\n")
    per_candidate = build_report(read_grades(str(path)), read_people(people, None))
    assert per_candidate.counts.units == 2 and per_candidate.scoring.median == 1.5  # x: 1.0, y: 2.0
    per_answer = build_report(read_grades(str(path)), read_people(people, None), per_answer=True)
    assert per_answer.counts.units == 4 and per_answer.unit == "answer"


def test_no_unit_above_the_median_gives_no_ratio_and_says_why():
    units = [Unit(str(i), 1.0, {"sex": "F" if i % 2 else "M"}) for i in range(40)]
    d = dimension(units, ("sex",), above(1.0))
    assert d.reference is None and "no ratio can be computed" in (d.note or "")
    assert all(r.impact_ratio is None for r in d.rates)


@pytest.mark.parametrize(
    ("people", "message"),
    [
        ("candidate,sex\nc1,\nc2,unknown\n", "column 'sex' is empty"),
        ("name,sex\nc1,F\n", "no `candidate` column"),
        ("candidate,sex\nc1,F\nc1,M\n", "candidate 'c1' already on line 2"),
        ("candidate,sex\nc1,F,extra\n", "3 cells but the header has 2 columns"),
        ("candidate,age\nc1,40\n", "no category column"),
    ],
)
def test_bad_demographics_are_one_line_naming_the_file_and_exit_19(tmp_path, people, message):
    grades, _ = write_fixture(tmp_path)
    path = tmp_path / "bad.csv"
    path.write_text(people)
    result = runner.invoke(app, ["audit", str(grades), "--demographics", str(path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 19, result.output
    assert message in result.output and str(path) in result.output and "Traceback" not in result.output


def test_grades_without_a_candidate_column_or_with_bad_lines_are_named(tmp_path):
    _, people = write_fixture(tmp_path)
    no_candidate = tmp_path / "g.jsonl"
    no_candidate.write_text(json.dumps(rows.to_record(a_grade(Tier.great), {"id": "1", "question": Q})) + "\n")
    result = runner.invoke(app, ["audit", str(no_candidate), "-d", str(people), "-o", str(tmp_path / "r")])
    assert result.exit_code == 19 and f"{no_candidate}:1: no `candidate` field" in result.output
    broken = tmp_path / "b.jsonl"
    broken.write_text(json.dumps(record("c1", Tier.great)) + "\n{not json\n")
    result = runner.invoke(app, ["audit", str(broken), "-d", str(people), "-o", str(tmp_path / "r")])
    assert result.exit_code == 19 and f"{broken}:2: invalid JSON" in result.output


def test_demographics_that_name_none_of_the_graded_candidates_are_an_error_not_a_report_of_unknowns(tmp_path):
    grades, _ = write_fixture(tmp_path)
    people = tmp_path / "other.csv"
    people.write_text("candidate,sex\nalice,F\nbob,M\n")
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-o", str(tmp_path / "r")])
    assert result.exit_code == 19 and "none of the 101 graded candidates is in it" in result.output


def test_a_category_with_one_person_is_reported_with_a_caution(tmp_path):
    tiers = [Tier.great] * 10 + [Tier.mediocre] * 10 + [Tier.poor] * 20  # median 0: A's rate is 20/40
    lines = [record(f"m{i}", tier) for i, tier in enumerate(tiers)] + [record("w", Tier.poor)]
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    people = tmp_path / "p.csv"
    people.write_text("candidate,race_ethnicity\n" + "".join(f"m{i},A\n" for i in range(40)) + "w,B\n")
    report = build_report(read_grades(str(path)), read_people(people, None))
    one = report.scoring.dimensions["race_ethnicity"].categories["B"]
    assert one.n == 1 and not one.excluded  # 1 of 41 is 2.4 %: compared, and flagged
    assert one.impact_ratio == 0.0 and one.ci_95 is None
    assert one.trusted is False and "only 1 unit " in (one.caution or "")


def test_the_cli_writes_three_reports_with_the_documented_keys(tmp_path):
    grades, people = write_fixture(tmp_path)
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "audit",
            str(grades),
            "--demographics",
            str(people),
            "--category",
            "sex",
            "--category",
            "race_ethnicity",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "impact ratio under 0.8 for sex: Female" in result.output
    assert "1 graded candidate is missing from the demographics" in result.output
    data = json.loads((out / "audit.json").read_text())
    assert data["scoring"]["dimensions"]["sex"]["categories"]["Female"]["impact_ratio"] == pytest.approx(
        0.7077, abs=1e-4
    )
    assert data["unknown"] == {"sex": 3, "race_ethnicity": 2}
    md = (out / "audit.md").read_text()
    assert "| Female | 47 |" in md and "excluded (under 2 %)" in md and "not the independent bias audit" in md


def test_interviewers_are_audited_next_to_the_model_on_the_same_answers(tmp_path):
    grades, people = write_fixture(tmp_path)
    human = tmp_path / "human.csv"
    with human.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["interviewer", "question", "tier", "id", "candidate"])
        # dana grades the 20 White men (c1-c20) great and the 20 White women (c51-c70) poor
        for sex, n in (("Male", range(1, 21)), ("Female", range(51, 71))):
            for i in n:  # a spreadsheet's "Dana" is the "dana" of the rows above: one person
                w.writerow(["dana" if i % 3 else "Dana", Q, "great" if sex == "Male" else "poor", f"a-c{i}", f"c{i}"])
        w.writerow(["dana", Q, "great", "a-missing", "c999"])  # no such id in GRADES
    out = tmp_path / "r"
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "--interviewers", str(human), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "audit.json").read_text())
    assert data["interviewer_counts"]["unmatched"] == 1
    (dana,) = data["interviewers"]
    assert dana["interviewer"] == "dana" and dana["units"] == 40
    sex = dana["interviewer_scoring"]["dimensions"]["sex"]["categories"]
    assert sex["Male"]["rate"] == 1.0 and sex["Female"]["rate"] == 0.0 and sex["Female"]["impact_ratio"] == 0.0
    model = dana["model_scoring"]["dimensions"]["sex"]["categories"]
    # The model on the same 40 answers: Male x White 10 great of 20, Female x White 6 of 20; the same bar.
    assert model["Male"]["n"] == 20 and model["Female"]["n"] == 20
    assert "## Interviewers and the model on the same candidates" in (out / "audit.md").read_text()
    assert data["interviewer_counts"]["respelt"] == {"Dana": "dana"}
    assert (
        "differ only in Unicode form, case or spacing are read as one person: 'Dana' as 'dana'"
        in (out / "audit.md").read_text()
    )


def test_a_service_database_is_a_source_and_its_reviews_are_the_interviewers(tmp_path):
    from grader.service.store import NewGrade, Store

    db = tmp_path / "s.sqlite"
    store = Store(db)
    news = [
        NewGrade(f"g{i}", Q, "text", f"c{i}", a_grade(Tier.great if i % 2 else Tier.poor), "api") for i in range(40)
    ]
    store.add_grades(news)
    for i in range(10):
        store.add_review(f"g{i}", "ravi", Tier.mediocre, None, None, None)
    store.close()
    people = tmp_path / "p.csv"
    people.write_text("candidate,sex\n" + "".join(f"c{i},{'F' if i < 20 else 'M'}\n" for i in range(40)))
    out = tmp_path / "r"
    result = runner.invoke(app, ["audit", str(db), "-d", str(people), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "audit.json").read_text())
    assert data["counts"]["units"] == 40 and data["scoring"]["dimensions"]["sex"]["categories"]["F"]["n"] == 20
    assert [r["interviewer"] for r in data["interviewers"]] == ["ravi"] and data["interviewers"][0]["answers"] == 10
    human = tmp_path / "human.csv"  # given a file too: the database's reviews are replaced, and it says so
    human.write_text("interviewer,question,tier,id,candidate\nsam," + Q + ",great,g1,c1\n")
    result = runner.invoke(app, ["audit", str(db), "-d", str(people), "--interviewers", str(human), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "audit.json").read_text())
    assert [r["interviewer"] for r in data["interviewers"]] == ["sam"]
    assert any("the 10 reviews in " in w and f"--interviewers {human} takes their place" in w for w in data["warnings"])


def test_the_html_report_renders_in_chromium_with_its_chart_and_escapes_names(tmp_path):
    grades, people = write_fixture(tmp_path)
    hostile = people.read_text().replace("American Indian", "<script>alert(1)</script>")
    people.write_text(hostile)
    out = tmp_path / "r"
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "--selected", "great", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "audit.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    page = check_page(out / "audit.html", ARTIFACTS / "audit" / "audit.png")
    assert page.errors == []
    assert page.images_total == 2 and page.images_loaded == 2  # scoring and selection charts
    assert "Female × Black" in page.text and "<script>alert(1)</script>" in page.text
    assert "not the independent bias audit" in page.text


# --- found by trying the audit on small and odd files ---------------------------------------------


def small_audit(tmp_path: Path, tiers: dict[str, Tier], people: str) -> tuple[Path, Path]:
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(record(c, t)) + "\n" for c, t in tiers.items()))
    people_path = tmp_path / "p.csv"
    people_path.write_text(people)
    return path, people_path


def test_a_small_audit_with_no_interval_anywhere_still_writes_its_three_reports(tmp_path):
    # One F: her ratio has no interval, so the chart has none to scale its axis by.
    grades, people = small_audit(
        tmp_path,
        {"c1": Tier.poor, "c2": Tier.great, "c3": Tier.great, "c4": Tier.poor},
        "candidate,sex\nc1,F\nc2,M\nc3,M\nc4,M\n",
    )
    out = tmp_path / "r"
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", "sex", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "audit.md"]
    sex = json.loads((out / "audit.json").read_text())["scoring"]["dimensions"]["sex"]["categories"]
    assert sex["F"]["impact_ratio"] == 0.0 and sex["F"]["ci_95"] is None
    # The highest (M, 2 of 3 above the median 1) is itself too few to trust: said on its own row too.
    assert sex["M"]["highest"] and sex["M"]["trusted"] is False and "only 3 units" in sex["M"]["caution"]


def test_one_resample_with_no_ratio_does_not_throw_the_interval_away():
    # 1 of 15 against 5 of 15: of 2,000 resamples about one has both rates 0 (no ratio at all).
    interval = ratio_interval([True] + [False] * 14, [True] * 5 + [False] * 10)
    assert interval is not None and interval[0] == 0.0 and 0.5 < interval[1] <= 1.5


def test_an_answer_id_given_twice_in_grades_is_an_error_not_counted_twice(tmp_path):
    grades, people = write_fixture(tmp_path)
    lines = grades.read_text().splitlines(keepends=True)
    grades.write_text("".join(lines + lines[:1]))
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-o", str(tmp_path / "r")])
    assert result.exit_code == 19, result.output
    assert f"{grades}:{len(lines) + 1}: id 'a-c1' already on line 1" in result.output


def test_none_is_a_category_and_a_column_given_twice_is_named(tmp_path):
    tiers = {f"c{i}": (Tier.great if i % 3 == 0 else Tier.poor) for i in range(60)}
    people_text = "candidate,disability\n" + "".join(f"c{i},{'None' if i % 2 else 'Some'}\n" for i in range(60))
    grades, people = small_audit(tmp_path, tiers, people_text)
    report = build_report(read_grades(str(grades)), read_people(people, ("disability",)))
    assert set(report.scoring.dimensions["disability"].categories) == {"None", "Some"}
    assert report.unknown == {"disability": 0}
    people.write_text("candidate,sex,Sex\nc1,F,M\n")
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", "sex", "-o", str(tmp_path / "r")])
    assert result.exit_code == 19 and "column 'Sex' appears twice" in result.output


def test_a_tiny_fisher_p_keeps_its_figures_and_left_out_people_are_named(tmp_path):
    tiers = {f"f{i}": Tier.poor for i in range(30)} | {f"m{i}": Tier.great for i in range(30)}
    people_text = "candidate,sex\n" + "".join(f"f{i},F\n" for i in range(30)) + "".join(f"m{i},M\n" for i in range(31))
    grades, people = small_audit(tmp_path, tiers, people_text)
    with grades.open("a") as f:
        failure = GradeFailure(kind=FailureKind.transport, message="down", question_id=Q)
        f.write(json.dumps(rows.to_record(failure, {"id": "a-lost", "question": Q, "answer": "x", "candidate": "f0"})))
    report = build_report(read_grades(str(grades)), read_people(people, None), selected=Tier.great)
    female = report.selection.dimensions["sex"].categories["F"]
    expected = fisher_exact([[0, 30], [30, 0]]).pvalue  # about 8.5e-18: rounded to 4 places it would be 0
    assert female.fisher_p == pytest.approx(expected, rel=1e-3) and female.fisher_p > 0
    from grader.audit.report import summary_lines

    summary = "\n".join(summary_lines(report))
    assert "1 answer the model failed to grade: a-lost" in summary
    assert "1 person in the demographics has no graded answer: m30" in summary


def test_with_one_known_category_the_summary_says_no_ratio_was_computed(tmp_path):
    tiers = {f"c{i}": (Tier.great if i % 2 else Tier.poor) for i in range(40)}
    people_text = "candidate,sex\n" + "".join(f"c{i},{'F' if i < 39 else ''}\n" for i in range(40))
    grades, people = small_audit(tmp_path, tiers, people_text)
    out = tmp_path / "r"
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", "sex", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "no impact ratio could be computed" in result.output and "no impact ratio under 0.8" not in result.output


def test_interviewer_grades_are_checked_as_calibrate_checks_them(tmp_path):
    grades, people = write_fixture(tmp_path)
    human = tmp_path / "human.csv"
    header = "interviewer,question,tier,id,candidate\n"
    for rows_text, message in [
        (f"dana,{Q},great,a-c1,c1\ndana,{Q},poor,a-c1,c1\n", "'dana' already graded answer 'a-c1' on line 2"),
        (f"dana,{Q},great,a-c1,c1\neli,no-such-question,poor,a-c1,c1\n", "id 'a-c1' is question"),
        ("dana,backend-security,great,a-c1,c1\n", "does not match the grade of id 'a-c1'"),
    ]:
        human.write_text(header + rows_text)
        args = ["audit", str(grades), "-d", str(people), "--interviewers", str(human), "-o", str(tmp_path / "r")]
        result = runner.invoke(app, args)
        assert result.exit_code == 20, result.output
        assert message in result.output and str(human) in result.output


def test_a_report_folder_that_cannot_be_written_is_exit_15_and_names_it(tmp_path):
    grades, people = write_fixture(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-o", str(blocker)])
    assert result.exit_code == 15, result.output
    assert f"cannot write {blocker}" in result.output and "Traceback" not in result.output


def test_markdown_shows_a_category_written_as_html_as_text(tmp_path):
    tiers = {f"c{i}": (Tier.great if i % 2 else Tier.poor) for i in range(40)}
    people_text = "candidate,sex\n" + "".join(f"c{i},{'<b>x</b>' if i < 20 else 'y'}\n" for i in range(40))
    grades, people = small_audit(tmp_path, tiers, people_text)
    out = tmp_path / "r"
    assert runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", "sex", "-o", str(out)]).exit_code == 0
    md = (out / "audit.md").read_text()
    assert "&lt;b>x&lt;/b>" in md and "<b>" not in md
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", " ", "-o", str(out)])
    assert result.exit_code == 2 and "--category: an empty column name" in result.output


def test_interviewer_questions_are_read_as_calibrate_reads_them(tmp_path):
    """Written as the batch input wrote them (`first`, a team's own name), or through the team's rubric (--rubric): audit refused
    both (exit 20) where calibrate --rubric took the file."""
    packaged = load_rubric()
    grades = tmp_path / "graded.jsonl"
    numbered = [
        rows.to_record(a_grade(Tier.great), {"id": f"a{i}", "question": "first", "answer": "t", "candidate": f"c{i}"})
        for i in range(4)
    ]
    grades.write_text("".join(json.dumps(g) + "\n" for g in numbered), encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text("candidate,sex\n" + "".join(f"c{i},{'Female' if i % 2 else 'Male'}\n" for i in range(4)))
    human = tmp_path / "human.csv"
    human.write_text("interviewer,question,tier,id\n" + "".join(f"dana,first,great,a{i}\n" for i in range(4)))
    args = ["audit", str(grades), "-d", str(people), "--interviewers", str(human), "-c", "sex"]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "r1")]).exit_code == 0

    # The team's rubric numbers that question 7: only the rubric can say that "7" is it.
    team = packaged.with_questions([packaged.questions[0].model_copy(update={"number": 7})])
    team_path = tmp_path / "team.yaml"
    team_path.write_text(dump_rubric(team), encoding="utf-8")
    human.write_text("interviewer,question,tier,id\n" + "".join(f"dana,7,great,a{i}\n" for i in range(4)))
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "r2")])
    assert refused.exit_code == 20 and "give the rubric (--rubric)" in refused.stderr
    taken = runner.invoke(app, [*args, "--rubric", str(team_path), "-o", str(tmp_path / "r3")])
    assert taken.exit_code == 0, taken.output
    wrong = runner.invoke(
        app, [*args[:4], "-c", "sex", "--rubric", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "r4")]
    )
    assert wrong.exit_code == 6 and "nope.yaml: no such rubric file" in wrong.stderr  # never ignored


def test_a_candidate_named_in_another_unicode_form_case_or_spacing_is_one_person(tmp_path):
    """An exporter's decomposed "í", "grace kim", "Bob  Okafor": each was two people (graded but missing
    from the demographics, and in the demographics with no grade)."""
    names = ["Carmen Díaz", "Grace Kim", "Bob Okafor", "Ana Li"]
    listed = [unicodedata.normalize("NFD", names[0]), "grace kim", "Bob  Okafor", "Ana Li"]
    grades = tmp_path / "graded.jsonl"
    grades.write_text(
        "".join(json.dumps(record(n, Tier.great if i % 2 else Tier.poor)) + "\n" for i, n in enumerate(names)),
        encoding="utf-8",
    )
    people = tmp_path / "people.csv"
    people.write_text(
        "candidate,sex\n" + "".join(f"{n},{'Female' if i < 2 else 'Male'}\n" for i, n in enumerate(listed))
    )
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", "sex", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    counts = json.loads((tmp_path / "r" / "audit.json").read_text())["counts"]
    assert counts["unknown_candidates"] == 0 and counts["not_graded"] == 0 and counts["units"] == 4
    assert counts["respelt_candidates"] == dict(zip(names[:3], listed[:3], strict=True))
    said = (tmp_path / "r" / "audit.md").read_text()
    assert "read as one person: 'Carmen Díaz' as " in said and "(the same letters in another Unicode form)" in said

    people.write_text("candidate,sex\nGrace Kim,Female\ngrace  kim,Female\n")  # one person listed twice
    twice = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-c", "sex", "-o", str(tmp_path / "r2")])
    assert twice.exit_code == 19 and "candidate 'grace  kim' already on line 2 (as 'Grace Kim')" in twice.stderr


# --- found by a people-analytics trial (messy HR exports, a lenient interviewer) ----------------------


def test_non_answers_as_hr_systems_word_them_are_unknown_not_categories(tmp_path):
    """ "Decline to state" got an impact ratio, and became the group every race was divided by."""
    from grader.audit.data import is_unknown

    for cell in (
        "Decline to state",
        "Declined to self-identify",
        "I don’t wish to answer",
        "Prefer not to say",
        "Prefer not to disclose",
        "Choose not to disclose",
        "Not declared",
        "N/A",
        "n.a.",
        "",
        "Unknown or Not Reported",  # the NIH and OMB wording
        "Unknown/Not Reported",
        "Did not disclose",
        "Did not self-identify",
        "I'd prefer not to say",
        "I would prefer not to say",
        "Undeclared",
    ):
        assert is_unknown(cell), cell
    for cell in (
        "Prefer to self-describe",
        "None",
        "Not Hispanic or Latino",
        "Two or more races",
        "Female",
        "Nonbinary",
        "Native Hawaiian or Other Pacific Islander",
        "Not a protected veteran",
        "Unspecified",  # a legal sex marker (X): compared, with a warning
    ):
        assert not is_unknown(cell), cell
    marker = tmp_path / "x.csv"
    marker.write_text("candidate,sex\na,Female\nb,Unspecified\n")
    assert any("'Unspecified' is compared as a category" in n for n in read_people(marker, None).notes)
    people = tmp_path / "p.csv"
    people.write_text("candidate,race_ethnicity\na,White\nb,Decline to state\nc,I don't wish to answer\n")
    assert read_people(people, None).categories == {
        "a": {"race_ethnicity": "White"},
        "b": {"race_ethnicity": None},
        "c": {"race_ethnicity": None},
    }


def test_spellings_of_one_value_are_one_category_shown_as_the_most_common_and_short_codes_are_warned_of(tmp_path):
    """`FEMALE ` (the first row's) labelled the women's category; nothing said which spellings were merged;
    and `F` beside `Female` was silently a category of its own, so women were 'adversely impacted' by women."""
    tiers = {f"c{i}": Tier.great if i % 2 else Tier.poor for i in range(8)}
    sexes = ["FEMALE ", "Female", "female", "Female", "F", "Male", "male", "M"]
    grades, people = small_audit(
        tmp_path, tiers, "candidate,sex\n" + "".join(f"c{i},{s}\n" for i, s in enumerate(sexes))
    )
    out = tmp_path / "r"
    result = runner.invoke(app, ["audit", str(grades), "-d", str(people), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "audit.json").read_text())
    assert sorted(data["scoring"]["dimensions"]["sex"]["categories"]) == ["F", "Female", "M", "Male"]
    assert data["scoring"]["dimensions"]["sex"]["categories"]["Female"]["n"] == 4
    assert data["merged_values"] == {"sex": {"Female": ["FEMALE", "Female", "female"], "Male": ["Male", "male"]}}
    warned = " ".join(data["warnings"])
    assert "'F' and 'Female' are compared as two categories" in warned and "'M' and 'Male'" in warned
    said = " ".join(result.stdout.split())
    assert "warning: sex: 'F' and 'Female'" in said
    assert "read as one category: 'FEMALE', 'Female', 'female' as 'Female'" in said


def test_headers_match_whatever_their_punctuation_and_a_missing_default_column_is_warned_of(tmp_path):
    """`Race/Ethnicity` was not `race_ethnicity`: the audit covered sex alone, said nothing, and exited 0."""
    people = tmp_path / "p.csv"
    people.write_text("Candidate,Sex,Race/Ethnicity\na,Female,White\n")
    read = read_people(people, None)
    assert read.columns == ("sex", "race_ethnicity") and read.categories["a"] == {
        "sex": "Female",
        "race_ethnicity": "White",
    }
    assert read.notes == []
    people.write_text("candidate,Sex,Ethnic group\na,Female,White\n")
    read = read_people(people, None)
    assert read.columns == ("sex",)
    assert "no race_ethnicity column in p.csv: audited by sex only" in read.notes[0]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        pytest.param(
            "candidate,sex,race_ethnicity,,\r\na,Female,White,,\r\nb,Male,Black,,\r\n", "utf-8", id="trailing-empty"
        ),
        pytest.param(
            "candidate;sex;race_ethnicity\r\na;Female;White\r\nb;Male;Black\r\n", "utf-8-sig", id="semicolons"
        ),
        pytest.param("candidate\tsex\trace_ethnicity\na\tFemale\tWhite\nb\tMale\tBlack\n", "utf-8", id="tabs"),
        pytest.param(  # a comma inside a header did not make it a comma file
            "candidate;sex;race_ethnicity;Race, Ethnicity (free text)\na;Female;White;x\nb;Male;Black;y\n",
            "utf-8",
            id="semicolons-with-a-comma-in-a-header",
        ),
    ],
)
def test_spreadsheet_exports_are_read(tmp_path, text, encoding):
    """Excel's trailing empty columns were "column '' appears twice"; a semicolon export was "no candidate column"."""
    people = tmp_path / "p.csv"
    people.write_bytes(text.encode(encoding))
    assert read_people(people, None).categories == {
        "a": {"sex": "Female", "race_ethnicity": "White"},
        "b": {"sex": "Male", "race_ethnicity": "Black"},
    }


def test_a_utf16_export_and_swapped_files_say_what_they_are(tmp_path):
    grades, people = write_fixture(tmp_path)
    utf16 = tmp_path / "u.csv"
    utf16.write_bytes("candidate,sex\r\nc1,Female\r\n".encode("utf-16"))
    result = runner.invoke(app, ["audit", str(grades), "-d", str(utf16), "-o", str(tmp_path / "r")])
    assert result.exit_code == 7 and "UTF-16 text, not UTF-8" in result.stderr
    swapped = runner.invoke(app, ["audit", str(grades), "-d", str(grades), "-o", str(tmp_path / "r")])
    assert swapped.exit_code == 19 and "reads as JSON, not a CSV of candidates" in swapped.stderr
    assert len(swapped.stderr) < 400  # it printed the whole first JSON line as "the header"
    as_category = runner.invoke(
        app, ["audit", str(grades), "-d", str(people), "-c", "candidate", "-o", str(tmp_path / "r")]
    )
    assert as_category.exit_code == 2 and "it is no category" in as_category.stderr
    empty = tmp_path / "e.csv"
    empty.write_text("candidate,sex,race_ethnicity\nc1,Female,\n")
    result = runner.invoke(app, ["audit", str(grades), "-d", str(empty), "-o", str(tmp_path / "r")])
    assert result.exit_code == 19 and "--category sex" in result.stderr


def test_a_batch_input_s_candidate_column_is_read_whatever_its_case(tmp_path):
    """`Candidate` carried through by `grader batch` was "no `candidate` field", with a hint to add it."""
    _, people = write_fixture(tmp_path)
    grades = tmp_path / "g.jsonl"
    lines = [
        {("Candidate" if k == "candidate" else k): v for k, v in record(f"c{i}", Tier.great).items()} for i in (1, 2)
    ]
    grades.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert [a.candidate for a in read_grades(str(grades)).answers] == ["c1", "c2"]


def test_shares_and_rates_are_printed_from_the_counts_not_rounded_twice(tmp_path):
    """14 of 55 printed as 25.4 % (the JSON's 0.2545 formatted again); it is 25.5 %."""
    tiers = {f"c{i}": Tier.great if i % 3 else Tier.poor for i in range(55)}
    grades, people = small_audit(
        tmp_path, tiers, "candidate,sex\n" + "".join(f"c{i},{'A' if i < 14 else 'B'}\n" for i in range(55))
    )
    out = tmp_path / "r"
    assert runner.invoke(app, ["audit", str(grades), "-d", str(people), "-o", str(out)]).exit_code == 0
    md = (out / "audit.md").read_text()
    assert "| A | 14 | 25.5% |" in md and "| B | 41 | 74.5% |" in md


def test_an_interviewer_kinder_to_one_group_shows_at_the_audit_s_bar(tmp_path):
    """Each scorer was held to their own median: Bob, who gives men great and women great or mediocre, had a
    median of 2, so no one scored above it, every rate was 0 and every ratio n/a: his bias was invisible.
    --selected did not reach the interviewers at all."""
    grades, people = write_fixture(tmp_path)  # the audit's median is 1 (the table worked by hand)
    human = tmp_path / "human.csv"
    with human.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["interviewer", "question", "tier", "id", "candidate"])
        for i in range(1, 21):  # 20 White men: great
            w.writerow(["bob", Q, "great", f"a-c{i}", f"c{i}"])
        for i in range(51, 71):  # 20 White women: great for 8, mediocre for 12
            w.writerow(["bob", Q, "great" if i < 59 else "mediocre", f"a-c{i}", f"c{i}"])
    out = tmp_path / "r"
    args = [
        "audit",
        str(grades),
        "-d",
        str(people),
        "--interviewers",
        str(human),
        "--selected",
        "great",
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (bob,) = json.loads((out / "audit.json").read_text())["interviewers"]
    assert bob["interviewer_scoring"]["median"] == 1.0
    sex = bob["interviewer_scoring"]["dimensions"]["sex"]["categories"]
    assert sex["Male"]["rate"] == 1.0 and sex["Female"]["rate"] == 0.4 and sex["Female"]["impact_ratio"] == 0.4
    selected = bob["interviewer_selection"]["dimensions"]["sex"]["categories"]
    assert selected["Female"]["hits"] == 8 and bob["model_selection"]["kind"] == "selection"
    md = (out / "audit.md").read_text()
    assert "Scoring: score above the audit's median (1):" in md and "Selection: selected at great" in md


def test_per_answer_units_say_so_in_the_limits(tmp_path):
    grades, people = write_fixture(tmp_path)
    out = tmp_path / "r"
    assert runner.invoke(app, ["audit", str(grades), "-d", str(people), "--per-answer", "-o", str(out)]).exit_code == 0
    limits = json.loads((out / "audit.json").read_text())["limits"]
    assert not any("averaged per candidate" in line for line in limits)
    assert any("one per answer" in line and "not independent" in line for line in limits)


def test_impact_ratios_print_three_places_from_an_unrounded_value():
    """43/54 against a rate of 1 is 0.796: printed "0.80 | below 0.8" from a value rounded twice."""
    from grader.audit.metrics import Dimension, Rate
    from grader.audit.report import CategoryResult, _dimension, category_cells

    rates = [
        Rate("A", 54, 0.5, 43, 43 / 54, impact_ratio=43 / 54, below_four_fifths=True, trusted=True),
        Rate("B", 54, 0.5, 54, 1.0, highest=True, impact_ratio=1.0, below_four_fifths=False, trusted=True),
    ]
    result = _dimension(Dimension("sex", ("sex",), rates, 0, "B"))
    a = result.categories["A"]
    assert isinstance(a, CategoryResult) and a.impact_ratio == round(43 / 54, 6)
    assert category_cells("A", a, 108)[4:8] == ["0.796", "", "", "below 0.8"]


def test_demographics_from_a_pipe_are_read_once(tmp_path):
    """`-d <(cut ... people.csv)`: the file was read twice (once for its delimiter), which a pipe cannot:
    the second open waited for a writer that never came."""
    import os
    import threading

    fifo = tmp_path / "people.fifo"
    os.mkfifo(fifo)
    read: list[object] = []

    def feed() -> None:
        with fifo.open("w") as f:
            f.write("candidate;sex\na;Female\nb;Male\n")

    def audit() -> None:
        read.append(read_people(fifo, None).categories)

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=audit, daemon=True)]
    for t in threads:
        t.start()
    threads[1].join(timeout=20)  # daemons: a reader stuck on the pipe cannot hold the test run open
    assert read == [{"a": {"sex": "Female"}, "b": {"sex": "Male"}}]


def test_the_median_is_printed_to_three_places_at_most():
    """A candidate-averaged median printed as 0.333333 beside another report's 0.875."""
    from grader.audit.data import People
    from grader.audit.report import analyse

    people = People(
        path="p.csv", columns=("sex",), categories={str(i): {"sex": "F" if i % 2 else "M"} for i in range(9)}
    )
    units = [Unit(str(i), [0.0, 1 / 3, 2 / 3][i % 3], {"sex": "F" if i % 2 else "M"}) for i in range(9)]
    assert analyse(units, people, "scoring").rule == "score above the sample's median (0.333)"
    assert analyse(units, people, "scoring", bar=1.0).rule == "score above the audit's median (1)"
