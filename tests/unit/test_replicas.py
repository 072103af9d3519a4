"""The replica metrics merge and the `--processes` bounds (no processes started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.sweep_plan import cell_argv, parse_plan
from mock_llm.cli import main as mock_main
from service.cli import main as serve_main
from surgebench.replicas import merge_metrics, replica_metrics_text

REPLICA_0 = b"""# HELP reqs requests
# TYPE reqs counter
reqs_total{outcome="ok"} 3.0
reqs_created{outcome="ok"} 1700000000.0
# HELP running running now
# TYPE running gauge
running 2.0
# HELP lat latency
# TYPE lat histogram
lat_bucket{le="0.1"} 1.0
lat_bucket{le="+Inf"} 2.0
lat_count 2.0
lat_sum 0.5
"""
REPLICA_1 = b"""# HELP reqs requests
# TYPE reqs counter
reqs_total{outcome="ok"} 4.0
reqs_total{outcome="error"} 1.0
# HELP running running now
# TYPE running gauge
running 5.0
# HELP lat latency
# TYPE lat histogram
lat_bucket{le="0.1"} 0.0
lat_bucket{le="+Inf"} 3.0
lat_count 3.0
lat_sum 1.25
"""


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_and_histograms_are_summed_gauges_kept_per_replica() -> None:
    merged = _samples(
        merge_metrics([REPLICA_0 + replica_metrics_text(7), REPLICA_1 + replica_metrics_text(9)])
    )
    assert merged[("reqs_total", (("outcome", "ok"),))] == 7
    assert merged[("reqs_total", (("outcome", "error"),))] == 1
    assert merged[("lat_bucket", (("le", "0.1"),))] == 1
    assert merged[("lat_bucket", (("le", "+Inf"),))] == 5
    assert merged[("lat_count", ())] == 5
    assert merged[("lat_sum", ())] == 1.75
    assert merged[("running", (("replica", "0"),))] == 2
    assert merged[("running", (("replica", "1"),))] == 5
    assert ("running", ()) not in merged
    assert merged[("surgebench_replica_requests_total", (("replica", "1"),))] == 9
    assert merged[("surgebench_replica_up", (("replica", "0"),))] == 1
    assert not any(name.endswith("_created") for name, _ in merged)


def test_a_silent_or_garbled_replica_is_marked_down_and_left_out() -> None:
    merged = _samples(merge_metrics([REPLICA_0, None, b"not { prometheus"]))
    assert merged[("reqs_total", (("outcome", "ok"),))] == 3
    assert [merged[("surgebench_replica_up", (("replica", str(i)),))] for i in range(3)] == [
        1,
        0,
        0,
    ]


@pytest.mark.parametrize("value", ["0", "65"])
def test_mock_processes_out_of_bounds_exit_2(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mock_main(["--processes", value]) == 2
    err = capsys.readouterr().err
    assert "--processes" in err and repr(value) in err and "<= 64" in err


@pytest.mark.parametrize("value", ["0", "65"])
def test_serve_processes_out_of_bounds_exit_2(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_main(["--processes", value, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--processes" in err and "invalid value" in err


def test_replicas_are_a_sweep_dimension_passed_to_each_cell() -> None:
    plan = parse_plan(
        {
            "name": "replicas",
            "duration": "10s",
            "loads": [100, 200],
            "service": {"admission": "semaphore", "max-concurrent": 32},
            "matrix": {"service": {"processes": [1, 2]}},
        }
    )
    assert [c.name for c in plan.configurations] == ["processes=1", "processes=2"]
    cell = next(c for c in plan.cells() if c.configuration == "processes=2")
    argv = cell_argv(plan, cell, Path("out"))
    at = argv.index("--service-processes")
    assert argv[at + 1] == "2"
    assert "--service-max-concurrent" in argv
