"""The README is a front page, user docs speak to users, and `make run ARGS=...` passes flags."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INTERNAL = re.compile(r"\bissue(?:'s|s)?\b(?: \d+| targets?)?|\b(?:10x|100k) target", re.I)


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    assert len(lines) <= 150
    first_screen = "\n".join(lines[:15])
    assert "make run" in first_screen and "make test" in first_screen
    assert sum(1 for line in lines if line.startswith("![")) == 1
    assert "(docs/benchmarks.md)" in "\n".join(lines)


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_user_docs_name_no_issue_or_internal_target(doc: Path) -> None:
    if doc.name == "development-notes.md":  # the developers' log, not a user doc
        return
    hits = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(doc.read_text("utf-8").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert not hits, hits


def test_make_run_passes_args_through() -> None:
    make = shutil.which("make")
    assert make is not None, "make is one of the two things surgebench needs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    out = subprocess.run(
        [make, "-n", "--no-print-directory", "-o", ".venv/.installed", "run",
         "ARGS=--users 50 --duration 2m"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert out.strip().splitlines()[-1].endswith("surgebench run --users 50 --duration 2m")
