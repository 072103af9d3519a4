"""Requests still in flight when a run stops are counted (outcome ``unfinished``): in every mode,
so that the requests sent (counted by the service itself) equal the sum of the outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.loadtests.conftest import Run, RunCommand

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SLOW_FIRST_TOKEN = ("--mock-ttft-ms", "5000", "--mock-output-tokens", "5")
"""Every stream outlasts the run (2 s) and its stop timeout."""


def admitted_by_the_service(run_dir: Path) -> int:
    """Requests the service admitted, by its own counter (the last scrape of /metrics)."""
    seen = [0.0]
    for line in (run_dir / "server_metrics.jsonl").read_text("utf-8").splitlines():
        point = json.loads(line)
        if point.get("source") == "service":
            seen.append(float(point["values"].get("surge_service_admitted_total", 0.0)))
    return int(max(seen))


def check_nothing_lost(run: Run) -> dict[str, int]:
    assert run.code == 0, run.output
    assert run.summary is not None and run.run_dir is not None, run.output
    outcomes = run.summary.outcomes
    assert sum(outcomes.values()) == run.summary.requests == admitted_by_the_service(run.run_dir)
    return outcomes


def test_streams_longer_than_the_run_are_counted_unfinished(surge_run: RunCommand) -> None:
    run = surge_run(
        "--users", "4", "--duration", "2s", "--warmup", "0s", "--stop-timeout", "0s",
        "--processes", "1", *SLOW_FIRST_TOKEN,
    )  # fmt: skip
    outcomes = check_nothing_lost(run)
    assert outcomes["unfinished"] == 4 and outcomes["ok"] == 0, outcomes
    assert run.summary is not None
    # the 2 s count from the test's start (Locust's -t timer started before it, on a stale clock)
    assert run.summary.duration_s >= 2.0, run.summary.duration_s
    assert "4 requests were still in flight at the stop" in run.output


def test_open_loop_on_two_processes_counts_what_it_sent(surge_run: RunCommand) -> None:
    run = surge_run(
        "--rate", "4", "--arrival", "constant", "--users", "16", "--duration", "2s",
        "--warmup", "0s", "--stop-timeout", "1s", "--processes", "2", *SLOW_FIRST_TOKEN,
    )  # fmt: skip
    outcomes = check_nothing_lost(run)
    assert run.summary is not None and run.summary.open_loop is not None
    assert run.summary.duration_s >= 2.0, run.summary.duration_s
    sent = run.summary.open_loop["sent"]
    assert sent >= 6 and outcomes["unfinished"] == sent == run.summary.requests, outcomes


def test_sessions_cut_off_at_the_stop_are_counted(surge_run: RunCommand) -> None:
    run = surge_run(
        "--user", "session", "--users", "3", "--duration", "2s", "--warmup", "0s",
        "--stop-timeout", "0s", "--processes", "1", "--session-turns", "3",
        "--session-think-ms", "0", *SLOW_FIRST_TOKEN,
    )  # fmt: skip
    outcomes = check_nothing_lost(run)
    assert outcomes["unfinished"] == 3, outcomes
    assert run.summary is not None
    sessions = run.summary.sessions
    assert sessions is not None, run.output
    assert sessions["started"] == sessions["cut_off"] == 3, sessions
    assert sessions["completed"] == sessions["failed"] == 0, sessions


def test_a_session_thinking_at_the_stop_sends_no_new_turn(surge_run: RunCommand) -> None:
    """Turn 1 ends at once, the 6 s think time outlasts the 2 s run: the stop timeout (10 s)
    would let turn 2 start after the stop; no turn starts once the test is stopping, and a
    thinking user is stopped at once (as Locust stops a waiting user), not after its think."""
    run = surge_run(
        "--user", "session", "--users", "2", "--duration", "2s", "--warmup", "0s",
        "--processes", "1", "--session-turns", "2", "--session-think-ms", "6000",
        "--mock-ttft-ms", "5", "--mock-output-tokens", "2",
    )  # fmt: skip
    outcomes = check_nothing_lost(run)
    assert outcomes["ok"] == 2 and outcomes["unfinished"] == 0, outcomes
    assert run.summary is not None and run.summary.sessions is not None, run.output
    assert run.summary.sessions["cut_off"] == 2 == run.summary.sessions["started"]
    assert run.summary.duration_s < 5.0, run.summary.duration_s  # not 2 s + the 6 s think
