"""The experiment patches the README measures (`benchmarks/experiments/*.diff`) still apply to the code as it
is: a figure in the README must come from a command anyone can rerun."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATCHES = sorted((ROOT / "benchmarks" / "experiments").glob("*.diff"))


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
def test_each_experiment_patch_applies_to_the_current_code(patch):
    done = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{patch.name} no longer applies: {done.stderr.strip()} (regenerate it)"


def test_the_readme_names_every_experiment_patch():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert PATCHES and all(p.name in readme for p in PATCHES)
