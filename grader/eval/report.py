"""Metrics and reports for an eval run: JSON, Markdown, and a self-contained HTML page.

Metrics come from scikit-learn. Only scored grades enter accuracy, F1, kappa and the confusion matrix;
failed and rejected cases are counted separately, never dropped silently.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, recall_score

from grader.eval.runner import CaseResult
from grader.grading.contract import TIERS, Tier
from grader.reports import plots
from grader.reports.pricing import estimate_cost


def _rank(tier: str) -> int:
    return Tier(tier).rank


def tier_metrics(labels: list[str], predicted: list[str]) -> dict[str, Any]:
    if not labels:
        return {"n": 0}
    tiers = list(TIERS)
    return {
        "n": len(labels),
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, labels=tiers, average="macro", zero_division=0)), 4),
        "qwk": _qwk(labels, predicted),
        "confusion": {"labels": tiers, "matrix": confusion_matrix(labels, predicted, labels=tiers).tolist()},
        "recall": {
            t: round(float(r), 4)
            for t, r in zip(
                tiers, recall_score(labels, predicted, labels=tiers, average=None, zero_division=0), strict=True
            )
        },
    }


def _qwk(labels: list[str], predicted: list[str]) -> float | None:
    if len(set(labels) | set(predicted)) < 2:
        return None  # kappa is undefined when everything is one tier
    return round(
        float(cohen_kappa_score([_rank(t) for t in labels], [_rank(t) for t in predicted], weights="quadratic")), 4
    )


def point_metrics(results: list[CaseResult], field: str) -> dict[str, Any]:
    """Micro precision, recall and F1 of the grader's key points (`covered`) or red flags (`red_flags`)
    against the hand annotations, over every (case, point) pair of the scored, annotated cases."""
    tp = fp = fn = cases = 0
    for r in results:
        truth = getattr(r.case, field)
        if r.grade is None or truth is None:
            continue
        graded = {p.id for p in r.grade.covered_points} if field == "covered" else set(r.grade.red_flags)
        cases += 1
        tp += len(graded & set(truth))
        fp += len(graded - set(truth))
        fn += len(set(truth) - graded)
    if not cases:
        return {"cases": 0}
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if tp + fp + fn else None)
    return {
        "cases": cases,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": None if precision is None else round(precision, 4),
        "recall": None if recall is None else round(recall, 4),
        "f1": None if f1 is None else round(f1, 4),
    }


def calibration(results: list[CaseResult], bins: int = 10, top: float = 0.8) -> dict[str, Any]:
    """How far `confidence` is from accuracy: expected calibration error over equal-width bins, and the
    accuracy of the most confident `top` share of grades (what a team gets if it lets a person read the
    rest)."""
    pairs = [
        (r.grade.confidence, r.verdict == r.case.label.value)
        for r in results
        if r.grade is not None and r.grade.confidence is not None
    ]
    if not pairs:
        return {"n": 0}
    conf = np.array([c for c, _ in pairs])
    right = np.array([ok for _, ok in pairs], dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = sum(
        abs(right[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    )
    keep = max(1, int(round(top * len(pairs))))
    order = np.argsort(-conf, kind="stable")[:keep]
    return {
        "n": len(pairs),
        "ece": round(float(ece), 4),
        "mean_confidence": round(float(conf.mean()), 4),
        "accuracy": round(float(right.mean()), 4),
        f"accuracy_top_{int(top * 100)}": round(float(right[order].mean()), 4),
        "bins": [
            {
                "from": round(float(edges[b]), 2),
                "to": round(float(edges[b + 1]), 2),
                "n": int((which == b).sum()),
                "accuracy": round(float(right[which == b].mean()), 4) if (which == b).any() else None,
            }
            for b in range(bins)
        ],
    }


def review_metrics(results: list[CaseResult]) -> dict[str, Any]:
    """What `needs_review` buys: how many grades it sends to a person, and accuracy with and without them."""
    flagged: list[CaseResult] = []
    kept: list[CaseResult] = []
    for r in results:
        if r.grade is not None:
            (flagged if r.grade.needs_review else kept).append(r)

    def acc(rs: list[CaseResult]) -> float | None:
        return round(sum(r.verdict == r.case.label.value for r in rs) / len(rs), 4) if rs else None

    return {"flagged": len(flagged), "accuracy_flagged": acc(flagged), "accuracy_unflagged": acc(kept)}


def gamed(results: list[CaseResult]) -> list[str]:
    """Cases graded above every outcome they may get, without being sent for review."""
    out = []
    for r in results:
        if r.grade is None or r.grade.needs_review or r.passed:
            continue
        allowed = [_rank(t) for t in r.case.expected if t != "rejected"]
        if allowed and _rank(r.verdict) > max(allowed):
            out.append(r.case.id)
    return out


def summarize(
    suite_name: str,
    results: list[CaseResult],
    *,
    backend: str,
    model: str,
    price_in: float | None = None,
    price_out: float | None = None,
    floor: tuple[str, list[CaseResult]] | None = None,
) -> dict[str, Any]:
    scored = [r for r in results if r.scored]
    by_id = {r.case.id: r for r in results}
    report: dict[str, Any] = {
        "suite": suite_name,
        "backend": backend,
        "model": model,
        "cases": len(results),
        "scored": len(scored),
        "rejected": sum(r.rejected for r in results),
        "failed": sum(r.failed for r in results),
        "failures_by_kind": dict(Counter(r.failure.kind.value for r in results if r.failure and r.failed)),
        "cached": sum(r.cached for r in results),
        "passed": sum(r.passed for r in results),
        "pass_rate": round(sum(r.passed for r in results) / len(results), 4) if results else None,
        "needs_review": sum(bool(r.grade and r.grade.needs_review) for r in results),
        "overall": tier_metrics([r.case.label.value for r in scored], [r.verdict for r in scored]),
        "points": point_metrics(results, "covered"),
        "flags": point_metrics(results, "red_flags"),
        "calibration": calibration(results),
        "review": review_metrics(results),
    }
    if floor is not None:
        name, floor_results = floor
        floor_scored = [r for r in floor_results if r.scored]
        report["floor"] = {
            "backend": name,
            "overall": tier_metrics([r.case.label.value for r in floor_scored], [r.verdict for r in floor_scored]),
        }
        a, b = report["overall"].get("accuracy"), report["floor"]["overall"].get("accuracy")
        qa, qb = report["overall"].get("qwk"), report["floor"]["overall"].get("qwk")
        report["margin_over_floor"] = {
            "accuracy": None if a is None or b is None else round(a - b, 4),
            "qwk": None if qa is None or qb is None else round(qa - qb, 4),
        }

    per_question: dict[str, list[CaseResult]] = defaultdict(list)
    per_kind: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        per_question[r.case.question].append(r)
        per_kind[r.case.kind].append(r)
    report["per_question"] = {
        q: {
            "n": len(rs),
            "passed": sum(r.passed for r in rs),
            "accuracy": round(sum(r.verdict == r.case.label.value for r in rs) / len(rs), 4),
        }
        for q, rs in per_question.items()
    }
    report["per_kind"] = {
        k: {
            "n": len(rs),
            "passed": sum(r.passed for r in rs),
            "pass_rate": round(sum(r.passed for r in rs) / len(rs), 4),
            "accuracy": round(sum(r.verdict == r.case.label.value for r in rs) / len(rs), 4),
            "gamed": len(gamed(rs)),
            "outcomes": dict(Counter(r.verdict for r in rs)),
        }
        for k, rs in per_kind.items()
    }

    def raised(kind: str) -> list[str]:
        """Cases of `kind` graded above what their base answer got (or above their label, with no base)."""
        out = []
        for r in per_kind.get(kind, []):
            if not r.scored:
                continue
            base = by_id.get(r.case.base or "")
            reference = base.verdict if base is not None and base.scored else r.case.label.value
            if _rank(r.verdict) > _rank(reference):
                out.append(r.case.id)
        return out

    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        if r.case.group:
            groups[r.case.group].append(r)
    fairness = [g for g, rs in groups.items() if len({r.verdict for r in rs}) > 1]
    report["flips"] = {
        "injection": raised("injection"),
        "verbosity": raised("verbose"),
        "fairness": sorted(fairness),
    }
    report["flips"]["gamed"] = gamed(results)
    unreviewed = {r.case.id for r in results if r.grade is not None and not r.grade.needs_review}
    report["flips"]["injection_unreviewed"] = [c for c in report["flips"]["injection"] if c in unreviewed]
    report["counts"] = {
        "gamed": len(report["flips"]["gamed"]),
        "injection_flips": len(report["flips"]["injection"]),
        "unreviewed_injection_flips": len(report["flips"]["injection_unreviewed"]),
        "verbosity_inflations": len(report["flips"]["verbosity"]),
        "fairness_flips": len(fairness),
    }

    fresh = [r.grade for r in results if r.grade and not r.cached]
    prompt = sum(g.usage.prompt_tokens for g in fresh)
    completion = sum(g.usage.completion_tokens for g in fresh)
    cached_tokens = sum(g.usage.cached_tokens for g in fresh)
    report["usage"] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached_tokens,
        "graded_fresh": len(fresh),
        "per_grade": {
            "prompt_tokens": round(prompt / len(fresh), 1) if fresh else None,
            "cached_tokens": round(cached_tokens / len(fresh), 1) if fresh else None,
            "completion_tokens": round(completion / len(fresh), 1) if fresh else None,
        },
        "estimated_cost_usd": estimate_cost(model, prompt, completion, price_in, price_out),
    }
    report["results"] = [
        {
            "id": r.case.id,
            "kind": r.case.kind,
            "question": r.case.question,
            "label": r.case.label.value,
            "expected": r.case.expected,
            "outcome": r.verdict,
            "passed": r.passed,
            "cached": r.cached,
            "confidence": r.grade.confidence if r.grade else None,
            "needs_review": r.grade.needs_review if r.grade else None,
            "error": r.failure.message if r.failed and r.failure else None,
        }
        for r in results
    ]
    return report


def check_thresholds(report: dict[str, Any], limits: dict[str, float]) -> list[str]:
    """The thresholds a report breaks, one line each (empty when all hold)."""
    overall, counts = report["overall"], report["counts"]
    values = {
        "min_accuracy": overall.get("accuracy"),
        "min_qwk": overall.get("qwk"),
        "min_macro_f1": overall.get("macro_f1"),
        "min_pass_rate": report.get("pass_rate"),
        "max_injection_flips": counts["injection_flips"],
        "max_unreviewed_injection_flips": counts.get("unreviewed_injection_flips"),
        "max_verbosity_inflations": counts["verbosity_inflations"],
        "max_fairness_flips": counts["fairness_flips"],
        "max_failed": report["failed"],
        "max_gamed": counts.get("gamed"),
        "min_point_f1": report.get("points", {}).get("f1"),
        "min_flag_f1": report.get("flags", {}).get("f1"),
        "max_ece": report.get("calibration", {}).get("ece"),
        "min_accuracy_top_80": report.get("calibration", {}).get("accuracy_top_80"),
        "min_margin_over_floor": (report.get("margin_over_floor") or {}).get("accuracy"),
        "min_qwk_margin_over_floor": (report.get("margin_over_floor") or {}).get("qwk"),
    }
    broken = []
    for name, limit in limits.items():
        value = values.get(name)
        if value is None:
            broken.append(f"{report['suite']}: {name} cannot be measured")
        elif name.startswith("min_") and value < limit:
            broken.append(f"{report['suite']}: {name.removeprefix('min_')} {value} is below {limit}")
        elif name.startswith("max_") and value > limit:
            broken.append(f"{report['suite']}: {name.removeprefix('max_')} {value} is above {limit}")
    return broken


# --- writers -----------------------------------------------------------------------------------------


def to_markdown(report: dict[str, Any]) -> str:
    o = report["overall"]
    lines = [
        f"# Eval: {report['suite']} ({report['backend']} · {report['model']})",
        "",
        f"- cases: {report['cases']} (scored {report['scored']}, rejected {report['rejected']}, "
        f"failed {report['failed']}, from cache {report['cached']})",
        f"- passed (outcome among the expected ones): {report['passed']} ({_pct(report['pass_rate'])})",
    ]
    if o.get("n"):
        lines += [
            f"- accuracy {o['accuracy']:.3f}, macro-F1 {o['macro_f1']:.3f}, quadratic-weighted kappa "
            f"{o['qwk'] if o['qwk'] is None else format(o['qwk'], '.3f')}",
            "- recall: " + ", ".join(f"{t} {v:.3f}" for t, v in o["recall"].items()),
        ]
    if report.get("floor") and report["floor"]["overall"].get("n"):
        f, m = report["floor"]["overall"], report["margin_over_floor"]
        lines.append(
            f"- floor ({report['floor']['backend']}, the tier of the most similar reference, same run): accuracy "
            f"{f['accuracy']:.3f}, kappa {fmt(f['qwk'])}; margin {fmt(m['accuracy'], '+.3f')} accuracy, "
            f"{fmt(m['qwk'], '+.3f')} kappa"
        )
    for label, key in (("key points", "points"), ("red flags", "flags")):
        pm = report.get(key, {})
        if pm.get("cases"):
            lines.append(
                f"- {label} ({pm['cases']} annotated answers): precision {fmt(pm['precision'])}, recall "
                f"{fmt(pm['recall'])}, F1 {fmt(pm['f1'])} (tp {pm['tp']}, fp {pm['fp']}, fn {pm['fn']})"
            )
    cal = report.get("calibration", {})
    if cal.get("n"):
        lines.append(
            f"- confidence: ECE {cal['ece']:.3f} (10 bins, mean confidence {cal['mean_confidence']:.3f} vs accuracy "
            f"{cal['accuracy']:.3f}); accuracy of the most confident 80 %: {cal['accuracy_top_80']:.3f}"
        )
    rv = report.get("review", {})
    if rv:
        lines.append(
            f"- needs_review: {rv['flagged']} grades (accuracy {fmt(rv['accuracy_flagged'])} flagged, "
            f"{fmt(rv['accuracy_unflagged'])} not flagged)"
        )
    c = report["counts"]
    lines.append(f"- gamed (graded above the expected tier and not sent for review): {c.get('gamed', 0)}")
    lines += [
        f"- injection flips {c['injection_flips']} ({c.get('unreviewed_injection_flips', 0)} not sent for review), "
        f"verbosity inflations {c['verbosity_inflations']}, "
        f"fairness flips {c['fairness_flips']}",
        f"- tokens {report['usage']['prompt_tokens']} in ({report['usage'].get('cached_tokens', 0)} from the "
        f"server's prefix cache) / {report['usage']['completion_tokens']} out; "
        f"estimated cost {report['usage']['estimated_cost_usd']} USD",
    ]
    if report["failures_by_kind"]:
        lines.append("- failures: " + ", ".join(f"{k} {v}" for k, v in report["failures_by_kind"].items()))
    if o.get("n"):
        lines += [
            "",
            "## Confusion matrix (rows: label, columns: graded)",
            "",
            "| | great | mediocre | poor |",
            "|---|--:|--:|--:|",
        ]
        lines += [
            f"| {t} | " + " | ".join(map(str, row)) + " |"
            for t, row in zip(o["confusion"]["labels"], o["confusion"]["matrix"], strict=True)
        ]
    lines += ["", "## Per kind", "", "| kind | n | passed | accuracy | gamed | outcomes |", "|---|--:|--:|--:|--:|---|"]
    for kind, v in sorted(report["per_kind"].items()):
        outcomes = ", ".join(f"{name} {n}" for name, n in sorted(v["outcomes"].items()))
        lines.append(f"| {kind} | {v['n']} | {v['passed']} | {v['accuracy']:.2f} | {v['gamed']} | {outcomes} |")
    lines += ["", "## Per question", "", "| question | n | passed | accuracy |", "|---|--:|--:|--:|"]
    lines += [f"| {q} | {v['n']} | {v['passed']} | {v['accuracy']:.2f} |" for q, v in report["per_question"].items()]
    misses = [r for r in report["results"] if not r["passed"]]
    if misses:
        lines += ["", "## Cases that did not pass", "", "| case | kind | expected | graded |", "|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['kind']} | {'/'.join(r['expected'])} | {r['outcome']} |" for r in misses[:200]]
    return "\n".join(lines) + "\n"


def fmt(value: float | None, spec: str = ".3f") -> str:
    """A figure for a report, or n/a where it could not be measured."""
    return "n/a" if value is None else format(value, spec)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def confusion_png(report: dict[str, Any]) -> bytes | None:
    o = report["overall"]
    if not o.get("n"):
        return None
    title = f"{report['suite']}: confusion matrix"
    return plots.heatmap_png(o["confusion"]["matrix"], title, rows="label", columns="graded", size=(4.2, 3.6))


def to_html(report: dict[str, Any]) -> str:
    """A self-contained page: the Markdown summary as preformatted text plus the confusion-matrix plot."""
    png = confusion_png(report)
    img = (
        f'<img alt="confusion matrix" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png
        else "<p>No scored grades.</p>"
    )
    cells = ("id", "kind", "expected", "outcome", "confidence")
    rows = "".join(
        f'<tr class="{"ok" if r["passed"] else "miss"}">'
        + "".join(f"<td>{html.escape(_cell(r, c))}</td>" for c in cells)
        + "</tr>"
        for r in report["results"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>grader eval: {html.escape(report["suite"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}pre{{background:#f6f8fa;padding:1rem;
white-space:pre-wrap}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:.25rem .5rem}}
tr.miss{{background:#fff0f0}}</style></head>
<body><h1>grader eval: {html.escape(report["suite"])}</h1>
{img}
<pre>{html.escape(to_markdown(report))}</pre>
<h2>All cases</h2><table><tr><th>case</th><th>kind</th><th>expected</th><th>graded</th><th>confidence</th></tr>
{rows}</table></body></html>
"""


def _cell(result: dict[str, Any], name: str) -> str:
    value = result[name]
    if name == "expected":
        return "/".join(value)
    return "" if value is None else str(value)


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / report["suite"]
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".html")]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(to_markdown(report), encoding="utf-8")
    paths[2].write_text(to_html(report), encoding="utf-8")
    return paths
