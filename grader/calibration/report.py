"""The calibration report: one dict, written as JSON, Markdown and a self-contained HTML page.

The HTML page embeds its charts (confusion-matrix heatmaps, a per-interviewer leniency chart) as PNG
data URIs drawn by matplotlib, and carries no script and no outside resource.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grader.calibration.data import Pair
from grader.calibration.metrics import agreement, human_agreement
from grader.calibration.settings import Settings
from grader.errors import GraderError
from grader.grading.contract import TIERS, Tier
from grader.reports import plots

#: Disagreements listed in the Markdown and HTML pages (the JSON holds them all).
SHOWN_DISAGREEMENTS = 200
STEM = "calibration"


def build_report(
    pairs: list[Pair],
    *,
    settings: Settings,
    human_path: str,
    model_grades_path: str | None = None,
) -> dict[str, Any]:
    """Every metric of a calibration run, ready to serialise."""
    paired = [p for p in pairs if p.status == "paired"]
    by_interviewer: dict[str, list[Pair]] = defaultdict(list)
    by_question: dict[str, list[Pair]] = defaultdict(list)
    for p in paired:
        by_interviewer[p.human.interviewer].append(p)
        by_question[p.question].append(p)
    models = sorted({f"{p.model.backend} · {p.model.model}" for p in paired if p.model is not None})

    def metrics(group: list[Pair]) -> dict[str, Any]:
        return agreement([p.human.tier for p in group], [_model_tier(p) for p in group], settings)

    report: dict[str, Any] = {
        "kind": "calibration",
        "inputs": {"human": human_path, "model_grades": model_grades_path, "graded_by": models},
        "settings": settings.as_dict(),
        "counts": {
            "rows": len(pairs),
            "paired": len(paired),
            "failed": sum(p.status == "failed" for p in pairs),
            "unmatched": sum(p.status == "unmatched" for p in pairs),
            "interviewers": len({p.human.interviewer for p in pairs}),
            "questions": len({p.question for p in pairs}),
            "answers": len({p.answer_id for p in pairs}),
        },
        "overall": metrics(paired),
        "interviewers": {name: metrics(group) for name, group in sorted(by_interviewer.items())},
        "questions": {name: metrics(group) for name, group in sorted(by_question.items())},
        "human_agreement": human_agreement(
            [(p.human.interviewer, p.answer_id, p.human.tier) for p in pairs],
            {p.answer_id: _model_tier(p) for p in paired},
            settings,
        ),
        "disagreements": disagreements(paired),
        "failed": [
            _row(p) | {"error": p.failure.message if p.failure else None} for p in pairs if p.status == "failed"
        ],
        "unmatched": [_row(p) for p in pairs if p.status == "unmatched"],
        "grades": [
            _row(p)
            | {"human": p.human.tier.value, "model": _model_tier(p).value if p.model else None, "status": p.status}
            for p in pairs
        ],
    }
    return report


def _model_tier(pair: Pair) -> Tier:
    assert pair.model is not None
    return pair.model.tier


def _row(pair: Pair) -> dict[str, Any]:
    return {
        "line": pair.human.line,
        "interviewer": pair.human.interviewer,
        "question": pair.question,
        "id": pair.answer_id,
        "candidate": pair.human.candidate,
    }


def disagreements(paired: list[Pair]) -> list[dict[str, Any]]:
    """Grades where the interviewer and the model differ, the largest tier gap first."""
    rows = []
    for p in paired:
        model = p.model
        assert model is not None
        difference = p.human.tier.rank - model.tier.rank
        if difference:
            rows.append(
                _row(p)
                | {
                    "human": p.human.tier.value,
                    "model": model.tier.value,
                    "difference": difference,
                    "answer": p.answer,
                    "justification": model.justification,
                    "missed_points": list(model.missed_points),
                    "red_flags": list(model.red_flags),
                }
            )
    return sorted(rows, key=lambda r: (-abs(r["difference"]), r["interviewer"], r["line"]))


# --- formatting ----------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else "0.000" if x == 0 else f"{x:+.3f}"


def _with_ci(metric: dict[str, Any] | None, fmt=_num) -> str:  # noqa: ANN001
    if not metric or metric.get("value") is None:
        return "n/a"
    ci = metric.get("ci")
    return fmt(metric["value"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


METRIC_COLUMNS = ("n", "exact agreement", "kappa", "QWK", "leniency (human − model)", "bias")


def metric_cells(m: dict[str, Any]) -> list[str]:
    if not m.get("n"):
        return ["0", "n/a", "n/a", "n/a", "n/a", m.get("bias", "")]
    return [
        str(m["n"]),
        _with_ci(m["exact_agreement"]),
        _with_ci(m["kappa"]),
        _with_ci(m["qwk"]),
        _with_ci(m["leniency"], _signed),
        m["bias"],
    ]


def _md_cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(head: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def summary_lines(report: dict[str, Any]) -> list[str]:
    c, s, inputs = report["counts"], report["settings"], report["inputs"]
    source = f"model grades from {inputs['model_grades']}" if inputs["model_grades"] else "answers graded by this run"
    by = ", ".join(inputs["graded_by"]) or "none"
    return [
        f"interviewer grades: {inputs['human']} ({c['rows']} rows, {c['interviewers']} interviewers, "
        f"{c['questions']} questions, {c['answers']} answers); {source} (graded by {by})",
        f"paired {c['paired']}; failed model grades {c['failed']}; ids with no model grade {c['unmatched']} "
        "(neither enters the metrics)",
        f"{s['level']:.0%} bootstrap intervals from {s['resamples']} resamples (seed {s['seed']}); "
        f"a group under {s['min_n']} grades is flagged as too few to conclude; leniency is the mean tier "
        "difference, human minus model (positive: the interviewer grades higher)",
    ]


def _human_lines(h: dict[str, Any]) -> list[str]:
    if not h.get("answers"):
        return [f"- {w}" for w in h.get("warnings", [])]
    lines = [
        f"- answers graded by several interviewers: {h['answers']} ({h['grades']} grades from "
        f"{h['interviewers']} interviewers)",
        f"- Krippendorff's alpha (ordinal) among interviewers: {_with_ci(h['alpha'])}; with the model as one more "
        f"rater: {_with_ci(h['alpha_with_model'])}",
        f"- interviewers agree exactly on {h['human_pairwise_agreement']:.1%} of {h['human_pairs']} pairs of grades",
    ]
    if h["model_pairwise_agreement"] is not None:
        lines.append(
            f"- the model agrees exactly with them on {h['model_pairwise_agreement']:.1%} of {h['model_pairs']} "
            "grades of the same answers"
        )
    lines += [f"- warning: {w}" for w in h["warnings"]]
    return lines


def _warning_rows(groups: dict[str, dict[str, Any]]) -> list[str]:
    return [f"- {name}: {w}" for name, m in groups.items() for w in m.get("warnings", [])]


def _confusion_md(matrix: list[list[int]]) -> list[str]:
    return _md_table(["interviewer \\ model", *TIERS], [[t, *row] for t, row in zip(TIERS, matrix, strict=True)])


def to_markdown(report: dict[str, Any]) -> str:
    o = report["overall"]
    lines = ["# Calibration: interviewers against the model", ""]
    lines += [f"- {line}" for line in summary_lines(report)]
    lines += ["", "## Overall", ""]
    lines += _md_table(METRIC_COLUMNS, [metric_cells(o)])
    lines += [f"- warning: {w}" for w in o.get("warnings", [])]
    if o.get("n"):
        lines += ["", "Confusion matrix (rows: interviewer, columns: model):", ""]
        lines += _confusion_md(o["confusion"]["matrix"])
    for title, key, label in (
        ("Per interviewer", "interviewers", "interviewer"),
        ("Per question", "questions", "question"),
    ):
        lines += ["", f"## {title}", ""]
        lines += _md_table([label, *METRIC_COLUMNS], [[name, *metric_cells(m)] for name, m in report[key].items()])
        warnings = _warning_rows(report[key])
        if warnings:
            lines += ["", "Warnings:", "", *warnings]
    lines += ["", "## Between interviewers", ""]
    lines += _human_lines(report["human_agreement"])
    if report["interviewers"]:
        lines += ["", "## Confusion matrices per interviewer", ""]
        for name, m in report["interviewers"].items():
            lines += [f"### {name} ({m['n']} grades)", ""]
            lines += _confusion_md(m["confusion"]["matrix"])
            lines.append("")
    lines += ["", f"## Disagreements, largest first ({len(report['disagreements'])})", ""]
    for i, d in enumerate(report["disagreements"][:SHOWN_DISAGREEMENTS], start=1):
        who = d["interviewer"] + (f", candidate {d['candidate']}" if d["candidate"] else "")
        lines += [
            f"### {i}. {d['id']} ({d['question']}): {who} gave {d['human']}, the model {d['model']} "
            f"({d['difference']:+d})",
            "",
        ]
        if d["answer"]:
            lines += ["> " + line for line in d["answer"].strip().splitlines()]
            lines.append("")
        lines.append(f"- model's justification: {d['justification'].strip()}")
        lines.append(f"- missed points: {', '.join(d['missed_points']) or 'none'}")
        if d["red_flags"]:
            lines.append(f"- red flags: {', '.join(d['red_flags'])}")
        lines.append(f"- human.csv line {d['line']}")
        lines.append("")
    if len(report["disagreements"]) > SHOWN_DISAGREEMENTS:
        lines.append(f"{len(report['disagreements']) - SHOWN_DISAGREEMENTS} more in {STEM}.json.")
    for key, title in (("failed", "Model grades that failed"), ("unmatched", "Rows with no model grade")):
        if report[key]:
            lines += ["", f"## {title} ({len(report[key])})", ""]
            head = ["line", "interviewer", "id", "question"] + (["error"] if key == "failed" else [])
            rows = [
                [r["line"], r["interviewer"], r["id"], r["question"]] + ([r["error"]] if key == "failed" else [])
                for r in report[key]
            ]
            lines += _md_table(head, rows)
    return "\n".join(lines).rstrip() + "\n"


# --- charts --------------------------------------------------------------------------------------


def heatmap_png(matrix: list[list[int]], title: str) -> bytes:
    """A confusion-matrix heatmap: rows the interviewer's tier, columns the model's."""
    return plots.heatmap_png(matrix, title, rows="interviewer", columns="model")


BIAS_COLOURS = {"lenient": "#d95f02", "harsh": "#1b9e77", "no clear bias": "#555555", "too few grades": "#bbbbbb"}


def leniency_png(interviewers: dict[str, dict[str, Any]]) -> bytes | None:
    """Each interviewer's leniency with its interval; zero is grading like the model."""
    shown = [(name, m) for name, m in interviewers.items() if m.get("n")]
    if not shown:
        return None
    plt = plots.pyplot()
    with plt.rc_context({"text.parse_math": False}):
        fig, ax = plt.subplots(figsize=(7.6, 1.4 + 0.38 * len(shown)), dpi=100)
        for y, (_name, m) in enumerate(reversed(shown)):
            value, ci = m["leniency"]["value"], m["leniency"]["ci"] or [m["leniency"]["value"]] * 2
            colour = BIAS_COLOURS.get(m["bias"], "#555555")
            ax.plot(ci, [y, y], color=colour, linewidth=2)
            ax.plot([value], [y], "o", color=colour, label=m["bias"])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(shown)), [f"{name} (n={m['n']})" for name, m in reversed(shown)])
        ax.set_xlim(-2.1, 2.1)
        ax.set_xlabel("leniency: mean tier difference, interviewer − model (95 % interval)")
        ax.set_title("harsher than the model  ←   →  more lenient", fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
        fig.tight_layout()
        return plots.to_png(fig)


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


# --- HTML ----------------------------------------------------------------------------------------


def _html_table(head: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _html_warnings(lines: list[str]) -> str:
    if not lines:
        return ""
    return '<ul class="warn">' + "".join(f"<li>{html.escape(w)}</li>" for w in lines) + "</ul>"


def to_html(report: dict[str, Any]) -> str:
    """A self-contained page: tables, heatmaps and the leniency chart, no script, no outside resource."""
    o = report["overall"]
    parts = ["<h1>Calibration: interviewers against the model</h1>"]
    parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(report)) + "</ul>")
    parts.append("<h2>Overall</h2>")
    parts.append(_html_table(METRIC_COLUMNS, [metric_cells(o)], "metrics"))
    parts.append(_html_warnings(o.get("warnings", [])))
    figures = []
    if o.get("n"):
        figures.append(_img(heatmap_png(o["confusion"]["matrix"], "all interviewers"), "confusion matrix: overall"))
    for name, m in report["interviewers"].items():
        if m.get("n"):
            figures.append(_img(heatmap_png(m["confusion"]["matrix"], f"{name} (n={m['n']})"), f"confusion: {name}"))
    parts.append('<div class="figures">' + "".join(figures) + "</div>")
    parts.append("<h2>Per interviewer</h2>")
    parts.append(_img(leniency_png(report["interviewers"]), "leniency per interviewer"))
    parts.append(
        _html_table(
            ["interviewer", *METRIC_COLUMNS],
            [[n, *metric_cells(m)] for n, m in report["interviewers"].items()],
            "metrics",
        )
    )
    parts.append(_html_warnings(_warning_rows(report["interviewers"])))
    parts.append("<h2>Per question</h2>")
    parts.append(
        _html_table(
            ["question", *METRIC_COLUMNS], [[n, *metric_cells(m)] for n, m in report["questions"].items()], "metrics"
        )
    )
    parts.append(_html_warnings(_warning_rows(report["questions"])))
    parts.append("<h2>Between interviewers</h2>")
    parts.append(
        "<ul>"
        + "".join(f"<li>{html.escape(line[2:])}</li>" for line in _human_lines(report["human_agreement"]))
        + "</ul>"
    )
    shown = report["disagreements"][:SHOWN_DISAGREEMENTS]
    parts.append(f"<h2>Disagreements, largest first ({len(report['disagreements'])})</h2>")
    if shown:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (d["interviewer"], d["id"], d["question"], d["human"], d["model"], f"{d['difference']:+d}")
            )
            + f'<td class="text">{html.escape(d["answer"] or "")}</td>'
            + f'<td class="text">{html.escape(d["justification"])}</td>'
            + f"<td>{html.escape(', '.join(d['missed_points']))}</td></tr>"
            for d in shown
        )
        head = (
            "interviewer",
            "answer id",
            "question",
            "human",
            "model",
            "diff",
            "answer",
            "model's justification",
            "missed points",
        )
        th = "".join(f"<th>{h}</th>" for h in head)
        parts.append(f'<table class="dis"><thead><tr>{th}</tr></thead><tbody>{rows}</tbody></table>')
        if len(report["disagreements"]) > SHOWN_DISAGREEMENTS:
            parts.append(f"<p>{len(report['disagreements']) - SHOWN_DISAGREEMENTS} more in {STEM}.json.</p>")
    else:
        parts.append("<p>None: every interviewer grade matches the model's.</p>")
    for key, title in (("failed", "Model grades that failed"), ("unmatched", "Rows with no model grade")):
        if report[key]:
            parts.append(f"<h2>{title} ({len(report[key])})</h2>")
            columns = ["line", "interviewer", "id", "question"] + (["error"] if key == "failed" else [])
            parts.append(_html_table(columns, [[r.get(h, "") for h in columns] for r in report[key]]))
    body = "\n".join(p for p in parts if p)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>grader calibration</title>
<link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}}table{{border-collapse:collapse;
margin:.5rem 0}}td,th{{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top}}th{{background:#f6f8fa}}
td.text{{max-width:28rem;white-space:pre-wrap}}table.metrics td{{white-space:nowrap}}
.figures img{{margin:.25rem}}ul.warn{{color:#9a3412}}</style>
</head><body>
{body}
</body></html>
"""


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    """calibration.json, calibration.md and calibration.html under `out`."""
    paths = [out / f"{STEM}.json", out / f"{STEM}.md", out / f"{STEM}.html"]
    texts = [json.dumps(report, indent=2, ensure_ascii=False) + "\n", to_markdown(report), to_html(report)]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in zip(paths, texts, strict=True):
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GraderError(f"{out}: cannot write the report: {exc.strerror or exc}") from None
    return paths
