"""Named baselines for `surgebench run --save-baseline NAME` / `--compare-baseline NAME`.

A baseline is a copy of a run's ``summary.json`` (and ``config.json``) under
``ROOT/baselines/NAME/`` with a ``baseline.json`` saying where it came from. ROOT is the results
folder (``results/`` by default), so baselines travel with the results and CI can cache them.

The runner calls, after it wrote the run folder::

    from reports.baseline import save_baseline, compare_to_baseline
    if args.save_baseline:
        save_baseline(run_dir, args.save_baseline, root=args.out)
    if args.compare_baseline:
        outcome = compare_to_baseline(run_dir, args.compare_baseline, root=args.out)
        print(outcome.markdown)
        return outcome.exit_code  # 0 ok, 1 regressed, 2 no such baseline / bad thresholds
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reports.compare import compare_runs, to_markdown
from reports.results import CONFIG_FILE, SUMMARY_FILE, ResultsError, read_summary
from reports.thresholds import ThresholdError, load_settings

BASELINES_DIR = "baselines"
BASELINE_META = "baseline.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class BaselineOutcome:
    """What `compare_to_baseline` found: the exit code to return and the Markdown to show."""

    exit_code: int  # 0 nothing regressed, 1 a metric regressed, 2 bad input
    markdown: str
    report_path: Path | None = None


def check_name(name: str) -> str:
    """A baseline name is a plain file name: letters, digits, ``_ . -`` (up to 100)."""
    if not _NAME_RE.match(name):
        raise ResultsError(
            f"baseline name {name!r} is not valid; allowed: letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 100 characters)"
        )
    return name


def baseline_dir(name: str, root: Path) -> Path:
    """``root/baselines/NAME``."""
    return root / BASELINES_DIR / check_name(name)


def list_baselines(root: Path) -> list[str]:
    folder = root / BASELINES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / SUMMARY_FILE).exists())


def save_baseline(run_dir: Path, name: str, root: Path) -> Path:
    """Copy the run's summary (and config) to ``root/baselines/NAME/``, replacing an old one."""
    summary = read_summary(run_dir)  # refuse to save something unreadable
    target = baseline_dir(name, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        shutil.copy2(run_dir / SUMMARY_FILE, staging / SUMMARY_FILE)
        if (run_dir / CONFIG_FILE).exists():
            shutil.copy2(run_dir / CONFIG_FILE, staging / CONFIG_FILE)
        meta = {
            "name": name,
            "source_run_dir": str(run_dir.resolve()),
            "run_name": summary.name,
            "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "valid": summary.valid,
        }
        (staging / BASELINE_META).write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def compare_to_baseline(
    run_dir: Path, name: str, root: Path, thresholds_file: Path | None = None
) -> BaselineOutcome:
    """Compare the run with the named baseline; writes ``run_dir/compare-NAME.md``."""
    try:
        folder = baseline_dir(name, root)
        if not (folder / SUMMARY_FILE).exists():
            known = ", ".join(list_baselines(root)) or "none yet"
            raise ResultsError(
                f"no baseline named {name!r} under {root / BASELINES_DIR}; saved baselines: "
                f"{known} (save one with `surgebench run --save-baseline {name}`)"
            )
        baseline = read_summary(folder)
        current = read_summary(run_dir)
        settings = load_settings(thresholds_file)
    except (ResultsError, ThresholdError) as exc:
        return BaselineOutcome(2, f"surgebench compare: {exc}\n")
    comparison = compare_runs([baseline], [current], settings)
    markdown = to_markdown(
        comparison,
        baseline_label=f"baseline {name!r} ({baseline.name})",
        current_label=f"{current.name} ({run_dir})",
    )
    report_path = run_dir / f"compare-{name}.md"
    report_path.write_text(markdown, "utf-8")
    return BaselineOutcome(1 if comparison.regressed else 0, markdown, report_path)
