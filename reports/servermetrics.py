"""The servers' own metrics during a run: ``server_metrics.jsonl`` in the run folder.

Written by `loadtests.scrape` (once a second, one line per scraped server), read here. Each line::

    {"t": 1764590000.123, "source": "service" | "upstream", "values": {"name{label=\\"v\\"}": 1.0}}
    {"t": ..., "source": ..., "error": "ConnectError: ..."}      (that scrape failed)

``t`` is Unix time in seconds; ``values`` holds the gauges and counters of the Prometheus text
(counters with their ``_total`` name) and the ``_sum``/``_count`` of histograms, at most 500 a
line. The series the report plots are in `PLOTTED`; any other can be read from the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SERVER_METRICS_FILE = "server_metrics.jsonl"
MAX_READ_LINES = 400_000

PLOTTED: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("service", "service: requests holding a slot", ("surge_service_in_flight",), "sum"),
    ("service", "service: queue depth", ("surge_service_queue_depth",), "sum"),
    ("upstream", "LLM: sequences running", ("vllm:num_requests_running",), "sum"),
    ("upstream", "LLM: sequences waiting", ("vllm:num_requests_waiting",), "sum"),
    (
        "upstream",
        "LLM: KV-cache usage (%)",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "mean",
    ),
)
"""(source, label, metric names tried in order, how label sets combine): what the report's
server figure shows. A metric comes with labels from real servers (vLLM's `model_name`,
`engine`) and from replicas (`replica`, `surgebench mock|serve --processes N`): counts are
summed over them, a percentage of each engine's own cache is averaged."""

COMBINE = ("sum", "mean")


@dataclass
class ServerSeries:
    """One source's scraped samples: times (s from the test start) and values by metric name."""

    times_s: list[float] = field(default_factory=list)
    values: list[Mapping[str, float]] = field(default_factory=list)
    errors: int = 0

    def series(self, name: str, combine: str = "sum") -> tuple[list[float], list[float]]:
        """Times and values of one metric where it was present: the plain name, or the sum
        (`combine` "mean": the mean) of its samples over every label set (`name{...}`). The
        KV-cache percentage of vLLM is a fraction 0-1; it is returned as is."""
        if combine not in COMBINE:
            raise ValueError(f"combine {combine!r}; allowed: {', '.join(COMBINE)}")
        prefix = name + "{"
        times, values = [], []
        for t_s, sample in zip(self.times_s, self.values, strict=True):
            found = [v for k, v in sample.items() if k == name or k.startswith(prefix)]
            if found:
                times.append(t_s)
                values.append(sum(found) / (len(found) if combine == "mean" else 1))
        return times, values


def epoch_of(started_at: str) -> float | None:
    """Unix time of a summary's ``started_at`` (``2026-12-01T11:00:00.123456Z``)."""
    try:
        return datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def read_server_metrics(run_dir: Path, start_epoch_s: float) -> dict[str, ServerSeries]:
    """The scraped series of a run by source, times counted from `start_epoch_s`; empty when
    the run has no ``server_metrics.jsonl``. Unreadable lines are skipped."""
    path = run_dir / SERVER_METRICS_FILE
    if not path.exists():
        return {}
    out: dict[str, ServerSeries] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for count, line in enumerate(lines):
            if count >= MAX_READ_LINES:
                break
            try:
                data = json.loads(line)
                source, t = str(data["source"]), float(data["t"])
            except (ValueError, KeyError, TypeError):
                continue
            series = out.setdefault(source, ServerSeries())
            values = data.get("values")
            if not isinstance(values, dict):
                series.errors += 1
                continue
            series.times_s.append(round(t - start_epoch_s, 3))
            series.values.append(
                {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
            )
    return out
