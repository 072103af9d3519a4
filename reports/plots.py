"""Matplotlib figures of runs and sweeps, saved as PNG and SVG (Agg canvas, no pyplot state).

Each ``*_figure`` function returns a `Figure` or None when the data it needs is absent;
`save_figure` writes ``<stem>.png`` and ``<stem>.svg``. Titles, axis labels and units are on
every figure so that a reader who has never seen surgebench can read them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from reports.curves import Curve
from reports.hdr import Distribution, distribution_of
from reports.results import BREAKDOWN_PARTS, Summary
from reports.servermetrics import PLOTTED, ServerSeries
from reports.verdict import read_lag_limit_ms

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


LEGEND_OUTSIDE: dict[str, object] = {
    "loc": "upper left",
    "bbox_to_anchor": (1.01, 1.0),
    "fontsize": "small",
    "borderaxespad": 0.0,
}
"""Legends sit right of the plot, never on the data."""

ALIAS_FACTOR = 5
"""Rates are counted over windows at least this many median request times wide."""
MIN_BINS = 6
"""Windows are at most a sixth of the run wide."""


@dataclass(frozen=True)
class RateBins:
    """Counts of the per-second time series summed over windows of `width_s` seconds."""

    starts_s: np.ndarray
    widths_s: np.ndarray
    width_s: int
    request_s: float | None
    cycle_s: float | None = None
    """The period the completions repeat with, when the window was fitted to it."""

    def rate(self, counts: np.ndarray) -> np.ndarray:
        rates: np.ndarray = counts / self.widths_s
        return rates

    def axis_note(self) -> str:
        if self.width_s <= 1:
            return "per 1 s"
        if self.cycle_s:
            cycles = self.width_s / self.cycle_s
            return (
                f"mean over {self.width_s} s windows of {cycles:.1f} request cycles "
                f"(~{self.cycle_s:.2g} s each)"
            )
        about = f"; requests last ~{self.request_s:.2g} s" if self.request_s else ""
        return f"mean over {self.width_s} s windows{about}"


CYCLE_FIT = 0.15
"""A window is fitted to the completions' period when it holds a whole number of periods to
within this fraction of one (else the ripple it leaves is no smaller than a plain window's)."""


CYCLE_AGREE = 0.05


def cycle_s(summary: Summary) -> float | None:
    """The period with which completions repeat, from the time series: closed loop (and shapes),
    one user's cycle (mean users / completions per second: a request and the wait after it; the
    median request time plus the think time instead when within `CYCLE_AGREE` of that, as the
    series' count is off by up to a request at each end); constant-rate arrivals, the arrival
    interval; None where nothing repeats (Poisson arrivals, a trace) or nothing was counted."""
    points = [p for p in summary.timeseries if p.t_s >= summary.warmup_s] or summary.timeseries
    total = sum(p.requests for p in points)
    if not points or not total:
        return None
    span_s = points[-1].t_s - points[0].t_s + _interval_s(summary)
    per_s = total / span_s
    model = summary.load_model
    if model == "closed" or model.startswith("shape:"):
        users = float(np.mean([p.users for p in points]))
        if users <= 0:
            return None
        mean_cycle = users / per_s
        e2e_ms = summary.metric("e2e_ms").p50
        think = summary.config.get("think_s")
        think_s = float(think) if isinstance(think, int | float) else 0.0
        if e2e_ms:
            median_cycle = e2e_ms / 1000.0 + think_s
            if abs(median_cycle / mean_cycle - 1.0) <= CYCLE_AGREE:
                return median_cycle
        return mean_cycle
    if model.startswith("open:constant:"):
        return 1.0 / per_s
    return None


def _fitted_width(low: int, high: int, cycle: float) -> int | None:
    """The narrowest whole-second width in [low, high] closest to a whole number of cycles."""
    best: tuple[float, int] | None = None
    for width in range(low, high + 1):
        cycles = width / cycle
        miss = abs(cycles - round(cycles)) if cycles >= 1 else 1.0
        if best is None or miss < best[0] - 1e-9:
            best = (miss, width)
    if best is None or best[0] > CYCLE_FIT:
        return None
    return best[1]


def rate_bins(summary: Summary) -> RateBins:
    """Windows wide enough that request durations cannot alias into bursts.

    Requests are counted when they *finish*; with closed-loop users whose requests take ~T
    seconds, 1-second bins beat against T and draw a sawtooth that is not in the service. A
    window of `ALIAS_FACTOR` x median request time bounds that ripple to ~1/`ALIAS_FACTOR` of
    the rate (8 users in step at 0.89 s: 40 or 48 requests per 5 s window); a window that holds
    a whole number of the completions' cycles (`cycle_s`: 8 s = 9.0 cycles) holds the same
    number every time. The width is the narrowest such one from `ALIAS_FACTOR` x T up to a
    `MIN_BINS`-th of the run, else `ALIAS_FACTOR` x T (at most a `MIN_BINS`-th of the run)."""
    times = _times(summary)
    e2e_ms = summary.metric("e2e_ms").p50
    request_s = e2e_ms / 1000.0 if e2e_ms else None
    width = max(1, math.ceil(ALIAS_FACTOR * request_s)) if request_s else 1
    cycle: float | None = None
    if len(times):
        most = max(1, int((times[-1] - times[0] + 1) // MIN_BINS))
        cycle = cycle_s(summary) if width > 1 else None
        fitted = _fitted_width(width, most, cycle) if cycle else None
        if fitted is None:
            cycle = None
        width = fitted or max(1, min(width, most))
    if not len(times):
        return RateBins(np.zeros(0), np.ones(0), width, request_s)
    first = float(times[0])
    index = ((times - first) // width).astype(int)
    count = int(index.max()) + 1
    starts = first + np.arange(count) * width
    widths = np.full(count, float(width))
    widths[-1] = float(times[-1] - starts[-1] + 1)
    if count > 1 and widths[-1] < width / 2:
        # a last window of a few seconds would alias again (1 s of in-step users: 8 or 16
        # completions): it joins the window before it
        widths = widths[:-1]
        widths[-1] += float(times[-1] - starts[-1] + 1)
        starts = starts[:-1]
    return RateBins(starts, widths, width, request_s, cycle)


def _binned(summary: Summary, bins: RateBins, values: Sequence[float]) -> np.ndarray:
    times = _times(summary)
    index = ((times - bins.starts_s[0]) // bins.width_s).astype(int)
    index = np.minimum(index, len(bins.starts_s) - 1)  # the short last window joined the one before
    return np.bincount(index, weights=np.asarray(values, dtype=float), minlength=len(bins.starts_s))


def _step(ax: Axes, bins: RateBins, rates: np.ndarray, **style: object) -> None:
    """A rate per window, drawn flat over its window."""
    xs = np.append(bins.starts_s, bins.starts_s[-1] + bins.widths_s[-1])
    ax.stairs(rates, xs, baseline=None, **style)  # type: ignore[arg-type]


def shade_phases(ax: Axes, summary: Summary, label_top: bool = False) -> None:
    """Warm-up in grey; each phase of a multi-phase run in alternating bands, named on a top
    axis when `label_top`."""
    if summary.warmup_s > 0 and summary.timeseries:
        ax.axvspan(0, summary.warmup_s, color="0.88", zorder=0, linewidth=0)
    phases = summary.phases
    if len(phases) < 2:
        return
    for phase in phases:
        if phase.index % 2:
            ax.axvspan(phase.start_s, phase.end_s, color="#dde7f5", zorder=0, linewidth=0)
        ax.axvline(phase.start_s, color="#7f96bf", linewidth=0.8, linestyle=":", zorder=1)
    if label_top:
        top = ax.secondary_xaxis("top")
        top.set_xticks(
            [(p.start_s + p.end_s) / 2 for p in phases],
            [p.label for p in phases],
            fontsize="small",
        )
        top.tick_params(length=0)


def _time_axis(ax: Axes, summary: Summary) -> None:
    ax.set_xlabel(
        "time since start (s)"
        + (f"; grey: {summary.warmup_s:g} s warm-up (not measured)" if summary.warmup_s else "")
        + ("; bands: phases of the load" if len(summary.phases) > 1 else "")
    )


def _users_panel(ax: Axes, summary: Summary) -> bool:
    users = [p.users for p in summary.timeseries]
    if not any(users):
        return False
    ax.step(_times(summary), users, where="post", color="0.35", label="users")
    ax.set_ylabel("users")
    ax.set_ylim(0, max(users) * 1.15)
    ax.grid(alpha=0.3)
    return True


def latency_over_time_figure(summary: Summary) -> Figure | None:
    """TTFT and ITL p50/p95 of the requests that finished in each second, and the users."""
    if not summary.timeseries:
        return None
    points = summary.timeseries
    times = _times(summary)
    has_users = any(p.users for p in points)
    figure = new_figure(10.0, 7.0 if has_users else 6.0)
    ratios = [3, 3, 1] if has_users else [1, 1]
    axes = figure.subplots(len(ratios), 1, sharex=True, height_ratios=ratios)
    rows = (
        ("TTFT", "ttft_p50_ms", "ttft_p95_ms", "time to first token (ms)"),
        ("ITL", "itl_p50_ms", "itl_p95_ms", "inter-token latency (ms)"),
    )
    for index, (ax, (short, p50, p95, ylabel)) in enumerate(zip(axes, rows, strict=False)):
        shade_phases(ax, summary, label_top=index == 0)
        ax.plot(
            times, _optional([getattr(p, p95) for p in points]), color="C1", label=f"{short} p95"
        )
        ax.plot(
            times, _optional([getattr(p, p50) for p in points]), color="C0", label=f"{short} p50"
        )
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    if has_users:
        shade_phases(axes[-1], summary)
        _users_panel(axes[-1], summary)
    _time_axis(axes[-1], summary)
    figure.suptitle(
        f"{summary.name}: latency percentiles of the requests finishing in each "
        f"{_interval_s(summary):g} s"
    )
    return figure


def throughput_over_time_figure(summary: Summary) -> Figure | None:
    """Requests/s by outcome and output tokens/s, over windows that cannot alias."""
    if not summary.timeseries:
        return None
    points = summary.timeseries
    bins = rate_bins(summary)
    figure = new_figure(10.0, 6.0)
    top, bottom = figure.subplots(2, 1, sharex=True)
    shade_phases(top, summary, label_top=True)
    series = (
        ("ok", [p.ok for p in points], OUTCOME_COLORS["ok"], "-"),
        ("rejected", [p.rejected for p in points], OUTCOME_COLORS["rejected"], "--"),
        ("timeout", [p.timeout for p in points], OUTCOME_COLORS["timeout"], "-."),
        ("errors", [p.errors for p in points], OUTCOME_COLORS["errors"], ":"),
    )
    for label, counts, color, style in series:
        if label == "ok" or any(counts):
            rates = bins.rate(_binned(summary, bins, counts))
            _step(top, bins, rates, color=color, linestyle=style, linewidth=2, label=f"{label}/s")
    top.set_ylabel("requests/s by outcome")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    shade_phases(bottom, summary)
    tokens = bins.rate(_binned(summary, bins, [p.output_tokens for p in points]))
    _step(bottom, bins, tokens, color="C0", linewidth=2, label="output tokens/s")
    bottom.set_ylabel("output tokens/s")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    bottom.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    _time_axis(bottom, summary)
    figure.suptitle(
        f"{summary.name}: throughput, counted at completion, {bins.axis_note()}", fontsize="medium"
    )
    return figure


def outcomes_over_time_figure(summary: Summary) -> Figure | None:
    """Stacked outcome classes per window: ok / rejected / timeout / errors (the nonzero ones)."""
    if not summary.timeseries:
        return None
    points = summary.timeseries
    bins = rate_bins(summary)
    raw = {
        "ok": [p.ok for p in points],
        "rejected": [p.rejected for p in points],
        "timeout": [p.timeout for p in points],
        "errors": [p.errors for p in points],
    }
    series = {k: bins.rate(_binned(summary, bins, v)) for k, v in raw.items() if any(v)}
    if not series:
        series = {"ok": np.zeros(len(bins.starts_s))}
    figure = new_figure(10.0, 4.5)
    ax = figure.subplots()
    shade_phases(ax, summary, label_top=True)
    xs = np.append(bins.starts_s, bins.starts_s[-1] + bins.widths_s[-1])
    baseline = np.zeros(len(bins.starts_s))
    for name, rates in series.items():
        ax.stairs(
            baseline + rates,
            xs,
            baseline=baseline.copy(),  # type: ignore[arg-type]
            fill=True,
            color=OUTCOME_COLORS[name],
            alpha=0.85,
            label=name,
        )
        baseline = baseline + rates
    _time_axis(ax, summary)
    ax.set_ylabel(f"requests/s by outcome\n({bins.axis_note()})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    ax.set_title(f"{summary.name}: outcomes over time (rejections are load shedding, not failures)")
    return figure


def server_timeline_figure(summary: Summary, servers: Mapping[str, ServerSeries]) -> Figure | None:
    """The servers' own gauges (scraped) under the client's TTFT and rejections, one time axis."""
    groups: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for source, label, names, combine in PLOTTED:
        # the named source first (a run's own servers), then any other (``--scrape`` URLs)
        found = [(n, servers[source].series(n, combine)) for n in names if source in servers]
        found += [
            (n, d.series(n, combine)) for n in names for k, d in servers.items() if k != source
        ]
        for _name, (times, values) in found:
            if times:
                group = (
                    "KV-cache usage (%)"
                    if "KV" in label
                    else ("service: slots and queue" if source == "service" else "LLM: sequences")
                )
                if "KV" in label and max(values) <= 1.0:
                    values = [v * 100.0 for v in values]
                groups.setdefault(group, []).append((label, times, values))
                break
    if not groups or not summary.timeseries:
        return None
    panels = list(groups.items())
    figure = new_figure(10.0, 2.2 * (len(panels) + 2))
    axes = figure.subplots(len(panels) + 2, 1, sharex=True)
    client_times = _times(summary)
    points = summary.timeseries
    ttft_ax, reject_ax = axes[0], axes[1]
    shade_phases(ttft_ax, summary, label_top=True)
    ttft_ax.plot(
        client_times, _optional([p.ttft_p95_ms for p in points]), color="C1", label="TTFT p95"
    )
    ttft_ax.set_ylabel("client TTFT (ms)")
    shade_phases(reject_ax, summary)
    reject_ax.step(
        client_times,
        [p.rejected for p in points],
        where="post",
        color=OUTCOME_COLORS["rejected"],
        label="rejected/s",
    )
    reject_ax.set_ylabel("client\nrejections/s")
    for ax, (title, lines) in zip(axes[2:], panels, strict=True):
        shade_phases(ax, summary)
        for index, (label, xs, ys) in enumerate(lines):
            ax.step(xs, ys, where="post", color=f"C{index + 2}", linewidth=1.8, label=label)
        ax.set_ylabel(title.split(": ")[-1] if ": " in title else title)
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    # the scrape runs from server start to Locust's exit: show the test's span only
    axes[-1].set_xlim(min(0.0, float(client_times[0])) - 1, float(client_times[-1]) + 2)
    _time_axis(axes[-1], summary)
    figure.suptitle(f"{summary.name}: the servers' side (scraped /metrics once a second)")
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
    for index, (ax, (label, curves)) in enumerate(zip(axes, panels, strict=True)):
        low, high = math.inf, 0.0
        for name, distribution in curves:
            values, fractions = distribution.cdf()
            ax.step(values, fractions, where="post", label=name if len(runs) > 1 else label)
            positive = values[values > 0]
            if len(positive):
                low, high = min(low, float(positive.min())), max(high, float(positive.max()))
        for q, name in CDF_QUANTILES:  # dark enough to see beside the curves, and named
            ax.axhline(q, color="0.25", linewidth=1.0, linestyle=":", zorder=1)
            ax.annotate(
                name, (0.0, q), xycoords=("axes fraction", "data"), xytext=(3, 1),
                textcoords="offset points", ha="left", va="bottom", fontsize="x-small", color="0.2",
            )  # fmt: skip
        log = readable_x_axis(ax, low, high)
        ax.set_xlabel(f"{label} (ms{', log scale' if log else ''})")
        ax.set_ylabel("fraction of samples at or below")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(label)
        if len(runs) > 1 and index == len(panels) - 1:
            ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    figure.suptitle(
        "latency distributions (dotted lines: p50, p95, p99, each named at its left end)"
    )
    return figure


CDF_QUANTILES: tuple[tuple[float, str], ...] = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
"""The quantiles a CDF panel marks with a dotted line."""

LOG_MIN_RATIO = 4.0
"""A value range narrower than this (max/min) is drawn on a linear axis: a log axis over less
than half a decade shows one or two ticks at best."""


def readable_x_axis(ax: Axes, low: float, high: float) -> bool:
    """Log scale with ticks at powers of ten (over 3.5 decades), 1-2-5 (over 1.5), 1-2-3-5
    (narrower); linear with ordinary ticks under a `LOG_MIN_RATIO` range. Returns whether it
    is log."""
    if not (0 < low < high) or high / low < LOG_MIN_RATIO:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        return False
    ax.set_xscale("log")
    decades = math.log10(high / low)
    subs = (1.0,) if decades > 3.5 else (1.0, 2.0, 5.0) if decades > 1.5 else (1.0, 2.0, 3.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize="small")
    return True


def _ms_label(value: float | None) -> str:
    """A bar's value as it was measured: ``n/a`` when the run has no such figure, microseconds
    under 0.1 ms, ``< 1 us`` under the resolution (``0.00 ms`` read as a missing value)."""
    if value is None:
        return "n/a"
    if value < 0.001:  # the service reports its parts to 1 us; an immediate admission is 0
        return "< 1 us"
    if value >= 10:
        return f"{value:.0f} ms"
    if value >= 0.1:
        return f"{value:.1f} ms"
    return f"{value * 1000:.0f} us"


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
            measured = [
                run.breakdown_ms[part].get(stat) if part in run.breakdown_ms else None
                for part in parts
            ]
            values = [v or 0.0 for v in measured]
            shift = (2 * index + offset) * bar_height - 0.4 + bar_height / 2
            label = f"{stat}" if len(with_parts) == 1 else f"{run.name} {stat}"
            bars = ax.barh(
                positions + shift,
                values,
                height=bar_height,
                label=label,
                alpha=0.55 if stat == "p50" else 0.95,
                color=f"C{index}",
            )
            # the value at each bar's end: a 0.4 ms part is invisible as a bar beside 900 ms
            labels = [_ms_label(v) for v in measured]
            ax.bar_label(bars, labels=labels, padding=3, fontsize="x-small")
    ax.set_yticks(positions, [part.replace("_", " ") for part in parts])
    ax.invert_yaxis()
    ax.margins(x=0.12)
    ax.set_xlabel("milliseconds")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    ax.set_title("TTFT breakdown: queue wait, pool wait, upstream TTFT, relay overhead, client lag")
    return figure


def generator_health_figure(summary: Summary) -> Figure | None:
    """The load generator per second: its lag (client lag p99, event-loop lag) against the
    validity limits, and its CPU beside the machine's contention (other processes' CPU, the
    generator's run-queue wait, CPU pressure), so one sees when a run went bad and why."""
    points = summary.health
    if not points:
        return None
    times = np.asarray([float(p.get("t_s") or 0.0) for p in points], dtype=float)
    figure = new_figure(10.0, 6.5)
    lag_ax, cpu_ax = figure.subplots(2, 1, sharex=True)
    shade_phases(lag_ax, summary, label_top=True)
    shade_phases(cpu_ax, summary)
    for name, label, color in (
        ("client_lag_p99_ms", "client lag p99", "C3"),
        ("read_lag_p99_ms", "read lag p99", "C1"),
        ("loop_lag_max_ms", "event-loop lag (max)", "C4"),
    ):
        lag_ax.plot(times, _optional([p.get(name) for p in points]), color=color, label=label)
    limit = summary.config.get("max_client_lag_ms")
    if isinstance(limit, int | float) and limit > 0:
        lag_ax.axhline(
            limit, color="C3", linestyle="--", linewidth=1, label=f"client lag limit {limit:g} ms"
        )
    loop_limit = summary.config.get("max_loop_lag_ms")
    if any(p.get("read_lag_p99_ms") is not None for p in points) and isinstance(
        loop_limit, int | float
    ):
        read_limit, _why = read_lag_limit_ms(float(loop_limit), summary.metric("itl_ms").p50)
        lag_ax.axhline(
            read_limit, color="C1", linestyle=":", linewidth=1,
            label=f"read lag limit {read_limit:.3g} ms",
        )  # fmt: skip
    lag_ax.set_ylabel("generator lag (ms)")
    lag_ax.set_ylim(bottom=0)
    lag_ax.grid(alpha=0.3)
    lag_ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    for name, label, color in (
        ("cpu_percent", "generator CPU (% of a core, busiest process)", "C0"),
        ("others_cpu_percent", "other processes' CPU (% of all cores)", "C1"),
        ("runqueue_wait_percent", "generator run-queue wait (% of time)", "C2"),
        ("psi_cpu_some_avg10", "CPU pressure (PSI some avg10 %)", "0.5"),
    ):
        values = [p.get(name) for p in points]
        if any(v is not None for v in values):
            cpu_ax.plot(times, _optional(values), color=color, label=label)
    cpu_ax.set_ylabel("percent")
    cpu_ax.set_ylim(bottom=0)
    cpu_ax.grid(alpha=0.3)
    cpu_ax.legend(**LEGEND_OUTSIDE)  # type: ignore[arg-type]
    _time_axis(cpu_ax, summary)
    figure.suptitle(f"{summary.name}: generator health over time")
    return figure


def run_figures(
    summary: Summary,
    out_dir: Path,
    prefix: str = "",
    svg: bool = True,
    servers: Mapping[str, ServerSeries] | None = None,
) -> list[SavedFigure]:
    """All figures of one run that its data supports, saved under `out_dir`; `servers`: the
    scraped server metrics (`reports.servermetrics`), if any."""
    makers = (
        ("latency_over_time", "TTFT and ITL percentiles over time", latency_over_time_figure),
        ("throughput_over_time", "Throughput over time", throughput_over_time_figure),
        ("outcomes_over_time", "Outcomes over time", outcomes_over_time_figure),
        ("generator_health", "Generator health over time", generator_health_figure),
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
    timeline = server_timeline_figure(summary, servers or {})
    if timeline is not None:
        title = "The servers' side: scraped metrics beside the client's TTFT and rejections"
        saved.append(save_figure(timeline, out_dir, prefix + "server_timeline", title, svg))
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
