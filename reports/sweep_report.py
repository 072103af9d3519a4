"""The report of a sweep: recommendation first, ranking table, sweep figures, Little's law,
then the configurations and the cells (each linking to its run folder)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from reports.capacity import CapacityResult, Rows, find_capacity, littles_law_rows, ranking_rows
from reports.curves import Curve
from reports.document import Block, FigureBlock, Heading, Paragraph, Table, write_documents
from reports.plots import SavedFigure, frontier_figure, load_vs_figure, save_figure
from reports.replicas import replica_figure_spec
from reports.slo import Slo, parse_slo
from reports.sweeps import SweepManifest, load_curves, read_manifest, resolve_run_dir

DEFAULT_SLO = "ttft_p95<800ms,rejections<1%"


@dataclass(frozen=True)
class SweepReport:
    markdown: Path
    html: Path
    figures: list[SavedFigure]
    capacity: CapacityResult


def _table(rows: Rows, text_columns: tuple[int, ...] = ()) -> Table:
    return Table(rows[0], rows[1], align_right_from=2, text_columns=text_columns)


def sweep_figures(
    curves: list[Curve],
    manifest: SweepManifest,
    slo: Slo,
    result: CapacityResult,
    out: Path,
    svg: bool = True,
) -> list[SavedFigure]:
    knees = {c.configuration: c.knee_load for c in result.ranking if c.knee_load is not None}
    label = manifest.load_label
    ttft_limit = slo.limit_of("ttft_p95")
    rejection_limit = slo.limit_of("rejections")
    specs = [
        (
            "ttft_p95_vs_load",
            "TTFT p95 vs offered load",
            load_vs_figure(
                curves,
                "ttft_p95",
                "TTFT p95 (ms)",
                "TTFT p95 vs offered load, per configuration",
                label,
                ttft_limit,
                "SLO limit" if ttft_limit is not None else "",
                knees,
            ),
        ),
        (
            "throughput_vs_load",
            "Throughput vs offered load",
            load_vs_figure(
                curves,
                "ok_rps",
                "ok requests per second",
                "Throughput (ok requests/s) vs offered load",
                label,
            ),
        ),
        (
            "rejections_vs_load",
            "Rejection rate vs offered load",
            load_vs_figure(
                curves,
                "rejections",
                "rejected requests (% of all)",
                "Rejection rate vs offered load",
                label,
                None if rejection_limit is None else rejection_limit * 100.0,
                "SLO limit" if rejection_limit is not None else "",
            ),
        ),
        (
            "frontier",
            "Latency-throughput frontier",
            frontier_figure(curves, ttft_limit),
        ),
    ]
    specs += replica_figure_spec(manifest, result, label)
    return [save_figure(figure, out, stem, title, svg) for stem, title, figure in specs]


def write_sweep_report(
    sweep_dir: Path, slo_text: str | None = None, include_invalid: bool = False, svg: bool = True
) -> SweepReport:
    """Read ``sweep.json`` and the cells' summaries; write report.md/.html and figures/."""
    manifest = read_manifest(sweep_dir)
    slo = parse_slo(slo_text or manifest.slo or DEFAULT_SLO)
    curves = load_curves(sweep_dir, manifest)
    result = find_capacity(curves, slo, manifest.load_unit, include_invalid)
    figures = (
        sweep_figures(curves, manifest, slo, result, sweep_dir / "figures", svg) if curves else []
    )
    done = sum(1 for cell in manifest.cells if cell.status == "done")
    invalid = sum(1 for curve in curves for run in curve.runs if not run.valid)
    blocks: list[Block] = [
        Heading(1, f"surgebench sweep: {manifest.name}"),
        Heading(2, "Which configuration should I use?"),
        Paragraph(result.recommendation, "good" if result.best is not None else "bad"),
        Paragraph(
            f"SLO: `{slo.text}` (every term must hold). X axes: {manifest.load_label}. "
            f"{done} of {len(manifest.cells)} cells finished, "
            f"{len(manifest.configurations)} configurations x {len(manifest.loads)} loads, "
            f"{manifest.duration or '?'} each. A configuration *holds* a load when that load and "
            "every lower one met the SLO."
        ),
        Paragraph(
            "Glossary: TTFT = time to first token (what a user waits before text appears); "
            "p95 = 95 % of requests were at least this fast; rejections = requests the service "
            "refused on purpose (HTTP 503/429) because it was full; ok req/s = requests answered "
            "in full per second."
        ),
    ]
    if invalid:
        blocks.append(
            Paragraph(
                f"{invalid} run(s) were marked invalid (the load generator was the bottleneck); "
                + (
                    "they were used anyway (--include-invalid)."
                    if include_invalid
                    else "those invalid for the generator's lag or CPU are untrusted (named in "
                    "the answer, each configuration holds *at least* the load below them), any "
                    "other counts as an SLO failure. Rerun them with fewer users or more "
                    "load-generator processes, or pass --include-invalid to use them anyway."
                ),
                "bad",
            )
        )
    rerun = [cell for cell in manifest.cells if cell.attempts > 1]
    retries = manifest.extra.get("retries_invalid")
    if rerun:
        blocks.append(
            Paragraph(
                f"{len(rerun)} cell(s) were rerun after a result invalid for a transient cause "
                f"(client lag, event-loop lag or CPU of the load generator; up to "
                f"{retries if retries is not None else '?'} rerun(s) per cell, "
                "`retries_invalid` in the sweep config): "
                + "; ".join(
                    f"{cell.id} ({cell.configuration} @ {cell.load:g}): "
                    f"{cell.attempts - 1} rerun(s) after {', '.join(cell.reruns)}"
                    for cell in rerun
                )
                + ". The figures are those of each cell's last run; earlier attempts are kept "
                "in runs/<cell>.attempt<N>/."
            )
        )
    blocks += [
        Heading(2, "Ranking"),
        _table(ranking_rows(result), text_columns=(8,)),
        Paragraph(
            "Knee: the load where TTFT p95 starts to climb steeply (farthest below the chord of "
            "the curve); below it latency is flat, above it requests queue. '-': no clear bend "
            "among the tested loads."
        ),
        Heading(2, "Figures"),
    ]
    captions = {
        "ttft_p95_vs_load": "TTFT p95 for each configuration as load grows; dashed red line: "
        "the SLO limit; stars: knees.",
        "throughput_vs_load": "Ok requests per second: where a line flattens, that configuration "
        "is saturated.",
        "rejections_vs_load": "Share of requests the service refused (503/429) at each load.",
        "frontier": "Each point is one (configuration, load) cell; numbers are the offered load. "
        "Lower right is better: more throughput at lower latency.",
    }
    blocks += [FigureBlock(saved, captions.get(saved.stem, saved.title)) for saved in figures]
    blocks += [
        Heading(2, "Little's law check"),
        Paragraph(
            "Mean requests in flight = throughput x mean latency. In a closed loop it should be "
            "close to the number of users; well below means users waited outside requests."
        ),
        _table(littles_law_rows(result, manifest.load_kind)),
        Heading(2, "Configurations"),
        Table(
            ["configuration", "settings"],
            [
                [str(c["name"]), json.dumps(c.get("settings", {}), sort_keys=True)]
                for c in manifest.configurations
            ],
            align_right_from=99,
        ),
        Heading(2, "Cells"),
        Table(
            ["cell", "configuration", "load", "status", "run folder"],
            [
                [
                    cell.id,
                    cell.configuration,
                    f"{cell.load:g}",
                    cell.status
                    + (f" ({cell.error})" if cell.error else "")
                    + (f", {cell.attempts} attempts" if cell.attempts > 1 else ""),
                    _relative(resolve_run_dir(sweep_dir, cell), sweep_dir),
                ]
                for cell in manifest.cells
            ],
            align_right_from=99,
        ),
    ]
    markdown, html_path = write_documents(blocks, sweep_dir, f"surgebench sweep: {manifest.name}")
    return SweepReport(markdown, html_path, figures, result)


def _relative(path: Path | None, base: Path) -> str:
    if path is None:
        return "-"
    return Path(os.path.relpath(path, base)).as_posix()
