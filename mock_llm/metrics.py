"""Counters and histograms of the mock, exported as Prometheus text with vLLM-like names.

The hot path only bumps list slots (`CheapHistogram.observe` is a bisect and two adds); the
`prometheus_client` objects are built at scrape time by a custom collector.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0,
)  # fmt: skip
ITL_BUCKETS_S = (
    0.0, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
LATENESS_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


class CheapHistogram:
    """A fixed-bucket histogram cheap enough to observe once per token."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count

    @property
    def total(self) -> int:
        return sum(self.counts)

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            acc += count
            buckets.append((repr(float(bound)), acc))
        buckets.append(("+Inf", acc + self.counts[-1]))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


@dataclass
class MockStats:
    """Everything the mock counts. Owned by one server instance (no module state)."""

    ttft_s: CheapHistogram = field(default_factory=lambda: CheapHistogram(TTFT_BUCKETS_S))
    itl_s: CheapHistogram = field(default_factory=lambda: CheapHistogram(ITL_BUCKETS_S))
    e2e_s: CheapHistogram = field(default_factory=lambda: CheapHistogram(TTFT_BUCKETS_S))
    queue_s: CheapHistogram = field(default_factory=lambda: CheapHistogram(TTFT_BUCKETS_S))
    timer_lateness_s: CheapHistogram = field(
        default_factory=lambda: CheapHistogram(LATENESS_BUCKETS_S)
    )
    batch_size: CheapHistogram = field(
        default_factory=lambda: CheapHistogram((1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
    )
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests_finished: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    disconnects: int = 0
    slow_clients: int = 0
    bad_requests: dict[str, int] = field(default_factory=dict)

    def bump(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class _Collector:
    def __init__(self, stats: MockStats, gauges: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        s = self._stats
        running, waiting = self._gauges()
        yield GaugeMetricFamily("vllm:num_requests_running", "Requests running", value=running)
        yield GaugeMetricFamily("vllm:num_requests_waiting", "Requests waiting", value=waiting)
        yield s.ttft_s.family("vllm:time_to_first_token_seconds", "Time to first token")
        yield s.itl_s.family("vllm:inter_token_latency_seconds", "Gap between sent tokens")
        yield s.e2e_s.family("vllm:e2e_request_latency_seconds", "Request latency")
        yield s.queue_s.family("vllm:request_queue_time_seconds", "Time waiting for a slot")
        yield CounterMetricFamily(
            "vllm:prompt_tokens", "Prompt tokens processed", value=s.prompt_tokens
        )
        yield CounterMetricFamily(
            "vllm:generation_tokens", "Tokens sent", value=s.generation_tokens
        )
        fin = CounterMetricFamily(
            "vllm:request_success", "Finished requests", labels=["finished_reason"]
        )
        for reason, count in sorted(s.requests_finished.items()):
            fin.add_metric([reason], count)
        yield fin
        faults = CounterMetricFamily("mock_faults_injected", "Injected faults", labels=["kind"])
        for kind, count in sorted(s.faults.items()):
            faults.add_metric([kind], count)
        yield faults
        rej = CounterMetricFamily("mock_requests_rejected", "Rejected requests", labels=["reason"])
        for reason, count in sorted(s.rejected.items()):
            rej.add_metric([reason], count)
        yield rej
        bad = CounterMetricFamily("mock_bad_requests", "4xx answers", labels=["status"])
        for status, count in sorted(s.bad_requests.items()):
            bad.add_metric([status], count)
        yield bad
        yield CounterMetricFamily(
            "mock_client_disconnects", "Streams the client left early", value=s.disconnects
        )
        yield CounterMetricFamily(
            "mock_slow_clients_dropped", "Clients dropped for unread output", value=s.slow_clients
        )
        yield s.timer_lateness_s.family(
            "mock_timer_lateness_seconds", "How late the scheduler timer fired"
        )
        yield s.batch_size.family("mock_batch_size", "Sequences per engine step")


def make_registry(stats: MockStats, gauges: Callable[[], tuple[int, int]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(stats, gauges))  # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
