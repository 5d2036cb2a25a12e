"""What the engine applies to every answer: input checks, the combination of repeated samples, and the
review policy every backend shares."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable

from grader.backends.prompts import addressed_to_grader, visible
from grader.config import DEFAULT_MAX_ANSWER_CHARS
from grader.errors import AnswerTooLongError, EmptyAnswerError, EncodingError, GraderError, GradingFailedError
from grader.grading.contract import Grade, Tier, Usage
from grader.rubric import Question
from grader.textfiles import not_text

SAMPLE_TEMPERATURE = 0.7
#: The most a grade of a question without key points may claim: a coin toss between two tiers.
NO_POINTS_CONFIDENCE = 0.5

#: The review reason of a grade whose question has unreviewed draft points (eval reports count it apart).
DRAFT_REASON = "the rubric question has unreviewed draft points"


def check_answer(answer: str, *, max_chars: int = DEFAULT_MAX_ANSWER_CHARS, where: str = "answer") -> str:
    """Reject what cannot be graded: text that is not text, an empty answer, or one over the size limit.

    Not text is a lone UTF-16 surrogate (JSON's `"\\ud83d"`, half of an emoji an exporter cut; bytes that
    are not UTF-8 on the command line): UTF-8 cannot encode it, so no cache key, prompt or output could
    hold it. A NUL character is binary data (a file holding one is refused as not text); from JSON or Python
    it was graded. Both are refused as not UTF-8 text (exit 7, failure kind `not_text`)."""
    if found := not_text(answer):
        what, at = found
        raise EncodingError(f"{where}: not UTF-8 text ({what} at character {at})")
    if not answer.strip():
        raise EmptyAnswerError(f"{where} is empty")
    if not visible(answer).strip():  # zero-width spaces and soft hyphens alone: the model would see nothing
        raise EmptyAnswerError(f"{where} is empty (only invisible characters)")
    if len(answer) > max_chars:
        raise AnswerTooLongError(
            f"{where} is {len(answer):,} characters; the limit is {max_chars:,}",
            hint="raise it with --max-answer-chars or GRADER_MAX_ANSWER_CHARS (max_answer_chars= in Python)",
        )
    return answer


def sampled(results: list[Grade | BaseException]) -> tuple[list[Grade], Usage, int]:
    """The samples that gave a grade, and the tokens and model calls of all of them, failed ones too (they
    were paid for). An error that is no grading failure is raised; so is the failure when every sample
    failed, counting every sample's calls."""
    grades = [r for r in results if isinstance(r, Grade)]
    failures = [r for r in results if not isinstance(r, Grade)]
    for failure in failures:
        if not isinstance(failure, GraderError):
            raise failure
    failed = [f for f in failures if isinstance(f, GradingFailedError)]
    usage = sum((g.usage for g in grades), Usage()) + sum((f.usage or Usage() for f in failed), Usage())
    attempts = sum(g.attempts for g in grades) + sum(f.attempts for f in failed)
    if not grades:
        first = failures[0]
        if not isinstance(first, GradingFailedError):
            raise first
        raise GradingFailedError(
            f"every one of {len(results)} samples failed ({attempts} requests); the first: {first.message}",
            attempts=attempts,
            usage=usage,
            last_output=first.last_output,
            kind=first.failure_kind,
            hint=first.hint,
        )
    return grades, usage, attempts


def combine_samples(results: list[Grade | BaseException]) -> Grade:
    """The majority grade, with confidence = share of samples agreeing (failed samples disagree)."""
    grades, usage, attempts = sampled(results)
    failures = [r for r in results if not isinstance(r, Grade)]
    counts = Counter(g.tier for g in grades)
    # Ties go to the lower tier: a grader that cannot decide should not inflate.
    majority = max(counts, key=lambda t: (counts[t], -t.rank))
    chosen = next(g for g in grades if g.tier == majority)
    tally = ", ".join(f"{t.value} {counts[t]}" for t in Tier if counts[t])
    notes = [*chosen.notes, f"{len(results)} samples: {tally}" + (f", failed {len(failures)}" if failures else "")]
    return chosen.model_copy(
        update={
            "confidence": round(counts[majority] / len(results), 4),
            "confidence_source": "samples",
            "usage": usage,
            "attempts": attempts,
            "notes": notes,
        }
    )


#: An answer copies a reference when at least this share of its runs of `COPY_RUN` words are the reference's.
COPIED_SHARE = 0.5
COPY_RUN = 8


def copied_reference(answer: str, references: Iterable[tuple[str, str]]) -> tuple[str, float, bool] | None:
    """The reference (its tier) the answer copies most; the share of the answer's runs of eight words found
    in the references, all of them together (an answer pasted from two references is a copy too); and
    whether that one reference holds them all. None under `COPIED_SHARE`, or for an answer under eight
    words. A leaked or pasted reference is graded as what it is, a reference, and a person should know (a
    word-for-word copy of the great one was graded great at 0.95 with no note)."""
    runs = _runs(answer)
    if not runs:
        return None
    found = [(tier, runs & _reference_runs(text)) for tier, text in references]
    if not found:
        return None
    together = set().union(*(hits for _, hits in found))
    tier, most = max(found, key=lambda f: len(f[1]))
    share = len(together) / len(runs)
    return (tier, share, most == together) if share >= COPIED_SHARE else None


#: Scripts written without spaces (Japanese kana, Chinese, Korean): a copied Chinese reference is one long
#: "word" to `\w+`, and was never found, so each of their characters is a word here.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(f"[{_UNSPACED}]|[^\\W{_UNSPACED}]+")


#: An answer this much shorter than the shortest reference it was graded with is too little to grade above
#: poor with any certainty (trial M: an 8-word answer graded mediocre at 0.99). On answers-dev it sends one
#: grade of 120 to review (11 words against 55); no stories-dev answer is under half its shortest reference.
SHORT_SHARE = 0.25


def words(text: str) -> int:
    """The words of a text, as the copy check counts them (a character each in Chinese, Japanese, Korean)."""
    return len(_TOKEN.findall(text))


@functools.lru_cache(maxsize=1024)
def _reference_words(text: str) -> int:
    """A reference's words, counted once: every grade of a question compares its answer with the same texts."""
    return words(text)


@functools.lru_cache(maxsize=1024)
def _reference_runs(text: str) -> frozenset[tuple[str, ...]]:
    """A reference's runs, read once: every grade of a question compares its answer with the same texts."""
    return frozenset(_runs(text))


def _runs(text: str) -> set[tuple[str, ...]]:
    words = _TOKEN.findall(text.casefold())
    return {tuple(words[i : i + COPY_RUN]) for i in range(len(words) - COPY_RUN + 1)}


def apply_review_policy(
    grade: Grade,
    question: Question,
    threshold: float,
    *,
    answer: str | None = None,
    references: Iterable[tuple[str, str]] | None = None,
) -> Grade:
    """Flag grades a human should read: low confidence, a tier the points contradict, an answer that
    speaks to the grader or copies a reference (`references`, the (tier, text) pairs the grader was shown;
    the question's own by default), unreviewed drafts."""
    reasons = list(grade.review_reasons)
    notes = list(grade.notes)
    if answer is not None and (addressed := addressed_to_grader(answer)):
        shown = "; ".join(dict.fromkeys(" ".join(a.split())[:40] for a in addressed))
        reasons.append(f"the answer contains text addressed to the grader ({shown})")
    shown_refs = list(question.references.items()) if references is None else list(references)
    if answer is not None and (copy := copied_reference(answer, shown_refs)) is not None:
        tier, share, alone = copy
        percent = math.floor(share * 100)  # 99.6 % is not all of it
        what = f"the {tier} reference" if alone else f"the references (the {tier} one most)"
        reasons.append(f"{percent}% of the answer is {what} it was graded with, word for word")
    if answer is not None and grade.tier is not Tier.poor and shown_refs:
        shortest = min(_reference_words(text) for _, text in shown_refs)
        if (length := words(answer)) < SHORT_SHARE * shortest:
            reasons.append(
                f"graded {grade.tier.value} on {length} word{'' if length == 1 else 's'}, under a quarter of the "
                f"shortest reference it was graded with ({shortest}): little to go on"
            )
    if grade.confidence is not None and grade.confidence < threshold:
        shown, limit = distinct(grade.confidence, threshold)
        reasons.append(f"confidence {shown} is below the review threshold {limit}")
    update: dict[str, object] = {}
    if not question.key_points:
        reasons.append(
            "the rubric question has no key points, so nothing backs the tier (add them: `grader rubric draft`)"
        )
        if grade.confidence is not None and grade.confidence > NO_POINTS_CONFIDENCE:
            # Nothing in the rubric backs the tier: the grade must not sound sure, whatever the backend says.
            notes.append(f"confidence {grade.confidence:.2f} capped at {NO_POINTS_CONFIDENCE}: no key points")
            update["confidence"] = NO_POINTS_CONFIDENCE
    n_points, covered = len(question.key_points), len(grade.covered_points)
    if not (grade.covered_points or grade.missed_points):
        n_points = 0  # a tier-only judge gave no per-point verdicts: nothing for the tier to contradict
    half = math.ceil(n_points / 2)
    if grade.tier is not Tier.poor and grade.red_flags:
        reasons.append(f"graded {grade.tier.value} but shows red flag(s) {', '.join(grade.red_flags)}")
    if grade.tier is not Tier.poor and n_points and not covered:
        reasons.append(f"graded {grade.tier.value} but covers none of the {n_points} key points")
    elif grade.tier is Tier.poor and n_points and not covered and not grade.red_flags and not _says_why(grade):
        # Poor by absence alone: an answer that says the points in words the grader did not match looks
        # the same, so a person checks (a red flag, or a stated reason such as off-topic, is evidence).
        reasons.append(f"graded poor on no evidence: covers none of the {n_points} key points and shows no red flag")
    elif grade.tier is Tier.great and n_points and covered < half:
        reasons.append(f"graded great but covers only {covered} of {n_points} key points (great needs {half})")
    elif grade.tier is Tier.mediocre and n_points >= 2 and covered == n_points and not grade.red_flags:
        # Every point and no flag is what great asks for: the tier disagrees with its own evidence.
        reasons.append(f"graded mediocre although it covers all {n_points} key points and shows no red flag")
    if grade.tier is Tier.poor and n_points and covered >= half:
        if not grade.red_flags:
            reasons.append(f"graded poor although it covers {covered} of {n_points} key points and shows no red flag")
        else:
            # Poor on a red flag against most of the points: the flag is the whole case, and a match on a
            # sentence that says the opposite ("I never ...") looks the same to a matcher.
            reasons.append(
                f"graded poor for red flag(s) {', '.join(grade.red_flags)} although it covers {covered} of "
                f"{n_points} key points"
            )
    if question.draft_ids:
        reasons.append(DRAFT_REASON)
        notes.append("unreviewed draft points used: " + ", ".join(question.draft_ids))
    return grade.model_copy(update={**update, "needs_review": bool(reasons), "review_reasons": reasons, "notes": notes})


#: How a grade states a reason of its own for being poor (the local backend's guard rails: too short,
#: off-topic, another question's answer, a list of keywords): evidence that is not a key point or red flag.
POOR_BECAUSE = "Graded poor because "


def _says_why(grade: Grade) -> bool:
    """Whether the grade gives its own reason for being poor (see POOR_BECAUSE)."""
    return grade.justification.startswith(POOR_BECAUSE)


def distinct(value: float, threshold: float) -> tuple[str, str]:
    """Both numbers with the fewest decimals (two at least) that tell them apart, so a confidence just
    under the threshold never prints as equal to it (0.5956 against 0.6: `0.596` and `0.600`)."""
    for digits in range(2, 16):
        shown, limit = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if shown != limit:
            return shown, limit
    return repr(value), repr(threshold)
