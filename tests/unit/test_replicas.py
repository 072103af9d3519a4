"""The replica metrics merge and the `--processes` bounds (no processes started)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.sweep import CellOutcome
from loadtests.sweep import main as sweep_main
from loadtests.sweep_plan import cell_argv, new_manifest, parse_plan
from mock_llm.cli import main as mock_main
from reports.capacity import CapacityResult, ConfigurationCapacity
from reports.replicas import replica_series
from reports.results import write_summary
from reports.slo import parse_slo
from reports.sweep_report import write_sweep_report
from reports.sweeps import read_manifest
from service.cli import main as serve_main
from surgebench.replicas import (
    ReplicaContext,
    WorkerConfig,
    merge_metrics,
    replica_metrics_text,
    reserve_port,
    reuseport_socket,
)
from tests.unit.reports.synthetic import RunSpec, make_summary

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


def test_a_worker_notices_its_supervisor_closing_the_control_pipe() -> None:
    """The backstop of PR_SET_PDEATHSIG: end-of-file on the control pipe stops the worker."""
    read_fd, write_fd = os.pipe()
    config = WorkerConfig("m:f", None, 0, 1, "127.0.0.1", 0, 1, "/nonexistent", 1, -1)
    with socket.socket() as sock:
        ctx = ReplicaContext(config, sock, read_fd)

        async def scenario() -> bool:
            gone = asyncio.Event()
            ctx.watch_parent(asyncio.get_running_loop(), gone.set)
            await asyncio.sleep(0.05)
            assert not gone.is_set()
            os.close(write_fd)
            await asyncio.wait_for(gone.wait(), 5)
            return gone.is_set()

        try:
            assert asyncio.run(scenario())
        finally:
            os.close(read_fd)


def test_a_held_port_is_refused_not_shared() -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(OSError):
            reserve_port("127.0.0.1", port).close()
    reserved = reserve_port("127.0.0.1", 0)
    try:
        joined = reuseport_socket("127.0.0.1", reserved.getsockname()[1])  # workers can join
        joined.close()
    finally:
        reserved.close()


def test_a_replica_sweep_answers_with_the_replica_count_and_plots_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fake `surgebench run` whose capacity is max-concurrent x processes (per-process
    limits): the answer names the replica count, the report plots load held vs replicas."""

    def fake_run(args: list[str], log_path: Path, timeout_s: float) -> CellOutcome:
        def flag(name: str) -> str:
            return args[args.index(name) + 1]

        users = int(flag("--users"))
        limit = int(flag("--service-max-concurrent")) * int(flag("--service-processes"))
        spec = RunSpec(
            name=flag("--name"), requests=60, ttft_ms=150.0 * max(1.0, users / limit) ** 2,
            ttft_sigma=0.1, users=users, tokens_per_request=5, duration_s=5, breakdown=False,
        )  # fmt: skip
        write_summary(Path(flag("--run-dir")), make_summary(spec))
        return CellOutcome()

    config = tmp_path / "replicas.toml"
    config.write_text(
        'name = "replicas"\nduration = "5s"\nloads = [8, 16, 32, 64]\n'
        'slo = "ttft_p95<800ms"\n[service]\nmax-concurrent = 8\n'
        "[matrix.service]\nprocesses = [1, 2, 4]\n"
    )
    out = tmp_path / "sweep"
    assert sweep_main([str(config), "--out", str(out)], runner=fake_run) == 0
    assert capsys.readouterr().out.startswith("Use processes=4: it holds 64 users")
    assert (out / "figures" / "held_vs_replicas.png").exists()
    series = replica_series(read_manifest(out), write_sweep_report(out, svg=False).capacity)
    assert series is not None and series.part == "service"
    assert series.groups == {"all": [(1, 16.0), (2, 32.0), (4, 64.0)]}


def test_replica_series_groups_configurations_that_differ_only_in_processes() -> None:
    plan = parse_plan(
        {
            "duration": "5s",
            "loads": [10],
            "matrix": {"service": {"max-concurrent": [8, 16], "processes": [1, 2]}},
        }
    )
    manifest = new_manifest(plan)
    held = {
        "max-concurrent=8,processes=1": 10.0,
        "max-concurrent=8,processes=2": 20.0,
        "max-concurrent=16,processes=1": 20.0,
        "max-concurrent=16,processes=2": None,  # not even the lowest load
    }
    ranking = [ConfigurationCapacity(n, [], h, None, None) for n, h in held.items()]
    result = CapacityResult(parse_slo("ttft_p95<1s"), "users", ranking, "")
    series = replica_series(manifest, result)
    assert series is not None
    assert series.groups == {
        "max-concurrent=8": [(1, 10.0), (2, 20.0)],
        "max-concurrent=16": [(1, 20.0), (2, 0.0)],
    }
    plain = parse_plan(
        {"duration": "5s", "loads": [10], "matrix": {"service": {"workers": [1, 2]}}}
    )
    assert replica_series(new_manifest(plain), result) is None
