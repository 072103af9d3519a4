"""Fit points from genai-perf results: one `Point` per ``*_genai_perf.json`` of a concurrency run.

genai-perf (the `profile` command of 2024, perf_analyzer underneath) writes, per run, a JSON of
its statistics (``time_to_first_token``, ``inter_token_latency``, ``output_token_throughput``,
``input_sequence_length``, ``output_sequence_length``, each with ``avg`` in ms, tokens/s or
tokens) and of the arguments it ran with (``input_config``: ``concurrency``,
``measurement_interval``, ``stability_percentage``, ``streaming``). A point takes the means,
the measured mean prompt and output lengths, and the run's measurement protocol, so the fit
replays the run as perf_analyzer measured it (`Point.measurement_interval_ms`). Runs that the
replay cannot reproduce are refused with the reason: not streamed (no TTFT), a request rate
instead of a concurrency, a request count or a warm-up (perf_analyzer then measures something
else than windows from the start).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mock_llm.fit import GENAI_PERF_STABILITY_PERCENTAGE, FitError, Point

SUFFIX = "_genai_perf.json"
MAX_FILES = 200
MAX_FILE_BYTES = 4 * 1_048_576
# genai-perf's --measurement-interval default (ms), when a file does not say
GENAI_PERF_INTERVAL_MS = 10_000.0


def _avg(stats: dict[str, Any], name: str, where: Path) -> float:
    entry = stats.get(name)
    value = entry.get("avg") if isinstance(entry, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise FitError(f"{where}: no positive {name}.avg (was the run streamed?)")
    return float(value)


def _number(config: dict[str, Any], name: str, default: float) -> float:
    value = config.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return math.nan
    return float(value)


def point_of(stats: dict[str, Any], where: Path) -> Point:
    """The point of one genai-perf JSON (already parsed); FitError when it cannot be replayed."""
    config = stats.get("input_config")
    if not isinstance(config, dict):
        raise FitError(f"{where}: no input_config (not a genai-perf profile JSON)")
    if "concurrency" not in config and isinstance(config.get("perf_analyzer"), dict):
        raise FitError(
            f"{where}: the layout of genai-perf's config files (2025, input_config.perf_analyzer) "
            "is not read; write its figures as a --table CSV (with measurement_interval_ms)"
        )
    if config.get("streaming") is False:
        raise FitError(f"{where}: not streamed (--streaming): no time to first token to fit")
    concurrency = _number(config, "concurrency", 0.0)
    if not (concurrency >= 1 and concurrency.is_integer()):
        raise FitError(
            f"{where}: input_config.concurrency {config.get('concurrency')!r}; the fit needs a "
            "closed loop of C users (--concurrency), not a request rate"
        )
    for name in ("request_count", "warmup_request_count"):
        if _number(config, name, 0.0) != 0.0:
            raise FitError(
                f"{where}: input_config.{name} {config.get(name)!r}; only perf_analyzer's time "
                "windows from the load's start are replayed (run without it)"
            )
    interval = _number(config, "measurement_interval", GENAI_PERF_INTERVAL_MS)
    stability = _number(config, "stability_percentage", GENAI_PERF_STABILITY_PERCENTAGE)
    point = Point(
        concurrency=int(concurrency),
        prompt_tokens=round(_avg(stats, "input_sequence_length", where)),
        output_tokens=round(_avg(stats, "output_sequence_length", where)),
        ttft_ms=_avg(stats, "time_to_first_token", where),
        itl_ms=_avg(stats, "inter_token_latency", where),
        tokens_per_s=_avg(stats, "output_token_throughput", where),
        measurement_interval_ms=interval,
        stability_percentage=stability,
    )
    point.check(str(where))
    return point
