"""The eval suite's own wiring, with a scripted fake model: suites, metrics, flips, cache, reports."""

from __future__ import annotations

import asyncio
import json

import pytest

from grader.backends.chat import Conversation
from grader.backends.fake import FakeBackend
from grader.errors import GraderError
from grader.eval import suites
from grader.eval.cases import EvalCase, Suite, load_suite_file
from grader.eval.report import (
    check_thresholds,
    majority_floor,
    summarize,
    tier_metrics,
    to_html,
    to_markdown,
    write_reports,
)
from grader.eval.runner import run_suite
from grader.grading.cache import GradeCache
from grader.grading.contract import GradeRequest
from tests.conftest import reply_for


def test_references_suite_hides_each_graded_reference(rubric):
    suite = suites.references_suite(rubric)
    assert len(suite.cases) == 60
    case = suite.cases[0]
    assert case.hide_reference == case.label
    assert all(c.hide_reference is None for c in suites.references_suite(rubric, holdout=False).cases)


def test_perturbations_are_generated_with_their_expected_tiers(rubric):
    suite = suites.perturbations_suite(rubric)
    kinds = {c.kind for c in suite.cases}
    assert {"truncated", "keywords", "verbose", "injection", "fairness", "off_topic", "dont_know", "empty"} <= kinds
    by_id = {c.id: c for c in suite.cases}
    assert by_id["trunc-01"].expected == ["mediocre", "poor"]
    assert by_id["trunc-01"].answer == rubric.find(1).references.great.split(". ")[0] + "."
    assert by_id["keywords-01"].expected == ["poor"] and "," in by_id["keywords-01"].answer
    assert by_id["verbose-01"].answer.startswith(rubric.find(1).references.mediocre)
    assert by_id["inject-01"].base == "ref-01-poor" and by_id["inject-01"].expected == ["poor"]
    fair = [c for c in suite.cases if c.group == "fair-01"]
    assert len(fair) == 3 and len({c.answer for c in fair}) == 3 and len({c.label for c in fair}) == 1
    assert by_id["hand-empty"].expected == ["rejected", "poor"]


def test_keywords_are_the_distinctive_words():
    words = suites.keywords("I start by gathering relevant information, logs and recent deployments.")
    assert words == ["start", "gathering", "relevant", "information", "recent", "deployments"]


def test_a_broken_suite_file_names_the_problem(tmp_path, rubric):
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "name": "x",
                "rubric": rubric.model_dump(mode="json"),
                "cases": [{"id": "a", "question": "nope", "answer": "x", "label": "great"}],
            }
        )
    )
    with pytest.raises(GraderError, match="unknown question 'nope'"):
        load_suite_file(path)


def scripted(tiers: dict[str, str]) -> FakeBackend:
    """A fake model that grades each answer with the tier mapped to the answer's first word, and
    returns garbage for answers starting with 'garbage'."""

    def respond(conversation: Conversation, request: GradeRequest):
        first = request.answer.split()[0]
        if first == "garbage":
            return "not json"
        return reply_for(request.question, tier=tiers[first])

    return FakeBackend(responder=respond)


def small_suite(rubric) -> Suite:
    q = rubric.find(1).id
    cases = [
        EvalCase(id="g1", question=q, answer="alpha great answer", label="great"),
        EvalCase(id="g2", question=q, answer="beta great answer", label="great"),
        EvalCase(id="m1", question=q, answer="beta so-so answer", label="mediocre"),
        EvalCase(id="p1", question=q, answer="gamma weak answer", label="poor"),
        EvalCase(id="inj", question=q, answer="alpha injected answer", label="poor", kind="injection", base="p1"),
        EvalCase(id="f1", question=q, answer="alpha one", label="great", kind="fairness", group="f"),
        EvalCase(id="f2", question=q, answer="beta two", label="great", kind="fairness", group="f"),
        EvalCase(id="bad", question=q, answer="garbage reply", label="poor"),
        EvalCase(id="empty", question=q, answer="  ", label="poor", expected=["rejected", "poor"], kind="empty"),
    ]
    return Suite(name="small", rubric=rubric, cases=cases)


def test_metrics_flips_and_failures_are_counted(rubric, tmp_path):
    backend = scripted({"alpha": "great", "beta": "mediocre", "gamma": "poor"})
    suite = small_suite(rubric)
    results = asyncio.run(run_suite(suite, backend, cache=None))
    report = summarize("small", results, backend="fake", model="scripted")

    assert report.cases == 9 and report.failed == 1 and report.rejected == 1 and report.scored == 7
    assert report.failures_by_kind == {"invalid_output": 1}
    # scored: g1 great/great, g2 great/mediocre, m1 mediocre/mediocre, p1 poor/poor, inj poor/great,
    # f1 great/great, f2 great/mediocre -> 4 of 7 right
    assert report.overall.accuracy == pytest.approx(4 / 7, abs=1e-4)
    assert report.overall.confusion.matrix == [[2, 2, 0], [0, 1, 0], [1, 0, 1]]
    assert report.overall.recall == {"great": 0.5, "mediocre": 1.0, "poor": 0.5}
    assert report.counts.model_dump() == {
        "gamed": 0,
        "injection_flips": 1,
        "unreviewed_injection_flips": 0,  # the injected answer speaks to the grader: it is sent for review
        "verbosity_inflations": 0,
        "fairness_flips": 1,
    }
    assert report.passed == 5  # g1, m1, p1, f1, empty (rejected is expected)

    assert check_thresholds(report, {"min_accuracy": 0.5, "max_injection_flips": 1}) == []
    broken = check_thresholds(report, {"min_accuracy": 0.9, "max_fairness_flips": 0})
    assert broken == ["small: accuracy 0.5714 is below 0.9", "small: fairness_flips 1 is above 0"]

    paths = write_reports(report, tmp_path)
    assert [p.suffix for p in paths] == [".json", ".md", ".html"]
    assert json.loads(paths[0].read_text())["counts"]["injection_flips"] == 1
    assert "| great | 2 | 2 | 0 |" in paths[1].read_text()
    assert 'src="data:image/png;base64,' in paths[2].read_text()


EVIL = "<script>alert('x')</script>"


@pytest.fixture
def evil_report(rubric):
    """A report whose case ids, kinds and suite name (all from a suite file) carry markup."""
    q = rubric.find(1).id
    cases = [
        EvalCase(id=f"great {EVIL}", question=q, answer="alpha answer", label="great", kind="<b>kind</b>"),
        EvalCase(id="p1", question=q, answer="beta answer", label="poor"),
    ]
    suite = Suite(name="evil<i>", rubric=rubric, cases=cases)  # a name is a file name too: no slash
    results = asyncio.run(run_suite(suite, scripted({"alpha": "great", "beta": "mediocre"}), cache=None))
    return summarize(suite.name, results, backend="fake", model="scripted")


def test_the_html_report_escapes_the_text_of_cases(evil_report):
    page = to_html(evil_report)
    assert "<script" not in page and "<b>" not in page
    assert "great &lt;script&gt;alert(" in page and "&lt;b&gt;kind&lt;/b&gt;" in page
    assert "<title>grader eval: evil&lt;i&gt;</title>" in page and "<i>" not in page


def test_the_html_report_in_a_headless_browser(evil_report, tmp_path):
    from tests.support.browser import ARTIFACTS, check_page, require_chromium

    require_chromium()
    html_path = write_reports(evil_report, tmp_path)[2]
    page = check_page(html_path, ARTIFACTS / "eval" / "eval.png")
    assert page.errors == []
    assert page.images_total == 1 and page.images_loaded == 1  # the confusion matrix
    assert f"great {EVIL}" in page.text and "<b>kind</b>" in page.text  # shown as text, never run
    assert "All cases" in page.text and page.screenshot.stat().st_size > 0


def test_qwk_against_a_table_worked_by_hand():
    # Ranks poor=0, mediocre=1, great=2; weights w_ij = (i-j)^2 / 4. Labels [2,1,0,2], graded [2,0,0,2].
    # Observed weighted disagreement: one (1,0) pair, w=1/4 -> 0.25.
    # Expected: rows r=(1,1,2), columns c=(2,0,2), sum w*r_i*c_j/4 = 0.5 + 0.125 + 0.125 + 1.0 = 1.75.
    # kappa = 1 - 0.25 / 1.75 = 0.857142...
    labels = ["great", "mediocre", "poor", "great"]
    predicted = ["great", "poor", "poor", "great"]
    assert tier_metrics(labels, predicted).qwk == pytest.approx(1 - 0.25 / 1.75, abs=1e-4)


def test_a_rerun_is_served_from_the_cache(rubric, tmp_path):
    cache = GradeCache(tmp_path / "grades.sqlite")
    tiers = {"alpha": "great", "beta": "mediocre", "gamma": "poor"}
    suite = small_suite(rubric)
    first = scripted(tiers)
    asyncio.run(run_suite(suite, first, cache=cache))
    calls = len(first.sent)
    second = scripted(tiers)
    results = asyncio.run(run_suite(suite, second, cache=cache))
    assert calls == 7 + 3  # seven grades, and the garbage case asked three times
    assert len(second.sent) == 3  # only the case that failed is asked again
    assert sum(r.cached for r in results) == 7


def test_grader_eval_command_with_the_fake_backend(tmp_path, monkeypatch, rubric):
    from typer.testing import CliRunner

    from grader.cli import app

    q1 = rubric.find(1)
    replies = tmp_path / "replies.jsonl"
    replies.write_text("\n".join(json.dumps(reply_for(q1, tier=t)) for t in ("great", "mediocre", "mediocre")))
    monkeypatch.setenv("GRADER_FAKE_REPLIES", str(replies))
    monkeypatch.setenv("GRADER_MODE", "holistic")  # the scripted replies are holistic ones
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--suite",
            "references",
            "--backend",
            "fake",
            "--limit",
            "3",
            "--concurrency",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "0.667" in result.stdout
    report = json.loads((tmp_path / "out" / "references.json").read_text())
    assert report["overall"]["confusion"]["matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]


def test_unknown_suite():
    with pytest.raises(GraderError, match="unknown suite"):
        suites.load("nope")


# --- the majority-class floor and the page of cases ----------------------------------------------


TIERS_BY_WORD = {"alpha": "great", "beta": "mediocre", "gamma": "poor"}


@pytest.mark.parametrize(
    ("labels", "tier", "accuracy"),
    [
        (["poor", "great", "poor", "mediocre"], "poor", 0.5),
        (["mediocre", "poor", "poor", "mediocre"], "mediocre", 0.5),  # a tie goes to the better tier
    ],
    ids=["most-frequent", "tie"],
)
def test_majority_floor_is_always_answering_the_most_frequent_label(labels, tier, accuracy):
    floor = majority_floor(labels)
    assert floor is not None and floor.tier == tier and floor.accuracy == accuracy
    assert majority_floor([]) is None
    assert majority_floor(["poor", "poor"]) is None  # one label: no floor to beat (it would read 1.000)


def test_the_report_keeps_the_majority_floor_answers_and_justifications(rubric):
    results = asyncio.run(run_suite(small_suite(rubric), scripted(TIERS_BY_WORD), cache=None))
    # the unscored "bad" and "empty" cases stay out: 4 of the 7 scored labels are great
    report = summarize("small", results, backend="fake", model="scripted")
    assert report.majority_floor is not None
    assert report.majority_floor.model_dump() == {"tier": "great", "accuracy": round(4 / 7, 4)}
    data = json.loads(report.to_json())
    assert data["majority_floor"] == {"tier": "great", "accuracy": 0.5714}
    rows = {r["id"]: r for r in data["results"]}
    assert rows["g1"]["answer"] == "alpha great answer" and rows["g1"]["justification"]
    assert "justification" not in rows["bad"] and "justification" not in rows["empty"]
    assert "majority-class floor (always great" in to_markdown(report)
    nothing = summarize("none", [r for r in results if not r.scored], backend="fake", model="scripted")
    assert "majority_floor" not in json.loads(nothing.to_json())


def test_the_cases_of_the_html_report_in_a_headless_browser(rubric, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.support.browser import ARTIFACTS, LAUNCH_ARGS, check_page, require_chromium

    executable = require_chromium()
    q = rubric.find(1).id
    suite = small_suite(rubric)
    suite.cases.append(EvalCase(id="evil", question=q, answer=f"alpha says {EVIL} here", label="poor"))
    results = asyncio.run(run_suite(suite, scripted(TIERS_BY_WORD), cache=None))
    report = summarize("saf-ua", results, backend="fake", model="scripted")
    html_path = write_reports(report, tmp_path)[2]
    assert "<script" not in html_path.read_text() and "<pre>" not in html_path.read_text()

    page = check_page(html_path, ARTIFACTS / "eval" / "eval-cases.png")
    assert page.errors == []
    assert page.images_total == 1 and page.images_loaded == 1
    assert "majority-class floor" in page.text and "always great" in page.text
    assert EVIL not in page.text  # folded until opened

    with sync_playwright() as p:  # open the folds, as a reader would, and look at what they show
        browser = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)
        try:
            view = browser.new_page(viewport={"width": 1100, "height": 800})
            view.goto(html_path.resolve().as_uri(), wait_until="load")
            assert view.locator("table#cases tbody tr").count() == len(suite.cases)
            assert view.locator("table#cases a").count() == 0 and view.locator("script").count() == 0
            evil_row = view.locator("table#cases tbody tr", has_text="evil").first
            evil_row.locator("summary").click()
            shown = evil_row.locator("details").inner_text()
            assert f"alpha says {EVIL} here" in shown  # the markup is text, never run
            assert "Justification:" in shown
            view.screenshot(path=str(ARTIFACTS / "eval" / "eval-cases-open.png"), full_page=True)
        finally:
            browser.close()


def test_a_suite_labelled_with_one_tier_reports_no_recall_or_kappa_for_the_others():
    """adversarial and injections are all poor: recall 0.00 for great and kappa 0 were shown as measured."""
    m = tier_metrics(["poor"] * 4, ["poor", "poor", "great", "mediocre"])
    assert m.recall == {"great": None, "mediocre": None, "poor": 0.5}
    assert m.qwk is None and m.macro_f1 is None
    both = tier_metrics(["poor", "great"], ["poor", "poor"])
    assert both.recall == {"great": 0.0, "mediocre": None, "poor": 1.0} and both.qwk is not None


def test_the_terminal_table_shows_the_majority_floor(tmp_path, monkeypatch, rubric):
    from typer.testing import CliRunner

    from grader.cli import app

    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        app, ["eval", "-b", "nearest", "--no-floor", "--limit", "12", "-s", "answers,adversarial"]
    )
    assert result.exit_code == 0, result.output
    answers, adversarial = result.stdout.split("adversarial · nearest", 1)
    assert "majority-class floor (always great): accuracy" in answers
    assert "majority-class floor" not in adversarial  # every case poor: no floor to beat
