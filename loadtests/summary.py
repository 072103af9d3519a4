"""Build `reports.results.Summary` from a merged `Recorder`, with the saturation verdict.

Locust-free and pure (inputs -> `Summary`, no clock, no files): `summarize` is called on the
Locust master (or the only process) when it quits, and by tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadtests.health import max_of, mean_of, series
from loadtests.phases import PhaseSpan, phase_plan, phase_results
from loadtests.recorder import (
    LOOP_LAG,
    READ_LAG,
    Recorder,
    decode_histogram,
    stats_from_histogram,
)
from loadtests.settings import DEFAULTS, RunSettings
from reports.results import LATENCY_METRICS, Summary, TimePoint
from reports.verdict import guard_advice, read_lag_limit_ms


@dataclass(frozen=True)
class GuardSettings:
    """Thresholds past which the load generator's own delay makes a run's latencies untrustworthy.

    Measured here (docs/loadtests.md): one Locust process stays exact to ~40% CPU; beyond that
    client lag and loop lag grow first, so they are the primary signals and CPU the backstop.
    """

    max_client_lag_p99_ms: float = DEFAULTS.max_client_lag_ms
    max_loop_lag_p99_ms: float = DEFAULTS.max_loop_lag_ms
    max_cpu_percent: float = DEFAULTS.max_cpu_percent
    max_dropped_fraction: float = 0.0

    @classmethod
    def from_settings(cls, settings: RunSettings) -> GuardSettings:
        return cls(
            max_client_lag_p99_ms=settings.max_client_lag_ms,
            max_loop_lag_p99_ms=settings.max_loop_lag_ms,
            max_cpu_percent=settings.max_cpu_percent,
        )


@dataclass(frozen=True)
class RunInfo:
    """Facts about the run that the recorder does not know."""

    name: str
    started_at: str
    start_epoch_s: float
    duration_s: float
    warmup_s: float = 0.0
    target: str = ""
    load_model: str = "closed"
    processes: int = 1
    workers_reported: int = 1
    remote_workers: bool = False
    """``--master``: the processes are `surgebench worker`s the user starts, not ``--processes``."""
    config: dict[str, Any] | None = None
    versions: dict[str, str] | None = None
    effective: dict[str, Any] | None = None
    phases: tuple[PhaseSpan, ...] = ()


def saturation(
    recorder: Recorder,
    guard: GuardSettings,
    info: RunInfo,
    health: list[dict[str, float | None]] | None = None,
) -> tuple[dict[str, float | None], list[str]]:
    """The generator-health figures and the reasons (if any) to call the run invalid; the
    advice names the cause when the per-second `health` series tells it (`guard_advice`)."""
    lag = recorder.stats("client_lag_ms")
    loop = recorder.stats(LOOP_LAG)
    read = recorder.stats(READ_LAG)
    cpu_mean = recorder.cpu_sum / recorder.cpu_samples if recorder.cpu_samples else None
    figures: dict[str, float | None] = {
        "client_lag_p50_ms": lag.p50,
        "client_lag_p99_ms": lag.p99,
        "client_lag_max_ms": lag.max,
        "loop_lag_p50_ms": loop.p50,
        "loop_lag_p99_ms": loop.p99,
        "read_lag_p50_ms": read.p50,
        "read_lag_p99_ms": read.p99,
        "read_lag_max_ms": read.max,
        "cpu_max_percent": recorder.cpu_max if recorder.cpu_samples else None,
        "cpu_mean_percent": cpu_mean,
        "cpu_warnings": float(recorder.cpu_warnings),
        "processes": float(info.processes),
        "workers_reported": float(info.workers_reported),
    }
    measured = [p for p in health or [] if (p.get("t_s") or 0.0) >= info.warmup_s]
    figures.update(
        runqueue_wait_mean_percent=mean_of(measured, "runqueue_wait_percent"),
        others_cpu_mean_percent=mean_of(measured, "others_cpu_percent"),
        steal_mean_percent=mean_of(measured, "steal_percent"),
        psi_cpu_some_avg10_max=max_of(measured, "psi_cpu_some_avg10"),
    )
    cause, advice = guard_advice(
        figures, info.processes, guard.max_cpu_percent, remote_workers=info.remote_workers
    )
    reasons: list[str] = []
    if lag.p99 is not None and lag.p99 > guard.max_client_lag_p99_ms:
        reasons.append(
            f"load generator {cause}: client lag p99 {lag.p99:.1f} ms > "
            f"{guard.max_client_lag_p99_ms:g} ms (tokens were read late); {advice}"
        )
    if read.count:  # kernel timestamps: a late read bends a time only past the next token
        limit_ms, why = read_lag_limit_ms(guard.max_loop_lag_p99_ms, recorder.stats("itl_ms").p50)
        if read.p99 is not None and read.p99 > limit_ms:
            reasons.append(
                f"load generator {cause}: read lag p99 {read.p99:.1f} ms > {limit_ms:.3g} ms "
                f"({why}: later reads merge a stream's tokens); {advice}"
            )
    elif loop.p99 is not None and loop.p99 > guard.max_loop_lag_p99_ms:
        reasons.append(
            f"load generator {cause}: event-loop lag p99 {loop.p99:.1f} ms > "
            f"{guard.max_loop_lag_p99_ms:g} ms; {advice}"
        )
    if recorder.cpu_samples and recorder.cpu_max > guard.max_cpu_percent:
        reasons.append(
            f"load generator saturated: CPU of one process reached {recorder.cpu_max:.0f}% > "
            f"{guard.max_cpu_percent:g}%; {advice}"
        )
    if recorder.cpu_warnings:
        reasons.append(f"Locust reported {recorder.cpu_warnings} CPU warning(s); {advice}")
    if info.workers_reported < info.processes:
        reasons.append(
            f"only {info.workers_reported} of {info.processes} load processes sent their "
            "measurements; counts are incomplete"
        )
    ol = recorder.open_loop
    intended = ol.get("intended", 0)
    dropped = ol.get("dropped", 0)
    if intended and dropped / intended > guard.max_dropped_fraction:
        reasons.append(
            f"open loop: {dropped} of {intended} arrivals dropped because every user was busy; "
            "the offered rate was not delivered (raise --users)"
        )
    return figures, reasons


def timeseries(recorder: Recorder, start_epoch_s: float) -> list[TimePoint]:
    """One point per wall-clock second from the first to the last second with data;
    ``t_s`` counts whole seconds from the second in which the test started."""
    if not recorder.seconds:
        return []
    first, last = min(recorder.seconds), max(recorder.seconds)
    points: list[TimePoint] = []
    users = 0
    start_s = int(start_epoch_s)
    for epoch_s in range(first, last + 1):
        sec = recorder.seconds.get(epoch_s)
        if sec is None:
            points.append(TimePoint(t_s=float(epoch_s - start_s), users=users))
            continue
        users = sec.users or users
        ttft = stats_from_histogram(sec.ttft) if sec.ttft is not None else None
        itl = stats_from_histogram(sec.itl) if sec.itl is not None else None
        points.append(
            TimePoint(
                t_s=float(epoch_s - start_s),
                users=users,
                requests=sec.requests,
                ok=sec.ok,
                rejected=sec.rejected,
                timeout=sec.timeout,
                errors=sec.errors,
                output_tokens=sec.output_tokens,
                ttft_p50_ms=ttft.p50 if ttft else None,
                ttft_p95_ms=ttft.p95 if ttft else None,
                itl_p50_ms=itl.p50 if itl else None,
                itl_p95_ms=itl.p95 if itl else None,
            )
        )
    return points


def build_summary(
    recorder: Recorder,
    info: RunInfo,
    *,
    measured_s: float,
    guard: GuardSettings | None = None,
    health: Mapping[int, Mapping[str, float | None]] | None = None,
) -> Summary:
    """The run's `Summary` (histograms included, so reports can recompute any percentile);
    `health`: the generator's per-second points by epoch second (`loadtests.health`)."""
    health_series = series(health or {}, info.start_epoch_s)
    figures, reasons = saturation(recorder, guard or GuardSettings(), info, health_series)
    if measured_s <= 0:
        reasons.insert(
            0,
            f"the run ended before its warm-up of {info.warmup_s:g} s did: nothing was measured "
            "(run longer than the warm-up, or set a shorter warm-up)",
        )
    summary = Summary(
        name=info.name,
        started_at=info.started_at,
        duration_s=info.duration_s,
        measured_s=measured_s,
        target=info.target,
        load_model=info.load_model,
        warmup_s=info.warmup_s,
        valid=not reasons,
        invalid_reasons=reasons,
        saturation=figures,
        outcomes=dict(recorder.outcomes),
        output_tokens=recorder.output_tokens,
        latency=recorder.latency(),
        breakdown_ms=recorder.breakdown(),
        histograms={
            name: text
            for name, text in recorder.to_dict()["hists"].items()
            if name in LATENCY_METRICS
        },
        timeseries=timeseries(recorder, info.start_epoch_s),
        health=health_series,
        phases=phase_results(
            info.phases,
            recorder.phase_measurements(),
            warmup_s=info.warmup_s,
            end_s=info.duration_s,
        ),
        config=dict(info.config or {}),
        versions=dict(info.versions or {}),
        effective=dict(info.effective or {}),
    )
    ok = recorder.outcomes.get("ok", 0)
    summary.goodput = {
        "slo": recorder.slo.as_dict(),
        "requests": recorder.good,
        "requests_per_s": recorder.good / measured_s if measured_s > 0 else 0.0,
        "fraction_of_ok": recorder.good / ok if ok else 0.0,
    }
    if recorder.open_loop:
        summary.open_loop = {
            k: int(recorder.open_loop.get(k, 0)) for k in ("intended", "sent", "late", "dropped")
        }
    if recorder.errors:
        summary.config.setdefault("error_samples", dict(sorted(recorder.errors.items())[:20]))
    return summary


def histogram_of(summary: Summary, metric: str) -> Any:
    """Decode one of a summary's histograms (microseconds)."""
    return decode_histogram(summary.histograms[metric])


@dataclass(frozen=True)
class Window:
    """When the test ran, as the Locust process saw it (``time.time_ns()``)."""

    start_ns: int
    stop_ns: int
    started_at: str


def summarize(
    recorder: Recorder,
    settings: RunSettings,
    window: Window,
    *,
    distributed: bool,
    workers_reported: int,
    config: Mapping[str, Any],
    versions: Mapping[str, str],
    health: Mapping[int, Mapping[str, float | None]] | None = None,
) -> Summary:
    """The run's summary from what was measured and the run's configuration (pure).

    `distributed`: this is the master of ``settings.processes`` workers (else one local process).
    `config`: the ``config.json`` document, embedded whole; its ``effective`` part is also the
    summary's `effective`.
    """
    measured_s = max(0.0, (window.stop_ns - recorder.measure_from_ns) / 1e9)
    effective = config.get("effective")
    info = RunInfo(
        name=settings.name,
        started_at=window.started_at,
        start_epoch_s=window.start_ns / 1e9,
        duration_s=(window.stop_ns - window.start_ns) / 1e9,
        warmup_s=settings.warmup_s,
        target=settings.host or settings.target,
        load_model=settings.load_model,
        processes=max(1, settings.processes) if distributed else 1,
        workers_reported=workers_reported if distributed else 1,
        remote_workers=distributed and settings.master,
        config=dict(config),
        versions=dict(versions),
        effective=dict(effective) if isinstance(effective, Mapping) else {},
        phases=tuple(phase_plan(settings)),
    )
    return build_summary(
        recorder,
        info,
        measured_s=measured_s,
        guard=GuardSettings.from_settings(settings),
        health=health,
    )
