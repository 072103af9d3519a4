"""`surgebench sweep CONFIG_FILE --out DIR`: a matrix of service settings x offered loads.

Each cell runs ``surgebench run ... --no-report`` as a subprocess (one results folder per cell,
under ``DIR/runs/<cell>/``); ``DIR/sweep.json`` records the plan and where each cell's results
are. Rerunning the same command resumes: cells whose ``summary.json`` exists are skipped. At the
end the sweep report (figures, ranking, capacity answer) is written into DIR.

Config file (TOML or JSON)::

    name = "admission"
    duration = "10s"           # per cell
    warmup = "2s"              # optional
    load_kind = "users"        # or "rate" (open loop, requests/s)
    loads = [10, 20, 40]
    slo = "ttft_p95<800ms,rejections<1%"   # optional, for the report
    [run]                      # optional: extra `surgebench run` flags for every cell
    spawn-rate = 100
    [mock]                     # fixed mock settings -> --mock-KEY VALUE
    ttft-ms = 100
    [service]                  # fixed service settings -> --service-KEY VALUE
    timeout-s = 30
    [matrix.service]           # every combination is one configuration
    max-concurrent = [8, 32]
    queue-size = [0, 64]
    [[configurations]]         # and/or configurations listed by hand
    name = "big"
    service = {max-concurrent = 128}
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TextIO

from reports.results import SUMMARY_FILE, ResultsError
from reports.slo import SloError, parse_slo
from reports.sweep_report import write_sweep_report
from reports.sweeps import LOAD_KINDS, SweepCell, SweepManifest, read_manifest, write_manifest

TOP_LEVEL_KEYS = (
    "name",
    "duration",
    "warmup",
    "load_kind",
    "loads",
    "slo",
    "run",
    "mock",
    "service",
    "matrix",
    "configurations",
)
_DURATION_RE = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)?$")
_FLAG_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
RESULTS_LINE_RE = re.compile(r"^results:\s*(.+?)\s*$")
Scalar = str | int | float | bool


class SweepConfigError(ValueError):
    """A sweep config that cannot be used; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Configuration:
    """One service (and mock) setting of the matrix."""

    name: str
    mock: dict[str, Scalar]
    service: dict[str, Scalar]

    def settings(self) -> dict[str, Any]:
        return {"mock": self.mock, "service": self.service}


@dataclass(frozen=True)
class SweepPlan:
    """The parsed config: configurations x loads, and how to run each cell."""

    name: str
    duration: str
    warmup: str | None
    load_kind: str
    loads: list[float]
    slo: str
    run_flags: dict[str, Scalar]
    configurations: list[Configuration]

    def cells(self) -> list[SweepCell]:
        return [
            SweepCell(id=f"c{ci:02d}-l{li:02d}", configuration=config.name, load=load)
            for ci, config in enumerate(self.configurations)
            for li, load in enumerate(self.loads)
        ]

    def configuration(self, name: str) -> Configuration:
        return next(c for c in self.configurations if c.name == name)


def _scalar(where: str, value: Any) -> Scalar:
    if isinstance(value, str | int | float | bool):
        return value
    raise SweepConfigError(f"{where} = {value!r}: expected a string, number or boolean")


def _flags(where: str, table: Any) -> dict[str, Scalar]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise SweepConfigError(f"[{where}] must be a table of flag = value")
    flags: dict[str, Scalar] = {}
    for key, value in table.items():
        if not _FLAG_RE.match(key):
            raise SweepConfigError(f"[{where}] key {key!r} is not a flag name (letters, - and _)")
        flags[key.replace("_", "-")] = _scalar(f"{where}.{key}", value)
    return flags


def _format(value: Scalar) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _matrix_configurations(
    matrix: Any, base_mock: dict[str, Scalar], base_service: dict[str, Scalar]
) -> list[Configuration]:
    if matrix is None:
        return []
    if not isinstance(matrix, dict) or set(matrix) - {"mock", "service"}:
        raise SweepConfigError("[matrix] may hold only [matrix.mock] and [matrix.service] tables")
    axes: list[tuple[str, str, list[Scalar]]] = []
    for part in ("mock", "service"):
        table = matrix.get(part, {})
        if not isinstance(table, dict):
            raise SweepConfigError(f"[matrix.{part}] must be a table of flag = [values]")
        for key, values in table.items():
            if not _FLAG_RE.match(key):
                raise SweepConfigError(f"[matrix.{part}] key {key!r} is not a flag name")
            if not isinstance(values, list) or not values:
                raise SweepConfigError(
                    f"matrix.{part}.{key} = {values!r}: expected a non-empty list of values"
                )
            axes.append(
                (part, key.replace("_", "-"), [_scalar(f"matrix.{part}.{key}", v) for v in values])
            )
    if not axes:
        return []
    configurations: list[Configuration] = []
    for combination in itertools.product(*(values for _, _, values in axes)):
        mock, service = dict(base_mock), dict(base_service)
        label: list[str] = []
        for (part, key, values), value in zip(axes, combination, strict=True):
            (mock if part == "mock" else service)[key] = value
            if len(values) > 1:
                label.append(f"{key}={_format(value)}")
        name = ",".join(label) or "default"
        configurations.append(Configuration(name, mock, service))
    return configurations


def parse_plan(data: Mapping[str, Any], source: str = "config") -> SweepPlan:
    """Validate a sweep config strictly; `SweepConfigError` names the bad key."""
    unknown = set(data) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise SweepConfigError(
            f"{source}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
        )
    name = str(data.get("name", Path(source).stem or "sweep"))
    duration = str(data.get("duration", ""))
    if not _DURATION_RE.match(duration):
        raise SweepConfigError(
            f"{source}: duration = {duration!r} is not valid; allowed: a number with ms, s, m or "
            'h, e.g. "10s"'
        )
    warmup = data.get("warmup")
    if warmup is not None and not _DURATION_RE.match(str(warmup)):
        raise SweepConfigError(f'{source}: warmup = {warmup!r} is not valid; e.g. "2s"')
    load_kind = str(data.get("load_kind", "users"))
    if load_kind not in LOAD_KINDS:
        raise SweepConfigError(
            f"{source}: load_kind = {load_kind!r} is not valid; allowed: {', '.join(LOAD_KINDS)}"
        )
    loads = data.get("loads")
    if (
        not isinstance(loads, list)
        or not loads
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in loads)
    ):
        raise SweepConfigError(
            f"{source}: loads = {loads!r} is not valid; allowed: a non-empty list of positive "
            "numbers (users or requests/s)"
        )
    if load_kind == "users" and not all(float(v).is_integer() for v in loads):
        raise SweepConfigError(f"{source}: loads = {loads!r}: users must be whole numbers")
    if len(set(loads)) != len(loads):
        raise SweepConfigError(f"{source}: loads = {loads!r} has duplicates")
    slo = str(data.get("slo", ""))
    if slo:
        try:
            parse_slo(slo)
        except SloError as exc:
            raise SweepConfigError(f"{source}: slo: {exc}") from exc
    run_flags = _flags("run", data.get("run"))
    reserved = {"name", "out", "duration", "warmup", "users", "rate", "no-report"}
    clash = reserved & set(run_flags) - ({"users"} if load_kind == "rate" else set())
    if clash:
        raise SweepConfigError(
            f"{source}: [run] may not set {sorted(clash)}: the sweep sets them per cell"
        )
    base_mock = _flags("mock", data.get("mock"))
    base_service = _flags("service", data.get("service"))
    configurations = _matrix_configurations(data.get("matrix"), base_mock, base_service)
    listed = data.get("configurations", [])
    if not isinstance(listed, list):
        raise SweepConfigError(f"{source}: configurations must be a list of tables")
    for index, entry in enumerate(listed):
        if not isinstance(entry, dict) or set(entry) - {"name", "mock", "service"}:
            raise SweepConfigError(
                f"{source}: configurations[{index}] may hold only name, mock and service"
            )
        label = str(entry.get("name", f"config{index + 1}"))
        configurations.append(
            Configuration(
                label,
                {**base_mock, **_flags(f"configurations[{index}].mock", entry.get("mock"))},
                {
                    **base_service,
                    **_flags(f"configurations[{index}].service", entry.get("service")),
                },
            )
        )
    if not configurations:
        configurations = [Configuration("default", base_mock, base_service)]
    names = [c.name for c in configurations]
    if len(set(names)) != len(names):
        raise SweepConfigError(f"{source}: configuration names repeat: {names}")
    return SweepPlan(
        name,
        duration,
        str(warmup) if warmup is not None else None,
        load_kind,
        [float(v) for v in loads],
        slo,
        run_flags,
        configurations,
    )


def load_plan(path: Path) -> SweepPlan:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise SweepConfigError(f"CONFIG_FILE {str(path)!r}: cannot read ({exc.strerror})") from exc
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SweepConfigError(f"CONFIG_FILE {str(path)!r}: not valid {kind} ({exc})") from exc
    if not isinstance(data, dict):
        raise SweepConfigError(f"CONFIG_FILE {str(path)!r}: expected a table at the top level")
    return parse_plan(data, str(path))


def cell_argv(plan: SweepPlan, cell: SweepCell, out_dir: Path) -> list[str]:
    """The `surgebench run` arguments of one cell (docs/contracts.md)."""
    config = plan.configuration(cell.configuration)
    argv = [
        "run",
        "--name",
        f"{plan.name}-{cell.id}",
        "--out",
        str(out_dir),
        "--duration",
        plan.duration,
        "--no-report",
    ]
    argv += (
        ["--users", _format(cell.load)]
        if plan.load_kind == "users"
        else ["--rate", _format(cell.load)]
    )
    if plan.warmup:
        argv += ["--warmup", plan.warmup]
    for prefix, flags in (
        ("", plan.run_flags),
        ("mock-", config.mock),
        ("service-", config.service),
    ):
        for key, value in flags.items():
            if value is True:
                argv.append(f"--{prefix}{key}")
            elif value is not False:
                argv += [f"--{prefix}{key}", _format(value)]
    return argv


@dataclass(frozen=True)
class CellOutcome:
    """What running one cell gave: its run folder, or why not."""

    run_dir: Path | None
    error: str | None = None


CellRunner = Callable[[list[str], Path, float], CellOutcome]
"""(surgebench run args, log file, timeout in s) -> outcome. Injected in tests."""


def subprocess_runner(args: list[str], log_path: Path, timeout_s: float) -> CellOutcome:
    """Run ``python -m surgebench ARGS``; its last ``results: PATH`` line names the folder."""
    argv = [sys.executable, "-m", "surgebench", *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            completed = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return CellOutcome(None, f"timed out after {timeout_s:g} s (log: {log_path})")
        log.write(completed.stdout)
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    match = RESULTS_LINE_RE.match(lines[-1]) if lines else None
    if completed.returncode != 0 and not (match and Path(match.group(1), SUMMARY_FILE).exists()):
        return CellOutcome(None, f"surgebench run exited {completed.returncode} (log: {log_path})")
    if match is None:
        return CellOutcome(None, f"no 'results: PATH' line in the output (log: {log_path})")
    return CellOutcome(Path(match.group(1)))


def duration_s(text: str) -> float:
    match = re.match(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$", text)
    if match is None:
        return 0.0
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


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


def _existing_run(cell_out: Path) -> Path | None:
    runs = sorted(p.parent for p in cell_out.glob(f"*/{SUMMARY_FILE}"))
    return runs[-1] if runs else None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def new_manifest(plan: SweepPlan) -> SweepManifest:
    return SweepManifest(
        name=plan.name,
        load_kind=plan.load_kind,
        loads=plan.loads,
        configurations=[{"name": c.name, "settings": c.settings()} for c in plan.configurations],
        cells=plan.cells(),
        duration=plan.duration,
        slo=plan.slo,
    )


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
    for cell in manifest.cells:
        existing = _existing_run(sweep_dir / "runs" / cell.id)
        if existing is not None:
            cell.status, cell.run_dir = "done", _relative(existing, sweep_dir)
            progress.done += 1
    write_manifest(sweep_dir, manifest)
    if progress.done:
        progress.note(f"resuming: {progress.done} cell(s) already have results")
    timeout_s = duration_s(plan.duration) + duration_s(plan.warmup or "0") + 180.0
    for cell in manifest.cells:
        if cell.status == "done":
            continue
        unit = "users" if plan.load_kind == "users" else "req/s"
        progress.note(f"running {cell.id}: {cell.configuration} at {_format(cell.load)} {unit}")
        outcome = runner(
            cell_argv(plan, cell, sweep_dir / "runs" / cell.id),
            sweep_dir / "logs" / f"{cell.id}.log",
            timeout_s,
        )
        progress.ran += 1
        progress.done += 1
        if outcome.run_dir is not None and (outcome.run_dir / SUMMARY_FILE).exists():
            cell.status, cell.run_dir, cell.error = (
                "done",
                _relative(outcome.run_dir, sweep_dir),
                None,
            )
        else:
            cell.status = "failed"
            cell.error = outcome.error or f"no {SUMMARY_FILE} in {outcome.run_dir}"
            progress.note(f"{cell.id} failed: {cell.error}")
        write_manifest(sweep_dir, manifest)
    progress.note("all cells finished")
    return manifest


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
                argv_text = " ".join(cell_argv(plan, cell, args.out / "runs" / cell.id))
                print(
                    f"{cell.id} [{cell.configuration} @ {_format(cell.load)}]: "
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
    if any(cell.status == "done" for cell in manifest.cells):
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
