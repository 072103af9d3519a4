"""`surgebench report`, `surgebench compare`, `surgebench capacity`.

Each entry takes ``argv`` and returns an exit code; bad input prints one line naming the flag or
file, the bad value and what is allowed, and returns 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from reports.capacity import capacity_markdown, find_capacity
from reports.compare import compare_runs, effective_text, to_markdown
from reports.errors import INPUT_ERRORS, SloError
from reports.render import write_run_report
from reports.results import find_run_dirs, read_summary
from reports.slo import parse_slo
from reports.sweep_report import DEFAULT_SLO, write_sweep_report
from reports.sweeps import SWEEP_FILE, load_curves, read_manifest
from reports.thresholds import METHODS, load_settings


class UsageError(Exception):
    """Bad command line; the message is printed and the exit code is 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


INPUT_ERRORS_AND_USAGE: tuple[type[Exception], ...] = (UsageError, *INPUT_ERRORS)


def _run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    body: Callable[[argparse.Namespace], int],
) -> int:
    """Parse, run `body(args)`, and turn every expected failure into a message and exit 2."""
    try:
        args = parser.parse_args(list(argv))
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        code = body(args)
    except INPUT_ERRORS_AND_USAGE as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return code


# report --------------------------------------------------------------------------------------


def _report_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="surgebench report",
        description="Plots and a Markdown + self-contained HTML report of runs or of a sweep.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="a run folder, a folder of run folders, or a sweep folder (with sweep.json)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the report (default: the run folder; several runs: next to the "
        "first; a sweep: the sweep folder)",
    )
    parser.add_argument(
        "--slo",
        help=f"SLO for a sweep report (default: the sweep's own, else {DEFAULT_SLO!r})".replace(
            "%", "%%"
        ),
    )
    parser.add_argument(
        "--include-invalid", action="store_true", help="sweep: let invalid runs count as passes"
    )
    parser.add_argument(
        "--no-svg", action="store_true", help="write PNG figures only (SVG takes as long again)"
    )
    return parser


def _report(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    for path in paths:
        if not path.exists():
            raise UsageError(f"PATH {str(path)!r} does not exist")
    sweeps = [p for p in paths if (p / SWEEP_FILE).exists()]
    if sweeps:
        if len(paths) > 1:
            raise UsageError("give one sweep folder at a time (it cannot be mixed with runs)")
        if args.slo:
            parse_slo(args.slo)
        report = write_sweep_report(sweeps[0], args.slo, args.include_invalid, svg=not args.no_svg)
        print(report.capacity.recommendation)
        print(f"report: {report.html}")
        print(f"report: {report.markdown}")
        return 0
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise UsageError(
            f"no run folders (with summary.json) in {', '.join(map(str, paths))}; "
            "allowed: run folders, folders of run folders, or a sweep folder"
        )
    written = write_run_report(run_dirs, args.out, svg=not args.no_svg)
    print(f"report: {written.html}")
    print(f"report: {written.markdown}")
    return 0


def report_main(argv: list[str]) -> int:
    """`surgebench report PATH... [--out DIR] [--slo EXPR]`."""
    return _run(_report_parser(), argv, _report)


# compare -------------------------------------------------------------------------------------


def _compare_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="surgebench compare",
        description="Regression gate: exit 0 when no metric regressed, 1 when one did, 2 for bad "
        "input. A metric regresses when it is worse than its threshold AND the noise test says "
        "the change is not run-to-run noise.",
    )
    parser.add_argument(
        "baseline",
        type=Path,
        metavar="BASELINE",
        help="baseline run folder (or a folder of repeat runs)",
    )
    parser.add_argument(
        "current",
        type=Path,
        metavar="CURRENT",
        help="current run folder (or a folder of repeat runs)",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        metavar="FILE",
        help="TOML or JSON thresholds file (see docs/reports.md)",
    )
    parser.add_argument(
        "--method", choices=METHODS, help="noise test for latency metrics (default bootstrap)"
    )
    parser.add_argument("--alpha", type=float, help="significance level (default 0.05)")
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="also write the Markdown table to FILE"
    )
    parser.add_argument(
        "--step-summary",
        type=Path,
        metavar="FILE",
        help="append the Markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the verdicts as JSON")
    parser.add_argument(
        "--allow-interrupted",
        action="store_true",
        help="compare runs that were stopped early (refused by default: they measured less)",
    )
    return parser


def _side(path: Path, flag: str) -> list[Path]:
    if not path.exists():
        raise UsageError(f"{flag} {str(path)!r} does not exist")
    runs = find_run_dirs([path])
    if not runs:
        raise UsageError(f"{flag} {str(path)!r} holds no run folder (no summary.json found)")
    return runs


def _compare(args: argparse.Namespace) -> int:
    if args.alpha is not None and not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha!r} is not valid; allowed: a number in (0, 1)")
    baseline_dirs = _side(args.baseline, "BASELINE")
    current_dirs = _side(args.current, "CURRENT")
    if args.thresholds is not None and not args.thresholds.is_file():
        raise UsageError(f"--thresholds {str(args.thresholds)!r} is not a file")
    settings = load_settings(args.thresholds, method=args.method, alpha=args.alpha)
    baseline = [read_summary(d) for d in baseline_dirs]
    current = [read_summary(d) for d in current_dirs]
    cut = [
        (d, r)
        for d, r in zip([*baseline_dirs, *current_dirs], [*baseline, *current], strict=True)
        if r.interrupted
    ]
    if cut and not args.allow_interrupted:
        run_dir, run = cut[0]
        raise UsageError(
            f"run {str(run_dir)!r} was interrupted after {run.measured_s:g}s of measurement; "
            "re-run it, or pass --allow-interrupted to gate on it anyway"
        )
    comparison = compare_runs(baseline, current, settings)
    markdown = to_markdown(
        comparison,
        baseline_label=f"{', '.join(r.name for r in baseline)} ({args.baseline})",
        current_label=f"{', '.join(r.name for r in current)} ({args.current})",
    )
    print(markdown, end="")
    if args.markdown is not None:
        args.markdown.write_text(markdown, "utf-8")
    if args.step_summary is not None:
        with args.step_summary.open("a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    if args.json is not None:
        rows = [
            {
                "metric": row.metric.name,
                "baseline": row.baseline,
                "current": row.current,
                "change": row.change,
                "relative_change": row.relative,
                "threshold": row.threshold.text if row.threshold else None,
                "verdict": row.verdict,
            }
            for row in comparison.rows
        ]
        payload = {
            "regressed": bool(comparison.regressed),
            "effective": {
                "recorded": comparison.effective is not None,
                "changes": list(comparison.effective or []),
                "text": effective_text(comparison.effective),
            },
            "metrics": rows,
            "unfinished": dict(zip(("baseline", "current"), comparison.unfinished, strict=True)),
            "warnings": comparison.warnings,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    return 1 if comparison.regressed else 0


def compare_main(argv: list[str]) -> int:
    """`surgebench compare BASELINE CURRENT [--thresholds FILE]`: exit 0, 1 (regressed) or 2."""
    return _run(_compare_parser(), argv, _compare)


# capacity ------------------------------------------------------------------------------------


def _capacity_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="surgebench capacity",
        description="The largest offered load each configuration of a sweep holds within an SLO, "
        "the knee of each latency curve, and the recommended configuration. Exit 0 when a "
        "configuration meets the SLO, 1 when none does, 2 for bad input.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        metavar="SWEEP_DIR",
        help="a folder written by `surgebench sweep` (holds sweep.json)",
    )
    parser.add_argument(
        "--slo", required=True, metavar="EXPR", help='e.g. "ttft_p95<800ms,rejections<1%%"'
    )
    parser.add_argument(
        "--include-invalid",
        action="store_true",
        help="let runs marked invalid count (default: an invalid run fails)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the answer as JSON")
    return parser


def _capacity(args: argparse.Namespace) -> int:
    try:
        slo = parse_slo(args.slo)
    except SloError as exc:
        raise UsageError(f"--slo: {exc}") from exc
    if not args.sweep_dir.is_dir():
        raise UsageError(f"SWEEP_DIR {str(args.sweep_dir)!r} is not a folder")
    manifest = read_manifest(args.sweep_dir)
    curves = load_curves(args.sweep_dir, manifest)
    if not curves:
        raise UsageError(f"SWEEP_DIR {str(args.sweep_dir)!r} has no finished cells yet")
    result = find_capacity(curves, slo, manifest.load_unit, args.include_invalid)
    print(capacity_markdown(result, manifest.load_kind), end="")
    if args.json is not None:
        payload = {
            "slo": slo.text,
            "load_unit": manifest.load_unit,
            "recommendation": result.recommendation,
            "recommended": result.best.configuration if result.best else None,
            "configurations": [
                {
                    "configuration": c.configuration,
                    "max_load": c.max_load,
                    "knee_load": c.knee_load,
                    "first_failure_load": c.first_failure.load if c.first_failure else None,
                    "first_failure_reasons": c.first_failure.reasons if c.first_failure else [],
                    "limit_untrusted": c.limit_untrusted,
                    "untrusted": [
                        {"load": p.load, "reasons": p.reasons} for p in c.points if p.untrusted
                    ],
                }
                for c in result.ranking
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    return 0 if result.best is not None else 1


def capacity_main(argv: list[str]) -> int:
    """`surgebench capacity SWEEP_DIR --slo EXPR`."""
    return _run(_capacity_parser(), argv, _capacity)
