"""Synthetic run results with known inputs, written through `write_summary` like the runner."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reports.hdr import encode_samples_ms
from reports.results import LatencyStats, Summary, TimePoint, write_config, write_summary


@dataclass(frozen=True)
class RunSpec:
    """What a synthetic run looks like; every figure of the summary follows from these."""

    name: str = "synthetic"
    seed: int = 1
    requests: int = 400
    ttft_ms: float = 200.0  # median of a log-normal
    ttft_sigma: float = 0.35
    itl_ms: float = 20.0
    tokens_per_request: int = 20
    users: int = 10
    duration_s: int = 20
    warmup_s: float = 0.0
    rejected: int = 0
    timeouts: int = 0
    valid: bool = True
    breakdown: bool = True


def ttft_samples(spec: RunSpec) -> np.ndarray:
    rng = np.random.default_rng(spec.seed)
    return rng.lognormal(math.log(spec.ttft_ms), spec.ttft_sigma, spec.requests)


def make_summary(spec: RunSpec) -> Summary:
    rng = np.random.default_rng(spec.seed + 1000)
    ttft = ttft_samples(spec)
    itl = rng.lognormal(math.log(spec.itl_ms), 0.3, spec.requests * spec.tokens_per_request)
    e2e = ttft + itl.reshape(spec.requests, spec.tokens_per_request).sum(axis=1)
    second = np.sort(rng.integers(0, spec.duration_s, spec.requests))
    rejected_second = rng.integers(0, spec.duration_s, spec.rejected)
    timeout_second = rng.integers(0, spec.duration_s, spec.timeouts)
    timeseries = []
    for t in range(spec.duration_s):
        in_bucket = ttft[second == t]
        itl_bucket = itl.reshape(spec.requests, -1)[second == t].ravel()
        timeseries.append(
            TimePoint(
                t_s=float(t),
                users=spec.users,
                requests=int(
                    len(in_bucket) + (rejected_second == t).sum() + (timeout_second == t).sum()
                ),
                ok=len(in_bucket),
                rejected=int((rejected_second == t).sum()),
                timeout=int((timeout_second == t).sum()),
                output_tokens=int(len(in_bucket) * spec.tokens_per_request),
                ttft_p50_ms=float(np.percentile(in_bucket, 50)) if len(in_bucket) else None,
                ttft_p95_ms=float(np.percentile(in_bucket, 95)) if len(in_bucket) else None,
                itl_p50_ms=float(np.percentile(itl_bucket, 50)) if len(itl_bucket) else None,
                itl_p95_ms=float(np.percentile(itl_bucket, 95)) if len(itl_bucket) else None,
            )
        )
    rejected_ms = rng.uniform(1.0, 3.0, spec.rejected) if spec.rejected else np.array([])
    breakdown: dict[str, LatencyStats] = {}
    if spec.breakdown:
        queue = ttft * 0.3
        breakdown = {
            "queue_wait": LatencyStats.from_values(queue.tolist()),
            "pool_wait": LatencyStats.from_values((ttft * 0.05).tolist()),
            "upstream_ttft": LatencyStats.from_values((ttft * 0.6).tolist()),
            "relay_overhead": LatencyStats.from_values((ttft * 0.03).tolist()),
            "client_lag": LatencyStats.from_values((ttft * 0.02).tolist()),
        }
    return Summary(
        name=spec.name,
        started_at="2026-11-25T12:00:00Z",
        duration_s=float(spec.duration_s),
        measured_s=float(spec.duration_s),
        warmup_s=spec.warmup_s,
        target="http://127.0.0.1:8000",
        load_model="closed",
        valid=spec.valid,
        invalid_reasons=[] if spec.valid else ["client lag p99 42.0 ms > budget 5.0 ms"],
        outcomes={"ok": spec.requests, "rejected": spec.rejected, "timeout": spec.timeouts},
        output_tokens=spec.requests * spec.tokens_per_request,
        latency={
            "ttft_ms": LatencyStats.from_values(ttft.tolist()),
            "itl_ms": LatencyStats.from_values(itl.tolist()),
            "e2e_ms": LatencyStats.from_values(e2e.tolist()),
            "rejected_ms": LatencyStats.from_values(rejected_ms.tolist()),
        },
        breakdown_ms=breakdown,
        histograms={
            "ttft_ms": encode_samples_ms(ttft),
            "itl_ms": encode_samples_ms(itl),
            "e2e_ms": encode_samples_ms(e2e),
        },
        timeseries=timeseries,
        versions={"surgebench": "test"},
    )


def write_run(root: Path, spec: RunSpec, config: dict[str, object] | None = None) -> Path:
    """Write ``root/<name>/summary.json`` (+ config.json) and return the folder."""
    run_dir = root / spec.name
    write_summary(run_dir, make_summary(spec))
    write_config(run_dir, config or {"users": spec.users, "service": {"max_concurrent": 8}})
    return run_dir
