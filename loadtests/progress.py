"""The live progress line: what the last window of seconds looked like, not the run so far.

Locust-free and pure: `progress_line` reads the recorder's per-second buckets (by completion
second) of the window ``[now_s - window_s, now_s)`` and prints ok/s and rejected/s apart, the
TTFT percentiles of the requests that finished in the window, and the run's totals of rejections
and failures up to the window's end for context (the second still running is in neither, so a
total never runs ahead of its window).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from hdrh.histogram import HdrHistogram

from loadtests.recorder import SERIES_DIGITS, new_histogram, stats_from_histogram


class SecondLike(Protocol):
    """What the line reads from one second of the recorder (`loadtests.recorder._Second`)."""

    ok: int
    rejected: int
    timeout: int
    errors: int
    ttft: HdrHistogram | None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def progress_line(
    seconds: Mapping[int, SecondLike],
    *,
    now_s: int,
    window_s: float,
    elapsed_s: float,
    users: int,
) -> str:
    """``t, users, ok/s, rejected/s, TTFT p50/p95 over the window; totals of rejected/failed``.

    `now_s` is the first whole second *not* in the window (on the master, a few seconds behind
    the clock: workers report every 3 s)."""
    width = max(1, round(window_s))
    start_s = now_s - width
    ttft = new_histogram(SERIES_DIGITS)
    ok = rejected = 0
    total_rejected = total_failed = 0
    for second, point in seconds.items():
        if second >= now_s:  # the second still running: in neither the window nor the totals
            continue
        total_rejected += point.rejected
        total_failed += point.errors + point.timeout
        if start_s <= second:
            ok += point.ok
            rejected += point.rejected
            if point.ttft is not None:
                ttft.add(point.ttft)
    stats = stats_from_histogram(ttft)
    return (
        f"[surgebench] t={elapsed_s:5.0f}s users={users:4d} "
        f"ok/s={ok / width:6.1f} rejected/s={rejected / width:6.1f} "
        f"ttft p50/p95 (last {width}s)={_ms(stats.p50)}/{_ms(stats.p95)} ms "
        f"| total rejected={total_rejected} failed={total_failed}"
    )
