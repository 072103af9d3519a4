"""The report of one or more runs: validity verdict first, a summary table, the figures.

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
    read_summary,
)
from reports.workload_plots import workload_rows


@dataclass(frozen=True)
class RunReport:
    """Where the report was written."""

    markdown: Path
    html: Path
    figures: list[Path]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _latency_row(label: str, field: str, stat: str) -> tuple[str, Callable[[Summary], str]]:
    return label, lambda s: _ms(s.metric(field).get(stat)) if s.metric(field).count else "n/a"


SUMMARY_ROWS: list[tuple[str, Callable[[Summary], str]]] = [
    ("valid", lambda s: "yes" if s.valid else "NO"),
    ("load model", lambda s: s.load_model),
    ("measured duration", lambda s: f"{s.measured_s:.1f} s (warm-up {s.warmup_s:g} s)"),
    ("requests", lambda s: str(s.requests)),
    ("ok", lambda s: str(s.outcomes.get("ok", 0))),
    ("rejected", lambda s: str(s.outcomes.get("rejected", 0))),
    ("timeout", lambda s: str(s.outcomes.get("timeout", 0))),
    ("errors", lambda s: str(sum(s.outcomes.get(k, 0) for k in OTHER_ERROR_OUTCOMES))),
    ("cancelled", lambda s: str(s.outcomes.get("cancelled", 0))),
    ("rejection rate", lambda s: f"{s.rejection_rate * 100:.2f} %"),
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
    _latency_row("client lag p99", "client_lag_ms", "p99"),
    _latency_row("TTFT p95 from intended start", "ttft_from_intended_ms", "p95"),
]


def _open_loop_rows(runs: Sequence[Summary]) -> list[list[str]]:
    if not any(run.open_loop for run in runs):
        return []
    return [
        [f"open loop: {key}"] + [str((run.open_loop or {}).get(key, "n/a")) for run in runs]
        for key in ("intended", "sent", "late", "dropped")
    ]


def _extra_rows(runs: Sequence[Summary], attribute: str, label: str) -> list[list[str]]:
    keys: list[str] = []
    for run in runs:
        for key in getattr(run, attribute):
            if key not in keys:
                keys.append(key)
    rows = []
    for key in keys:
        cells = []
        for run in runs:
            value = getattr(run, attribute).get(key)
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        rows.append([f"{label}: {key}", *cells])
    return rows


def summary_table(runs: Sequence[Summary]) -> Table:
    """One column per run, one row per figure."""
    rows = [[label] + [read(run) for run in runs] for label, read in SUMMARY_ROWS]
    rows += _open_loop_rows(runs)
    rows += workload_rows(runs)
    rows += _extra_rows(runs, "goodput", "goodput")
    rows += _extra_rows(runs, "saturation", "generator")
    return Table(["metric"] + [run.name for run in runs], rows)


def validity_blocks(runs: Sequence[Summary]) -> list[Block]:
    """The verdict at the top: can these numbers be trusted?"""
    blocks: list[Block] = []
    for run in runs:
        if run.valid:
            blocks.append(
                Paragraph(
                    f"**{run.name}: valid run.** The load generator kept up: its own lag and "
                    "scheduling stayed within budget, so these numbers describe the service.",
                    "good",
                )
            )
        else:
            reasons = "; ".join(run.invalid_reasons) or "no reason recorded"
            blocks.append(
                Paragraph(
                    f"**{run.name}: INVALID run, do not trust these numbers.** Reason: {reasons}. "
                    "The load generator (not the service) was the bottleneck: use more client "
                    "processes, fewer users, or a less loaded machine, then run again.",
                    "bad",
                )
            )
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
    _flatten("", config, rows)
    return Table(["setting", "value"], rows[:80], align_right_from=99) if rows else None


def run_report_blocks(
    run_dirs: Sequence[Path], runs: Sequence[Summary], figures_dir: Path, svg: bool = True
) -> tuple[list[Block], list[Path]]:
    """The report's blocks and the figure files written for it."""
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} runs side by side"
    blocks: list[Block] = [Heading(1, f"surgebench report: {title}")]
    blocks += validity_blocks(runs)
    blocks += [
        Paragraph(
            "TTFT = time to first token; ITL = inter-token latency; E2E = whole request. "
            "Rejections are the service shedding load on purpose (HTTP 503/429), counted apart "
            "from errors and timeouts. Percentiles are exact (HDR histograms)."
        ),
        Heading(2, "Summary"),
        summary_table(runs),
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
        for saved in run_figures(run, figures_dir, prefix, svg):
            blocks.append(FigureBlock(saved, f"{saved.title} ({run.name})"))
            written += [p for p in (saved.png, saved.svg) if p is not None]
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
