"""The replica question of a sweep: load held within the SLO against `processes` (replicas).

When a sweep's configurations differ in the `processes` setting of the service (or, if the
service's does not vary, of the mock), `replica_series` groups the configurations that differ
only in it and gives each group's largest load held per replica count; the figure plots them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from reports.capacity import CapacityResult
from reports.plots import new_figure
from reports.sweeps import SweepManifest

SETTING = "processes"
_LABEL_RE = re.compile(r"(^|,)processes=[^,]*")


@dataclass(frozen=True)
class ReplicaSeries:
    """Which server's replicas vary, and per group of otherwise equal configurations the load
    held (0: not even the lowest load) at each replica count."""

    part: str  # "service" or "mock"
    groups: dict[str, list[tuple[int, float]]]


def _processes(settings: Mapping[str, Any], part: str) -> int:
    table = settings.get(part) or {}
    try:
        return int(float(table.get(SETTING, 1)))
    except (TypeError, ValueError):
        return 1


def replica_series(manifest: SweepManifest, result: CapacityResult) -> ReplicaSeries | None:
    """None unless some configurations differ in `processes`."""
    configs = [(str(c["name"]), dict(c.get("settings") or {})) for c in manifest.configurations]
    part = next(
        (p for p in ("service", "mock") if len({_processes(s, p) for _, s in configs}) > 1), None
    )
    if part is None:
        return None
    held = {c.configuration: c.max_load for c in result.ranking}
    groups: dict[str, list[tuple[int, float]]] = {}
    labels: dict[str, str] = {}
    for name, settings in configs:
        rest = {k: dict(v) for k, v in settings.items() if isinstance(v, dict)}
        rest.get(part, {}).pop(SETTING, None)
        key = json.dumps(rest, sort_keys=True, default=str)
        label = _LABEL_RE.sub("", name).strip(",") or "all"
        labels.setdefault(key, label)
        groups.setdefault(labels[key], []).append(
            (_processes(settings, part), float(held.get(name) or 0.0))
        )
    return ReplicaSeries(part, {label: sorted(points) for label, points in groups.items()})


def held_vs_replicas_figure(series: ReplicaSeries, load_label: str, slo_text: str) -> Figure:
    """Load held within the SLO against the replica count, one line per group."""
    figure = new_figure(9.0, 5.0)
    ax = figure.subplots()
    counts: set[int] = set()
    for index, (label, points) in enumerate(sorted(series.groups.items())):
        xs = [p for p, _ in points]
        counts.update(xs)
        ax.plot(xs, [h for _, h in points], marker="o", color=f"C{index % 10}", label=label)
    ax.set_xticks(sorted(counts))
    ax.set_xlabel(f"{series.part} replicas (--processes)")
    ax.set_ylabel(f"{load_label} held within the SLO")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"Load held within {slo_text or 'the SLO'} vs {series.part} replicas")
    return figure


def replica_figure_spec(
    manifest: SweepManifest, result: CapacityResult, load_label: str
) -> Sequence[tuple[str, str, Figure]]:
    """The sweep report's figure for the replica question; none when replicas do not vary."""
    series = replica_series(manifest, result)
    if series is None:
        return ()
    figure = held_vs_replicas_figure(series, load_label, result.slo.text)
    return (("held_vs_replicas", "Load held vs replicas", figure),)
