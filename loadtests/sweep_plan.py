"""A sweep's plan: its config file (TOML or JSON) -> validated configurations x loads -> cells.

Pure: no processes, no clock; `loadtests.sweep` runs the cells. A plan whose configurations
resolve to the same settings is refused (`check_distinct`), naming them: comparing a
configuration with itself answers nothing.

Config file (TOML or JSON)::

    name = "admission"
    duration = "10s"           # per cell
    warmup = "2s"              # optional
    load_kind = "users"        # or "rate" (open loop, requests/s)
    loads = [10, 20, 40]
    slo = "ttft_p95<800ms,rejections<1%"   # optional, for the report
    retries_invalid = 1        # optional: reruns of a cell invalid for a transient cause (0-5)
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

Two configurations are the same when they pass the same flags with the same values once the
fixed tables and the matrix are merged: flag names compare with ``-`` and ``_`` alike, values by
what they mean (``8`` = ``8.0``, ``true`` = ``"on"``), and, for the service, ``workers`` counts
only under ``admission = "queue"`` (the service's default policy) and only when it differs from
``max-concurrent`` (``workers = 0`` means "as many as max-concurrent").
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.errors import SloError
from reports.slo import parse_slo
from reports.sweeps import LOAD_KINDS, SweepCell, SweepManifest
from surgebench.units import DURATION_HELP, DurationError, parse_duration_s

TOP_LEVEL_KEYS = (
    "name",
    "duration",
    "warmup",
    "load_kind",
    "loads",
    "slo",
    "retries_invalid",
    "run",
    "mock",
    "service",
    "matrix",
    "configurations",
)
DEFAULT_RETRIES_INVALID = 1
MAX_RETRIES_INVALID = 5
_FLAG_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
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
    retries_invalid: int = DEFAULT_RETRIES_INVALID
    """Reruns of a cell whose run was invalid for a transient cause (client lag, event-loop lag,
    the CPU guard: `reports.verdict.transient_invalid`); never for a failed run or errors."""

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


def format_value(value: Scalar) -> str:
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
                label.append(f"{key}={format_value(value)}")
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
    if "duration" not in data:
        raise SweepConfigError(
            f'{source}: duration is missing; give each cell\'s run time, e.g. duration = "10s"'
        )
    duration = str(data.get("duration", ""))
    if _seconds(duration) is None or _seconds(duration) == 0:
        raise SweepConfigError(
            f"{source}: duration = {duration!r} is not valid; allowed: {DURATION_HELP}, > 0"
        )
    warmup = data.get("warmup")
    if warmup is not None and _seconds(str(warmup)) is None:
        raise SweepConfigError(
            f"{source}: warmup = {warmup!r} is not valid; allowed: {DURATION_HELP}"
        )
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
    retries = data.get("retries_invalid", DEFAULT_RETRIES_INVALID)
    if (
        not isinstance(retries, int)
        or isinstance(retries, bool)
        or not 0 <= retries <= MAX_RETRIES_INVALID
    ):
        raise SweepConfigError(
            f"{source}: retries_invalid = {retries!r} is not valid; allowed: an integer from 0 "
            f"to {MAX_RETRIES_INVALID}"
        )
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
    check_distinct(configurations, source)
    return SweepPlan(
        name,
        duration,
        str(warmup) if warmup is not None else None,
        load_kind,
        [float(v) for v in loads],
        slo,
        run_flags,
        configurations,
        retries,
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


def cell_argv(plan: SweepPlan, cell: SweepCell, run_dir: Path) -> list[str]:
    """The `surgebench run` arguments of one cell (docs/contracts.md): it writes its results into
    exactly `run_dir`, the folder the sweep chose for it."""
    config = plan.configuration(cell.configuration)
    argv = [
        "run",
        "--name",
        f"{plan.name}-{cell.id}",
        "--run-dir",
        str(run_dir),
        "--duration",
        plan.duration,
        "--no-report",
    ]
    argv += (
        ["--users", format_value(cell.load)]
        if plan.load_kind == "users"
        else ["--rate", format_value(cell.load)]
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
                argv += [f"--{prefix}{key}", format_value(value)]
    return argv


def new_manifest(plan: SweepPlan) -> SweepManifest:
    return SweepManifest(
        name=plan.name,
        load_kind=plan.load_kind,
        loads=plan.loads,
        configurations=[{"name": c.name, "settings": c.settings()} for c in plan.configurations],
        cells=plan.cells(),
        duration=plan.duration,
        slo=plan.slo,
        extra={"retries_invalid": plan.retries_invalid},
    )


def plan_seconds(text: str | None) -> float:
    """Seconds of a duration the plan has already validated (0 for None)."""
    return parse_duration_s(text) if text else 0.0


def _seconds(text: str) -> float | None:
    try:
        return parse_duration_s(text)
    except DurationError:
        return None


def _meaning(value: Scalar) -> Scalar:
    """A flag value as the servers read it: numbers by value, switches as booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    low = value.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    try:
        return float(low)
    except ValueError:
        return value.strip()


def resolved(config: Configuration) -> tuple[tuple[str, Any], ...]:
    """What a configuration asks of the servers, in a comparable form (the module's rule)."""
    mock = {k.replace("_", "-"): _meaning(v) for k, v in config.mock.items()}
    service = {k.replace("_", "-"): _meaning(v) for k, v in config.service.items()}
    workers = service.pop("workers", None)
    if service.get("admission", "queue") == "queue" and workers not in (
        None,
        0.0,
        service.get("max-concurrent"),
    ):
        service["workers"] = workers
    items = [(f"mock.{k}", v) for k, v in mock.items()]
    items += [(f"service.{k}", v) for k, v in service.items()]
    return tuple(sorted(items, key=lambda kv: kv[0]))


def check_distinct(configurations: list[Configuration], source: str = "config") -> None:
    """`SweepConfigError` naming the configurations that resolve to the same settings."""
    groups: dict[tuple[tuple[str, Any], ...], list[str]] = {}
    for index, config in enumerate(configurations):
        groups.setdefault(resolved(config), []).append(f"{config.name} (cells c{index:02d}-*)")
    same = [names for names in groups.values() if len(names) > 1]
    if same:
        listed = "; ".join(" = ".join(names) for names in same)
        raise SweepConfigError(
            f"{source}: configurations resolve to the same settings ({listed}); each "
            "configuration must differ in what the mock or the service runs with (note: "
            "workers only counts under admission = queue, and workers = 0 or = max-concurrent "
            "is the same as not setting it)"
        )
