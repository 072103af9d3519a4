"""Exact, mergeable measurements of a run: HDR histograms (microseconds), counters, time series.

Locust-free. Each load-generator process keeps one `Recorder`; `drain()` hands over everything
recorded since the last drain as a plain dict (msgpack-able, for Locust's ``report_to_master``)
and `merge_dict()` adds such a delta into another recorder (the master's). Histograms merge by
adding bucket counts, so the merged percentiles are those of all samples, never an average of
percentiles.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from loadtests import outcomes as oc
from reports.results import (
    BREAKDOWN_PARTS,
    HDR_HIGHEST_US,
    HDR_LOWEST_US,
    HDR_SIGNIFICANT_FIGURES,
    LATENCY_METRICS,
    OTHER_ERROR_OUTCOMES,
    OUTCOMES,
    PHASE_METRICS,
    LatencyStats,
    Phase,
)

HIST_LOWEST_US = HDR_LOWEST_US
HIST_HIGHEST_US = HDR_HIGHEST_US
HIST_DIGITS = HDR_SIGNIFICANT_FIGURES
SERIES_DIGITS = 2
PENDING_PER_HISTOGRAM = 2048
"""Values wait in a list per histogram (one append per value); a list this long goes into its
histogram in one vectorised pass (~0.5 ms: short enough not to hold the readers up; 16,384
values at once blocked the event loop 4-8 ms, several times a second at 500 streams)."""
PENDING_VALUES = 65536
"""All waiting values together: past this many, every list is recorded (`Recorder.flush`);
readers of the histograms flush first."""
"""Per-second histograms only feed the time series' p50/p95, so 2 significant digits suffice."""

READ_LAG = "read_lag_ms"
"""Extra histogram: per read, the reader's delay after the kernel received the bytes."""
LOOP_LAG = "loop_lag_ms"
"""Extra histogram: oversleep of a 10 ms sleeper in the generator's event loop (hub lag)."""


def new_histogram(digits: int = HIST_DIGITS) -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, digits)


def _us(ns: int) -> int:
    value = ns // 1000
    if value < 0:
        return 0
    return value if value < HIST_HIGHEST_US else HIST_HIGHEST_US


def record_all_ns(
    hist: HdrHistogram, values_ns: Sequence[int], twin: HdrHistogram | None = None
) -> None:
    """``hist.record_value(_us(v))`` for every value, vectorised (numpy: ~20 ns per value in a
    batch of thousands, against ~3 us per hdrh ``record_value`` call); ``twin``, a histogram of
    the same layout (the same digits), gets the same values.

    hdrh's bucket layout (`_get_bucket_index`, `_get_sub_bucket_index`, `_counts_index`;
    ``64 - clz(x)`` is the bit length, exact through ``frexp`` for values below 2**53, and
    values are at most HIST_HIGHEST_US); tests check it against ``record_value``.
    """
    if not len(values_ns):
        return
    mask = hist.sub_bucket_mask
    unit = hist.unit_magnitude
    half_magnitude = hist.sub_bucket_half_count_magnitude
    size = hist.counts_len
    if twin is not None and (
        twin.counts_len != size or twin.sub_bucket_mask != mask or twin.unit_magnitude != unit
    ):
        raise ValueError("record_all_ns: the twin histogram has another layout")
    value = np.asarray(values_ns, dtype=np.int64) // 1000
    np.clip(value, 0, HIST_HIGHEST_US, out=value)
    bucket = np.frexp((value | mask).astype(np.float64))[1] - (half_magnitude + 1 + unit)
    index = (
        ((bucket + 1) << half_magnitude) + (value >> (bucket + unit)) - hist.sub_bucket_half_count
    )
    inside = (index >= 0) & (index < size)
    if not inside.all():
        index, value = index[inside], value[inside]
        if not len(index):
            return
    low, high, n = int(value.min()), int(value.max()), len(index)
    first = int(index.min())
    added = np.bincount(index - first).astype(np.uint64)  # (``add.at`` on hdrh's ctypes
    # counts is ~30x slower)
    for target in (hist, twin):
        if target is None:
            continue
        np.ctypeslib.as_array(target.counts)[first : first + len(added)] += added
        target.total_count += n
        target.min_value = min(target.min_value, low)
        target.max_value = max(target.max_value, high)


def encode_histogram(hist: HdrHistogram) -> str:
    """Base64 text of ``hist.encode()`` (hdrh already returns base64 bytes)."""
    data = hist.encode()
    return data.decode("ascii") if isinstance(data, bytes) else str(data)


def decode_histogram(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


STATS_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def stats_from_histogram(hist: HdrHistogram) -> LatencyStats:
    """Milliseconds statistics of a microsecond histogram (HDR precision: 3 digits).

    The same figures as hdrh's ``get_value_at_percentile``/``get_mean_value``, computed over the
    counts array with numpy (one cumulative sum, a binary search per percentile, the mean over
    the non-empty buckets only): hdrh walks all ~23,000 buckets in Python for each figure, which
    took tens of milliseconds per histogram at the end of every run and in every summary test.
    """
    count = int(hist.get_total_count())
    if count == 0:
        return LatencyStats()

    def ms(value: float) -> float:
        return round(value / 1000.0, 4)

    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len]
    cumulative = np.cumsum(counts, dtype=np.int64)
    at: dict[float, int] = {}
    for percentile in STATS_PERCENTILES:
        target = hist.get_target_count_at_percentile(percentile)
        index = int(np.searchsorted(cumulative, target, side="left"))
        value = hist.get_value_from_index(min(index, hist.counts_len - 1))
        at[percentile] = hist.get_highest_equivalent_value(value)
    total = 0
    for index in np.flatnonzero(counts).tolist():
        value = hist.get_value_from_index(index)
        total += int(counts[index]) * hist._hdr_median_equiv_value(value)
    return LatencyStats(
        count=count,
        mean=ms(total / count),
        min=ms(hist.get_min_value()),
        max=ms(hist.get_max_value()),
        p50=ms(at[50.0]),
        p90=ms(at[90.0]),
        p95=ms(at[95.0]),
        p99=ms(at[99.0]),
        p999=ms(at[99.9]),
    )


@dataclass(slots=True)
class RequestRecord:
    """What one request did, in absolute ``time.time_ns()`` instants."""

    start_ns: int
    end_ns: int
    outcome: str
    intended_ns: int | None = None
    thinking_ns: int | None = None
    first_token_ns: int | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None
    """As the server reported them (usage), when it did."""
    itl_ns: list[int] = field(default_factory=list)
    client_lag_ns: list[int] = field(default_factory=list)
    first_token_lag_ns: int | None = None
    read_lag_ns: list[int] = field(default_factory=list)
    """Per read with kernel timestamps: when the reader got the bytes minus when they arrived."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def ttft_ns(self) -> int | None:
        return None if self.first_token_ns is None else self.first_token_ns - self.start_ns

    @property
    def e2e_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class Slo:
    """Goodput SLO (vLLM's ``--goodput ttft:… tpot:… e2el:…``); None = no limit on that metric."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def met_by(self, record: RequestRecord) -> bool:
        if record.outcome != oc.OK:
            return False
        ttft = record.ttft_ns
        if self.ttft_ms is not None and (ttft is None or ttft > self.ttft_ms * 1e6):
            return False
        if self.e2e_ms is not None and record.e2e_ns > self.e2e_ms * 1e6:
            return False
        tpot = tpot_ns(record)
        return not (self.tpot_ms is not None and tpot is not None and tpot > self.tpot_ms * 1e6)

    def as_dict(self) -> dict[str, float]:
        items = (("ttft_ms", self.ttft_ms), ("tpot_ms", self.tpot_ms), ("e2e_ms", self.e2e_ms))
        return {k: v for k, v in items if v is not None}


def tpot_ns(record: RequestRecord) -> int | None:
    """vLLM's TPOT: (e2e - ttft) / (output tokens - 1); None for one token or fewer."""
    ttft = record.ttft_ns
    if ttft is None or record.output_tokens <= 1:
        return None
    return (record.e2e_ns - ttft) // (record.output_tokens - 1)


class _Second:
    """Counters and small histograms of one wall-clock second (by request completion)."""

    __slots__ = (
        "errors",
        "itl",
        "ok",
        "output_tokens",
        "rejected",
        "requests",
        "timeout",
        "ttft",
        "users",
    )

    def __init__(self) -> None:
        self.users = 0
        self.requests = 0
        self.ok = 0
        self.rejected = 0
        self.timeout = 0
        self.errors = 0
        self.output_tokens = 0
        self.ttft: HdrHistogram | None = None
        self.itl: HdrHistogram | None = None


PHASE_PARTS: tuple[str, ...] = ("queue_wait", "pool_wait", "upstream_ttft", "relay_overhead")
"""The TTFT breakdown kept per phase (the service's parts; client lag stays whole-run)."""


class _PhaseData:
    """Counters and full-precision histograms of one phase of the load."""

    __slots__ = ("hists", "outcomes", "output_tokens")

    def __init__(self) -> None:
        self.hists: dict[str, HdrHistogram] = {}
        self.outcomes: dict[str, int] = {}
        self.output_tokens = 0

    def hist(self, name: str) -> HdrHistogram:
        hist = self.hists.get(name)
        if hist is None:
            hist = self.hists[name] = new_histogram()
        return hist

    def record(self, record: RequestRecord, defer: Callable[[HdrHistogram, int], None]) -> None:
        """Count one request; its values go to ``defer`` (the recorder's batch; its token gaps:
        by the recorder, with its own)."""
        outcome = record.outcome
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome == oc.REJECTED:
            defer(self.hist("rejected_ms"), record.e2e_ns)
            return
        if outcome != oc.OK:
            return
        self.output_tokens += record.output_tokens
        defer(self.hist("e2e_ms"), record.e2e_ns)
        ttft = record.ttft_ns
        if ttft is not None:
            defer(self.hist("ttft_ms"), ttft)
        for part in PHASE_PARTS:
            value = record.timings_ms.get(part)
            if value is not None:
                defer(self.hist(f"breakdown.{part}"), int(value * 1e6))

    def to_dict(self) -> dict[str, Any]:
        return {
            "hists": {n: encode_histogram(h) for n, h in self.hists.items() if h.get_total_count()},
            "outcomes": dict(self.outcomes),
            "output_tokens": self.output_tokens,
        }

    def merge_dict(self, data: Mapping[str, Any]) -> None:
        for name, text in data.get("hists", {}).items():
            self.hist(name).decode_and_add(text.encode("ascii"))
        for key, n in data.get("outcomes", {}).items():
            self.outcomes[key] = self.outcomes.get(key, 0) + int(n)
        self.output_tokens += int(data.get("output_tokens", 0))


class Recorder:
    """All measurements of one process (or, on the master, of all merged processes).

    Requests that *started* before ``measure_from_ns`` (the warm-up) are left out of the
    statistics but kept in the per-second time series. With ``phase_starts_ns`` (the start
    instants of the load's phases, `loadtests.phases`) each measured request is also filed under
    the phase in which it started, with its own histograms.
    """

    def __init__(
        self,
        *,
        measure_from_ns: int = 0,
        slo: Slo | None = None,
        phase_starts_ns: Sequence[int] = (),
    ) -> None:
        self.measure_from_ns = measure_from_ns
        self.slo = slo or Slo()
        self.phase_starts_ns = tuple(phase_starts_ns)
        self._reset()

    def _reset(self) -> None:
        self._hists: dict[str, HdrHistogram] = {}
        self._pending: dict[int, tuple[HdrHistogram, list[int]]] = {}
        """Values (ns) not yet in their histogram, by ``id(histogram)``: recorded in bulk."""
        self._pending_n = 0
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.output_tokens = 0
        self.good = 0
        self._seconds: dict[int, _Second] = {}
        self.cpu_max = 0.0
        self.cpu_sum = 0.0
        self.cpu_samples = 0
        self.cpu_warnings = 0
        self.open_loop: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.reports = 0
        self.errors: dict[str, int] = {}
        self.phases: dict[int, _PhaseData] = {}

    @property
    def hists(self) -> dict[str, HdrHistogram]:
        """The whole run's histograms by name, every value recorded so far in them."""
        self.flush()
        return self._hists

    @property
    def seconds(self) -> dict[int, _Second]:
        """The per-second points by epoch second, every value recorded so far in them."""
        self.flush()
        return self._seconds

    # -- recording -----------------------------------------------------------------------------
    def hist(self, name: str) -> HdrHistogram:
        """The named histogram (created empty); values deferred into it may be pending."""
        hist = self._hists.get(name)
        if hist is None:
            hist = self._hists[name] = new_histogram()
        return hist

    def record_ns(self, name: str, value_ns: int) -> None:
        self._defer(self.hist(name), value_ns)

    def _defer(self, hist: HdrHistogram, value_ns: int) -> None:
        """Record ``value_ns`` into ``hist`` at the next `flush` (one list append now)."""
        entry = self._pending.get(id(hist))
        if entry is None:
            entry = self._pending[id(hist)] = (hist, [])
        entry[1].append(value_ns)
        self._pending_n += 1

    def _defer_all(self, hist: HdrHistogram, values_ns: list[int]) -> None:
        entry = self._pending.get(id(hist))
        if entry is None:
            entry = self._pending[id(hist)] = (hist, [])
        waiting = entry[1]
        waiting.extend(values_ns)
        if len(waiting) >= PENDING_PER_HISTOGRAM:
            self._pending_n -= len(waiting) - len(values_ns)
            record_all_ns(hist, waiting)
            waiting.clear()
            return
        self._pending_n += len(values_ns)
        if self._pending_n >= PENDING_VALUES:
            self.flush()

    def flush(self) -> None:
        """Record every pending value into its histogram (vectorised, `record_all_ns`)."""
        if not self._pending_n:
            return
        pending, self._pending, self._pending_n = self._pending, {}, 0
        for hist, values in pending.values():
            record_all_ns(hist, values)

    def record_request(self, record: RequestRecord) -> None:
        """Add one finished request."""
        second = self._second(record.end_ns // 1_000_000_000)
        second.requests += 1
        outcome = record.outcome
        if outcome == oc.OK:
            second.ok += 1
            second.output_tokens += record.output_tokens
            ttft = record.ttft_ns
            if ttft is not None:
                if second.ttft is None:
                    second.ttft = new_histogram(SERIES_DIGITS)
                self._defer(second.ttft, ttft)
            if record.itl_ns:
                if second.itl is None:
                    second.itl = new_histogram(SERIES_DIGITS)
                self._defer_all(second.itl, record.itl_ns)
        elif outcome == oc.REJECTED:
            second.rejected += 1
        elif outcome == oc.TIMEOUT:
            second.timeout += 1
        elif outcome in OTHER_ERROR_OUTCOMES:
            second.errors += 1
        if record.start_ns < self.measure_from_ns:
            return
        self.first_ns = (
            record.start_ns if self.first_ns is None else min(self.first_ns, record.start_ns)
        )
        self.last_ns = record.end_ns if self.last_ns is None else max(self.last_ns, record.end_ns)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if record.error and outcome != oc.OK:
            key = f"{outcome}: {record.error}"[:200]
            self.errors[key] = self.errors.get(key, 0) + 1
        phase = self._phase(self._phase_index(record.start_ns))
        phase.record(record, self._defer)
        if record.client_lag_ns:
            self._defer_all(self.hist("client_lag_ms"), record.client_lag_ns)
        if record.read_lag_ns:
            self._defer_all(self.hist(READ_LAG), record.read_lag_ns)
        if outcome == oc.REJECTED:
            self.record_ns("rejected_ms", record.e2e_ns)
            return
        if outcome != oc.OK:
            return
        self._record_ok(record, phase)

    def _record_ok(self, record: RequestRecord, phase: _PhaseData) -> None:
        self.output_tokens += record.output_tokens
        if self.slo.met_by(record):
            self.good += 1
        self.record_ns("e2e_ms", record.e2e_ns)
        if record.thinking_ns is not None:
            self.record_ns("thinking_ms", record.thinking_ns - record.start_ns)
        ttft = record.ttft_ns
        if ttft is not None:
            self.record_ns("ttft_ms", ttft)
        tpot = tpot_ns(record)
        if tpot is not None:
            self.record_ns("tpot_ms", tpot)
        if record.itl_ns:  # the whole run's and its phase's
            self._defer_all(self.hist("itl_ms"), record.itl_ns)
            self._defer_all(phase.hist("itl_ms"), record.itl_ns)
        if record.intended_ns is not None:
            self.record_ns("e2e_from_intended_ms", record.end_ns - record.intended_ns)
            if record.first_token_ns is not None:
                self.record_ns("ttft_from_intended_ms", record.first_token_ns - record.intended_ns)
        for part in BREAKDOWN_PARTS:
            value = record.timings_ms.get(part)
            if value is not None:
                self.record_ns(f"breakdown.{part}", int(value * 1e6))
        if record.first_token_lag_ns is not None:
            self.record_ns("breakdown.client_lag", record.first_token_lag_ns)

    def record_unfinished(self, record: RequestRecord) -> None:
        """A request cut off at the stop (``oc.UNFINISHED``): counted among the outcomes and in
        its phase when measured; in no latency and in no second of the series (it never ended)."""
        if record.start_ns < self.measure_from_ns:
            return
        self.outcomes[oc.UNFINISHED] = self.outcomes.get(oc.UNFINISHED, 0) + 1
        self._phase(self._phase_index(record.start_ns)).record(record, self._defer)

    def record_loop_lag_ns(self, lag_ns: int) -> None:
        self.record_ns(LOOP_LAG, lag_ns)

    def record_cpu(self, percent: float) -> None:
        self.cpu_max = max(self.cpu_max, percent)
        self.cpu_sum += percent
        self.cpu_samples += 1

    def record_users(self, epoch_s: int, users: int) -> None:
        second = self._second(epoch_s)
        second.users = max(second.users, users)

    def count_open_loop(self, key: str, n: int = 1) -> None:
        self.open_loop[key] = self.open_loop.get(key, 0) + n

    def _phase_index(self, start_ns: int) -> int:
        return max(0, bisect.bisect_right(self.phase_starts_ns, start_ns) - 1)

    def _phase(self, index: int) -> _PhaseData:
        phase = self.phases.get(index)
        if phase is None:
            phase = self.phases[index] = _PhaseData()
        return phase

    def _second(self, epoch_s: int) -> _Second:
        second = self._seconds.get(epoch_s)
        if second is None:
            second = self._seconds[epoch_s] = _Second()
        return second

    # -- transfer ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything recorded, as plain data (histograms as base64 text)."""
        self.flush()
        series: dict[str, dict[str, Any]] = {}
        for epoch_s, sec in self._seconds.items():
            point: dict[str, Any] = {
                "users": sec.users,
                "requests": sec.requests,
                "ok": sec.ok,
                "rejected": sec.rejected,
                "timeout": sec.timeout,
                "errors": sec.errors,
                "output_tokens": sec.output_tokens,
            }
            if sec.ttft is not None:
                point["ttft"] = encode_histogram(sec.ttft)
            if sec.itl is not None:
                point["itl"] = encode_histogram(sec.itl)
            series[str(epoch_s)] = point
        return {
            "hists": {
                name: encode_histogram(h) for name, h in self.hists.items() if h.get_total_count()
            },
            "outcomes": dict(self.outcomes),
            "output_tokens": self.output_tokens,
            "good": self.good,
            "series": series,
            "cpu": {"max": self.cpu_max, "sum": self.cpu_sum, "n": self.cpu_samples},
            "cpu_warnings": self.cpu_warnings,
            "open_loop": dict(self.open_loop),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "errors": dict(self.errors),
            "phases": {str(index): phase.to_dict() for index, phase in self.phases.items()},
            "reports": max(self.reports, 1),
        }

    def drain(self) -> dict[str, Any]:
        """`to_dict()` of what was recorded since the last drain, then forget it (a delta)."""
        data = self.to_dict()
        data["reports"] = 1
        self._reset()
        return data

    def merge_dict(self, data: Mapping[str, Any]) -> None:
        """Add a `to_dict()`/`drain()` delta from another recorder."""
        for name, text in data.get("hists", {}).items():
            self.hist(name).decode_and_add(text.encode("ascii"))
        for key, n in data.get("outcomes", {}).items():
            self.outcomes[key] = self.outcomes.get(key, 0) + int(n)
        self.output_tokens += int(data.get("output_tokens", 0))
        self.good += int(data.get("good", 0))
        for key, point in data.get("series", {}).items():
            sec = self._second(int(key))
            sec.users = max(sec.users, int(point.get("users", 0)))
            sec.requests += int(point.get("requests", 0))
            sec.ok += int(point.get("ok", 0))
            sec.rejected += int(point.get("rejected", 0))
            sec.timeout += int(point.get("timeout", 0))
            sec.errors += int(point.get("errors", 0))
            sec.output_tokens += int(point.get("output_tokens", 0))
            if "ttft" in point:
                if sec.ttft is None:
                    sec.ttft = new_histogram(SERIES_DIGITS)
                sec.ttft.decode_and_add(point["ttft"].encode("ascii"))
            if "itl" in point:
                if sec.itl is None:
                    sec.itl = new_histogram(SERIES_DIGITS)
                sec.itl.decode_and_add(point["itl"].encode("ascii"))
        cpu = data.get("cpu", {})
        self.cpu_max = max(self.cpu_max, float(cpu.get("max", 0.0)))
        self.cpu_sum += float(cpu.get("sum", 0.0))
        self.cpu_samples += int(cpu.get("n", 0))
        self.cpu_warnings += int(data.get("cpu_warnings", 0))
        for key, n in data.get("open_loop", {}).items():
            self.count_open_loop(key, int(n))
        for key, n in data.get("errors", {}).items():
            self.errors[key] = self.errors.get(key, 0) + int(n)
        for index, phase in data.get("phases", {}).items():
            self._phase(int(index)).merge_dict(phase)
        first, last = data.get("first_ns"), data.get("last_ns")
        if first is not None:
            self.first_ns = first if self.first_ns is None else min(self.first_ns, first)
        if last is not None:
            self.last_ns = last if self.last_ns is None else max(self.last_ns, last)
        self.reports += int(data.get("reports", 1))

    # -- reading -------------------------------------------------------------------------------
    def latency(self) -> dict[str, LatencyStats]:
        return {m: stats_from_histogram(self.hists[m]) for m in LATENCY_METRICS if m in self.hists}

    def breakdown(self) -> dict[str, LatencyStats]:
        return {
            part: stats_from_histogram(self.hists[f"breakdown.{part}"])
            for part in BREAKDOWN_PARTS
            if f"breakdown.{part}" in self.hists
        }

    def stats(self, name: str) -> LatencyStats:
        hist = self.hists.get(name)
        return LatencyStats() if hist is None else stats_from_histogram(hist)

    def phase_measurements(self) -> dict[int, Phase]:
        """What was measured in each phase, by phase index (span and label filled in later by
        `loadtests.phases.phase_results`)."""
        self.flush()
        measured: dict[int, Phase] = {}
        for index, data in sorted(self.phases.items()):
            measured[index] = Phase(
                index=index,
                kind="",
                label="",
                start_s=0.0,
                end_s=0.0,
                outcomes={k: int(data.outcomes.get(k, 0)) for k in OUTCOMES},
                output_tokens=data.output_tokens,
                latency={
                    m: stats_from_histogram(data.hists[m]) for m in PHASE_METRICS if m in data.hists
                },
                breakdown_ms={
                    part: stats_from_histogram(data.hists[f"breakdown.{part}"])
                    for part in PHASE_PARTS
                    if f"breakdown.{part}" in data.hists
                },
            )
        return measured
