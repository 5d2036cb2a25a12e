"""The counterfactual probes (`grader.eval.counterfactual`): rewrites that change who seems to answer and
never what is said, and the tier flips they are scored by (`grader.eval.report.counterfactual_flips`)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from grader.backends.local.reading import american
from grader.cli import app
from grader.eval.cases import EvalCase
from grader.eval.counterfactual import NAME_FRAMES, NAME_SETS, PROBES, counterfactual_suite
from grader.eval.report import check_thresholds, counterfactual_flips, summarize, to_html, to_markdown
from grader.eval.runner import CaseResult
from grader.eval.suites import answers_suite, load, stories_suite
from grader.grading.contract import FailureKind, Grade, GradeFailure, Tier

#: What the dialect rules may insert, drop or swap: articles, copulas and auxiliaries, the particles of
#: "discuss about", "depends of", "since five years", "revert back", the markers "basically", "itself",
#: and the closing courtesy line. A rule that touched any other word (a technical term) would show.
FUNCTION = frozenset(
    "a an the is are was were am be do does did don't doesn't didn't not ain't isn't aren't wasn't can't cannot "
    "won't will would i'm i've i'd i'll it's that's there's we're we've they're you're it that there i we they you "
    "have having has about of on since for lot basically itself revert get got come came back "
    "hope this answers your query".split()
)


def content(text: str) -> list[str]:
    words = [american(w) for w in re.findall(r"[a-z][a-z'’]*|\d+", text.lower().replace("’", "'"))]
    return [w for w in words if w not in FUNCTION]


@pytest.fixture(scope="module")
def dev():
    return answers_suite("dev").cases


def test_name_sets_cover_six_groups_and_both_sexes():
    assert len(NAME_SETS) >= 12
    groups = {(s.ethnicity, s.sex) for s in NAME_SETS}
    assert len({e for e, _ in groups}) >= 6
    assert all((e, sex) in groups for e, _ in groups for sex in ("female", "male"))
    assert len({p.name for p in PROBES}) == len(PROBES)
    assert {p.kind for p in PROBES} == {"name", "pronoun", "dialect"}


def test_each_dialect_rule_rewrites_only_its_marker():
    text = "For five years I have a team. We discussed the design for 3 months; it depends on load."
    rewrites = {p.name: p.rewrite(text, 0) for p in PROBES if p.kind == "dialect"}
    assert rewrites["dialect-non-native"] == (
        "Since five years I am having a team. We discussed about the design since 3 months; it depends of load."
    )
    assert rewrites["dialect-indian-english"].startswith("Basically, since five years I am having a team.")
    assert rewrites["dialect-dropped-articles"] == (
        "For five years I have team. We discussed design for 3 months; it depends on load."
    )
    for name, rewritten in rewrites.items():
        assert content(rewritten) == content(text), name


def test_dialect_rewrites_keep_every_content_word_in_order(dev):
    dialects = [p for p in PROBES if p.kind == "dialect"]
    changed = 0
    for i, case in enumerate(dev):
        for probe in dialects:
            rewritten = probe.rewrite(case.answer, i)
            changed += rewritten != case.answer
            assert content(rewritten) == content(case.answer), (probe.name, case.id)
    assert changed > len(dev) * 2  # the rules do rewrite: most answers change under most probes


def test_content_check_catches_a_dropped_or_swapped_term():
    answer = "We added an index on the orders table and the query got faster."
    assert content(answer.replace("index on the ", "")) != content(answer)
    assert content(answer.replace("index", "cache")) != content(answer)
    assert content(answer.replace("the query", "query")) == content(answer)


def test_name_and_pronoun_probes_only_add_a_frame(dev):
    case, i = dev[0], 0
    named = {p.name: p.rewrite(case.answer, i) for p in PROBES if p.kind == "name"}
    for probe in PROBES:
        if probe.kind != "dialect":
            assert case.answer in probe.rewrite(case.answer, i)
    frame = NAME_FRAMES[i % len(NAME_FRAMES)]
    for s in NAME_SETS:
        assert named[f"name-{s.id}"] == frame.format(name=s.names[i % len(s.names)], answer=case.answer)


def test_suite_is_deterministic_and_linked_to_its_answers():
    one, two = counterfactual_suite("dev"), counterfactual_suite("dev")
    assert [c.model_dump() for c in one.cases] == [c.model_dump() for c in two.cases]
    by_id = {c.id: c for c in one.cases}
    bases = [c for c in one.cases if c.kind == "base_answer"]
    assert len(bases) == len(answers_suite("dev").cases)
    probes = [c for c in one.cases if c.kind == "counterfactual"]
    assert len(probes) > 15 * len(bases)
    for c in probes:
        base = by_id[c.base or ""]
        assert base.kind == "base_answer" and c.label == base.label and c.question == base.question
        assert one.cases.index(base) < one.cases.index(c)
        assert c.meta["probe"] in {p.name for p in PROBES}
    # rounds: the first answer of every question comes before any question's second answer
    first_questions = [c.question for c in bases[:10]]
    assert len(set(first_questions)) == 10


def test_the_stories_answers_are_probed_against_their_own_rubric():
    """`counterfactual-stories`: a second dev set for the probes, which no fit of the local rule reads."""
    stories = stories_suite()
    suite = load("counterfactual-stories")
    assert suite.name == "counterfactual-stories" and suite.rubric == stories.rubric
    bases = [c for c in suite.cases if c.kind == "base_answer"]
    assert sorted(c.id for c in bases) == sorted(c.id for c in stories.cases)
    probes = [c for c in suite.cases if c.kind == "counterfactual"]
    assert len(probes) > 15 * len(bases) and {c.base for c in probes} == {c.id for c in bases}
    assert {c.question for c in suite.cases} <= {q.id for q in stories.rubric}


def _result(case_id: str, tier: str | None, *, probe: str | None = None, base: str | None = None, review=False):
    meta = {"probe": probe, "probe_kind": probe.split("-")[0]} if probe else {}
    case = EvalCase(
        id=case_id,
        question="debugging-a-production-issue",
        answer="some answer",
        label=Tier.mediocre,
        kind="counterfactual" if probe else "base_answer",
        base=base,
        meta=meta,
    )
    if tier is None:
        outcome = GradeFailure(kind=FailureKind.invalid_output, message="no valid reply")
    else:
        outcome = Grade(
            question_id=case.question,
            tier=Tier(tier),
            justification="x",
            backend="fake",
            model="m",
            needs_review=review,
        )
    return CaseResult(case=case, outcome=outcome)


def flips_table():
    return [
        _result("a", "mediocre"),
        _result("a+name-x", "mediocre", probe="name-x", base="a"),
        _result("a+dialect-y", "great", probe="dialect-y", base="a"),  # up, unreviewed
        _result("b", "great"),
        _result("b+name-x", "poor", probe="name-x", base="b", review=True),  # down, reviewed
        _result("b+dialect-y", None, probe="dialect-y", base="b"),  # failed: not compared
        _result("c", None),
        _result("c+name-x", "great", probe="name-x", base="c"),  # its base failed: not compared
    ]


def test_flips_counted_per_probe_and_kind():
    cf = counterfactual_flips(flips_table())
    assert cf is not None
    assert (cf.compared, cf.flips, cf.unreviewed_flips) == (3, 2, 1)
    name, dialect = cf.per_probe["name-x"], cf.per_probe["dialect-y"]
    assert (name.compared, name.flips, name.up, name.down, name.unreviewed) == (2, 1, 0, 1, 0)
    assert (dialect.compared, dialect.flips, dialect.up, dialect.down, dialect.unreviewed) == (1, 1, 1, 0, 1)
    assert name.cases == ["b+name-x"] and dialect.cases == ["a+dialect-y"]
    assert cf.per_kind["name"].flips == 1 and cf.per_kind["dialect"].flips == 1
    assert counterfactual_flips(flips_table()[:1]) is None


def test_thresholds_on_flips_in_all_and_per_kind_or_probe():
    report = summarize("counterfactual-dev", flips_table(), backend="fake", model="m")
    assert check_thresholds(report, {"max_counterfactual_flips": 2, "max_flips.name": 1}) == []
    broken = check_thresholds(
        report, {"max_counterfactual_flips": 1, "max_flips.dialect-y": 0, "max_unreviewed_flips.name": 0}
    )
    assert broken == [
        "counterfactual-dev: counterfactual_flips 2 is above 1",
        "counterfactual-dev: flips.dialect-y 1 is above 0",
    ]
    plain = summarize("answers", flips_table()[:1], backend="fake", model="m")
    assert check_thresholds(plain, {"max_counterfactual_flips": 0}) == [
        "answers: max_counterfactual_flips cannot be measured"
    ]


def test_the_html_report_has_the_probes_and_the_questions_the_markdown_has():
    """The page a team reads: it had neither the probe table nor the per-question one."""
    report = summarize("counterfactual-dev", flips_table(), backend="fake", model="m")
    page, md = to_html(report), to_markdown(report)
    for text in ("Counterfactual probes", "Per question"):
        assert text in md and text in page
    probes = page.split('<table id="probes">', 1)[1].split("</table>", 1)[0]
    assert probes.count("<tr>") == 1 + len(report.counterfactual.per_kind) + len(report.counterfactual.per_probe)
    assert "a+dialect-y" in probes and "counterfactual flips</th><td>2 of 3" in page
    questions = page.split('<table id="questions">', 1)[1].split("</table>", 1)[0]
    assert questions.count("<tr>") == 1 + len(report.per_question)


def test_cli_reports_flips_per_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        app,
        ["eval", "--suite", "counterfactual-dev", "--backend", "local", "--limit", "42", "--no-floor"]
        + ["--format", "json", "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "counterfactual-dev.json").read_text())
    cf = report["counterfactual"]
    assert set(cf["per_kind"]) == {"name", "pronoun", "dialect"}
    names = [p for p in cf["per_probe"].values() if p["kind"] == "name"]
    assert len(names) == 12 and all(p["compared"] >= 1 for p in names)
    # The local backend reads identity lines away: a name or pronoun never moves its tier.
    assert cf["per_kind"]["name"]["flips"] == 0 and cf["per_kind"]["pronoun"]["flips"] == 0


def test_a_floor_threshold_under_no_floor_says_why_it_cannot_be_measured():
    plain = summarize("answers", flips_table()[:1], backend="fake", model="m")
    assert check_thresholds(plain, {"min_margin_over_floor": 0.1}) == [
        "answers: min_margin_over_floor cannot be measured (the floor was not graded: run without --no-floor)"
    ]


def test_an_unknown_local_rule_is_a_usage_error():
    result = CliRunner().invoke(app, ["eval", "-b", "local", "-s", "references", "--local-rule", "nosuch"])
    assert result.exit_code == 2 and "unknown local rule 'nosuch'" in result.stderr, result.output
