"""The sweep folder: ``sweep.json`` (the plan and where each cell's run folder is).

`loadtests/sweep.py` writes it; `capacity` and `report` read it. Layout (``schema_version`` 1)::

    {"schema_version": 1, "name": "...", "load_kind": "users" | "rate", "duration": "10s",
     "slo": "ttft_p95<800ms,rejections<1%",
     "configurations": [{"name": "max_concurrent=8", "settings": {"service-max-concurrent": 8}}],
     "loads": [10, 20],
     "cells": [{"id": "c00-l00", "configuration": "max_concurrent=8", "load": 10,
                "status": "done" | "pending" | "failed", "run_dir": "runs/c00-l00/<run>" | null,
                "error": "..." | null, "attempts": 1,
                "reruns": ["client lag p99 16.2 ms"]}]}

``attempts`` and ``reruns``: a cell invalid for a transient cause (client lag, event-loop lag,
the CPU guard) is rerun up to the plan's ``retries_invalid`` times; each discarded attempt's
folder is kept as ``runs/<cell>.attempt<N>``.

``run_dir`` is relative to the sweep folder when it lies inside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reports.curves import Curve
from reports.results import ResultsError, Summary, read_summary

SWEEP_FILE = "sweep.json"
SWEEP_SCHEMA_VERSION = 1
LOAD_KINDS: tuple[str, ...] = ("users", "rate")


@dataclass
class SweepCell:
    """One (configuration, load) point of the matrix."""

    id: str
    configuration: str
    load: float
    status: str = "pending"
    run_dir: str | None = None
    error: str | None = None
    attempts: int = 1
    """Runs of this cell: 1, plus one per rerun after a transiently invalid result."""
    reruns: list[str] = field(default_factory=list)
    """Why each discarded attempt was rerun (its short invalid reasons), in order."""


@dataclass
class SweepManifest:
    """What `sweep.json` holds."""

    name: str
    load_kind: str
    loads: list[float]
    configurations: list[dict[str, Any]]
    cells: list[SweepCell]
    duration: str = ""
    slo: str = ""
    schema_version: int = SWEEP_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "load_kind": self.load_kind,
            "duration": self.duration,
            "slo": self.slo,
            "configurations": self.configurations,
            "loads": self.loads,
            "cells": [asdict(cell) for cell in self.cells],
            **self.extra,
        }

    @property
    def load_label(self) -> str:
        if self.load_kind == "rate":
            return "offered load: arrival rate (requests/s)"
        return "offered load: concurrent users (closed loop)"

    @property
    def load_unit(self) -> str:
        return "req/s" if self.load_kind == "rate" else "users"


def write_manifest(sweep_dir: Path, manifest: SweepManifest) -> Path:
    """Write ``sweep_dir/sweep.json`` atomically; `ResultsError` naming the folder when it
    cannot be written (e.g. ``--out`` under a folder this user cannot write)."""
    path = sweep_dir / SWEEP_FILE
    tmp = path.with_suffix(".json.tmp")
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", "utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ResultsError(
            f"--out: cannot write the sweep into {str(sweep_dir)!r} ({exc.strerror or exc}); "
            "allowed: a folder this user can write"
        ) from None
    return path


def read_manifest(sweep_dir: Path) -> SweepManifest:
    """Read ``sweep_dir/sweep.json``; a clear `ResultsError` when absent or malformed."""
    path = sweep_dir / SWEEP_FILE
    if not path.exists():
        raise ResultsError(
            f"{sweep_dir}: no {SWEEP_FILE} here; is this a folder written by `surgebench sweep`?"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not readable as JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema_version") != SWEEP_SCHEMA_VERSION:
        raise ResultsError(f"{path}: not a sweep manifest of schema_version {SWEEP_SCHEMA_VERSION}")
    known = {
        "schema_version",
        "name",
        "load_kind",
        "duration",
        "slo",
        "configurations",
        "loads",
        "cells",
    }
    try:
        return SweepManifest(
            name=str(data["name"]),
            load_kind=str(data["load_kind"]),
            loads=[float(v) for v in data["loads"]],
            configurations=list(data["configurations"]),
            cells=[SweepCell(**cell) for cell in data["cells"]],
            duration=str(data.get("duration", "")),
            slo=str(data.get("slo", "")),
            extra={k: v for k, v in data.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: malformed sweep manifest ({exc!r})") from exc


def resolve_run_dir(sweep_dir: Path, cell: SweepCell) -> Path | None:
    """The cell's run folder as a path (relative entries are under the sweep folder)."""
    if not cell.run_dir:
        return None
    path = Path(cell.run_dir)
    return path if path.is_absolute() else sweep_dir / path


def load_curves(sweep_dir: Path, manifest: SweepManifest) -> list[Curve]:
    """Per configuration (in manifest order) the finished cells' summaries, by ascending load."""
    by_configuration: dict[str, list[tuple[float, Summary, int]]] = {
        str(c["name"]): [] for c in manifest.configurations
    }
    for cell in manifest.cells:
        run_dir = resolve_run_dir(sweep_dir, cell)
        if cell.status != "done" or run_dir is None:
            continue
        summary = read_summary(run_dir)
        by_configuration.setdefault(cell.configuration, []).append(
            (cell.load, summary, cell.attempts)
        )
    curves: list[Curve] = []
    for name, points in by_configuration.items():
        if not points:
            continue
        points.sort(key=lambda p: p[0])
        curves.append(
            Curve(name, [p[0] for p in points], [p[1] for p in points], [p[2] for p in points])
        )
    return curves
