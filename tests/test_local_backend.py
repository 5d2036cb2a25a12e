"""The embedded offline backend: loads from package data with no network, covers points with
verbatim evidence, keeps non-answers poor, and batches many answers into one model call."""

from __future__ import annotations

import asyncio
import math
import threading

import numpy as np
import pytest

from grader.api import agrade
from grader.backends import get_backend, resolve_name
from grader.backends.local.backend import LocalBackend
from grader.errors import GraderError
from grader.grading.contract import GradeRequest


@pytest.fixture(scope="module")
def local() -> LocalBackend:
    return LocalBackend()


def grade(backend: LocalBackend, question, answer: str):
    return asyncio.run(backend.grade(GradeRequest(question, answer)))


def test_loads_from_package_data_without_network(monkeypatch, no_network, rubric):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = LocalBackend()
    result = grade(backend, rubric.find(4), "I add indexes to columns that are queried a lot and use the explain plan.")
    assert result.backend == "local" and result.model == "all-MiniLM-L6-v2-int8"


def test_auto_picks_local_without_openai_settings(monkeypatch):
    assert resolve_name("auto") == "local"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert resolve_name("auto") == "openai"


def test_great_reference_of_another_phrasing_covers_points_with_verbatim_evidence(local, q1):
    answer = (
        "First I gather the logs, the error messages and any recent deployments. "
        "I try to reproduce the issue in a controlled environment before touching code. "
        "For a critical outage I put in a temporary fix to restore service, then keep digging for the root cause. "
        "Afterwards I document the incident and we hold a blameless post-mortem."
    )
    result = grade(local, q1, answer)
    covered = {p.id for p in result.covered_points}
    said = {
        "q01.gather-evidence",
        "q01.reproduce",
        "q01.restore-service",
        "q01.root-cause",
        "q01.document-incident",
        "q01.blameless-postmortem",
    }
    # Recall on fresh answers is about 0.7 (FIT.md): most, not all, of the six points said here are found.
    assert len(said & covered) >= 4, covered
    assert "q01.debt-tickets" not in covered  # never said
    for p in result.covered_points:
        assert p.evidence and p.evidence in answer
    assert result.tier.value == "great"
    assert set(result.missed_points).isdisjoint(covered)
    assert set(result.missed_points) | covered == set(q1.point_ids)
    # The missed points are named by id, not restated: every view lists their texts (trial O #17).
    assert f"Misses {len(result.missed_points)}: {', '.join(result.missed_points)}." in result.justification
    assert not any(p.text.rstrip(".") in result.justification for p in q1.key_points)


def test_red_flags_are_detected(local, rubric):
    q4 = rubric.find(4)
    answer = (
        "When the database is slow I usually upgrade to more powerful hardware. Most performance issues are "
        "solved by adding more CPU and memory, so I avoid changing the code or the database design."
    )
    result = grade(local, q4, answer)
    assert set(result.red_flags) == {"q04.vertical-scaling", "q04.no-design-changes"}
    assert result.tier.value == "poor"
    assert "Red flags: q04.vertical-scaling" in result.justification
    # each flag's quote is the span it fired on, verbatim, so a reviewer can check it
    assert result.red_flag_evidence == {
        "q04.vertical-scaling": "Most performance issues are solved by adding more CPU",
        "q04.no-design-changes": "so I avoid changing the code or the database design.",
    }
    assert all(quote in answer for quote in result.red_flag_evidence.values())
    assert grade(local, q4, q4.references.great).red_flag_evidence == {}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("I don't know.", id="dont-know"),
        pytest.param(
            "I really enjoy cooking pasta with fresh basil and tomatoes on the weekend with friends.", id="off-topic"
        ),
        pytest.param(
            "logs, metrics, tracing, rollback, post-mortem, root cause, reproduce, staging, deployments, alerts",
            id="keywords",
        ),
    ],
)
def test_guard_rails_keep_non_answers_poor(local, q1, answer):
    result = grade(local, q1, answer)
    assert result.tier.value == "poor"
    assert result.justification.startswith("Graded poor because")
    assert 0.5 <= result.confidence <= 0.99


def test_confidence_reflects_the_margin(local, q1):
    great = grade(local, q1, q1.references.great)
    middling = grade(local, q1, q1.references.mediocre + " " + q1.references.great.split(". ")[2] + ".")
    assert great.confidence_source == "margin"
    assert great.confidence != middling.confidence


def test_many_answers_share_one_model_call(monkeypatch, rubric):
    backend = LocalBackend()
    calls: list[list[str]] = []
    embed = backend.embedder.embed

    def counting(texts, batch_size=64, *, stop=None):
        calls.append(list(texts))
        return embed(texts, batch_size, stop=stop)

    monkeypatch.setattr(backend.embedder, "embed", counting)
    # Not the references verbatim: those are embedded with the rubric's anchors too.
    answers = [(q, f"In short: {text}") for q in list(rubric)[:5] for _, text in q.references.items()]

    async def run_all():
        return await asyncio.gather(*(backend.grade(GradeRequest(q, a)) for q, a in answers))

    grades = asyncio.run(run_all())
    assert len(grades) == 15
    # Rubric anchors are embedded once per question, separately; every answer goes through one call.
    answer_calls = [texts for texts in calls if any(a in texts for _, a in answers)]
    assert len(answer_calls) == 1 and all(a in answer_calls[0] for _, a in answers)


def test_samples_are_refused_for_a_deterministic_backend(local, q1):
    with pytest.raises(GraderError, match="deterministic"):
        asyncio.run(agrade(q1, "I check the logs first.", backend=local, samples=3))


def test_registry_builds_it_and_a_bad_model_path_is_a_clear_error(tmp_path):
    from grader.backends import BackendOptions
    from grader.errors import BackendNotConfiguredError

    assert get_backend("local").name == "local"
    with pytest.raises(BackendNotConfiguredError, match="does not exist"):
        get_backend("local", BackendOptions(model_path=tmp_path / "missing"))


# --- the text signals behind the guard rails, table-driven ---------------------------------------------------

from grader.backends.local import text  # noqa: E402


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            "I check the logs. Then I look at deploys.",
            ["I check the logs.", "Then I look at deploys."],
            id="two-sentences",
        ),
        pytest.param("- logs\n- deploys", ["- logs", "- deploys"], id="bullets"),
        pytest.param("   ", [], id="blank"),
    ],
)
def test_sentences_are_exact_slices(answer, expected):
    found = text.sentences(answer)
    assert [s.text for s in found] == expected
    assert all(answer[s.start : s.end] == s.text for s in found)


@pytest.mark.parametrize(
    ("answer", "piece", "quote"),
    [
        pytest.param(
            "Sign-in uses OAuth 2.0 and short JWTs. Then I rotate.",
            "OAuth 2.",
            "Sign-in uses OAuth 2.0 and short JWTs.",
            id="end",
        ),
        pytest.param(
            "Sign-in uses OAuth 2.0 and short JWTs. Then I rotate.",
            "0 and short JWTs.",
            "Sign-in uses OAuth 2.0 and short JWTs.",
            id="start",
        ),
        pytest.param("We run Node.js v2.3.1 in prod. Fine.", "js v2.", "We run Node.js v2.3.1 in prod.", id="several"),
        pytest.param("Logs first. Then deploys.", "Logs first.", "Logs first.", id="a-real-end"),
        pytest.param(  # "I would add a cache, e." was quoted
            "I would add a cache, e.g. Redis, in front of it. Then I measure.",
            "Redis, in front of it.",
            "I would add a cache, e.g. Redis, in front of it.",
            id="e.g.",
        ),
        pytest.param(
            "We got paged at 3 a.m. and the queue was full. I restarted it.",
            "We got paged at 3 a.",
            "We got paged at 3 a.m. and the queue was full.",
            id="a.m.-going-on",
        ),
        pytest.param(
            "I check logs, metrics, etc. Then I fix it.",
            "metrics, etc.",
            "I check logs, metrics, etc.",
            id="etc.-an-end",
        ),
        pytest.param("The p99 fell to 800 ms. So we shipped.", "So we shipped.", "So we shipped.", id="ms-an-end"),
        pytest.param("We had no DR. So we wrote a runbook.", "We had no DR.", "We had no DR.", id="DR-an-end"),
        pytest.param(
            "I would add a cache, e.g., Redis, in front of it. Then I measure.",
            "Redis, in front of it.",
            "I would add a cache, e.g., Redis, in front of it.",
            id="e.g.,",
        ),
        pytest.param(
            "Tools I would use, e.g.\n- Redis for caching.",
            "- Redis for caching.",
            "- Redis for caching.",
            id="line-break",
        ),
    ],
)
def test_a_quote_is_whole_tokens_where_the_splitter_cut_inside_one(answer, piece, quote):
    from grader.backends.local.text import Span, sentences, whole_tokens

    cut = next(s for s in sentences(answer) if s.text.endswith(piece) or s.text.startswith(piece))
    widened = whole_tokens(answer, cut)
    assert widened.text == quote and answer[widened.start : widened.end] == quote
    assert whole_tokens(answer, Span(answer, 0, len(answer))) == Span(answer, 0, len(answer))


def test_evidence_quotes_keep_version_numbers_whole(local, rubric):
    """ "OAuth 2." was quoted, with "0 and short-lived JWTs" left for another span (from a user trial)."""
    answer = (
        "I layer defenses. For sign-in we use OAuth 2.0 and short-lived JWTs with refresh tokens. "
        "Every query is parameterized and I validate input on the server."
    )
    result = grade(local, rubric.find(3), answer)
    quotes = [p.evidence for p in result.covered_points if p.evidence and "OAuth" in p.evidence]
    assert quotes and all("OAuth 2.0" in q and q in answer for q in quotes)


def test_windows_and_chunks_are_exact_slices_of_the_answer():
    answer = "I check the logs. Then I diff the deploys. Finally I write it up."
    cut = text.sentences(answer)
    wins = text.windows(answer, cut)
    assert [w.text for w in wins] == [
        "I check the logs. Then I diff the deploys.",
        "Then I diff the deploys. Finally I write it up.",
    ]
    spoken = " ".join(["so um I look at the logs and then the deploys and you know the metrics"] * 3)
    chunks = text.chunks(spoken, text.sentences(spoken))
    assert chunks and all(spoken[c.start : c.end] == c.text and len(text.words(c.text)) <= 14 for c in chunks)
    assert text.chunks(answer, cut) == []  # short sentences are not chunked


@pytest.mark.parametrize(
    ("answer", "low", "high"),
    [
        pytest.param(
            "I start with the logs and the recent deploys, then I try to reproduce it in staging.",
            0.0,
            0.07,
            id="prose",
        ),
        pytest.param(
            "logs and the deploys and the metrics and the alerts and the traces and the rollbacks",
            0.25,
            1.0,
            id="glued",
        ),
        pytest.param(" ".join(["How do you debug a production issue?"] * 5), 0.12, 1.0, id="pasted"),
    ],
)
def test_repetition(answer, low, high):
    assert low <= text.repetition(answer) <= high


def test_echo_negation_and_stems():
    q = "How do you approach debugging a production issue?"
    assert text.echo(q, q) == 1.0
    assert text.echo("I read the logs first and reproduce it.", q) == 0.0
    cut = text.sentences("I would NOT check logs. We never test. I write docs.")
    assert text.negated_share(cut) == pytest.approx(2 / 3) and text.negated_sentences(cut) == 2
    assert text.stem("deployments") == text.stem("deployment") == "deploy"
    assert text.content_stems("I check the deployments") == frozenset({"check", "deploy"})


def test_word_order_tells_prose_from_the_same_words_shuffled(rubric):
    import random

    model = text.OrderModel.load()
    great = rubric.find(7).references.great
    words = great.split()
    random.Random(1).shuffle(words)
    assert model.score(great) > 0 > model.score(" ".join(words))
    assert math.isnan(model.score("Too short to tell."))


def test_another_questions_answer_is_off_topic(local, rubric):
    q1, q2 = rubric.find(1), rubric.find(2)
    result = grade(local, q1, q2.references.great)
    assert result.tier.value == "poor"
    assert f"it answers another question ({q2.id})" in result.justification


def test_another_question_of_a_team_s_own_bank_is_looked_for_in_that_bank(rubric, tmp_path):
    """The guard looked only in the packaged bank, so for a team's questions it never fired: another of
    their questions' great answer was graded great (a user trial's adversarial suite)."""
    from grader.grading.engine import Engine, Job
    from grader.rubric import dump_rubric

    team = rubric.with_questions([q.model_copy(update={"id": f"team-{q.id}"}) for q in rubric.questions[:4]])
    q1, q2 = team.questions[0], team.questions[1]
    backend = LocalBackend()
    try:
        engine = Engine(backend, rubric=team)
        (graded,) = asyncio.run(engine.grade_all([Job(q1.id, q2.references.great, tag=0)]))
    finally:
        asyncio.run(backend.aclose())
    assert graded.grade is not None and graded.grade.tier.value == "poor"
    assert f"it answers another question ({q2.id})" in graded.grade.justification
    from tests.test_cli import invoke  # the command line tells its engine the rubric too, as batch and eval do

    path = tmp_path / "team.yaml"
    path.write_text(dump_rubric(team), encoding="utf-8")
    cli = invoke("grade", "-b", "local", "--rubric", str(path), "-q", q1.id, "-a", q2.references.great, "--no-cache")
    assert cli.exit_code == 0 and f"it answers another question ({q2.id})" in " ".join(cli.stdout.split())
    given = LocalBackend(contrast=rubric)  # a bank given when the backend is made holds
    assert given.contrast_bank(team) is rubric and backend.contrast_bank(team) is team


def test_one_backend_grading_two_banks_at_once_checks_each_answer_against_its_own(rubric):
    """The backend held one bank at a time, the last engine's: with two rubrics graded at once on one
    LocalBackend, the first's answers were checked against the second's questions (none of theirs), so
    another of its questions' great answer was graded great, and cached under the first bank's key."""
    from grader.grading.engine import Engine, Job

    def team(prefix: str, questions):
        return rubric.with_questions(
            [
                q.model_copy(
                    update={
                        "id": f"{prefix}-{q.id}",
                        "number": i + 1,
                        "key_points": [p.model_copy(update={"id": f"{prefix}-{p.id}"}) for p in q.key_points],
                        "red_flags": [f.model_copy(update={"id": f"{prefix}-{f.id}"}) for f in q.red_flags],
                    }
                )
                for i, q in enumerate(questions)
            ]
        )

    first, second = team("a", rubric.questions[:4]), team("b", rubric.questions[4:8])
    backend = LocalBackend()
    engines = [Engine(backend, rubric=first), Engine(backend, rubric=second)]  # both made before either grades

    async def both():
        jobs = [[Job(bank.questions[0].id, bank.questions[1].references.great, tag=0)] for bank in (first, second)]
        return await asyncio.gather(*(engine.grade_all(j) for engine, j in zip(engines, jobs, strict=True)))

    try:
        (a,), (b,) = asyncio.run(both())
    finally:
        asyncio.run(backend.aclose())
    for graded, bank in ((a, first), (b, second)):
        assert graded.grade is not None and graded.grade.tier.value == "poor"
        assert f"it answers another question ({bank.questions[1].id})" in graded.grade.justification
    assert backend.cache_key(first) != backend.cache_key(second) != backend.cache_key()


def test_a_few_natural_negations_are_not_sent_for_review_but_a_reference_made_to_say_the_opposite_is(local, q1):
    """ "I don't touch anything yet" in a one-sentence answer was "100% of its sentences are negated"
    (a false review flag on 6 dev answers, and on a great answer in a user trial)."""
    from grader.eval.suites import negate

    natural = (
        "First I don't touch anything yet: I pull up the logs and the error messages, check what was "
        "deployed recently, reproduce it in staging and roll back if users are hurting."
    )
    assert not any("negated" in r for r in grade(local, q1, natural).review_reasons)
    opposite = grade(local, q1, negate(q1.references.great))
    assert opposite.tier.value == "poor" or any("negated" in r for r in opposite.review_reasons)


def test_a_red_flag_shown_makes_the_answer_poor(local, q1):
    result = grade(local, q1, f"{q1.references.great} {q1.references.poor}")
    assert result.red_flags and result.tier.value == "poor"


def test_the_rubric_side_is_embedded_once_across_processes(monkeypatch, tmp_path, q1):
    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path))
    answer = "I read the logs and the recent deploys first, then I reproduce it in staging."
    first = LocalBackend()
    expected = grade(first, q1, answer)
    asyncio.run(first.aclose())
    second = LocalBackend()  # a new process would start like this: empty in memory, the cache on disk
    seen: list[str] = []
    embed = second.embedder.embed

    def recording(texts, batch_size=64, *, stop=None):
        seen.extend(texts)
        return embed(texts, batch_size, stop=stop)

    monkeypatch.setattr(second.embedder, "embed", recording)
    again = grade(second, q1, answer)
    assert again == expected
    assert answer in seen  # answers are always embedded afresh
    assert not {p.text for p in q1.key_points} & set(seen) and q1.references.great not in seen
    assert (tmp_path / "vectors.sqlite").is_file()


def test_an_interrupted_cold_embedding_keeps_what_it_had_embedded(monkeypatch, tmp_path):
    """The rubric side is stored every SAVE_EVERY texts: a run stopped while embedding a cold bank (Ctrl-C
    stops the worker thread between batches) does not start from nothing again."""
    from grader.backends.local.embedder import Stopped
    from grader.backends.local.vectors import SAVE_EVERY, VectorCache

    monkeypatch.setenv("GRADER_CACHE_DIR", str(tmp_path))
    texts = [f"key point {i}" for i in range(SAVE_EVERY + 3)]
    calls: list[int] = []

    def embed_then_stop(batch):
        calls.append(len(batch))
        if len(calls) > 1:
            raise Stopped("stopped")
        return np.ones((len(batch), 4), dtype=np.float32)

    cache = VectorCache("m")
    with pytest.raises(Stopped):
        cache.embed(texts, embed_then_stop)
    cache.close()
    asked: list[str] = []
    again = VectorCache("m")
    vectors = again.embed(texts, lambda batch: (asked.extend(batch), np.ones((len(batch), 4), dtype=np.float32))[1])
    assert calls == [SAVE_EVERY, 3]
    assert asked == texts[SAVE_EVERY:] and vectors.shape == (len(texts), 4)


def test_a_cancelled_flush_tells_its_worker_thread_to_stop(local, q1, monkeypatch):
    """Ctrl-C cancels the flush waiting on the worker thread; the thread is told to stop, where it would
    otherwise grade its whole chunk for nobody while the process waited for it to end (40 s seen)."""
    from grader.backends.local.embedder import Stopped

    entered, told = threading.Event(), threading.Event()

    def embed(texts, batch_size=64, *, stop=None):
        entered.set()
        if stop is not None and stop.wait(timeout=60):  # a batch boundary that waits for the stop
            told.set()
            raise Stopped("stopped")
        return np.zeros((len(texts), local.embedder.dim), dtype=np.float32)

    monkeypatch.setattr(local.embedder, "embed", embed)

    async def interrupted() -> None:
        asyncio.get_running_loop().create_task(local.grade(GradeRequest(q1, "I read the logs first.")))
        await asyncio.to_thread(entered.wait, 60)

    with asyncio.Runner() as runner:  # closing cancels every task left, the flush among them, as Ctrl-C does
        runner.run(interrupted())
    assert entered.is_set() and told.is_set()


def test_closing_the_backend_while_it_grades_is_a_grader_error(local, q1, monkeypatch):
    """aclose() mid-grade stops the worker thread; the waiting grade gets a GraderError (a run stops with
    its exit code), not the embedder's internal Stopped (a crash, exit 70)."""
    from grader.backends.local.embedder import Stopped

    entered = threading.Event()

    def embed(texts, batch_size=64, *, stop=None):
        entered.set()
        if stop is not None and stop.wait(timeout=60):
            raise Stopped("stopped")
        return np.zeros((len(texts), local.embedder.dim), dtype=np.float32)

    monkeypatch.setattr(local.embedder, "embed", embed)

    async def closed_mid_way() -> None:
        pending = asyncio.create_task(local.grade(GradeRequest(q1, "I read the logs first.")))
        await asyncio.to_thread(entered.wait, 60)
        await local.aclose()
        with pytest.raises(GraderError, match="closed while it was grading"):
            await pending

    asyncio.run(closed_mid_way())


def test_a_run_gets_its_first_grades_after_a_small_chunk(local, rubric, monkeypatch):
    """A killed run keeps what was written: the first grades come after 16 answers are embedded, not 256."""
    from grader.backends.local.backend import FIRST_BATCH_ANSWERS, MAX_BATCH_ANSWERS
    from grader.grading.engine import Engine, Job

    chunks: list[int] = []
    finished: list[int] = []  # sizes of the chunks whose grades are done
    real = local.grade_many

    def recording(requests):
        chunks.append(len(requests))
        grades = real(requests)
        finished.append(len(requests))
        return grades

    embedded_at_first_grade: list[int] = []

    def emit(_graded) -> None:
        if not embedded_at_first_grade:
            embedded_at_first_grade.append(sum(finished))

    monkeypatch.setattr(local, "grade_many", recording)
    q = rubric.find(1)
    jobs = [Job(q, f"I check the logs and roll back the deploy, case {i}.", tag=i) for i in range(300)]
    stats = asyncio.run(Engine(local, rubric=rubric).run(jobs, emit))
    assert chunks == [FIRST_BATCH_ANSWERS, MAX_BATCH_ANSWERS, 300 - FIRST_BATCH_ANSWERS - MAX_BATCH_ANSWERS]
    assert embedded_at_first_grade == [FIRST_BATCH_ANSWERS]
    assert stats.graded == 300


def _without_phrasings(q):
    return q.model_copy(
        update={
            "key_points": [p.model_copy(update={"phrasings": []}) for p in q.key_points],
            "red_flags": [f.model_copy(update={"phrasings": []}) for f in q.red_flags],
        }
    )


def test_a_question_without_phrasings_is_graded_by_the_companion_rule(local, q1):
    from dataclasses import replace

    rule = local.rule
    bare = _without_phrasings(q1)
    one = bare.model_copy(update={"key_points": [q1.key_points[0], *bare.key_points[1:]]})
    assert rule.unphrased is not None and rule.unphrased.unphrased is None
    assert rule.for_question(q1) is rule and rule.for_question(one) is rule  # one point with phrasings is enough
    assert rule.for_question(bare) is rule.unphrased
    assert rule.unphrased.for_question(bare) is rule.unphrased
    # The backend grades the bare question with the companion: the same grade as a backend whose only rule it
    # is, and not the default models' grade of it.
    answer = "I check the logs and recent deployments, then try to reproduce it before I change anything."
    graded = grade(local, bare, answer)
    assert graded == grade(LocalBackend(rule=rule.unphrased), bare, answer)
    assert graded.confidence != grade(LocalBackend(rule=replace(rule, unphrased=None)), bare, answer).confidence
    # and a change to the companion is a change to the cache key
    assert rule.fingerprint != replace(rule, unphrased=None).fingerprint
