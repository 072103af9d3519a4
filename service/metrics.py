"""Prometheus metrics of one service process (own registry: one per app, nothing global).

Names follow prometheus.io naming: prefix `surge_service_`, base units (seconds), `_total` on
counters, low-cardinality labels only. Gauges of live state (in flight, queue depth, connections in
use) are read from the owning objects at scrape time, so they cannot drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# SLO thresholds people use (0.8 s, 2 s) sit on bucket edges.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0,
    8.0, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
WAIT_BUCKETS_S = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
)  # fmt: skip
OUTCOMES = ("ok", "rejected", "timeout", "upstream_error", "cancelled", "client_error", "error")


class ServiceMetrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.in_flight = Gauge(
            "surge_service_in_flight", "requests holding a slot (talking to the LLM)", registry=r
        )
        self.queue_depth = Gauge(
            "surge_service_queue_depth", "admitted requests waiting for a slot", registry=r
        )
        self.capacity = Gauge("surge_service_concurrency_limit", "slots (0: unlimited)", registry=r)
        self.pool_in_use = Gauge(
            "surge_service_upstream_connections_in_use",
            "upstream responses holding a pooled connection",
            registry=r,
        )
        self.requests = Counter(
            "surge_service_requests",
            "finished requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.admitted = Counter(
            "surge_service_admitted", "requests given a slot or a queue place", registry=r
        )
        self.rejected = Counter(
            "surge_service_rejected",
            "requests turned away by admission",
            ["reason"],
            registry=r,
        )
        self.timed_out = Counter(
            "surge_service_timed_out", "requests ended by a deadline", ["stage"], registry=r
        )
        self.cancelled = Counter(
            "surge_service_cancelled",
            "requests whose client left (or server shutdown)",
            ["reason"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "surge_service_upstream_errors", "failed upstream calls", ["kind"], registry=r
        )
        self.upstream_retries = Counter(
            "surge_service_upstream_retries", "upstream calls retried", registry=r
        )
        self.tokens = Counter(
            "surge_service_tokens_relayed", "token events sent to clients", registry=r
        )
        self.pool_waits = Counter(
            "surge_service_upstream_pool_waits",
            "upstream calls that waited over 1 ms to get a connection",
            registry=r,
        )
        self.queue_wait = Histogram(
            "surge_service_queue_wait_seconds",
            "arrival to slot",
            buckets=WAIT_BUCKETS_S,
            registry=r,
        )
        self.pool_wait = Histogram(
            "surge_service_upstream_pool_wait_seconds",
            "upstream call start to connection acquired (includes connecting)",
            buckets=WAIT_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "surge_service_time_to_first_token_seconds",
            "arrival to first token event sent",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.upstream_ttft = Histogram(
            "surge_service_upstream_ttft_seconds",
            "connection acquired to first upstream token (per call)",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "surge_service_upstream_latency_seconds",
            "upstream call start to end of its stream",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.duration = Histogram(
            "surge_service_request_duration_seconds",
            "arrival to last event",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )

    def bind_state(
        self,
        in_flight: Callable[[], float],
        queue_depth: Callable[[], float],
        capacity: Callable[[], float],
        pool_in_use: Callable[[], float],
    ) -> None:
        """Read the live gauges from their owners at scrape time."""
        self.in_flight.set_function(in_flight)
        self.queue_depth.set_function(queue_depth)
        self.capacity.set_function(capacity)
        self.pool_in_use.set_function(pool_in_use)

    def render(self) -> bytes:
        return generate_latest(self.registry)
