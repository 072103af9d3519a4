"""Matplotlib figures of runs and sweeps, saved as PNG and SVG (Agg canvas, no pyplot state).

Each ``*_figure`` function returns a `Figure` or None when the data it needs is absent;
`save_figure` writes ``<stem>.png`` and ``<stem>.svg``. Titles, axis labels and units are on
every figure so that a reader who has never seen surgebench can read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from reports.curves import Curve
from reports.hdr import Distribution, distribution_of
from reports.results import BREAKDOWN_PARTS, Summary

DPI = 100
OUTCOME_COLORS: dict[str, str] = {
    "ok": "#2ca02c",
    "rejected": "#ff7f0e",
    "timeout": "#9467bd",
    "errors": "#d62728",
}


@dataclass(frozen=True)
class SavedFigure:
    """A figure written to disk: its PNG (embedded in reports), SVG, and title."""

    stem: str
    title: str
    png: Path
    svg: Path | None


def new_figure(width_in: float = 9.0, height_in: float = 4.5) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(
    figure: Figure, out_dir: Path, stem: str, title: str, svg: bool = True
) -> SavedFigure:
    """Write ``out_dir/<stem>.png`` and (unless `svg` is False) ``.svg``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path, svg_path = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    figure.savefig(png_path, dpi=DPI)
    if svg:
        figure.savefig(svg_path)
    return SavedFigure(stem, title, png_path, svg_path if svg else None)


def _times(summary: Summary) -> np.ndarray:
    return np.asarray([p.t_s for p in summary.timeseries], dtype=float)


def _interval_s(summary: Summary) -> float:
    times = _times(summary)
    if len(times) < 2:
        return 1.0
    width = float(np.median(np.diff(times)))
    return width if width > 0 else 1.0


def _optional(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _load_axis(ax: Axes, summary: Summary) -> None:
    """The users curve (closed loop) on a right-hand axis."""
    users = [p.users for p in summary.timeseries]
    if not any(users):
        return
    twin = ax.twinx()
    twin.step(_times(summary), users, where="post", color="0.55", linestyle="--", label="users")
    twin.set_ylabel("users (dashed grey)")
    twin.set_ylim(0, max(users) * 1.3)


def _mark_warmup(ax: Axes, summary: Summary) -> None:
    if summary.warmup_s > 0 and summary.timeseries:
        ax.axvspan(0, summary.warmup_s, color="0.92", zorder=0, label="warm-up (not measured)")


def latency_over_time_figure(summary: Summary) -> Figure | None:
    """TTFT and ITL p50/p95 per interval, with the users curve."""
    if not summary.timeseries:
        return None
    points = summary.timeseries
    times = _times(summary)
    figure = new_figure(9.0, 6.0)
    axes = figure.subplots(2, 1, sharex=True)
    rows = (
        ("TTFT", "ttft_p50_ms", "ttft_p95_ms", "time to first token (ms)"),
        ("ITL", "itl_p50_ms", "itl_p95_ms", "inter-token latency (ms)"),
    )
    for ax, (short, p50, p95, ylabel) in zip(axes, rows, strict=True):
        _mark_warmup(ax, summary)
        ax.plot(times, _optional([getattr(p, p50) for p in points]), label=f"{short} p50")
        ax.plot(times, _optional([getattr(p, p95) for p in points]), label=f"{short} p95")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small", framealpha=0.85)
        _load_axis(ax, summary)
    axes[-1].set_xlabel("time since start (s)")
    figure.suptitle(f"{summary.name}: latency percentiles per {_interval_s(summary):g} s")
    return figure


def throughput_over_time_figure(summary: Summary) -> Figure | None:
    """Requests/s (all and ok) and output tokens/s per interval."""
    if not summary.timeseries:
        return None
    points = summary.timeseries
    times = _times(summary)
    width = _interval_s(summary)
    figure = new_figure()
    ax = figure.subplots()
    _mark_warmup(ax, summary)
    ax.plot(times, [p.requests / width for p in points], label="requests/s (all outcomes)")
    ax.plot(times, [p.ok / width for p in points], label="ok requests/s")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("requests per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(times, [p.output_tokens / width for p in points], color="C2", label="output tokens/s")
    twin.set_ylabel("output tokens per second (green)")
    twin.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(
        handles[0] + twin_handles[0],
        handles[1] + twin_handles[1],
        loc="upper left",
        fontsize="small",
    )
    ax.set_title(f"{summary.name}: throughput over time")
    return figure


def outcomes_over_time_figure(summary: Summary) -> Figure | None:
    """Stacked outcome classes per interval: ok / rejected / timeout / errors."""
    if not summary.timeseries:
        return None
    points = summary.timeseries
    times = _times(summary)
    width = _interval_s(summary)
    series = {
        "ok": [p.ok / width for p in points],
        "rejected": [p.rejected / width for p in points],
        "timeout": [p.timeout / width for p in points],
        "errors": [p.errors / width for p in points],
    }
    figure = new_figure()
    ax = figure.subplots()
    ax.stackplot(
        times,
        *series.values(),
        labels=list(series),
        colors=[OUTCOME_COLORS[k] for k in series],
        step="post",
    )
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("requests per second, by outcome")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(f"{summary.name}: outcomes over time (rejections are load shedding, not failures)")
    return figure


CDF_METRICS: tuple[tuple[str, str], ...] = (
    ("ttft_ms", "time to first token"),
    ("itl_ms", "inter-token latency"),
    ("e2e_ms", "end-to-end request latency"),
)


def latency_cdf_figure(runs: Sequence[Summary]) -> Figure | None:
    """CDFs of TTFT, ITL and end-to-end latency from the HDR histograms, one line per run."""
    panels: list[tuple[str, list[tuple[str, Distribution]]]] = []
    for field, label in CDF_METRICS:
        curves = [(run.name, d) for run in runs if (d := distribution_of([run], field)) is not None]
        if curves:
            panels.append((label, curves))
    if not panels:
        return None
    figure = new_figure(4.0 * len(panels) + 1.0, 4.5)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, curves) in zip(axes, panels, strict=True):
        for name, distribution in curves:
            values, fractions = distribution.cdf()
            ax.step(values, fractions, where="post", label=name if len(runs) > 1 else label)
        for q in (0.5, 0.95, 0.99):
            ax.axhline(q, color="0.7", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{label} (ms, log scale)")
        ax.set_ylabel("fraction of samples at or below")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, which="both")
        ax.set_title(label)
        if len(runs) > 1:
            ax.legend(fontsize="small", loc="lower right")
    figure.suptitle("latency distributions (dotted lines: p50, p95, p99)")
    return figure


def ttft_breakdown_figure(runs: Sequence[Summary]) -> Figure | None:
    """Where the time to first token went: p50 and p95 of each part, one group per run."""
    with_parts = [run for run in runs if run.breakdown_ms]
    if not with_parts:
        return None
    parts = [
        part for part in BREAKDOWN_PARTS if any(part in run.breakdown_ms for run in with_parts)
    ]
    figure = new_figure(9.0, 1.5 + 0.55 * len(parts) * max(1, len(with_parts)) ** 0.5)
    ax = figure.subplots()
    positions = np.arange(len(parts))
    bar_height = 0.8 / (2 * len(with_parts))
    for index, run in enumerate(with_parts):
        for offset, stat in enumerate(("p50", "p95")):
            values = [
                (run.breakdown_ms[part].get(stat) or 0.0) if part in run.breakdown_ms else 0.0
                for part in parts
            ]
            shift = (2 * index + offset) * bar_height - 0.4 + bar_height / 2
            label = f"{stat}" if len(with_parts) == 1 else f"{run.name} {stat}"
            ax.barh(
                positions + shift,
                values,
                height=bar_height,
                label=label,
                alpha=0.55 if stat == "p50" else 0.95,
                color=f"C{index}",
            )
    ax.set_yticks(positions, [part.replace("_", " ") for part in parts])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("TTFT breakdown: queue wait, pool wait, upstream TTFT, relay overhead, client lag")
    return figure


def run_figures(
    summary: Summary, out_dir: Path, prefix: str = "", svg: bool = True
) -> list[SavedFigure]:
    """All figures of one run that its data supports, saved under `out_dir`."""
    makers = (
        ("latency_over_time", "TTFT and ITL percentiles over time", latency_over_time_figure),
        ("throughput_over_time", "Throughput over time", throughput_over_time_figure),
        ("outcomes_over_time", "Outcomes over time", outcomes_over_time_figure),
    )
    saved: list[SavedFigure] = []
    for stem, title, make in makers:
        figure = make(summary)
        if figure is not None:
            saved.append(save_figure(figure, out_dir, prefix + stem, title, svg))
    cdf = latency_cdf_figure([summary])
    if cdf is not None:
        saved.append(save_figure(cdf, out_dir, prefix + "latency_cdf", "Latency CDFs", svg))
    breakdown = ttft_breakdown_figure([summary])
    if breakdown is not None:
        saved.append(
            save_figure(breakdown, out_dir, prefix + "ttft_breakdown", "TTFT breakdown", svg)
        )
    from reports.workload_plots import workload_figures  # it draws on this module's helpers

    saved += workload_figures(summary, out_dir, prefix, svg)
    return saved


# Sweep figures ------------------------------------------------------------------------------


def _curve_values(curve: Curve, read: str) -> np.ndarray:
    values: list[float | None] = []
    for run in curve.runs:
        if read == "ttft_p95":
            values.append(run.metric("ttft_ms").p95)
        elif read == "ok_rps":
            values.append(run.ok_requests_per_s)
        elif read == "tokens_per_s":
            values.append(run.output_tokens_per_s)
        else:
            values.append(run.rejection_rate * 100.0)
    return _optional(values)


def load_vs_figure(
    curves: Sequence[Curve],
    read: str,
    ylabel: str,
    title: str,
    load_label: str,
    limit: float | None = None,
    limit_label: str = "",
    knees: Mapping[str, float] | None = None,
) -> Figure:
    """One metric against offered load, one line per configuration."""
    figure = new_figure(9.0, 5.0)
    ax = figure.subplots()
    for index, curve in enumerate(curves):
        values = _curve_values(curve, read)
        ax.plot(curve.loads, values, marker="o", color=f"C{index % 10}", label=curve.configuration)
        knee = (knees or {}).get(curve.configuration)
        if knee is not None and knee in curve.loads:
            at = curve.loads.index(knee)
            ax.plot(
                [knee],
                [values[at]],
                marker="*",
                markersize=14,
                color=f"C{index % 10}",
                markeredgecolor="black",
            )
    if limit is not None:
        ax.axhline(limit, color="crimson", linestyle="--", linewidth=1.2, label=limit_label)
    ax.set_xlabel(load_label)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title + (" (★ = knee)" if knees else ""))
    return figure


def frontier_figure(curves: Sequence[Curve], limit_ms: float | None = None) -> Figure:
    """Latency-throughput frontier: TTFT p95 against ok requests/s, Pareto front dashed."""
    figure = new_figure(9.0, 5.0)
    ax = figure.subplots()
    points: list[tuple[float, float]] = []
    for index, curve in enumerate(curves):
        xs = _curve_values(curve, "ok_rps")
        ys = _curve_values(curve, "ttft_p95")
        ax.plot(xs, ys, marker="o", color=f"C{index % 10}", label=curve.configuration)
        for load, x, y in zip(curve.loads, xs, ys, strict=True):
            if np.isfinite(x) and np.isfinite(y):
                points.append((float(x), float(y)))
                ax.annotate(
                    f"{load:g}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize="x-small",
                    color=f"C{index % 10}",
                )
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot(
            *zip(*front, strict=True),
            color="black",
            linestyle="--",
            linewidth=1,
            label="Pareto frontier\n(best TTFT for\neach throughput)",
        )
    if limit_ms is not None:
        ax.axhline(limit_ms, color="crimson", linestyle=":", linewidth=1.2, label="SLO limit")
    ax.set_xlabel("throughput: ok requests per second")
    ax.set_ylabel("TTFT p95 (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Latency-throughput frontier (labels: offered load; lower right is better)")
    return figure


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten on both throughput (higher) and latency (lower), by throughput."""
    front: list[tuple[float, float]] = []
    best_latency = float("inf")
    for x, y in sorted(points, key=lambda p: (-p[0], p[1])):
        if y < best_latency:
            front.append((x, y))
            best_latency = y
    return sorted(front)
