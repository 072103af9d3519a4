"""`--processes auto`: the process count follows the load, the ITL and the cores left."""

from __future__ import annotations

import pytest

from loadtests.process_count import (
    MAX_AUTO_PROCESSES,
    STREAMS_PER_PROCESS,
    mock_itl_ms,
    plan_processes,
    usable_cores,
)
from loadtests.settings import SettingsError, parse_run_args


def test_the_count_follows_the_load_up_to_the_cores_left() -> None:
    assert STREAMS_PER_PROCESS == 400
    assert plan_processes(16, cores=8, local_servers=True).processes == 1
    assert plan_processes(400, cores=8, local_servers=True).processes == 1
    assert plan_processes(401, cores=8, local_servers=True).processes == 2
    plan = plan_processes(800, cores=3, local_servers=True)
    assert plan.processes == 2
    assert plan.reason == (
        "2 Locust processes: 800 users at ~400 per process; 3 cores, 1 used by the local servers"
    )
    # the servers' core is not taken from a --target run
    assert plan_processes(1600, cores=4, local_servers=False).processes == 4
    assert plan_processes(1600, cores=4, local_servers=True).processes == 3


def test_too_few_cores_caps_the_count_and_says_so() -> None:
    plan = plan_processes(800, cores=2, local_servers=True)
    assert plan.processes == 1
    assert "1 Locust process: 800 users" in plan.reason and "needs 2" in plan.reason
    assert plan_processes(10_000, cores=1, local_servers=True).processes == 1


def test_a_slower_stream_costs_less_per_stream() -> None:
    # 40 ms between tokens: half the token events per stream, twice the streams per process
    assert plan_processes(800, cores=8, local_servers=True, itl_ms=40).processes == 1
    assert plan_processes(800, cores=8, local_servers=True, itl_ms=10).processes == 4
    assert "at 10 ms ITL" in plan_processes(800, 8, True, itl_ms=10).reason


def test_mock_itl_is_read_from_the_mock_flags() -> None:
    assert mock_itl_ms(["--ttft-ms", "100", "--itl-ms", "20", "--itl-ms", "5"]) == 5.0
    assert mock_itl_ms(["--itl-ms", "fast"]) is None and mock_itl_ms([]) is None
    assert mock_itl_ms(["--itl-ms", "0"]) is None


def test_auto_is_the_default_and_an_explicit_count_wins() -> None:
    assert usable_cores() >= 1
    auto = parse_run_args(["--users", "4"])
    assert auto.processes == 1 and auto.processes_reason.startswith("1 Locust process: 4 users")
    big = parse_run_args(["--users", "100000", "--processes", "auto"])
    assert big.processes == min(250, MAX_AUTO_PROCESSES, max(1, usable_cores() - 1))
    explicit = parse_run_args(["--users", "100000", "--processes", "3"])
    assert explicit.processes == 3 and explicit.processes_reason == ""
    # the mock's ITL flag reaches the plan
    slow = parse_run_args(["--users", "400", "--mock-itl-ms", "40"])
    assert slow.processes == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_a_bad_process_count_names_the_flag(value: str) -> None:
    with pytest.raises(SettingsError, match=r"--processes: bad value .* auto or an integer >= 1"):
        parse_run_args(["--processes", value])
