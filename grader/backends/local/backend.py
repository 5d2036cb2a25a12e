"""The embedded offline backend: grades with a small sentence-embedding model, no key, no network.

For each answer: cut it into spans (sentences and clauses), embed them, and match every key point and
red flag against its best span; a key point is covered when that similarity passes a calibrated
threshold, and the span is its evidence. The tier comes from coverage and red flags through a small
fitted rule (`rule.py`), after guard rails that keep empty, off-topic and keyword-list answers poor.

Requests that arrive together (a batch, or `asyncio.gather` over many answers) are embedded in one
model call: `grade()` queues the request and the queue is flushed on the next turn of the event loop.
Each rubric question's key points, red flags and exemplars are embedded once and cached.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.backends.base import Backend, GradeRequest
from grader.backends.local.embedder import Embedder
from grader.backends.local.rule import Analysis, TierRule
from grader.backends.local.text import Span, prose_ratio, spans, words
from grader.grade import CoveredPoint, Grade, Tier, Usage
from grader.rubric import Question

MAX_BATCH_ANSWERS = 256


@dataclass(frozen=True)
class _Anchors:
    points: np.ndarray  # (K, d)
    flags: np.ndarray  # (F, d)
    topic: np.ndarray  # (1 + exemplars, d): the question text and the reference answers shown


class LocalBackend(Backend):
    name = "local"
    stochastic = False
    default_concurrency = MAX_BATCH_ANSWERS

    def __init__(self, *, model_path: Path | None = None, rule: TierRule | None = None) -> None:
        self.embedder = Embedder.load(model_path)
        self._rule = rule
        self._anchors: dict[str, _Anchors] = {}
        self._pending: list[tuple[GradeRequest, asyncio.Future[Grade]]] = []
        self._flushing = False

    @property
    def model(self) -> str:
        return self.embedder.model_id

    def cache_key(self) -> str:
        return f"{super().cache_key()}:rule={self.rule.fingerprint}"

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
        try:
            while self._pending:
                chunk, self._pending = self._pending[:MAX_BATCH_ANSWERS], self._pending[MAX_BATCH_ANSWERS:]
                try:
                    grades = await asyncio.to_thread(self.grade_many, [r for r, _ in chunk])
                except Exception as exc:  # every waiter learns why, none hangs
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
        """Grade many answers with one embedding call for all their spans."""
        analysed = self.analyse_many(requests)
        return [self._grade(r, a, s) for r, (a, s) in zip(requests, analysed, strict=True)]

    def analyse_many(self, requests: list[GradeRequest]) -> list[tuple[Analysis, list[Span]]]:
        cut = [spans(r.answer) or [Span(r.answer, 0, len(r.answer))] for r in requests]
        texts = [s.text for answer_spans in cut for s in answer_spans] + [r.answer for r in requests]
        vectors = self.embedder.embed(texts)
        whole = vectors[len(texts) - len(requests) :]
        out, offset = [], 0
        for i, request in enumerate(requests):
            span_vecs = vectors[offset : offset + len(cut[i])]
            offset += len(cut[i])
            anchors = self._anchors_for(request)
            point_sims = anchors.points @ span_vecs.T if len(anchors.points) else np.zeros((0, len(cut[i])))
            flag_sims = anchors.flags @ span_vecs.T if len(anchors.flags) else np.zeros((0, len(cut[i])))
            analysis = Analysis(
                point_best=point_sims.max(axis=1) if point_sims.size else np.zeros(len(anchors.points)),
                point_span=point_sims.argmax(axis=1) if point_sims.size else np.zeros(len(anchors.points), int),
                flag_best=flag_sims.max(axis=1) if flag_sims.size else np.zeros(len(anchors.flags)),
                flag_span=flag_sims.argmax(axis=1) if flag_sims.size else np.zeros(len(anchors.flags), int),
                topical=float((anchors.topic @ whole[i]).max()),
                prose=prose_ratio(request.answer),
                n_words=len(words(request.answer)),
            )
            out.append((analysis, cut[i]))
        return out

    def _anchors_for(self, request: GradeRequest) -> _Anchors:
        q = request.question
        exemplars = [text for _, text in request.reference_answers]
        key = hashlib.sha256("\x00".join([q.fingerprint(), *exemplars]).encode()).hexdigest()
        anchors = self._anchors.get(key)
        if anchors is None:
            points = [p.text for p in q.key_points]
            flags = [f.text for f in q.red_flags]
            vecs = self.embedder.embed([*points, *flags, q.text, *exemplars])
            anchors = _Anchors(
                points=vecs[: len(points)],
                flags=vecs[len(points) : len(points) + len(flags)],
                topic=vecs[len(points) + len(flags) :],
            )
            self._anchors[key] = anchors
        return anchors

    def _grade(self, request: GradeRequest, a: Analysis, answer_spans: list[Span]) -> Grade:
        q, rule = request.question, self.rule
        covered = [
            CoveredPoint(id=p.id, evidence=answer_spans[int(a.point_span[k])].text)
            for k, p in enumerate(q.key_points)
            if a.point_best[k] >= rule.cover_threshold
        ]
        covered_ids = {c.id for c in covered}
        missed = [p.id for p in q.key_points if p.id not in covered_ids]
        flags = [f.id for k, f in enumerate(q.red_flags) if a.flag_best[k] >= rule.flag_threshold]

        guard = _guard_rail(a, rule)
        if guard is not None:
            tier, confidence, reason = Tier.poor, guard[0], guard[1]
        else:
            probs = rule.probabilities(a)
            tier = Tier(max(probs, key=probs.__getitem__))
            confidence, reason = probs[tier.value], None

        return Grade(
            question_id=q.id,
            tier=tier,
            justification=_justify(q, tier, covered, missed, flags, a, answer_spans, reason),
            covered_points=covered,
            missed_points=missed,
            red_flags=flags,
            confidence=round(confidence, 4),
            confidence_source="margin",
            backend=self.name,
            model=self.model,
            usage=Usage(),
            attempts=1,
            rubric_version=q.fingerprint(),
        )


def _guard_rail(a: Analysis, rule: TierRule) -> tuple[float, str] | None:
    """Answers that are not answers are poor whatever they happen to match. Returns (confidence, why)."""

    def margin(value: float, threshold: float) -> float:
        return float(np.clip(0.5 + (threshold - value) / max(threshold, 1e-9), 0.5, 0.99))

    if a.n_words < rule.min_words:
        return margin(a.n_words, rule.min_words), f"it is too short to be an answer ({a.n_words} words)"
    if a.topical < rule.topic_threshold:
        return margin(a.topical, rule.topic_threshold), "it does not address the question (off-topic)"
    if a.prose < rule.prose_threshold:
        return margin(a.prose, rule.prose_threshold), "it reads as a list of keywords, not an explanation"
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
) -> str:
    texts = {p.id: p.text for p in [*q.key_points, *q.red_flags]}
    n = len(q.key_points)
    parts = []
    if guard_reason:
        parts.append(f"Graded poor because {guard_reason}.")
    if covered:
        listed = "; ".join(f'{c.id} ("{_clip(c.evidence or "")}")' for c in covered)
        parts.append(f"Covers {len(covered)} of {n} key points: {listed}.")
    else:
        parts.append(f"Covers none of the {n} key points.")
    if missed:
        parts.append("Misses: " + "; ".join(f"{pid} ({texts[pid].rstrip('.')})" for pid in missed) + ".")
    if flags:
        shown = [
            f'{fid} ("{_clip(answer_spans[int(a.flag_span[k])].text)}")'
            for k, f in enumerate(q.red_flags)
            for fid in [f.id]
            if fid in flags
        ]
        parts.append("Red flags: " + "; ".join(shown) + ".")
    else:
        parts.append("No red flags.")
    if not guard_reason:
        parts.append(f"Overall {tier.value}.")
    return " ".join(parts)


def _clip(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
