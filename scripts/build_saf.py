"""Build the SAF eval suites (`evals/saf/saf-ua.json`, `evals/saf/saf-uq.json`) and the training answers of
saf-ua's questions as reviewed answers (`evals/saf/saf-train.json`) from the SAF v2.0 XML files.

SAF (Short Answer Feedback, Filighera et al., ACL 2022; MIT) holds real, human-graded short answers from a
communication-networks course: one XML file per question, each answer with a score, a 3-level label and a
written feedback. See `evals/saf/SOURCE.md` for what this script keeps and how.

    python scripts/build_saf.py [SAF2_0_DIR] [--out DIR] [--train-only]

SAF2_0_DIR defaults to /work/shared/benchmarks/saf/SAF2_0 and must hold training/, unseen_answers/ and
unseen_questions/. The output is deterministic: rerunning on the same data gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from grader.eval.cases import Suite
from grader.grading.reviews import ReviewsFile
from grader.rubric import Question, References
from grader.rubric.draft import draft_by_splitting

DEFAULT_SRC = Path("/work/shared/benchmarks/saf/SAF2_0")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "evals" / "saf"
LABELS = {"Correct": "great", "Partially correct": "mediocre", "Incorrect": "poor"}
MIN_ANCHOR_WORDS = 8
GREAT_EXEMPLARS = 2
SOURCE = (
    "SAF v2.0 (Short Answer Feedback, English), https://github.com/SebOchs/SAF @ 09949e912d26, MIT; "
    "Filighera et al., ACL 2022. See evals/saf/SOURCE.md."
)

# German-looking: more German than English function words (SAF's English set has a few German answers;
# they are kept as cases but never chosen as anchors or exemplars).
_DE = set(
    "der die das und ist nicht ein eine einen einem dem den des wird werden mit auf für von zu sich auch bei oder "
    "wenn kann können sind wir ich nur noch weil dass daß über durch zwischen wie wurde hat haben".split()
)
_EN = set("the and is of to a an in that it are be for with this not can on".split())


@dataclass(frozen=True)
class Answer:
    id: str
    response: str
    feedback: str
    score: float
    label: str  # SAF label, stripped


@dataclass(frozen=True)
class SafQuestion:
    sid: str  # SAF question id, e.g. "10.1_TC"
    text: str
    reference: str
    answers: tuple[Answer, ...]


def natural_key(s: str) -> tuple:
    """`4.3` < `4.3_LM` < `4.13` < `10.1_TC`; answer ids `x.9` < `x.10`."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.findall(r"\d+|[^\d]+", s))


def slug(sid: str) -> str:
    return "saf-" + "-".join(re.findall(r"[a-z0-9]+", sid.lower()))


def german_looking(text: str) -> bool:
    words = re.findall(r"[a-zäöüß]+", text.lower())
    de = sum(w in _DE for w in words)
    return de > 0 and de > sum(w in _EN for w in words)


def usable_anchor(a: Answer) -> bool:
    return len(a.response.split()) >= MIN_ANCHOR_WORDS and not german_looking(a.response)


def read_question(path: Path) -> SafQuestion:
    root = ET.parse(path).getroot()
    refs = root.findall("./referenceAnswers/referenceAnswer")
    if len(refs) != 1:
        raise SystemExit(f"{path}: expected one referenceAnswer, found {len(refs)}")
    answers = []
    for sa in root.findall("./studentAnswers/studentAnswer"):
        label = (sa.findtext("verification_feedback") or "").strip()
        if label not in LABELS:
            raise SystemExit(f"{path}: answer {sa.get('id')}: unknown label {label!r}")
        answers.append(
            Answer(
                id=sa.get("id") or "",
                response=(sa.findtext("response") or "").strip(),
                feedback=(sa.findtext("response_feedback") or "").strip(),
                score=float((sa.findtext("score") or "").strip()),
                label=label,
            )
        )
    answers.sort(key=lambda a: natural_key(a.id))
    return SafQuestion(
        sid=root.get("id") or path.stem,
        text=" ".join((root.findtext("questionText") or "").split()),
        reference=(refs[0].text or "").strip(),
        answers=tuple(answers),
    )


def read_split(folder: Path) -> dict[str, SafQuestion]:
    files = sorted(folder.glob("*.xml"), key=lambda p: natural_key(p.stem))
    if not files:
        raise SystemExit(f"{folder}: no XML files")
    out = {}
    for f in files:
        q = read_question(f)
        if q.sid != f.stem:
            raise SystemExit(f"{f}: question id {q.sid!r} differs from the file name")
        out[q.sid] = q
    return out


def same_text(text: str) -> str:
    return " ".join(text.split()).lower()


def first(
    answers: tuple[Answer, ...], label: str, n: int = 1, full: float | None = None, avoid: frozenset[str] = frozenset()
) -> list[Answer]:
    """The first n training answers (by id) with this label that are long enough, not German-looking, and not
    a copy of a test answer (SAF has some verbatim duplicates across splits; `avoid` holds their `same_text`)."""
    picked = [
        a
        for a in answers
        if a.label == label
        and usable_anchor(a)
        and (full is None or a.score == full)
        and same_text(a.response) not in avoid
    ]
    return picked[:n]


def build_question(number: int, q: SafQuestion, mediocre: str | None, poor: str | None) -> dict:
    refs = References(great=q.reference, mediocre=mediocre, poor=poor)
    question = Question(id=slug(q.sid), number=number, text=q.text, references=refs)
    key_points, red_flags = draft_by_splitting(question)
    if poor is None:
        red_flags = []
    return {
        "id": question.id,
        "number": number,
        "text": q.text,
        "references": refs.model_dump(exclude_none=True),
        "key_points": [p.model_copy(update={"draft": False}).model_dump() for p in key_points],
        "red_flags": [p.model_copy(update={"draft": False}).model_dump() for p in red_flags],
    }


def build_case(a: Answer, qid: str, max_score: float, split: str, exemplars: list[dict] | None) -> dict:
    case: dict = {
        "id": a.id,
        "question": qid,
        "answer": a.response,
        "label": LABELS[a.label],
        "kind": "saf",
        "meta": {"score": a.score, "max_score": max_score, "split": split, "feedback": a.feedback},
    }
    if exemplars is not None:
        case["exemplars"] = exemplars
    return case


def build_suite(
    split: str, tests: dict[str, SafQuestion], training: dict[str, SafQuestion], max_scores: dict[str, float]
) -> tuple[dict, list[str]]:
    questions, cases, notes, skipped = [], [], [], 0
    for number, (sid, q) in enumerate(tests.items(), start=1):
        exemplars = None
        if split == "ua":
            train = training[sid]
            if train.reference != q.reference or train.text != q.text:
                raise SystemExit(f"{sid}: training and unseen_answers disagree on the question or reference")
            avoid = frozenset(same_text(a.response) for a in q.answers)
            mediocre = first(train.answers, "Partially correct", avoid=avoid)
            poor = first(train.answers, "Incorrect", avoid=avoid)
            greats = first(train.answers, "Correct", GREAT_EXEMPLARS, full=max_scores[sid], avoid=avoid)
            questions.append(
                build_question(
                    number, q, mediocre[0].response if mediocre else None, poor[0].response if poor else None
                )
            )
            exemplars = [{"tier": "great", "text": q.reference}]
            exemplars += [{"tier": "great", "text": a.response} for a in greats]
            exemplars += [{"tier": "mediocre", "text": a.response} for a in mediocre]
            exemplars += [{"tier": "poor", "text": a.response} for a in poor]
            notes.append(
                f"{slug(sid)}: great exemplars {['official', *(a.id for a in greats)]}, "
                f"mediocre anchor {mediocre[0].id if mediocre else None}, poor anchor {poor[0].id if poor else None}"
            )
        else:
            questions.append(build_question(number, q, None, None))
        for a in q.answers:
            if not a.response:
                skipped += 1
                continue
            cases.append(build_case(a, slug(sid), max_scores[sid], split, exemplars))
    print(f"{split}: skipped {skipped} empty answers")
    n_q, n_c = len(questions), len(cases)
    description = (
        f"SAF v2.0 {'unseen answers' if split == 'ua' else 'unseen questions'}: {n_c} real student answers to {n_q} "
        "communication-networks questions, human-graded (Correct/Partially correct/Incorrect -> great/mediocre/poor). "
        + (
            "Rubric: official reference as great, one training answer each as mediocre and poor anchors; cases carry "
            "the official reference plus up to two full-score training answers as great exemplars."
            if split == "ua"
            else "Zero-shot: only the official reference answer, no anchors or exemplars."
        )
    )
    suite = {
        "name": f"saf-{split}",
        "description": description,
        "rubric": {"name": f"saf-{split}", "description": description, "source": SOURCE, "questions": questions},
        "cases": cases,
    }
    return suite, notes


def write(suite: dict, path: Path) -> None:
    Suite.model_validate(suite)  # fail here, not in the tests
    _write_json(suite, path)


def _write_json(data: dict, path: Path) -> None:
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(blob, encoding="utf-8")
    tmp.replace(path)


def build_training(training: dict[str, SafQuestion], ua: dict[str, SafQuestion]) -> dict:
    """SAF's training answers to saf-ua's questions, as a file of reviewed answers
    (`grader.grading.reviews.load_reviews`): what learning from reviews is measured with on saf-ua."""
    ids = {slug(sid) for sid in ua}
    answers = [
        {"id": a.id, "question": slug(sid), "answer": a.response, "tier": LABELS[a.label]}
        for sid, q in training.items()
        if slug(sid) in ids
        for a in q.answers
        if a.response
    ]
    return {
        "name": "saf-train",
        "description": f"SAF v2.0 training split: {len(answers)} human-graded answers to the {len(ids)} saf-ua "
        "questions (Correct/Partially correct/Incorrect -> great/mediocre/poor), as reviewed answers.",
        "source": SOURCE,
        "answers": answers,
    }


def write_reviews(reviews: dict, path: Path) -> None:
    ReviewsFile.model_validate(reviews)  # fail here, not in the benchmark
    _write_json(reviews, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", nargs="?", type=Path, default=DEFAULT_SRC, help="the SAF2_0 folder")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to write saf-ua.json, saf-uq.json and saf-train.json"
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="write only saf-train.json (the suites' key points come from draft_by_splitting, which may have "
        "changed since they were built)",
    )
    args = parser.parse_args(argv)

    training = read_split(args.src / "training")
    ua = read_split(args.src / "unseen_answers")
    uq = read_split(args.src / "unseen_questions")
    if set(ua) != set(training):
        raise SystemExit("unseen_answers and training do not cover the same questions")
    if set(uq) & set(training):
        raise SystemExit("unseen_questions overlap training")
    max_scores: dict[str, float] = {}
    for split in (training, ua, uq):
        for sid, q in split.items():
            max_scores[sid] = max([max_scores.get(sid, 0.0), *(a.score for a in q.answers)])

    reviews = build_training(training, ua)
    path = args.out / "saf-train.json"
    write_reviews(reviews, path)
    labels = Counter(a["tier"] for a in reviews["answers"])
    print(
        f"{path}: {len(reviews['answers'])} reviewed answers (great {labels['great']}, mediocre "
        f"{labels['mediocre']}, poor {labels['poor']}); {path.stat().st_size:,} bytes"
    )
    if args.train_only:
        return 0
    for split, tests in (("ua", ua), ("uq", uq)):
        suite, notes = build_suite(split, tests, training, max_scores)
        path = args.out / f"saf-{split}.json"
        write(suite, path)
        labels = Counter(c["label"] for c in suite["cases"])
        german = sum(german_looking(c["answer"]) for c in suite["cases"])
        points = [len(q["key_points"]) for q in suite["rubric"]["questions"]]
        flags = sum(len(q["red_flags"]) for q in suite["rubric"]["questions"])
        print(
            f"{path}: {len(suite['rubric']['questions'])} questions, {len(suite['cases'])} cases "
            f"(great {labels['great']}, mediocre {labels['mediocre']}, poor {labels['poor']}); "
            f"{german} German-looking answers; key points per question {min(points)}-{max(points)} "
            f"(total {sum(points)}), red flags {flags}; {path.stat().st_size:,} bytes"
        )
        for note in notes:
            print("  " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
