"""Fit the checklist rule for one chat model on the dev half of the `answers` suite.

    # 1. collect the model's raw verdicts (resumable: answers already in the file are skipped)
    python scripts/fit_checklist.py collect --base-url http://127.0.0.1:8765/v1 \
        --model qwen2.5-coder-1.5b-instruct --out evals/llm/checklist-dev-qwen2.5-coder-1.5b.jsonl
    # 2. fit the rule from them (no model needed), write it beside the packaged rules
    python scripts/fit_checklist.py fit evals/llm/checklist-dev-qwen2.5-coder-1.5b.jsonl \
        --name qwen2.5-coder-1.5b

Only the dev half is read (`answers-dev`): the test half is never looked at while fitting. `collect`
visits questions one at a time (so a single-slot server reuses each question's prompt prefix), and
within a question takes the answers round-robin over the tiers, so `--per-question 6` is a balanced
subset. `fit` grid-searches the rule's thresholds for tier accuracy (QWK breaks ties), reports
leave-one-question-out accuracy so the in-sample figure is not the only one, then fits the confidence
temperature by log-loss, and writes the rule JSON plus a FIT note.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from grader.backends.checklist import RULES_DIR, ChecklistRule, Item, Verdict, read_probabilities
from grader.backends.openai import OpenAIBackend
from grader.backends.retry import RetryPolicy
from grader.eval.report import _qwk
from grader.eval.suites import answers_suite
from grader.grading.contract import GradeRequest, Tier


def _order(cases: list) -> list:  # noqa: ANN001
    by_question: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for case in cases:
        by_question[case.question][case.label.value].append(case)
    ordered = []
    for question in by_question.values():
        rounds = itertools.zip_longest(*(question[t] for t in ("great", "mediocre", "poor")))
        ordered.append([c for round_ in rounds for c in round_ if c is not None])
    return ordered


async def collect(args: argparse.Namespace) -> None:
    suite = answers_suite("dev")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()}
    backend = OpenAIBackend(
        model=args.model,
        base_url=args.base_url,
        timeout=args.timeout,
        mode="checklist",
        per_item=args.per_item,
        policy=RetryPolicy(attempts=2, reasks=1),
    )
    try:
        per_question = _order(suite.cases)
        for round_start in range(0, max(len(q) for q in per_question), args.per_question):
            for question_cases in per_question:
                for case in question_cases[round_start : round_start + args.per_question]:
                    if case.id in done:
                        continue
                    if args.limit and len(done) >= args.limit:
                        return
                    question = suite.rubric.find(case.question)
                    request = GradeRequest(question, case.answer)
                    started = time.perf_counter()
                    try:
                        if args.per_item:
                            verdicts, usage, attempts = await backend.item_verdicts(request)
                        else:
                            answered = await backend.ask(
                                backend.conversation(request), request, backend.checker(request)
                            )
                            verdicts = answered.check.verdicts  # type: ignore[attr-defined]
                            read_probabilities(verdicts, answered.completion.logprobs)
                            usage, attempts = answered.usage, answered.attempts
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        record = {"id": case.id, "question": case.question, "error": str(exc)}
                    else:
                        record = {
                            "id": case.id,
                            "question": case.question,
                            "label": case.label.value,
                            "covered": case.covered,
                            "red_flags": case.red_flags,
                            "verdicts": [
                                {
                                    "id": v.item.id,
                                    "flag": v.item.flag,
                                    "yes": v.yes,
                                    "p": v.probability,
                                    "quote": v.quote,
                                    "quote_found": v.quote_found,
                                }
                                for v in verdicts
                            ],
                            "usage": usage.model_dump(),
                            "attempts": attempts,
                        }
                    record["seconds"] = round(time.perf_counter() - started, 2)
                    with out.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    done.add(case.id)
                    print(f"{len(done):4d} {case.id} {record.get('seconds')} s", file=sys.stderr, flush=True)
    finally:
        await backend.aclose()


# --- fitting --------------------------------------------------------------------------------------------


def load_records(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if "verdicts" in r]


def verdicts_of(record: dict) -> list[Verdict]:
    return [
        Verdict(Item(v["id"], v["id"], "", v["flag"]), v["yes"], v["p"], v["quote"], v["quote_found"])
        for v in record["verdicts"]
    ]


GRID = {
    "point_threshold": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7],
    "flag_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01],
    "great_share": [0.25, 0.34, 0.4, 0.5, 0.6, 0.75],
    "min_points": [1, 2],
    "unquoted_counts": [True, False],
}


def score(rule: ChecklistRule, data: list[tuple[list[Verdict], str]]) -> tuple[float, float]:
    truth = [label for _, label in data]
    pred = [rule.tier(v).value for v, _ in data]
    acc = sum(a == b for a, b in zip(truth, pred, strict=True)) / len(data)
    return acc, _qwk(truth, pred) or 0.0


def best_rule(data: list[tuple[list[Verdict], str]], base: ChecklistRule) -> tuple[ChecklistRule, tuple[float, float]]:
    best, best_score = base, (-1.0, -1.0)
    names = list(GRID)
    for values in itertools.product(*(GRID[n] for n in names)):
        rule = replace(base, **dict(zip(names, values, strict=True)))
        s = score(rule, data)
        if s > best_score:
            best, best_score = rule, s
    return best, best_score


def log_loss(rule: ChecklistRule, data: list[tuple[list[Verdict], str]]) -> float:
    total = 0.0
    for verdicts, label in data:
        p = rule.tier_probabilities(verdicts)[Tier(label)]
        total -= math.log(max(p, 1e-6))
    return total / len(data)


def point_f1(rule: ChecklistRule, records: list[dict]) -> float:
    tp = fp = fn = 0
    for record in records:
        gold = set(record["covered"] or [])
        said = {v.item.id for v in verdicts_of(record) if not v.item.flag and rule.covers(v)}
        tp += len(gold & said)
        fp += len(said - gold)
        fn += len(gold - said)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def fit(args: argparse.Namespace) -> None:
    records = load_records(Path(args.records))
    data = [(verdicts_of(r), r["label"]) for r in records]
    base = ChecklistRule(name=args.name)
    policy = ChecklistRule()
    rule, (acc, qwk) = best_rule(data, base)
    # leave one question out: fit on the other dev questions, score the held-out one
    questions = sorted({r["question"] for r in records})
    hits = 0
    for q in questions:
        train = [(verdicts_of(r), r["label"]) for r in records if r["question"] != q]
        held = [(verdicts_of(r), r["label"]) for r in records if r["question"] == q]
        fold, _ = best_rule(train, base)
        hits += sum(fold.tier(v) == Tier(label) for v, label in held)
    loqo = hits / len(records)
    temps = [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.0, 6.0]
    temperature = min(temps, key=lambda t: log_loss(replace(rule, temperature=t), data))
    rule = replace(
        rule,
        temperature=temperature,
        fitted_on=f"{len(records)} dev answers ({len(questions)} questions) of evals/answers.yaml, "
        f"model {args.model_label}; scripts/fit_checklist.py",
    )
    p_acc, p_qwk = score(policy, data)
    out = RULES_DIR / f"{args.name}.json"
    fields = {k: getattr(rule, k) for k in ChecklistRule.__dataclass_fields__}
    out.write_text(json.dumps(fields, indent=2) + "\n")
    seconds = [r["seconds"] for r in map(json.loads, Path(args.records).read_text().splitlines()) if "seconds" in r]
    usage = [r["usage"] for r in records]
    summary = {
        "answers": len(records),
        "questions": len(questions),
        "fitted": {"accuracy": round(acc, 3), "qwk": round(qwk, 3), "loqo_accuracy": round(loqo, 3)},
        "policy_rule": {"accuracy": round(p_acc, 3), "qwk": round(p_qwk, 3)},
        "point_f1": {"fitted": round(point_f1(rule, records), 3), "policy": round(point_f1(policy, records), 3)},
        "temperature": temperature,
        "log_loss": round(log_loss(rule, data), 3),
        "seconds_per_answer": round(sum(seconds) / len(seconds), 1),
        "prompt_tokens": round(sum(u["prompt_tokens"] for u in usage) / len(usage)),
        "completion_tokens": round(sum(u["completion_tokens"] for u in usage) / len(usage)),
    }
    print(json.dumps({"rule": fields, "summary": summary}, indent=2))
    note = RULES_DIR / f"FIT-{args.name}.md"
    note.write_text(
        f"# Checklist rule `{args.name}`\n\nWritten by `python scripts/fit_checklist.py fit {args.records} "
        f"--name {args.name}` from the raw verdicts in `{args.records}` (dev half only).\n\n"
        f"```json\n{json.dumps(summary, indent=2)}\n```\n\n"
        "`fitted` is in-sample; `loqo_accuracy` refits with each dev question held out and scores it, "
        "the honest dev estimate. `policy_rule` is the unfitted labelling policy on the same verdicts.\n"
    )
    print(f"wrote {out} and {note}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--base-url", required=True)
    c.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    c.add_argument("--out", required=True)
    c.add_argument("--per-question", type=int, default=6)
    c.add_argument("--per-item", action="store_true", help="one call per checklist item (--checklist-calls per-item)")
    c.add_argument("--limit", type=int, default=0)
    c.add_argument("--timeout", type=float, default=900)
    f = sub.add_parser("fit")
    f.add_argument("records")
    f.add_argument("--name", required=True)
    f.add_argument("--model-label", default="qwen2.5-coder-1.5b-instruct (Q4_K_M, llama.cpp)")
    args = parser.parse_args()
    if args.command == "collect":
        asyncio.run(collect(args))
    else:
        fit(args)


if __name__ == "__main__":
    main()
