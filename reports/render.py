"""The report of one or more runs: the verdict in words first, a summary table, the phases,
the figures, the load generator's health, the configuration. Rows and settings that do not apply
to a run (no SLO, no open loop, a metric with no samples) are left out.

`write_run_report(run_dirs, out_dir)` writes ``report.md``, ``report.html`` (self-contained)
and ``figures/`` (PNG + SVG). One run: the report goes into its own folder by default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.document import Block, FigureBlock, Heading, Paragraph, Table, write_documents
from reports.plots import latency_cdf_figure, run_figures, save_figure, ttft_breakdown_figure
from reports.results import (
    BREAKDOWN_PARTS,
    CONFIG_FILE,
    OTHER_ERROR_OUTCOMES,
    Summary,
    effective_highlights,
    phases_or_whole_run,
    read_summary,
)
from reports.servermetrics import epoch_of, read_server_metrics
from reports.verdict import duration_text, percent_text, verdict_sentences
from reports.workload_plots import workload_rows


@dataclass(frozen=True)
class RunReport:
    """Where the report was written."""

    markdown: Path
    html: Path
    figures: list[Path]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


Row = tuple[str, Callable[[Summary], str | None]]
"""A summary-table row: its label and how to read it from a run (None: does not apply)."""


def _latency_row(label: str, field: str, stat: str) -> Row:
    return label, lambda s: _ms(s.metric(field).get(stat)) if s.metric(field).count else None


def _count_row(label: str, read: Callable[[Summary], int]) -> Row:
    """A count shown only when nonzero in some run (``timeout 0`` says nothing)."""
    return label, lambda s: str(read(s)) if read(s) else None


SUMMARY_ROWS: list[Row] = [
    ("valid", lambda s: "yes" if s.valid else "NO"),
    ("load model", lambda s: s.load_model),
    (
        "measured duration",
        lambda s: (
            f"{s.measured_s:.1f} s" + (f" (after {s.warmup_s:g} s warm-up)" * bool(s.warmup_s))
        ),
    ),
    ("requests", lambda s: str(s.requests)),
    ("ok", lambda s: str(s.outcomes.get("ok", 0))),
    _count_row("rejected", lambda s: s.outcomes.get("rejected", 0)),
    _count_row("timeout", lambda s: s.outcomes.get("timeout", 0)),
    _count_row("errors", lambda s: sum(s.outcomes.get(k, 0) for k in OTHER_ERROR_OUTCOMES)),
    _count_row("cancelled", lambda s: s.outcomes.get("cancelled", 0)),
    _count_row("unfinished (in flight at the stop)", lambda s: s.unfinished),
    ("rejection rate", lambda s: f"{s.rejection_rate * 100:.2f} %" if s.rejection_rate else None),
    ("requests/s", lambda s: f"{s.requests_per_s:.2f}"),
    ("ok requests/s", lambda s: f"{s.ok_requests_per_s:.2f}"),
    ("output tokens/s", lambda s: f"{s.output_tokens_per_s:.1f}"),
    _latency_row("TTFT p50", "ttft_ms", "p50"),
    _latency_row("TTFT p95", "ttft_ms", "p95"),
    _latency_row("TTFT p99", "ttft_ms", "p99"),
    _latency_row("ITL p50", "itl_ms", "p50"),
    _latency_row("ITL p95", "itl_ms", "p95"),
    _latency_row("ITL p99", "itl_ms", "p99"),
    _latency_row("TPOT p50", "tpot_ms", "p50"),
    _latency_row("E2E p50", "e2e_ms", "p50"),
    _latency_row("E2E p95", "e2e_ms", "p95"),
    _latency_row("time to reject p95", "rejected_ms", "p95"),
    _latency_row("TTFT p95 from intended start", "ttft_from_intended_ms", "p95"),
]


def _open_loop_rows(runs: Sequence[Summary]) -> list[list[str]]:
    if not any(run.open_loop for run in runs):
        return []
    return [
        [f"open loop: {key}"] + [str((run.open_loop or {}).get(key, "-")) for run in runs]
        for key in ("intended", "sent", "late", "dropped")
    ]


def _goodput_rows(runs: Sequence[Summary]) -> list[list[str]]:
    """Goodput only for runs with an SLO: without one every ok request is "good"."""
    if not any(run.goodput.get("slo") for run in runs):
        return []

    def slo_text(run: Summary) -> str:
        slo = run.goodput.get("slo") or {}
        return ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in slo.items()) or "-"

    def cell(run: Summary, key: str, fmt: str) -> str:
        value = run.goodput.get(key) if run.goodput.get("slo") else None
        return "-" if value is None else format(value, fmt)

    return [
        ["goodput SLO", *(slo_text(run) for run in runs)],
        ["goodput requests/s", *(cell(run, "requests_per_s", ".2f") for run in runs)],
        [
            "goodput share of ok",
            *(
                "-"
                if not run.goodput.get("slo")
                else f"{run.goodput.get('fraction_of_ok', 0) * 100:.1f} %"
                for run in runs
            ),
        ],
    ]


def summary_table(runs: Sequence[Summary]) -> Table:
    """One column per run, one row per figure that applies to at least one run."""
    rows: list[list[str]] = []
    for label, read in SUMMARY_ROWS:
        cells = [read(run) for run in runs]
        if any(cell is not None for cell in cells):
            rows.append([label] + [cell if cell is not None else "-" for cell in cells])
    rows += _open_loop_rows(runs)
    rows += workload_rows(runs)
    rows += _goodput_rows(runs)
    return Table(["metric"] + [run.name for run in runs], rows)


GENERATOR_ROWS: tuple[tuple[str, str, str], ...] = (
    ("client lag p99", "client_lag_p99_ms", "ms"),
    ("read lag p99", "read_lag_p99_ms", "ms"),
    ("event-loop lag p99", "loop_lag_p99_ms", "ms"),
    ("CPU of a load process, max", "cpu_max_percent", "%"),
    ("load processes", "processes", ""),
)


def generator_table(runs: Sequence[Summary]) -> Table | None:
    """The load generator's own health, short: lag, loop lag, CPU, processes."""
    rows: list[list[str]] = []
    for label, key, unit in GENERATOR_ROWS:
        values = [run.saturation.get(key) for run in runs]
        if all(v is None for v in values):
            continue
        cells = [
            "-"
            if v is None
            else (f"{v:.0f}" if unit != "ms" else f"{v:.1f}") + (f" {unit}" if unit else "")
            for v in values
        ]
        rows.append([label, *cells])
    warnings = [run.saturation.get("cpu_warnings") or 0 for run in runs]
    if any(warnings):
        rows.append(["Locust CPU warnings", *(f"{w:.0f}" for w in warnings)])
    return Table(["load generator", *(run.name for run in runs)], rows) if rows else None


def phase_table(run: Summary) -> Table | None:
    """One row per phase of the load; None when the run had a single phase."""
    phases = phases_or_whole_run(run)
    if len(phases) < 2:
        return None

    def ms(value: float | None) -> str:
        return "-" if value is None else duration_text(value)

    rows = []
    for phase in phases:
        load = (
            f"{phase.users}"
            if phase.users is not None
            else (f"{phase.rate_per_s:g}/s" if phase.rate_per_s is not None else "-")
        )
        queue = phase.breakdown_ms.get("queue_wait")
        rows.append(
            [
                phase.label,
                f"{phase.start_s:g}-{phase.end_s:g} s",
                load,
                str(phase.requests),
                f"{phase.ok_requests_per_s:.1f}",
                percent_text(phase.rejection_rate),
                ms(phase.metric("ttft_ms").p50),
                ms(phase.metric("ttft_ms").p95),
                ms(phase.metric("itl_ms").p95),
                ms(phase.metric("e2e_ms").p95),
                ms(queue.p95 if queue else None),
            ]
        )
    header = [
        "phase", "time", "load", "requests", "ok/s", "rejected", "TTFT p50", "TTFT p95",
        "ITL p95", "E2E p95", "queue wait p95",
    ]  # fmt: skip
    return Table(header, rows, align_right_from=2)


def verdict_blocks(runs: Sequence[Summary]) -> list[Block]:
    """The verdict at the top, in words: how each phase went, then whether to trust it."""
    blocks: list[Block] = []
    for run in runs:
        first, *rest = verdict_sentences(run)
        name = f"**{run.name}.** " if len(runs) > 1 else ""
        blocks.append(Paragraph(name + first, "good" if run.valid else "bad", tuple(rest)))
    return blocks


def _flatten(prefix: str, value: Any, out: list[list[str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out.append([prefix, json.dumps(value) if not isinstance(value, str) else value])


def config_table(run_dir: Path, summary: Summary) -> Table | None:
    """The run's resolved settings (``config.json``, else ``summary.config``)."""
    path = run_dir / CONFIG_FILE
    config: Any = summary.config
    if path.exists():
        try:
            config = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            config = summary.config
    rows: list[list[str]] = []
    effective = None
    if isinstance(config, dict):
        effective = config.get("effective")
        config = applicable_config({k: v for k, v in config.items() if k != "effective"})
    _flatten("", config, rows)
    if isinstance(effective, dict):
        for component, settings in effective.items():
            if not isinstance(settings, dict):
                rows.append([f"{component} (reported)", "not reported"])
                continue
            _flatten(f"{component} (reported)", effective_highlights(component, settings), rows)
            rows.append([f"{component} (reported)", f"{len(settings)} settings in config.json"])
    if len(rows) > MAX_CONFIG_ROWS:
        rest = len(rows) - MAX_CONFIG_ROWS + 1
        rows = [*rows[: MAX_CONFIG_ROWS - 1], ["...", f"{rest} more settings in config.json"]]
    return Table(["setting", "value"], rows, align_right_from=99) if rows else None


MAX_CONFIG_ROWS = 80
"""The configuration table's length; the rest is named, never cut silently."""


OPEN_LOOP_ONLY = frozenset({"arrival"})
"""Settings that mean something only with an arrival rate."""
NOT_SETTINGS = frozenset({"explicit", "config_version"})
"""Bookkeeping in config.json (which flags were given, its format), not settings of the run."""
UNSET_WHEN_ZERO = ("rate", "slo_", "reject_wait_s", "think_s", "spawn_rate")
"""Settings whose zero means "off": a zero is left out rather than shown as ``0.0``."""
TRACE_ONLY = "trace_"
"""Settings that mean something only when a trace is replayed (``trace`` set)."""
SESSION_ONLY = "session_"
"""Settings that mean something only for the agent-session user (``user = "session"``)."""


def applicable_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` without what does not apply: empty values, zeros that mean "off", the arrival
    process of a closed-loop run, trace settings without a trace and session settings for
    another user."""
    open_loop = bool(config.get("rate"))
    replaying = bool(config.get("trace"))
    sessions = config.get("user") == "session"
    kept: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            inner = applicable_config(value)
            if inner:
                kept[key] = inner
            continue
        if value is None or value == "" or value == [] or value == {}:
            continue
        if (key in OPEN_LOOP_ONLY and not open_loop) or key in NOT_SETTINGS:
            continue
        if key.startswith(UNSET_WHEN_ZERO) and value in (0, 0.0, False):
            continue
        if (key.startswith(TRACE_ONLY) and not replaying) or (
            key.startswith(SESSION_ONLY) and not sessions
        ):
            continue
        kept[key] = value
    return kept


def run_report_blocks(
    run_dirs: Sequence[Path], runs: Sequence[Summary], figures_dir: Path, svg: bool = True
) -> tuple[list[Block], list[Path]]:
    """The report's blocks and the figure files written for it."""
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} runs side by side"
    blocks: list[Block] = [Heading(1, f"surgebench report: {title}")]
    blocks += verdict_blocks(runs)
    blocks += [
        Paragraph(
            "TTFT = time to first token; ITL = inter-token latency; E2E = whole request. "
            "Rejections are the service shedding load on purpose (HTTP 503/429), counted apart "
            "from errors and timeouts. Percentiles are exact (HDR histograms)."
        ),
        Heading(2, "Summary"),
        summary_table(runs),
    ]
    for run in runs:
        phases = phase_table(run)
        if phases is not None:
            title = "Phases" if len(runs) == 1 else f"Phases of {run.name}"
            blocks += [
                Heading(2, title),
                Paragraph(
                    "A request counts in the phase in which it started; each phase's percentiles "
                    "come from its own histograms."
                ),
                phases,
            ]
    written: list[Path] = []
    if len(runs) > 1:
        blocks.append(Heading(2, "All runs compared"))
        for stem, title_text, make in (
            ("compare_latency_cdf", "Latency CDFs of every run", latency_cdf_figure),
            ("compare_ttft_breakdown", "TTFT breakdown of every run", ttft_breakdown_figure),
        ):
            figure = make(runs)
            if figure is not None:
                saved = save_figure(figure, figures_dir, stem, title_text, svg)
                blocks.append(FigureBlock(saved, title_text))
                written += [p for p in (saved.png, saved.svg) if p is not None]
    for index, (run_dir, run) in enumerate(zip(run_dirs, runs, strict=True)):
        prefix = "" if len(runs) == 1 else f"run{index + 1}_"
        blocks.append(Heading(2, f"Run: {run.name}" if len(runs) > 1 else "Figures"))
        if run.breakdown_ms:
            parts = [p for p in BREAKDOWN_PARTS if p in run.breakdown_ms]
            rows = [
                [part.replace("_", " ")]
                + [_ms(run.breakdown_ms[part].get(s)) for s in ("mean", "p50", "p95", "p99")]
                for part in parts
            ]
            blocks += [
                Heading(3, "TTFT breakdown"),
                Table(["part", "mean", "p50", "p95", "p99"], rows),
            ]
        start_epoch_s = epoch_of(run.started_at)
        servers = read_server_metrics(run_dir, start_epoch_s) if start_epoch_s else {}
        for saved in run_figures(run, figures_dir, prefix, svg, servers):
            blocks.append(FigureBlock(saved, f"{saved.title} ({run.name})"))
            written += [p for p in (saved.png, saved.svg) if p is not None]
        health = generator_table([run])
        if health is not None:
            blocks += [Heading(3, "Load generator health"), health]
        table = config_table(run_dir, run)
        if table is not None:
            blocks += [Heading(3, f"Configuration of {run.name}"), table]
    return blocks, written


def default_out_dir(run_dirs: Sequence[Path]) -> Path:
    """One run: its own folder; several: ``<parent of the first>/report-<first>-and-N``."""
    if len(run_dirs) == 1:
        return run_dirs[0]
    first = run_dirs[0]
    return first.parent / f"report-{first.name}-and-{len(run_dirs) - 1}-more"


def write_run_report(
    run_dirs: Sequence[Path], out_dir: Path | None = None, svg: bool = True
) -> RunReport:
    """Read the runs and write the Markdown + HTML report with its figures."""
    runs = [read_summary(run_dir) for run_dir in run_dirs]
    target = out_dir or default_out_dir(run_dirs)
    blocks, figures = run_report_blocks(run_dirs, runs, target / "figures", svg)
    title = f"surgebench report: {', '.join(run.name for run in runs)}"
    markdown, html_path = write_documents(blocks, target, title)
    return RunReport(markdown, html_path, figures)
