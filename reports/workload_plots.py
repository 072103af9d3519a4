"""Figures of the workload a trace replay sent: arrivals replayed vs recorded, the requested
prompt/output length distributions, and TTFT against prompt length.

They read summary.json's ``trace`` block (written by `loadtests.trace.TraceTally`) and draw
nothing for a run without one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram
from matplotlib.figure import Figure

from reports.plots import SavedFigure, new_figure, save_figure
from reports.results import Summary


def _trace(summary: Summary) -> Mapping[str, Any] | None:
    block = summary.trace
    return block if isinstance(block, Mapping) and block.get("rows_in_window") else None


def arrivals_figure(summary: Summary) -> Figure | None:
    """Arrivals per second: as the trace schedules them (the recording, at the replay's
    speed) and as they were sent."""
    block = _trace(summary)
    series = block.get("arrivals_per_s") if block else None
    if not isinstance(series, Mapping) or not series.get("scheduled"):
        return None
    figure = new_figure()
    ax = figure.add_subplot()
    scheduled = np.asarray(series["scheduled"], dtype=float)
    sent = np.asarray(series.get("sent") or [], dtype=float)
    ax.step(
        np.arange(len(scheduled)),
        scheduled,
        where="post",
        label="recorded (scheduled)",
        linewidth=4,
        alpha=0.4,
    )
    if len(sent):
        ax.step(np.arange(len(sent)), sent, where="post", label="replayed (sent)", alpha=0.8)
    speedup = block.get("speedup", 1.0) if block else 1.0
    ax.set_title(f"Arrivals per second: recorded vs replayed (speedup {speedup:g}x)")
    ax.set_xlabel("time since the replay started (s)")
    ax.set_ylabel("requests started per second")
    ax.legend(loc="upper right")
    ax.grid(True, alpha=0.3)
    return figure


def _length_cdf(text: object) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(text, str) or not text:
        return None
    hist = HdrHistogram.decode(text.encode("ascii"))
    total = hist.get_total_count()
    if not total:
        return None
    values: list[float] = []
    counts: list[int] = []
    for item in hist.get_recorded_iterator():
        values.append(float(item.value_iterated_to))
        counts.append(int(item.count_at_value_iterated_to))
    return np.asarray(values), np.cumsum(counts) / total


def lengths_figure(summary: Summary) -> Figure | None:
    """CDFs of the requested prompt and output lengths (tokens, log scale)."""
    block = _trace(summary)
    hists = block.get("length_histograms") if block else None
    if not isinstance(hists, Mapping):
        return None
    curves = {name: _length_cdf(hists.get(name)) for name in ("prompt_tokens", "output_tokens")}
    if not any(c is not None for c in curves.values()):
        return None
    figure = new_figure()
    ax = figure.add_subplot()
    for name, curve in curves.items():
        if curve is not None:
            ax.step(curve[0], curve[1], where="post", label=name.replace("_", " "))
    ax.set_xscale("log")
    ax.set_title("Requested lengths in the replayed window (CDF)")
    ax.set_xlabel("tokens (log scale)")
    ax.set_ylabel("fraction of requests <= x")
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    ax.grid(True, alpha=0.3)
    return figure


def ttft_vs_prompt_figure(summary: Summary) -> Figure | None:
    """TTFT p50 and p95 per prompt-length bin (powers of two)."""
    block = _trace(summary)
    bins = block.get("ttft_by_prompt_tokens") if block else None
    if not isinstance(bins, list) or not bins:
        return None
    mids = np.asarray([(b["prompt_tokens_from"] * b["prompt_tokens_to"]) ** 0.5 for b in bins])
    p50 = np.asarray([np.nan if b["p50"] is None else b["p50"] for b in bins], dtype=float)
    p95 = np.asarray([np.nan if b["p95"] is None else b["p95"] for b in bins], dtype=float)
    figure = new_figure()
    ax = figure.add_subplot()
    ax.plot(mids, p50, marker="o", label="TTFT p50")
    ax.plot(mids, p95, marker="s", label="TTFT p95")
    for x, b in zip(mids, bins, strict=True):
        ax.annotate(f"n={b['count']}", (x, 0), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=7, xycoords=("data", "axes fraction"))  # fmt: skip
    ax.set_xscale("log")
    ax.set_title("TTFT against prompt length (requests that completed)")
    ax.set_xlabel("prompt tokens requested (bin centre, log scale)")
    ax.set_ylabel("TTFT (ms)")
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    return figure


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "n/a"


def workload_rows(runs: Sequence[Summary]) -> list[list[str]]:
    """Summary-table rows of the trace replay and the agent sessions (none without them)."""
    rows: list[list[str]] = []
    if any(run.trace for run in runs):
        readers: list[tuple[str, Callable[[Mapping[str, Any]], object]]] = [
            ("trace: rows in window", lambda t: t.get("rows_in_window")),
            ("trace: sent / late / dropped",
             lambda t: f"{t.get('sent')} / {t.get('late')} / {t.get('dropped')}"),
            ("trace: lateness p99 (ms)", lambda t: _ms((t.get("lateness_ms") or {}).get("p99"))),
            ("trace: output tokens requested / received",
             lambda t: "{requested} / {received}".format(**t.get("output_tokens", {}))),
            ("trace: prompt tokens requested / reported",
             lambda t: "{requested} / {reported}".format(**t.get("prompt_tokens", {}))),
        ]  # fmt: skip
        rows += [[label] + [str(read(r.trace)) if r.trace else "n/a" for r in runs]
                 for label, read in readers]  # fmt: skip
    if any(run.sessions for run in runs):
        session_readers: list[tuple[str, Callable[[Mapping[str, Any]], object]]] = [
            ("sessions: completed / failed",
             lambda s: f"{s.get('completed')} / {s.get('failed')}"),
            ("sessions: failed at turn", lambda s: s.get("failed_at_turn") or "none"),
            ("sessions: turns completed", lambda s: s.get("turns_completed")),
            ("sessions: duration p50 / p90 (ms)",
             lambda s: "/".join(_ms((s.get("session_duration_ms") or {}).get(k))
                                for k in ("p50", "p90"))),
            ("sessions: final answer TTFT p50 / p99 (ms)",
             lambda s: "/".join(_ms((s.get("final_answer_ttft_ms") or {}).get(k))
                                for k in ("p50", "p99"))),
            ("sessions: time in service per turn p50 (ms)",
             lambda s: _ms((s.get("turn_total_ms") or {}).get("p50"))),
            ("sessions: agent turns", lambda s: s.get("agent_turns", 0)),
            ("sessions: agent-turn TTFT p50 / p99 (ms)",
             lambda s: "/".join(_ms((s.get("agent_turn_ttft_ms") or {}).get(k))
                                for k in ("p50", "p99"))),
            ("sessions: prompt tokens by turn", lambda s: s.get("prompt_tokens_by_turn")),
        ]  # fmt: skip
        rows += [[label] + [str(read(r.sessions)) if r.sessions else "n/a" for r in runs]
                 for label, read in session_readers]  # fmt: skip
    return rows


def workload_figures(
    summary: Summary, out_dir: Path, prefix: str = "", svg: bool = True
) -> list[SavedFigure]:
    """The workload figures the run's data supports (none without a ``trace`` block)."""
    makers = (
        ("trace_arrivals", "Arrivals: recorded vs replayed", arrivals_figure),
        ("trace_lengths", "Prompt and output lengths", lengths_figure),
        ("trace_ttft_vs_prompt", "TTFT against prompt length", ttft_vs_prompt_figure),
    )
    saved: list[SavedFigure] = []
    for stem, title, make in makers:
        figure = make(summary)
        if figure is not None:
            saved.append(save_figure(figure, out_dir, prefix + stem, title, svg))
    return saved
