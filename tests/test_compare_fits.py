"""`scripts/compare_fits.py`: two fits of the local rule compared answer by answer, worked by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_fits.py"
spec = importlib.util.spec_from_file_location("compare_fits", SCRIPT)
assert spec is not None and spec.loader is not None
compare_fits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_fits)


def rows(tiers: list[str]) -> dict[str, dict]:
    labels = ["great", "poor", "mediocre", "great", "poor", "poor"]
    kinds = ["plain", "plain", "terse", "terse", "spoken", "spoken"]
    return {
        f"a{i}": {"id": f"a{i}", "question": "q1" if i < 3 else "q2", "kind": k, "label": y, "tier": t}
        for i, (y, t, k) in enumerate(zip(labels, tiers, kinds, strict=True))
    }


def test_discordant_answers_and_the_difference_worked_by_hand():
    a = rows(["great", "poor", "mediocre", "great", "mediocre", "great"])  # right: 0 1 2 3 -> 4 of 6
    b = rows(["great", "mediocre", "mediocre", "mediocre", "poor", "great"])  # right: 0 2 4 -> 3 of 6
    r = compare_fits.compare(a, b)
    assert r["accuracy_a"] == pytest.approx(4 / 6) and r["accuracy_b"] == pytest.approx(3 / 6)
    assert (r["only_a_right"], r["only_b_right"], r["tier_changed"]) == (2, 1, 3)
    assert r["mcnemar_p"] == pytest.approx(1.0)  # 2 against 1 of 3: two-sided exact binomial
    assert r["difference"] == pytest.approx(-1 / 6)
    # two questions: q1 alone -1/3, q2 alone 0, one of each -1/6; resampling questions (not answers)
    assert r["difference_95"] == pytest.approx([-1 / 3, 0.0])
    assert r["by_kind"]["terse"] == {"answers": 2, "accuracy_a": 1.0, "accuracy_b": 0.5}
    assert r["by_kind"]["spoken"] == {"answers": 2, "accuracy_a": 0.0, "accuracy_b": 0.5}


def test_identical_fits_differ_by_nothing():
    a = rows(["great", "poor", "poor", "great", "poor", "great"])
    r = compare_fits.compare(a, a)
    assert r["difference"] == 0 and r["difference_95"] == [0.0, 0.0] and r["mcnemar_p"] == 1.0


def test_files_of_different_answers_are_refused(tmp_path):
    a = rows(["great"] * 6)
    b = dict(list(a.items())[:5])
    with pytest.raises(SystemExit, match="grade different answers"):
        compare_fits.compare(a, b)
    with pytest.raises(SystemExit, match="grade no answers"):
        compare_fits.compare({}, {})
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in a.values()))
    assert compare_fits.load(tmp_path / "a.jsonl") == a
