"""The embedded offline backend: grades with a small sentence-embedding model, no key, no network.

For each answer: cut it into spans (sentences, clauses, word chunks of long runs, two-sentence windows),
embed them, and match every key point and red flag (and their phrasings) against them. Small logistic
models fitted on fresh hand-graded answers (`rule.py`, `scripts/fit_local.py`) turn the similarities
into a probability per point and per flag, and the point verdicts, the flags and the similarity to each
tier's reference into the tier. Guard rails first keep texts that are not answers poor: too short, the
question pasted back, glued keywords, off-topic, or another question's answer.

Reviewed answers shown with a request (`request.reviewed`, learning from reviews) are labelled neighbours:
each votes for the tier a person gave it, weighted by how similar it is to the answer (whole answer
against whole answer, this embedder), and the rule's tier probabilities count as a few such votes
(`learn_from_reviews`). Before that, the key points they were ticked for pull the rule's point verdicts
towards theirs (`learn_points`), and the rule's tier probabilities come from the pulled verdicts. Guard
rails still come first. With no reviewed answers, nothing changes.

Requests that arrive together (a batch, or `asyncio.gather` over many answers) are embedded in one
model call: `grade()` queues the request and the queue is flushed on the next turn of the event loop.
Each rubric question's anchors are embedded once per process, and kept on disk (`vectors.py`), and so
are the reviewed answers (stable texts, shown again and again).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from grader.backends.base import Backend
from grader.backends.local.embedder import Embedder, Stopped
from grader.backends.local.reading import READING_VERSION, read
from grader.backends.local.rule import Analysis, Match, TierRule, tier_features
from grader.backends.local.text import (
    OrderModel,
    Span,
    chunks,
    content_stems,
    echo,
    negated_sentences,
    negated_share,
    prose_ratio,
    repetition,
    sentences,
    spans,
    whole_tokens,
    windows,
    words,
)
from grader.backends.local.vectors import VectorCache
from grader.errors import GraderError
from grader.grading.contract import TIERS, CoveredPoint, Grade, GradeRequest, Reviewed, Tier, Usage
from grader.rubric import Question, Rubric, load_rubric
from grader.wording import counted

MAX_BATCH_ANSWERS = 256
#: The first chunk of a flush; the next ones are MAX_BATCH_ANSWERS. A 256-answer chunk takes 10-13 s on two
#: cores, and nothing can be written (or survive a kill) before the first one is done. Only the first is
#: small: chunks doubling from 16 cost 12 % of throughput on 500 answers, one small chunk 3.5 % (medians
#: of 3 runs; embedding is most efficient in large calls).
FIRST_BATCH_ANSWERS = 16
#: A negated answer is sent for review from this many negated sentences on (and over the rule's share): a
#: great reference made to say the opposite has 5 to 10, while on the dev half the 6 answers the share
#: alone flagged said what they seemed to in 1 to 3 ("I don't touch anything yet", "never raw string SQL").
NEGATED_MIN_SENTENCES = 4
#: Shuffled words are only looked for from 40 words on: a shorter salad has too few words to match much.
ORDER_MIN_WORDS = 40
#: Part of the cache key: how the justification is worded (2: missed points named by id, not restated).
JUSTIFICATION_VERSION = 2
#: Learning from reviews (`learn_from_reviews`): a reviewed answer at cosine s to the answer votes for its
#: human tier with weight exp((s - 1) / NEIGHBOUR_TAU), and the rule's tier probabilities count as
#: NEIGHBOUR_PRIOR votes, so a neighbour at cosine 0.77 weighs as much as the rule and one at 0.9 about
#: four times as much. Chosen on the dev data only (answers-dev and SAF's training split, each answer's
#: neighbours the other answers to its question), see FIT-learning.md.
NEIGHBOUR_TAU = 0.1
NEIGHBOUR_PRIOR = 0.1
#: Learning from reviews (`learn_points`): each key point's probability moves this share of the way
#: towards the reviewed answers' ticks for it (their mean, weighted as their tier votes are), before the
#: rule turns the points into tier probabilities. Where neighbours are dissimilar their tier says little
#: about this answer, but how often people ticked each point for this question still does. Chosen on the
#: dev data only (answers-dev; 0.25-0.35 all help, SAF's reviews carry no ticks), see FIT-learning.md.
NEIGHBOUR_POINTS = 0.3


@dataclass(frozen=True)
class _Side:
    """The key points (or the red flags) of a question, embedded, with their yardsticks."""

    vecs: np.ndarray  # (K, d)
    stems: list[frozenset[str]]
    level_great: np.ndarray  # (K,) best span similarity in the great exemplars (nan: none shown)
    level_poor: np.ndarray  # (K,) the same in the poor exemplars
    said: np.ndarray  # (K, d) how the yardstick reference says it: its best span (great for points, poor for flags)
    has_said: bool
    phrasings: list[np.ndarray]  # (n_k, d) for each point: the rubric's other phrasings of it


@dataclass(frozen=True)
class _Anchors:
    """A question's key points, red flags and exemplars, embedded once."""

    points: _Side
    flags: _Side
    topic: np.ndarray  # (1 + exemplars, d): the question text and the reference answers shown
    exemplar_tiers: tuple[str, ...]  # the tier of each exemplar (topic rows 1..)
    topic_level: float


def _cut(answer: str) -> tuple[list[Span], list[Span], list[Span]]:
    """(spans, windows, sentences): the spans a point is matched against, two-sentence windows on top,
    and the sentences both were made from."""
    cut = sentences(answer)
    found = spans(answer, cut) + chunks(answer, cut) or [Span(answer, 0, len(answer))]
    return found, windows(answer, cut), cut


def _match(
    side: _Side,
    span_vecs: np.ndarray,
    win_vecs: np.ndarray,
    whole: np.ndarray,
    span_stems: list[frozenset[str]],
    whole_stems: frozenset[str],
    opponents: np.ndarray,
) -> Match:
    if not len(side.vecs):
        return Match.empty()
    lexical = np.array([[len(p & s) / len(p) if p else 0.0 for s in span_stems] or [0.0] for p in side.stems])
    span_sims = side.vecs @ span_vecs.T
    all_sims = np.hstack([span_sims, side.vecs @ win_vecs.T]) if len(win_vecs) else span_sims
    best = all_sims.argmax(axis=1)
    # How specific the best span is to this point: its similarity here minus its best to another point.
    if len(side.vecs) > 1:
        others = all_sims[:, best].copy()
        np.fill_diagonal(others, -np.inf)
        specific = all_sims.max(axis=1) - others.max(axis=0)
    else:
        specific = np.zeros(len(side.vecs))
    every = np.vstack([span_vecs, win_vecs]) if len(win_vecs) else span_vecs
    # The same span against the other side: a sentence that makes a key point is not a red flag because
    # it shares the flag's vocabulary ("I roll back, then find the cause" vs "I just roll back").
    rival = (opponents @ every[best].T).max(axis=0) if len(opponents) else np.full(len(best), np.nan)
    said = (side.said @ every.T).max(axis=1) if side.has_said else np.full(len(best), np.nan)
    phrased = np.array([float((alt @ every.T).max()) if len(alt) else np.nan for alt in side.phrasings])
    return Match(
        span=span_sims.max(axis=1),
        window=all_sims.max(axis=1),
        whole=side.vecs @ whole,
        best=best,
        level_great=side.level_great,
        level_poor=side.level_poor,
        words_span=lexical.max(axis=1),
        words_whole=np.array([len(p & whole_stems) / len(p) if p else 0.0 for p in side.stems]),
        said=said,
        specific=specific,
        phrased=phrased,
        rival=all_sims.max(axis=1) - rival,
    )


def _topic_level(topic: np.ndarray) -> float:
    """How on-topic the references are: each one's best similarity to the question or another
    reference, averaged. An answer is judged off-topic relative to this, not to a fixed number."""
    if len(topic) < 2:
        return 1.0
    sims = topic[1:] @ topic.T
    for i in range(len(sims)):
        sims[i, i + 1] = -1.0  # not itself
    return float(sims.max(axis=1).mean())


def _bank_key(bank: Rubric) -> str:
    """A contrast bank's identity: its questions' fingerprints (each computed once per question object)."""
    return hashlib.sha256("".join(q.fingerprint() for q in bank).encode()).hexdigest()[:16]


class LocalBackend(Backend):
    name = "local"
    stochastic = False
    #: Two chunks' worth in flight: while one chunk is embedded, the next fills up to a full one.
    default_concurrency = 2 * MAX_BATCH_ANSWERS

    def __init__(
        self, *, model_path: Path | None = None, rule: TierRule | None = None, contrast: Rubric | None = None
    ) -> None:
        self.embedder = Embedder.load(model_path)
        self._rule = rule
        self._contrast = contrast  # a bank given here holds for every grade; else each request's (its rubric)
        self._packaged: Rubric | None = None  # the bank of a request that names none
        self.order_model = OrderModel.load()
        self._vectors = VectorCache(self.embedder.model_id)
        #: per bank and question fingerprint: the other questions' vectors and ids, None where there are none
        self._others: dict[tuple[str, str], tuple[np.ndarray, list[str]] | None] = {}
        #: per bank fingerprint: its questions' texts' and references' vectors, whose each is, its questions
        self._banks: dict[str, tuple[np.ndarray, list[str], set[str]]] = {}
        self._anchors: dict[str, _Anchors] = {}
        self._pending: list[tuple[GradeRequest, asyncio.Future[Grade]]] = []
        self._flushing = False
        #: Set when the flush waiting on a worker thread is cancelled (Ctrl-C) or the backend is closed:
        #: the thread's embedding stops at its next batch, where it would otherwise grade its whole chunk
        #: (seconds to tens of seconds, a cold rubric) for nobody while the process waits for it to end.
        self._halt = threading.Event()

    @property
    def model(self) -> str:
        return self.embedder.model_id

    def cache_key(self, rubric: Rubric | None = None) -> str:
        contrast = _bank_key(self.contrast_bank(rubric))
        order = hashlib.sha256(self.order_model.to_json().encode()).hexdigest()[:16]
        # How reviewed answers are weighed (none shown: no effect).
        learn = f"{NEIGHBOUR_TAU}/{NEIGHBOUR_PRIOR}/{NEIGHBOUR_POINTS}"
        from grader.backends.local.reading import PERSONAL_VERSION  # personal data read as nothing
        from grader.backends.local.text import QUOTES_VERSION  # how evidence quotes are cut, shown in every grade

        return (
            f"{super().cache_key()}:rule={self.rule.fingerprint}:contrast={contrast}:order={order}:learn={learn}"
            f":reading={READING_VERSION}.{PERSONAL_VERSION}:negations={NEGATED_MIN_SENTENCES}:quotes={QUOTES_VERSION}"
            f":justification={JUSTIFICATION_VERSION}"
        )

    @property
    def rule(self) -> TierRule:
        if self._rule is None:
            self._rule = TierRule.load()
        return self._rule

    async def grade(self, request: GradeRequest) -> Grade:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Grade] = loop.create_future()
        self._pending.append((request, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        return await future

    async def _flush(self) -> None:
        size = FIRST_BATCH_ANSWERS  # a small first chunk: the first grades are written within a second or two
        self._halt.clear()
        try:
            while self._pending:
                chunk, self._pending = self._pending[:size], self._pending[size:]
                size = MAX_BATCH_ANSWERS
                try:
                    grades = await asyncio.to_thread(self.grade_many, [r for r, _ in chunk])
                except asyncio.CancelledError:
                    self._halt.set()
                    raise
                except Exception as exc:  # every waiter learns why, none hangs
                    if isinstance(exc, Stopped):  # aclose() while grading: no grade is coming (a GraderError)
                        exc = GraderError("the local backend was closed while it was grading")
                    for _, future in chunk:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), grade in zip(chunk, grades, strict=True):
                    if not future.done():
                        future.set_result(grade)
        finally:
            self._flushing = False

    # --- synchronous core, shared with the fitting script and the benchmark -----------------------

    def grade_many(self, requests: list[GradeRequest]) -> list[Grade]:
        """Grade many answers with one embedding call for all their spans. The reviewed answers shown with
        a request are given this embedder's similarity to it before the tier is decided."""
        analysed = self._analyse(requests)
        if any(r.reviewed for r in requests):
            requests = self._measure_reviewed(requests, [whole for _, _, whole in analysed])
        return [self._grade(r, a, s) for r, (a, s, _) in zip(requests, analysed, strict=True)]

    def analyse_many(self, requests: list[GradeRequest]) -> list[tuple[Analysis, list[Span]]]:
        """Embed every answer's spans, windows and whole text in one call, and match them to the rubric.
        Returns each answer's analysis and its evidence spans (spans first, then windows)."""
        return [(a, s) for a, s, _ in self._analyse(requests)]

    def _measure_reviewed(self, requests: list[GradeRequest], wholes: list[np.ndarray]) -> list[GradeRequest]:
        """The requests with each reviewed answer's `similarity` replaced by its cosine to the answer, whole
        text against whole text, with this embedder (the reviewed texts through the on-disk vector cache)."""
        texts = list(dict.fromkeys(r.answer for request in requests for r in request.reviewed))
        vectors = dict(zip(texts, self._rubric_vectors(texts), strict=True)) if texts else {}
        return [
            replace(
                request,
                reviewed=tuple(
                    replace(r, similarity=round(float(vectors[r.answer] @ whole), 4)) for r in request.reviewed
                ),
            )
            if request.reviewed
            else request
            for request, whole in zip(requests, wholes, strict=True)
        ]

    def _analyse(self, requests: list[GradeRequest]) -> list[tuple[Analysis, list[Span], np.ndarray]]:
        """`analyse_many`, each answer's whole-text vector too. What is embedded and matched is the
        answer's reading (`reading.py`: no identity or courtesy lines, American spelling); the evidence
        spans returned are the stretches of the answer as written."""
        readings = [read(r.answer) for r in requests]
        cuts = [_cut(x.text) for x in readings]
        texts = [s.text for found, wins, _ in cuts for s in [*found, *wins]] + [x.text for x in readings]
        vectors = self._embed(texts)
        whole = vectors[len(texts) - len(requests) :]
        out, offset = [], 0
        for i, request in enumerate(requests):
            found, wins, cut = cuts[i]
            reading = readings[i]
            span_vecs = vectors[offset : offset + len(found)]
            win_vecs = vectors[offset + len(found) : offset + len(found) + len(wins)]
            offset += len(found) + len(wins)
            anchors = self._anchors_for(request)
            topic_sims = anchors.topic @ whole[i]
            elsewhere, elsewhere_id = self._elsewhere(request, whole[i])
            tier_sims: dict[str, float] = {}
            for tier, sim in zip(anchors.exemplar_tiers, topic_sims[1:], strict=True):
                tier_sims[tier] = max(tier_sims.get(tier, -1.0), float(sim))
            span_stems = [content_stems(s.text) for s in [*found, *wins]]
            whole_stems = content_stems(reading.text)
            analysis = Analysis(
                points=_match(
                    anchors.points, span_vecs, win_vecs, whole[i], span_stems, whole_stems, anchors.flags.vecs
                ),
                flags=_match(
                    anchors.flags, span_vecs, win_vecs, whole[i], span_stems, whole_stems, anchors.points.vecs
                ),
                tier_similarity=tier_sims,
                topical=float(topic_sims.max()),
                topic_level=anchors.topic_level,
                prose=prose_ratio(reading.text),
                n_words=len(words(reading.text)),
                repetition=repetition(reading.text),
                order=self.order_model.score(reading.text),
                elsewhere=elsewhere - float(topic_sims.max()),
                elsewhere_id=elsewhere_id,
                echo=echo(reading.text, request.question.text),
                negated=negated_share(cut),
                negations=negated_sentences(cut),
            )
            evidence = [whole_tokens(reading.answer, reading.source(s)) for s in [*found, *wins]]
            out.append((analysis, evidence, whole[i]))
        return out

    def _rubric_vectors(self, texts: list[str]) -> np.ndarray:
        """The rubric side's vectors, through the on-disk cache (answers are embedded directly)."""
        return self._vectors.embed(texts, self._embed)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(texts, stop=self._halt)

    async def aclose(self) -> None:
        self._halt.set()  # first: a worker thread holding the vector cache lets go of it at its next batch
        self._vectors.close()

    def contrast_bank(self, rubric: Rubric | None = None) -> Rubric:
        """The bank an answer to a question of `rubric` is checked against for "answers another question":
        the one given when the backend was made, else `rubric` (a team's questions are in no packaged bank,
        so another of them's great answer was graded great), else the packaged rubric."""
        if self._contrast is not None:
            return self._contrast
        if rubric is not None:
            return rubric
        if self._packaged is None:
            self._packaged = load_rubric()
        return self._packaged

    def _elsewhere(self, request: GradeRequest, whole: np.ndarray) -> tuple[float, str | None]:
        """The answer's best similarity to another question of the contrast bank (its text and
        references) and which one: an answer written for another question is off-topic here however
        well it matches the shared vocabulary. Only the bank's own questions are checked against it
        (same id or same text are not "another"). Each request names its bank (its engine's rubric), so
        one backend grading two rubrics at once checks each answer against its own."""
        bank = self.contrast_bank(request.bank)
        key = (_bank_key(bank), request.question.fingerprint())
        rows = self._others.get(key, ...)
        if rows is ...:
            rows = self._others[key] = self._other_questions(bank, key[0], request.question)
        if rows is None:
            return -1.0, None
        vecs, owners = rows
        sims = vecs @ whole
        best = int(sims.argmax())
        return float(sims[best]), owners[best]

    def _other_questions(self, bank: Rubric, bank_key: str, question: Question) -> tuple[np.ndarray, list[str]] | None:
        """The bank's vectors (question texts and references) of the questions other than this one, and
        whose each is; None for a question that is not in the bank."""
        if bank_key not in self._banks:
            texts: list[str] = []
            owners: list[str] = []
            for q in bank:
                for text in [q.text, *(t for _, t in q.references.items())]:
                    texts.append(text)
                    owners.append(q.id)
            self._banks[bank_key] = (self._rubric_vectors(texts), owners, {q.fingerprint() for q in bank})
        vecs, owners, members = self._banks[bank_key]
        if question.fingerprint() not in members:
            return None  # a question of another bank: its neighbours are not known here
        own = self._rubric_vectors([question.text])[0]
        heads = {owner: vecs[i] for i, owner in reversed(list(enumerate(owners)))}  # each question's own text
        same = {qid for qid, head in heads.items() if qid == question.id or float(head @ own) > 0.95}
        keep = [i for i, owner in enumerate(owners) if owner not in same]
        if not keep:
            return None
        return vecs[keep], [owners[i] for i in keep]

    def _anchors_for(self, request: GradeRequest) -> _Anchors:
        q = request.question
        exemplars = list(request.reference_answers)
        key = hashlib.sha256("\x00".join([q.fingerprint(), *(f"{t}:{x}" for t, x in exemplars)]).encode()).hexdigest()
        anchors = self._anchors.get(key)
        if anchors is not None:
            return anchors
        points = [p.text for p in q.key_points]
        flags = [f.text for f in q.red_flags]
        ex_cuts = [_cut(text)[0] for _, text in exemplars]
        ex_spans = [s.text for cut in ex_cuts for s in cut]
        alts = [list(p.phrasings) for p in [*q.key_points, *q.red_flags]]
        alt_texts = [t for texts in alts for t in texts]
        vecs = self._rubric_vectors([*points, *flags, q.text, *(x for _, x in exemplars), *ex_spans, *alt_texts])
        alt_vecs, cursor = vecs[len(vecs) - len(alt_texts) :], 0
        vecs = vecs[: len(vecs) - len(alt_texts)]
        per_item = []
        for texts in alts:
            per_item.append(alt_vecs[cursor : cursor + len(texts)])
            cursor += len(texts)
        n_p, n_f, n_e = len(points), len(flags), len(exemplars)
        point_vecs, flag_vecs = vecs[:n_p], vecs[n_p : n_p + n_f]
        topic = vecs[n_p + n_f : n_p + n_f + 1 + n_e]
        span_vecs, offset = vecs[n_p + n_f + 1 + n_e :], 0
        d = vecs.shape[1]
        sides = {"points": (point_vecs, "great"), "flags": (flag_vecs, "poor")}
        level = {(side, tier): np.full(len(v), np.nan) for side, (v, _) in sides.items() for tier in ("great", "poor")}
        said = {
            side: (np.zeros((len(v), d), dtype=vecs.dtype), np.full(len(v), -np.inf)) for side, (v, _) in sides.items()
        }
        for (tier, _), cut in zip(exemplars, ex_cuts, strict=True):
            ex = span_vecs[offset : offset + len(cut)]
            offset += len(cut)
            if tier not in ("great", "poor") or not len(ex):
                continue
            for side, (anchor, yardstick) in sides.items():
                if not len(anchor):
                    continue
                sims = anchor @ ex.T
                best = sims.max(axis=1)
                level[side, tier] = np.fmax(level[side, tier], best)
                if tier == yardstick:
                    said_vecs, said_best = said[side]
                    better = best > said_best
                    said_vecs[better] = ex[sims.argmax(axis=1)[better]]
                    said_best[better] = best[better]

        def side_of(name: str, texts: list[str]) -> _Side:
            vecs_, _ = sides[name]
            own = per_item[: len(points)] if name == "points" else per_item[len(points) :]
            return _Side(
                vecs=vecs_,
                stems=[content_stems(t) for t in texts],
                level_great=level[name, "great"],
                level_poor=level[name, "poor"],
                said=said[name][0],
                has_said=bool(np.isfinite(said[name][1]).all()) and len(texts) > 0,
                phrasings=own,
            )

        anchors = _Anchors(
            points=side_of("points", points),
            flags=side_of("flags", flags),
            topic=topic,
            exemplar_tiers=tuple(t for t, _ in exemplars),
            topic_level=_topic_level(topic),
        )
        self._anchors[key] = anchors
        return anchors

    def _grade(self, request: GradeRequest, a: Analysis, answer_spans: list[Span]) -> Grade:
        q = request.question
        rule = self.rule.for_question(q)
        p_points, p_flags = rule.point_probabilities(a), rule.flag_probabilities(a)
        covered = [
            CoveredPoint(id=p.id, evidence=answer_spans[int(a.points.best[k])].text)
            for k, p in enumerate(q.key_points)
            if p_points[k] >= rule.point_threshold
        ]
        covered_ids = {c.id for c in covered}
        missed = [p.id for p in q.key_points if p.id not in covered_ids]
        flags = [f.id for k, f in enumerate(q.red_flags) if p_flags[k] >= rule.flag_threshold]
        flag_quotes = {
            f.id: answer_spans[int(a.flags.best[k])].text for k, f in enumerate(q.red_flags) if f.id in flags
        }

        guard = guard_rail(a, rule)
        if guard is not None:
            tier, confidence, reason = Tier.poor, guard[0], guard[1]
        elif request.reviewed:
            # Labelled neighbours: the human tiers of the most similar reviewed answers, with the rule's
            # probabilities as the prior. A red flag counts through those probabilities here, not as a veto:
            # on the dev data, people's grades of near-identical answers were the better evidence (a red
            # flag shown with a tier above poor is sent for review by the review policy all the same).
            # The points they were ticked for first pull this answer's point verdicts (tier only: the
            # covered points shown, with their quotes, are still the rule's own).
            pulled = learn_points(p_points, q, request.reviewed)
            x = tier_features(a, pulled, p_flags, rule.point_threshold, rule.flag_threshold)
            prior = {t: float(v) for t, v in zip(TIERS, rule.tier.classes(x[None, :])[0], strict=True)}
            probs = learn_from_reviews(prior, request.reviewed)
            tier = Tier(max(probs, key=probs.__getitem__))
            confidence, reason = probs[tier.value], None
        elif flags:
            # The policy: a red flag shown makes the answer poor, however much else it covers. How sure
            # that is, is how sure the strongest flag is.
            tier, confidence, reason = Tier.poor, float(p_flags.max()), None
        else:
            probs = rule.probabilities(a)
            tier = Tier(max(probs, key=probs.__getitem__))
            confidence, reason = probs[tier.value], None
        review = []
        if a.n_words >= ORDER_MIN_WORDS and a.order < rule.guards.order and tier is not Tier.poor:
            # Not graded down: terse technical answers (formulas, lists) can read as disordered too.
            review.append("its word order looks shuffled (a model of prose finds it unlikely)")
        if a.negated > rule.guards.negated and a.negations >= NEGATED_MIN_SENTENCES and tier is not Tier.poor:
            review.append(f"{a.negated:.0%} of its sentences are negated: check that it says what it seems to")

        return Grade(
            question_id=q.id,
            tier=tier,
            justification=_justify(q, tier, covered, missed, flags, a, answer_spans, reason, request.reviewed),
            covered_points=covered,
            missed_points=missed,
            red_flags=flags,
            red_flag_evidence=flag_quotes,
            confidence=round(confidence, 4),
            confidence_source="margin",
            review_reasons=review,
            backend=self.name,
            model=self.model,
            usage=Usage(),
            attempts=1,
            rubric_version=q.fingerprint(),
        )


def learn_from_reviews(
    prior: dict[str, float],
    reviewed: tuple[Reviewed, ...],
    *,
    tau: float = NEIGHBOUR_TAU,
    weight: float = NEIGHBOUR_PRIOR,
) -> dict[str, float]:
    """Tier probabilities from the rule's (`prior`) and the reviewed answers' human tiers, each reviewed
    answer weighted by its similarity: P(t) = (votes(t) + weight * prior(t)) / (all votes + weight), a
    vote being exp((similarity - 1) / tau). Close neighbours decide; distant ones barely move the rule."""
    votes = dict.fromkeys(TIERS, 0.0)
    for r in reviewed:
        similarity = r.similarity if r.similarity is not None else 0.0
        votes[r.tier.value] += float(np.exp((similarity - 1.0) / tau))
    total = sum(votes.values()) + weight
    return {t: (votes[t] + weight * prior[t]) / total for t in TIERS}


def learn_points(
    p_points: np.ndarray,
    question: Question,
    reviewed: tuple[Reviewed, ...],
    *,
    tau: float = NEIGHBOUR_TAU,
    share: float = NEIGHBOUR_POINTS,
) -> np.ndarray:
    """The rule's key-point probabilities (`p_points`, in `question.key_points` order) moved `share` of the
    way towards the reviewed answers' ticks: for each point, the share of them ticked for it, each weighted
    exp((similarity - 1) / tau) relative to the others. Reviewed answers of which none has a tick (a bank
    without point verdicts, such as SAF's) leave the probabilities as they are."""
    ids = [p.id for p in question.key_points]
    if not p_points.size or not reviewed or not any(set(r.covered) & set(ids) for r in reviewed):
        return p_points
    similarity = np.array([r.similarity if r.similarity is not None else 0.0 for r in reviewed])
    weight = np.exp((similarity - similarity.max()) / tau)
    ticked = np.array([[point in r.covered for point in ids] for r in reviewed], dtype=np.float64)
    return (1.0 - share) * p_points + share * (weight @ ticked) / weight.sum()


def guard_rail(a: Analysis, rule: TierRule) -> tuple[float, str] | None:
    """Texts that are not answers are poor whatever they happen to match. Returns (confidence, why)."""
    g = rule.guards

    def margin(value: float, threshold: float, above: bool = False) -> float:
        gap = (value - threshold) if above else (threshold - value)
        return float(np.clip(0.5 + gap / max(abs(threshold), 1e-9), 0.5, 0.99))

    if a.n_words < g.min_words:
        return margin(a.n_words, g.min_words), f"it is too short to be an answer ({counted(a.n_words, 'word')})"
    if a.echo > g.echo:
        return margin(a.echo, g.echo, above=True), "it repeats the question instead of answering it"
    if a.repetition > g.repetition:
        return margin(a.repetition, g.repetition, above=True), "it repeats the same words over and over"
    if a.prose < g.prose:
        return margin(a.prose, g.prose), "it reads as a list of keywords, not an explanation"
    if a.elsewhere > g.elsewhere:
        return (
            margin(a.elsewhere, g.elsewhere, above=True),
            f"it answers another question ({a.elsewhere_id}), not this one",
        )
    if a.topical < g.topic * a.topic_level:
        return margin(a.topical, g.topic * a.topic_level), "it does not address the question (off-topic)"
    return None


def _justify(
    q: Question,
    tier: Tier,
    covered: list[CoveredPoint],
    missed: list[str],
    flags: list[str],
    a: Analysis,
    answer_spans: list[Span],
    guard_reason: str | None,
    reviewed: tuple[Reviewed, ...] = (),
) -> str:
    n = len(q.key_points)
    parts = []
    if guard_reason:
        parts.append(f"Graded poor because {guard_reason}.")
    if not n:
        parts.append("The rubric has no key points for this question: the tier rests on the references alone.")
    elif covered:
        listed = "; ".join(f'{c.id} ("{_clip(c.evidence or "")}")' for c in covered)
        parts.append(f"Covers {len(covered)} of {n} key points: {listed}.")
    else:
        parts.append(f"Covers none of the {n} key points.")
    if missed and covered:  # by id: every view lists the points' texts (and "covers none" names them all)
        parts.append(f"Misses {len(missed)}: {', '.join(missed)}.")
    if flags:
        shown = [
            f'{fid} ("{_clip(answer_spans[int(a.flags.best[k])].text)}")'
            for k, f in enumerate(q.red_flags)
            for fid in [f.id]
            if fid in flags
        ]
        parts.append("Red flags: " + "; ".join(shown) + ".")
    else:
        parts.append("No red flags.")
    if reviewed and not guard_reason:
        closest = sorted(reviewed, key=lambda r: -(r.similarity or 0.0))
        like = ", ".join(f"{r.tier.value} ({r.similarity or 0:.2f})" for r in closest)
        parts.append(f"Reviewed answers most like it (similarity): {like}.")
    if not guard_reason:
        parts.append(f"Overall {tier.value}.")
    return " ".join(parts)


def _clip(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class NearestReferenceBackend(LocalBackend):
    """The floor every quality claim is measured against: the tier of the most similar exemplar (same
    embedder, whole answer against whole exemplar), and nothing else. A grader that cannot beat this
    has learnt nothing from the rubric."""

    name = "nearest"

    def cache_key(self, rubric: Rubric | None = None) -> str:  # noqa: ARG002 - the floor reads no other question
        return f"{self.name}:{self.model}"

    def _grade(self, request: GradeRequest, a: Analysis, answer_spans: list[Span]) -> Grade:  # noqa: ARG002
        q = request.question
        sims = a.tier_similarity
        tier = Tier(max(sims, key=sims.__getitem__)) if sims else Tier.mediocre
        return Grade(
            question_id=q.id,
            tier=tier,
            justification=f"Most similar to the {tier.value} reference answer (cosine {sims.get(tier.value, 0):.2f}).",
            missed_points=[p.id for p in q.key_points],
            confidence=None,
            backend=self.name,
            model=self.model,
            usage=Usage(),
            attempts=1,
            rubric_version=q.fingerprint(),
        )
