"""`surgebench sweep CONFIG_FILE --out DIR`: run a sweep plan's cells, then its report.

The plan (config file -> validated configurations x loads -> cells) is `loadtests.sweep_plan`;
this module executes it. Each cell runs ``surgebench run ... --run-dir DIR/runs/<cell>
--no-report`` as a subprocess: the sweep chooses each cell's folder, so it finds the cell's
results there (never by reading the run's output). ``DIR/sweep.json`` records the plan and each
cell's folder and status. Rerunning the same command resumes: cells whose ``summary.json``
exists are skipped. At the end the sweep report (figures, ranking, capacity answer) is written
into DIR. The config file's format is in `loadtests.sweep_plan` and docs/loadtests.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TextIO

from loadtests.sweep_plan import (
    SweepConfigError,
    SweepPlan,
    cell_argv,
    format_value,
    load_plan,
    new_manifest,
    plan_seconds,
)
from reports.errors import SloError
from reports.results import SUMMARY_FILE, ResultsError, read_summary
from reports.slo import parse_slo
from reports.sweep_report import write_sweep_report
from reports.sweeps import SweepCell, SweepManifest, read_manifest, write_manifest
from reports.verdict import short_invalid_text, transient_invalid
from surgebench.process import child_popen_options

__all__ = ["CellOutcome", "CellRunner", "Progress", "SweepConfigError", "main", "run_sweep"]


@dataclass(frozen=True)
class CellOutcome:
    """What running one cell gave: None, or why it failed."""

    error: str | None = None


CellRunner = Callable[[list[str], Path, float], CellOutcome]
"""(surgebench run args, log file, timeout in s) -> outcome. Injected in tests."""


def subprocess_runner(args: list[str], log_path: Path, timeout_s: float) -> CellOutcome:
    """Run ``python -m surgebench ARGS`` (its output goes to `log_path`)."""
    argv = [sys.executable, "-m", "surgebench", *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            completed = subprocess.run(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
                check=False,
                **child_popen_options(),  # dies with the sweep, even on kill -9
            )
        except subprocess.TimeoutExpired:
            return CellOutcome(f"timed out after {timeout_s:g} s (log: {log_path})")
    if completed.returncode != 0:
        return CellOutcome(f"surgebench run exited {completed.returncode} (log: {log_path})")
    return CellOutcome()


def _fmt_s(seconds: float) -> str:
    whole = max(0, round(seconds))
    return f"{whole // 60}m{whole % 60:02d}s"


@dataclass
class Progress:
    """A one-line progress report per event: cells done / total, elapsed, ETA."""

    total: int
    stream: TextIO
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    done: int = 0
    ran: int = 0  # cells run in this session (skipped ones do not teach the ETA)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def eta_s(self) -> float | None:
        if self.ran == 0:
            return None
        return (self.clock() - self.started) / self.ran * (self.total - self.done)

    def bar(self) -> str:
        width = 20
        filled = round(width * self.done / self.total) if self.total else width
        eta = self.eta_s()
        return (
            f"[{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total} cells, "
            f"elapsed {_fmt_s(self.clock() - self.started)}, "
            f"ETA {'?' if eta is None else _fmt_s(eta)}"
        )

    def note(self, message: str) -> None:
        print(f"{self.bar()} | {message}", file=self.stream, flush=True)


def cell_dir(sweep_dir: Path, cell_id: str) -> Path:
    """The folder the sweep chooses for one cell's run."""
    return sweep_dir / "runs" / cell_id


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def check_same_plan(existing: SweepManifest, fresh: SweepManifest, sweep_dir: Path) -> None:
    same = (
        existing.load_kind == fresh.load_kind
        and existing.loads == fresh.loads
        and existing.configurations == fresh.configurations
        and existing.duration == fresh.duration
    )
    if not same:
        raise SweepConfigError(
            f"--out {str(sweep_dir)!r} holds a sweep with a different plan (configurations, "
            "loads or duration); use another --out folder, or remove that one to start over"
        )


def run_sweep(
    plan: SweepPlan,
    sweep_dir: Path,
    runner: CellRunner = subprocess_runner,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SweepManifest:
    """Run every cell not yet done (resuming), keeping ``sweep.json`` current after each."""
    fresh = new_manifest(plan)
    if (sweep_dir / "sweep.json").exists():
        check_same_plan(read_manifest(sweep_dir), fresh, sweep_dir)
    manifest = fresh
    progress = Progress(len(manifest.cells), stream or sys.stderr, clock)
    before = (
        {c.id: c for c in read_manifest(sweep_dir).cells}
        if (sweep_dir / "sweep.json").exists()
        else {}
    )
    for cell in manifest.cells:
        if cell.id in before:  # a resumed sweep keeps each cell's rerun history
            cell.attempts, cell.reruns = before[cell.id].attempts, before[cell.id].reruns
        run_dir = cell_dir(sweep_dir, cell.id)
        if (run_dir / SUMMARY_FILE).exists():
            cell.status, cell.run_dir = "done", _relative(run_dir, sweep_dir)
            progress.done += 1
    write_manifest(sweep_dir, manifest)
    if progress.done:
        progress.note(f"resuming: {progress.done} cell(s) already have results")
    timeout_s = plan_seconds(plan.duration) + plan_seconds(plan.warmup) + 180.0
    for cell in manifest.cells:
        if cell.status == "done":
            continue
        unit = "users" if plan.load_kind == "users" else "req/s"
        load = format_value(cell.load)
        progress.note(f"running {cell.id}: {cell.configuration} at {load} {unit}")
        run_dir = cell_dir(sweep_dir, cell.id)
        while True:
            log = (
                f"{cell.id}.log" if cell.attempts == 1 else f"{cell.id}.attempt{cell.attempts}.log"
            )
            outcome = runner(cell_argv(plan, cell, run_dir), sweep_dir / "logs" / log, timeout_s)
            if not _rerun_if_transient(plan, cell, run_dir, progress):
                break
            write_manifest(sweep_dir, manifest)
        progress.ran += 1
        progress.done += 1
        if (run_dir / SUMMARY_FILE).exists():  # an interrupted run still wrote its figures
            cell.status, cell.run_dir, cell.error = "done", _relative(run_dir, sweep_dir), None
        else:
            cell.status = "failed"
            cell.error = outcome.error or f"no {SUMMARY_FILE} in {run_dir}"
            progress.note(f"{cell.id} failed: {cell.error}")
        write_manifest(sweep_dir, manifest)
    progress.note("all cells finished")
    return manifest


def _rerun_if_transient(
    plan: SweepPlan, cell: SweepCell, run_dir: Path, progress: Progress
) -> bool:
    """True when the cell's run was invalid for a transient cause and may be rerun: its folder
    is moved aside to ``runs/<cell>.attempt<N>`` (kept for inspection) and the reason noted."""
    path = run_dir / SUMMARY_FILE
    if cell.attempts > plan.retries_invalid or not path.exists():
        return False
    try:
        summary = read_summary(run_dir)
    except ResultsError:
        return False
    if not transient_invalid(summary):
        return False
    reason = short_invalid_text(summary)
    aside = run_dir.with_name(f"{cell.id}.attempt{cell.attempts}")
    if aside.exists():
        shutil.rmtree(aside)
    run_dir.rename(aside)
    cell.reruns.append(reason)
    progress.note(
        f"{cell.id} invalid ({reason}): rerun {cell.attempts} of {plan.retries_invalid} "
        f"(attempt kept in {aside.name})"
    )
    cell.attempts += 1
    return True


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise SweepConfigError(f"{self.prog}: {message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="surgebench sweep",
        description="Run a matrix of service configurations x offered loads (one `surgebench "
        "run` per cell), then write the sweep report with the recommended configuration. "
        "Rerun the same command to resume after an interruption.",
    )
    parser.add_argument(
        "config", type=Path, metavar="CONFIG_FILE", help="TOML or JSON sweep config"
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="the sweep folder (sweep.json, runs/, report.html)",
    )
    parser.add_argument("--slo", help="SLO for the report (overrides the config's slo)")
    parser.add_argument("--no-svg", action="store_true", help="report figures as PNG only")
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="run the cells only (write the report later with `surgebench report DIR`)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the cells and their `surgebench run` commands, run nothing",
    )
    return parser


def main(argv: Sequence[str], runner: CellRunner = subprocess_runner) -> int:
    """Exit 0 when every cell finished, 1 when some failed, 2 for bad input, 130 interrupted."""
    try:
        args = _parser().parse_args(list(argv))
    except SweepConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        plan = load_plan(args.config)
        if args.slo:
            parse_slo(args.slo)
        if args.dry_run:
            for cell in plan.cells():
                argv_text = " ".join(cell_argv(plan, cell, cell_dir(args.out, cell.id)))
                print(
                    f"{cell.id} [{cell.configuration} @ {format_value(cell.load)}]: "
                    f"surgebench {argv_text}"
                )
            return 0
        manifest = run_sweep(plan, args.out, runner)
    except (SweepConfigError, SloError, ResultsError) as exc:
        print(f"surgebench sweep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nsurgebench sweep: interrupted; rerun the same command to resume "
            "(finished cells are kept)",
            file=sys.stderr,
        )
        return 130
    failed = [cell for cell in manifest.cells if cell.status != "done"]
    if not args.no_report and any(cell.status == "done" for cell in manifest.cells):
        report = write_sweep_report(args.out, args.slo or None, svg=not args.no_svg)
        print(report.capacity.recommendation)
        print(f"report: {report.html}")
    if failed:
        print(
            f"surgebench sweep: {len(failed)} cell(s) failed: "
            + "; ".join(f"{c.id}: {c.error}" for c in failed),
            file=sys.stderr,
        )
    print(f"results: {args.out}")
    return 1 if failed else 0
