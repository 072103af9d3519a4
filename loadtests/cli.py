"""`surgebench run`: the one command for a whole load test (see `loadtests.runner`).

Never imports Locust: Locust runs as a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests.runner import RunError, run
from loadtests.settings import RunSettings, SettingsError, parse_run_args
from reports.results import Summary
from reports.verdict import verdict_text
from surgebench.interrupts import interruptible
from surgebench.process import surgebench_argv


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def console_table(summary: Summary) -> str:
    """A short plain-text table of the run's main figures."""
    lines = [
        f"{'metric':<24}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}{'count':>9}",
    ]
    for metric, label in (
        ("ttft_ms", "TTFT ms"),
        ("itl_ms", "ITL ms"),
        ("tpot_ms", "TPOT ms"),
        ("e2e_ms", "end-to-end ms"),
        ("rejected_ms", "rejection ms"),
        ("client_lag_ms", "client lag ms"),
        ("ttft_from_intended_ms", "TTFT from intended ms"),
    ):
        stats = summary.metric(metric)
        if stats.count:
            lines.append(
                f"{label:<24}{_fmt(stats.p50):>10}{_fmt(stats.p90):>10}{_fmt(stats.p99):>10}"
                f"{_fmt(stats.mean):>10}{stats.count:>9}"
            )
    read_p50 = summary.saturation.get("read_lag_p50_ms")
    if read_p50 is not None:  # (kernel timestamps: the generator's own delay per read)
        read_p99 = summary.saturation.get("read_lag_p99_ms")
        lines.append(  # (summary.json keeps p50, p99 and max of it)
            f"{'read lag ms':<24}{_fmt(read_p50):>10}{'-':>10}{_fmt(read_p99):>10}{'-':>10}"
        )
    if len(lines) == 1:  # nothing was measured: no table header without rows
        lines = []
    outcomes = ", ".join(f"{k} {v}" for k, v in summary.outcomes.items() if v)
    lines += [
        f"requests {summary.requests} ({outcomes or 'none'}); "
        f"rejection rate {summary.rejection_rate:.1%}",
        f"throughput {summary.requests_per_s:.1f} req/s, {summary.ok_requests_per_s:.1f} ok/s, "
        f"{summary.output_tokens_per_s:.0f} output tokens/s over {summary.measured_s:.0f}s",
    ]
    if summary.open_loop:
        ol = summary.open_loop
        lines.append(
            f"open loop: intended {ol.get('intended', 0)}, sent {ol.get('sent', 0)}, "
            f"late {ol.get('late', 0)}, dropped {ol.get('dropped', 0)}"
        )
    if summary.valid:
        lines.append("valid: yes (load generator not saturated)")
    else:
        lines.append("VALID: NO - these latencies include load-generator delay:")
        lines += [f"  - {reason}" for reason in summary.invalid_reasons]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if any(a in ("-h", "--help") for a in args):
        from loadtests.settings import build_parser

        build_parser().print_help()
        return 0
    try:
        settings = parse_run_args(args)
    except SettingsError as exc:
        print(f"surgebench run: {exc}", file=sys.stderr)
        return 2
    try:
        with interruptible():  # a stopped run still stops its servers and keeps what it measured
            result = run(settings, say=lambda line: print(line, flush=True))
    except RunError as exc:
        print(f"surgebench run: {exc}", file=sys.stderr)
        return exc.exit_code
    print(verdict_text(result.summary), console_table(result.summary), sep="\n", flush=True)
    if result.interrupted:
        print("(interrupted: the figures cover the part that ran)")
    if settings.report:
        subprocess.run(surgebench_argv("report", str(result.run_dir)), check=False)
    code = 130 if result.interrupted else 0
    if not result.interrupted:
        code = _baselines(settings, result.run_dir)
    code = exit_code(settings, result.summary, code)
    print(f"results: {result.run_dir}", flush=True)
    return code


INVALID_EXIT = 3
"""`--strict`: the run was invalid (its figures include the load generator's own delay)."""


def exit_code(settings: RunSettings, summary: Summary, code: int) -> int:
    """The run's exit code: `--strict` turns an invalid run into 3, ahead of the baseline gate
    (1: a regression measured by a distorted instrument is no evidence); 130 (Ctrl-C) stays."""
    if settings.strict and not summary.valid and code != 130:
        print(f"surgebench run: --strict: the run is invalid; exit {INVALID_EXIT}", file=sys.stderr)
        return INVALID_EXIT
    return code


def _baselines(settings: RunSettings, run_dir: Path) -> int:
    """`--save-baseline` / `--compare-baseline`: the CI workflow of `reports.baseline`."""
    from reports.baseline import compare_to_baseline, save_baseline

    code = 0
    if settings.compare_baseline:
        thresholds = Path(settings.thresholds) if settings.thresholds else None
        outcome = compare_to_baseline(
            run_dir, settings.compare_baseline, root=settings.out, thresholds_file=thresholds
        )
        print(outcome.markdown, flush=True)
        code = outcome.exit_code
    if settings.save_baseline:
        path = save_baseline(run_dir, settings.save_baseline, root=settings.out)
        print(f"baseline {settings.save_baseline!r} saved: {path}", flush=True)
    return code
