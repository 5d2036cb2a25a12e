"""The Grade contract, the review policy, samples and log-probability confidence."""

from __future__ import annotations

import asyncio
import math

import pytest
from pydantic import ValidationError

from grader.api import agrade
from grader.backends.checklist import checklist_items
from grader.backends.confidence import TokenLogprob, tier_distribution
from grader.backends.fake import FakeBackend
from grader.backends.replies import reply_schema
from grader.errors import AnswerTooLongError, EmptyAnswerError, GraderError, GradingFailedError
from grader.grading.contract import CoveredPoint, Grade
from grader.grading.review import apply_review_policy, check_answer
from tests.conftest import reply_for


def make_grade(**kw) -> Grade:
    base = dict(question_id="q", tier="great", justification="j", backend="fake", model="m")
    return Grade(**{**base, **kw})


def test_covered_and_missed_must_not_overlap():
    with pytest.raises(ValidationError, match="both covered and missed"):
        make_grade(covered_points=[CoveredPoint(id="a", evidence="x")], missed_points=["a"])


def test_a_red_flags_quote_is_only_for_a_flag_shown():
    assert make_grade(red_flags=["f"], red_flag_evidence={"f": "we just restart it"}).red_flag_evidence == {
        "f": "we just restart it"
    }
    with pytest.raises(ValidationError, match=r"red_flag_evidence quotes flags that are not in red_flags: \['g'\]"):
        make_grade(red_flags=["f"], red_flag_evidence={"g": "x"})


def test_blank_justification_is_invalid():
    with pytest.raises(ValidationError):
        make_grade(justification="   ")


def test_json_has_the_documented_fields():
    data = make_grade().model_dump(mode="json")
    for field in (
        "question_id",
        "tier",
        "justification",
        "missed_points",
        "covered_points",
        "red_flags",
        "confidence",
        "needs_review",
        "backend",
        "model",
        "usage",
        "attempts",
    ):
        assert field in data


def test_reply_schema_requires_a_verdict_for_every_point(q1):
    schema = reply_schema(q1.point_ids, q1.flag_ids)
    points = schema["properties"]["points"]
    assert points["required"] == q1.point_ids and points["additionalProperties"] is False
    assert schema["properties"]["red_flags"]["items"]["enum"] == q1.flag_ids
    assert schema["required"] == ["points", "red_flags", "justification", "tier"]


def test_review_policy(q1):
    n = len(q1.point_ids)
    great_missing = make_grade(tier="great", missed_points=q1.point_ids[: n // 2 + 1])
    assert apply_review_policy(great_missing, q1, 0.6).needs_review
    great_ok = make_grade(
        tier="great",
        missed_points=q1.point_ids[:1],
        covered_points=[CoveredPoint(id=p, evidence="x") for p in q1.point_ids[1:]],
    )
    assert not apply_review_policy(great_ok, q1, 0.6).needs_review
    poor_all = make_grade(tier="poor", covered_points=[CoveredPoint(id=p, evidence="x") for p in q1.point_ids])
    assert apply_review_policy(poor_all, q1, 0.6).needs_review
    unsure = make_grade(
        tier="great", confidence=0.55, covered_points=great_ok.covered_points, missed_points=great_ok.missed_points
    )
    flagged = apply_review_policy(unsure, q1, 0.6)
    assert flagged.needs_review and "0.55" in flagged.review_reasons[0]
    assert not apply_review_policy(unsure, q1, 0.5).needs_review


def test_unreviewed_draft_points_are_flagged(q1):
    drafted = q1.model_copy(update={"key_points": [q1.key_points[0].model_copy(update={"draft": True})]})
    result = apply_review_policy(make_grade(tier="mediocre"), drafted, 0.6)
    assert result.needs_review and any("draft" in n for n in result.notes)


def test_samples_confidence_is_the_share_that_agrees(q1):
    quote = {"q01.reproduce": "reproduce it"}
    replies = [reply_for(q1, covered=quote, tier=t) for t in ("great", "mediocre", "great", "great", "poor")]
    backend = FakeBackend(replies)
    grade = asyncio.run(agrade(q1, "I reproduce it.", backend=backend, samples=5))
    assert grade.tier.value == "great"
    assert grade.confidence == 0.6 and grade.confidence_source == "samples"
    assert grade.attempts == 5
    assert [c.messages for c in backend.sent][0] == [c.messages for c in backend.sent][1]


@pytest.mark.parametrize("mode", ["holistic", "checklist"])
def test_a_failed_samples_tokens_and_calls_are_counted(q1, mode):
    """Sample 1 never gives a valid reply (3 calls: the first and 2 re-asks): its calls and tokens were
    paid for, so the grade counts them (they were left out)."""
    no = {item.key: {"verdict": "no"} for item in checklist_items(q1)}
    valid = reply_for(q1, tier="great") if mode == "holistic" else no
    backend = FakeBackend(responder=lambda _c, request: "not json" if request.sample == 1 else valid, mode=mode)
    grade = asyncio.run(agrade(q1, "I reproduce it.", backend=backend, samples=3))
    assert len(backend.sent) == 5 and grade.attempts == 5
    assert grade.usage.prompt_tokens == sum(
        len(" ".join(m["content"] for m in c.messages).split()) for c in backend.sent
    )
    assert grade.notes[-1].endswith("failed 1")

    every = FakeBackend(responder=lambda _c, _r: "not json", mode=mode)
    with pytest.raises(GradingFailedError, match=r"every one of 3 samples failed \(9 requests\)") as info:
        asyncio.run(agrade(q1, "I reproduce it.", backend=every, samples=3))
    assert info.value.exit_code == 10


def test_answer_checks():
    with pytest.raises(EmptyAnswerError):
        check_answer(" \n\t")
    with pytest.raises(EmptyAnswerError, match="only invisible characters"):
        check_answer("\u200b \u200b\u00ad\u200d\ufeff")  # what the model would be shown: nothing
    assert check_answer("\u200bI check the logs.") == "\u200bI check the logs."
    with pytest.raises(AnswerTooLongError, match="30 characters; the limit is 10"):
        check_answer("x" * 30, max_chars=10)


def test_samples_must_be_positive(q1):
    with pytest.raises(GraderError):
        asyncio.run(agrade(q1, "x", backend=FakeBackend(), samples=0))


def _tok(token: str, lp: float = 0.0, top=()):
    return TokenLogprob(token, lp, tuple(top))


@pytest.mark.parametrize(
    "tokens",
    [
        pytest.param(
            [
                _tok('{"tier": '),
                _tok('"g', math.log(0.8), [('"g', math.log(0.8)), ('"m', math.log(0.2))]),
                _tok('reat"}'),
            ],
            id="quote-fused",
        ),
        pytest.param(
            [
                _tok('{"tier": "'),
                _tok("great", math.log(0.8), [("great", math.log(0.8)), ("med", math.log(0.2))]),
                _tok('"}'),
            ],
            id="separate-quote",
        ),
        pytest.param(
            [
                _tok('{"tier":'),
                _tok(' "g', math.log(0.8), [(' "g', math.log(0.8)), (' "m', math.log(0.2))]),
                _tok('reat"}'),
            ],
            id="space-before-value",
        ),
    ],
)
def test_tier_distribution_from_logprobs(tokens):
    dist = tier_distribution(tokens)
    assert dist is not None
    assert dist["great"] == pytest.approx(0.8) and dist["mediocre"] == pytest.approx(0.2)


def test_no_tier_token_means_no_confidence():
    assert tier_distribution([_tok("{}")]) is None


@pytest.mark.parametrize(
    ("tier", "n_covered", "flags", "reason"),
    [
        pytest.param("mediocre", 2, ["q01.no-root-cause"], "shows red flag(s) q01.no-root-cause", id="flag-not-poor"),
        pytest.param("mediocre", 0, [], "covers none of the 8 key points", id="nothing-covered"),
        pytest.param("great", 3, [], "covers only 3 of 8 key points (great needs 4)", id="great-under-half"),
        pytest.param("poor", 4, [], "covers 4 of 8 key points and shows no red flag", id="poor-with-half"),
        # A great answer that denies a red flag ("I never use POST for everything") matches it: poor on the
        # flag alone against most of the points goes to a person.
        pytest.param(
            "poor",
            6,
            ["q01.no-root-cause"],
            "graded poor for red flag(s) q01.no-root-cause although it covers 6 of 8 key points",
            id="poor-on-a-flag-against-most-points",
        ),
        # Every point and no flag is what great asks for: a mediocre there was graded at 0.94 with no review.
        pytest.param(
            "mediocre", 8, [], "graded mediocre although it covers all 8 key points", id="mediocre-with-every-point"
        ),
        pytest.param("mediocre", 7, [], None, id="mediocre-with-most-points"),
        pytest.param("great", 4, [], None, id="consistent-great"),
        pytest.param("poor", 1, ["q01.no-root-cause"], None, id="consistent-poor"),
        pytest.param(
            "poor", 0, [], "graded poor on no evidence: covers none of the 8 key points", id="poor-on-no-evidence"
        ),
        pytest.param("poor", 0, ["q01.no-root-cause"], None, id="poor-with-a-red-flag-only"),
        pytest.param("poor", 1, [], None, id="poor-with-a-point"),
    ],
)
def test_review_policy_flags_a_tier_its_points_contradict(q1, tier, n_covered, flags, reason):
    covered = q1.point_ids[:n_covered]
    grade = Grade(
        question_id=q1.id,
        tier=tier,
        justification="j",
        covered_points=[CoveredPoint(id=p, evidence="x") for p in covered],
        missed_points=[p for p in q1.point_ids if p not in covered],
        red_flags=flags,
        confidence=0.9,
        backend="fake",
        model="m",
    )
    reviewed = apply_review_policy(grade, q1, 0.6)
    if reason is None:
        assert not reviewed.needs_review, reviewed.review_reasons
    else:
        assert reviewed.needs_review and any(reason in r for r in reviewed.review_reasons), reviewed.review_reasons


def test_a_grade_above_poor_on_a_few_words_is_sent_for_review(q1):
    """Trial M: "Use a migration tool, run it at night." was graded mediocre at 0.99 with no review."""
    from grader.grading.review import words

    covered = [CoveredPoint(id=p, evidence="x") for p in q1.point_ids[:2]]
    missed = q1.point_ids[2:]
    shortest = min(words(text) for _, text in q1.references.items())
    few = " ".join(["logs"] * (shortest // 4 - 1))
    enough = " ".join(["logs"] * -(-shortest // 4))

    def reviewed(answer, tier="mediocre", references=None):
        grade = make_grade(tier=tier, covered_points=covered, missed_points=missed, confidence=0.99)
        return apply_review_policy(grade, q1, 0.6, answer=answer, references=references)

    assert reviewed(few).review_reasons == [
        f"graded mediocre on {words(few)} words, under a quarter of the shortest reference it was graded with "
        f"({shortest}): little to go on"
    ]
    assert not reviewed(enough).needs_review
    assert not reviewed(few, tier="poor").needs_review  # poor on little is what little earns
    # the references it was shown decide, and Chinese is counted a character a word, as the copy check counts it
    assert not reviewed(few, references=[("poor", "word " * (len(few.split()) * 3))]).needs_review
    assert words("我先查看日志") == 6 and reviewed("查看日志", references=[("great", "我" * 40)]).needs_review


def test_an_answer_that_copies_a_reference_it_was_graded_with_is_sent_for_review(q1):
    """A word-for-word copy of the great reference (a leaked bank, a pasted answer) was graded great at 0.95
    with no note."""
    from grader.grading.review import copied_reference

    great = q1.references.great
    covered = [CoveredPoint(id=p, evidence="x") for p in q1.point_ids]
    grade = make_grade(tier="great", covered_points=covered, confidence=0.95)
    copied = apply_review_policy(grade, q1, 0.6, answer=great)
    assert copied.needs_review
    assert copied.review_reasons == ["100% of the answer is the great reference it was graded with, word for word"]
    # graded with the great reference hidden (the references suite, leave-one-out): nothing it was shown
    shown = [(t, x) for t, x in q1.references.items() if t != "great"]
    assert not apply_review_policy(grade, q1, 0.6, answer=great, references=shown).needs_review
    # half of its runs of eight words at least: a third of the reference and a phrase is a copy; a long answer of
    # its own quoting one sentence of it is not
    words = great.split()
    assert copied_reference(
        " ".join(words[: len(words) // 3]) + " and then I would ask a colleague", q1.references.items()
    )
    own = " ".join(f"In my own words, step {i} is to look at something else entirely and think." for i in range(6))
    assert copied_reference(own + " " + " ".join(words[:12]), q1.references.items()) is None
    # a script written without spaces is read a character at a time: a copied Chinese reference is found
    zh = "我们先查看日志和最近的部署，然后在测试环境中复现问题，再回滚或者修复，最后写事故报告并跟进。"
    assert copied_reference(zh, [("great", zh)]) == ("great", 1.0, True)
    # pasted from two references: all of it reference text, though neither holds half
    refs = q1.references
    mixed = " ".join(refs.great.split()[:20]) + " " + refs.mediocre + " " + refs.poor
    tier, share, alone = copied_reference(mixed, refs.items())
    assert share > 0.85 and not alone  # the runs across the joins are in no reference
    mixed_grade = apply_review_policy(grade, q1, 0.6, answer=mixed)
    assert any(
        "of the answer is the references (the " in r and "it was graded with, word for word" in r
        for r in mixed_grade.review_reasons
    )
    nearly = apply_review_policy(grade, q1, 0.6, answer=great + " Thanks, that is all!")
    assert nearly.review_reasons[0].startswith("9")  # not all of it: never rounded up to 100 %
    assert not nearly.review_reasons[0].startswith("100%")
    assert (
        copied_reference(
            "I check the logs and recent deploys, then reproduce it on staging first.", q1.references.items()
        )
        is None
    )
    assert copied_reference(" ".join(words[:5]), q1.references.items()) is None  # under eight words: no run


def test_the_engine_checks_copies_against_the_references_shown(rubric):
    from grader.eval.runner import run_suite
    from grader.eval.suites import references_suite

    one = rubric.with_questions(rubric.questions[:1])
    backend = FakeBackend(responder=lambda _c, request: reply_for(request.question, tier="great"))
    held_out = asyncio.run(run_suite(references_suite(one), backend))
    shown = asyncio.run(run_suite(references_suite(one, holdout=False), backend))
    said = "reference it was graded with, word for word"
    assert not any(said in r for result in held_out for r in result.grade.review_reasons)
    assert all(any(said in r for r in result.grade.review_reasons) for result in shown)
