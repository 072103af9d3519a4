"""Short headless Locust runs against the real mock and service on 127.0.0.1."""

from __future__ import annotations

import json
import sys

import pytest

from tests.integration.loadtests.conftest import RunCommand

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.mark.serial  # an upper bound on time: run alone (see the Makefile)
def test_direct_stream_ttft_and_itl_match_the_mock(surge_run: RunCommand) -> None:
    run = surge_run(
        "--user", "direct", "--duration", "5s", "--users", "8", "--warmup", "1s",
        "--mock-ttft-ms", "80", "--mock-itl-ms", "10", "--mock-output-tokens", "12",
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.run_dir is not None and run.summary is not None
    s = run.summary
    assert s.outcomes["ok"] >= 20 and s.requests == s.outcomes["ok"]
    ttft, itl = s.metric("ttft_ms"), s.metric("itl_ms")
    assert ttft.p50 is not None and 79.0 <= ttft.p50 <= 95.0, ttft
    assert itl.p50 is not None and 9.0 <= itl.p50 <= 13.0, itl
    assert itl.count == 11 * s.outcomes["ok"]  # every gap of every stream, none merged
    assert s.output_tokens == 12 * s.outcomes["ok"]
    assert s.metric("client_lag_ms").count > 0  # the mock's send stamps were read
    stamps = "kernel" if sys.platform == "linux" else "read"
    assert s.config["generator"] == {"reader": "fast", "timestamps": stamps}
    if stamps == "kernel":  # every read's lag after the kernel got the bytes, per second too
        assert s.saturation["read_lag_p50_ms"] is not None
        assert any(p["read_lag_p99_ms"] is not None for p in s.health)
    assert s.timeseries and sum(p.requests for p in s.timeseries) >= s.requests
    # the generator's health per second, from /proc and its own samplers
    assert len(s.health) >= 3, s.health
    assert all(p["cpu_percent"] is not None for p in s.health)
    assert any(p["runqueue_wait_percent"] is not None for p in s.health)
    assert any(p["client_lag_p99_ms"] is not None for p in s.health)
    assert s.saturation["runqueue_wait_mean_percent"] is not None
    for name in ("locust_stats.csv", "locust.html", "config.json"):
        assert (run.run_dir / name).exists(), name
    rows = {
        tuple(r.split(",")[:2]): int(r.split(",")[2])
        for r in (run.run_dir / "locust_stats.csv").read_text().splitlines()[1:]
    }
    # one Locust request per request: the measured ones, the warm-up ones apart, nothing else
    assert rows[("POST", "/chat/completions")] == s.requests, rows
    assert set(rows) <= {
        ("POST", "/chat/completions"),
        ("POST", "/chat/completions (warm-up)"),
        ("", "Aggregated"),
    }, rows
    assert rows[("", "Aggregated")] == sum(v for k, v in rows.items() if k[0] == "POST")
    config = json.loads((run.run_dir / "config.json").read_text())
    assert "--ttft-ms" in config["mock_args"] and config["user_class"] == "DirectLLMUser"


def test_two_processes_merge_to_the_sum_of_their_workers(surge_run: RunCommand) -> None:
    run = surge_run(
        "--user", "direct", "--processes", "2", "--duration", "4s", "--users", "6",
        "--warmup", "0s", "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
        "--mock-output-tokens", "10",
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.run_dir is not None and run.summary is not None
    workers = [
        json.loads(p.read_text())["outcomes"] for p in (run.run_dir / "workers").glob("*.json")
    ]
    assert len(workers) == 2
    total = {k: sum(w.get(k, 0) for w in workers) for k in run.summary.outcomes}
    assert all(sum(w.values()) > 0 for w in workers)
    assert run.summary.outcomes == total
    assert run.summary.saturation["workers_reported"] == 2
    # both workers' health points reached the master: their CPU adds up per second
    assert run.summary.health and all(
        (p["cpu_sum_percent"] or 0) >= (p["cpu_percent"] or 0) for p in run.summary.health
    )
    locust_rows = (run.run_dir / "locust_stats.csv").read_text().splitlines()
    row = next(r for r in locust_rows if r.startswith("POST,/chat/completions,"))
    assert int(row.split(",")[2]) == run.summary.requests  # Locust's own count agrees


def test_strict_invalid_run_exits_3(surge_run: RunCommand) -> None:
    # a CPU limit of 0 % cannot be met: the guard marks the run invalid, --strict exits 3
    run = surge_run(
        "--user", "direct", "--duration", "3s", "--users", "2", "--warmup", "0s", "--strict",
        "--max-cpu-percent", "0", "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
    )  # fmt: skip
    assert run.code == 3, run.output
    assert run.summary is not None and not run.summary.valid
    assert "--strict: the run is invalid" in run.output


def test_bad_passthrough_flag_exits_2(surge_run: RunCommand) -> None:
    """The mock refuses its flag; the run says so in one line, in the flag the user typed."""
    run = surge_run("--duration", "3s", "--mock-ttft-ms", "fast")
    assert run.code == 2, run.output
    assert run.output == (
        "surgebench run: --mock-ttft-ms: invalid value 'fast' (allowed: a number >= 0 and <= "
        "3600000)\n"
    )


@pytest.mark.serial  # an upper bound on time: run alone (see the Makefile)
def test_max_concurrent_is_the_limit_a_run_with_flags_gets(surge_run: RunCommand) -> None:
    """32 users against --service-max-concurrent 32: none waits, none is rejected. (The no-flag
    demo's queue of 8 + 8 once applied to every run and rejected most of these.)"""
    run = surge_run(
        "--users", "32", "--service-max-concurrent", "32", "--duration", "6s", "--warmup", "0s",
        "--mock-ttft-ms", "1000", "--mock-itl-ms", "10", "--mock-output-tokens", "2",
    )  # fmt: skip
    assert run.code == 0, run.output
    s = run.summary
    assert s is not None and run.run_dir is not None
    assert s.outcomes["rejected"] == 0 and s.outcomes["ok"] >= 32, s.outcomes
    ttft = s.metric("ttft_ms")
    assert ttft.p50 is not None and 990 <= ttft.p50 <= 1300, ttft
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["service_args"] == ["--max-concurrent", "32"] and not config["demo"]
    # what the servers reported (GET /config; None where a server has no such endpoint) is
    # recorded in both files, and the console says it
    assert set(config["effective"]) == {"mock", "service"}
    assert s.effective == config["effective"]
    assert "service effective configuration: " in run.output
    service = config["effective"]["service"]
    if service is not None:
        assert service["max_concurrent"] == 32 and service["admission"] == "queue"


def test_max_loop_lag_ms_sets_the_read_lag_limit_of_a_kernel_timestamped_run(
    surge_run: RunCommand,
) -> None:
    """End to end: with kernel timestamps the guard judges read lag, and `--max-loop-lag-ms` is
    its floor. Tokens that arrive together (ITL 0.01 ms: the mock writes a millisecond's tokens
    at once) leave no gap to judge by, so the flag alone is the limit: 0 ms makes the run
    invalid for read lag, 1000 ms lets it through."""
    if sys.platform != "linux":
        pytest.skip("kernel receive timestamps are Linux's")
    common = (
        "--user", "direct", "--duration", "3s", "--users", "3", "--warmup", "0s",
        "--mock-ttft-ms", "5", "--mock-itl-ms", "0.01", "--mock-output-tokens", "20",
        "--no-report",
    )  # fmt: skip
    strict = surge_run(*common, "--max-loop-lag-ms", "0")
    assert strict.summary is not None, strict.output
    assert strict.summary.config["generator"]["timestamps"] == "kernel"
    reasons = " | ".join(strict.summary.invalid_reasons)
    assert "read lag p99" in reasons and "(--max-loop-lag-ms:" in reasons, reasons
    lenient = surge_run(*common, "--max-loop-lag-ms", "1000")
    assert lenient.summary is not None, lenient.output
    assert not any("read lag" in r for r in lenient.summary.invalid_reasons), lenient.summary
