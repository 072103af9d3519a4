"""`surgebench run --master` / `surgebench worker` flags, the configuration a worker takes from
its master, and the move of a worker's per-second keys onto the master's clock."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadtests import worker
from loadtests.cli import main as run_main
from loadtests.distributed import (
    CONNECT_TIMEOUT_ENV,
    SKEW_TOLERANCE_NS,
    VERSION_KEY,
    DistributedError,
    adopt_master_document,
    apply_connect_timeout,
    connect_retry_count,
    master_document,
    measured_offset_ns,
    skew_ns,
    to_master_clock,
)
from loadtests.runner import MasterWatch, locust_argv, master_announcement
from loadtests.settings import CONFIG_VERSION, DEFAULTS, config_document, parse_run_args

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--master"], "--expect-workers: required with --master"),
        (["--master", "--expect-workers", "0"], "--expect-workers: bad value 0"),
        (["--master", "--expect-workers", "999"], "--expect-workers: invalid value 999"),
        (["--expect-workers", "2"], "--expect-workers: only with --master"),
        (["--master-port", "6000"], "--master-port: only with --master"),
        (["--master-bind-host", "0.0.0.0"], "--master-bind-host: only with --master"),
        (["--master", "--expect-workers", "2", "--processes", "2"], "--processes: not with"),
        (["--master", "--expect-workers", "2", "--master-port", "70000"], "--master-port: inv"),
        (
            ["--master", "--expect-workers", "2", "--expect-workers-timeout", "0s"],
            "--expect-workers-timeout: '0s' must be > 0",
        ),
        (
            ["--master", "--expect-workers", "2", "--master-bind-host", "a b"],
            "--master-bind-host: bad value 'a b'",
        ),
        (
            ["--master", "--expect-workers", "2", "--master-bind-host", "0.0.0.0"],
            "--master-bind-host: workers on other hosts need --target URL",
        ),
    ],
)
def test_bad_master_flags_exit_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["--users", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_master_settings_make_a_master_only_locust_command(tmp_path: Path) -> None:
    s = parse_run_args(
        ["--master", "--expect-workers", "3", "--users", "9", "--rate", "6",
         "--target", "http://llm-gateway.invalid:8000", "--master-bind-host", "0.0.0.0"]
    )  # fmt: skip
    assert (s.master, s.expect_workers, s.master_port, s.expect_workers_timeout_s) == (
        True, 3, 5557, 60.0,
    )  # fmt: skip
    assert s.processes == 3  # each worker takes 1/3 of the open-loop rate
    argv = locust_argv(s, tmp_path)
    assert "--processes" not in argv
    joined = " ".join(argv)
    assert "--master --expect-workers 3 --expect-workers-max-wait 60" in joined
    assert "--master-bind-host 0.0.0.0 --master-bind-port 5557" in joined
    lines = master_announcement(s)
    assert lines[0].startswith("warning: the Locust master listens on non-loopback address")
    assert "surgebench worker --master-host HOST --master-port 5557" in lines[1]


def test_loopback_master_needs_no_warning_and_may_start_the_servers() -> None:
    s = parse_run_args(["--master", "--expect-workers", "2", "--users", "4"])
    assert s.master_bind_host == "127.0.0.1" and not s.target
    assert len(master_announcement(s)) == 1


def test_master_watch_counts_workers_and_sees_the_give_up() -> None:
    watch = MasterWatch(parse_run_args(["--master", "--expect-workers", "2", "--users", "2"]))
    line = "[t] h/INFO/locust.runners: h_ab (index 0) reported as ready. 1 workers connected.\n"
    assert watch.line(line) == "master: 1 of 2 workers connected"
    assert watch.line("[t] h/INFO/locust.main: Starting Locust 2.47.0") is None
    assert not watch.gave_up
    watch.line("[t] h/ERROR/locust.main: Gave up waiting for workers to connect")
    assert (watch.gave_up, watch.connected) == (True, 1)
    lost = (
        "[t] h/INFO/locust.runners: Worker h_ab failed to send heartbeat, setting state to missing."
    )
    assert (
        watch.line(lost)
        == "master: Worker h_ab failed to send heartbeat, setting state to missing."
    )


def test_the_worker_adopts_the_masters_document() -> None:
    settings = parse_run_args(["--users", "6", "--max-tokens", "7", "--think", "1s"])
    document = config_document(settings, {"mock": {"ttft_ms": 100.0}, "service": None})
    adopted = adopt_master_document(master_document(document, settings, "1.2.3"), "1.2.3")
    assert adopted.settings == settings
    # the config.json content, as the run folder holds it; the version travels beside it
    assert adopted.document == json.loads(json.dumps(document))
    assert VERSION_KEY not in adopted.document


def test_a_plain_locust_master_sends_its_settings() -> None:
    text = master_document({}, DEFAULTS, "1.2.3")
    assert adopt_master_document(text, "1.2.3").settings == DEFAULTS


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {VERSION_KEY: "9.9.9"},
            "the master runs surgebench 9.9.9 (config_version 1), this worker surgebench 1.2.3",
        ),
        ({"config_version": CONFIG_VERSION + 1}, f"(config_version {CONFIG_VERSION + 1})"),
        ({"users": "many"}, "the master's configuration: config.json: users = 'many'"),
    ],
)
def test_a_worker_refuses_another_version_in_one_line(
    change: dict[str, object], needle: str
) -> None:
    body = json.loads(master_document({}, DEFAULTS, "1.2.3"))
    body.update(change)
    with pytest.raises(DistributedError) as caught:
        adopt_master_document(json.dumps(body), "1.2.3")
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"x"', "{" + " " * 1_000_001 + "}"])
def test_a_worker_refuses_a_malformed_document(text: str) -> None:
    with pytest.raises(DistributedError):
        adopt_master_document(text, "1.2.3")


def test_clock_offset_from_one_round_trip() -> None:
    master = 1_700_000_000_000_000_000
    # in sync: the midpoint of the round trip is the master's time; no skew to correct
    assert measured_offset_ns(master - 3_000_000, master, master + 3_000_000) == 0
    assert skew_ns(measured_offset_ns(master - 2_000_000, master, master + 4_000_000)) == 0
    assert skew_ns(SKEW_TOLERANCE_NS - 1) == 0 and skew_ns(None) == 0
    # the worker's clock 2.4 s ahead (7 s behind), whatever the elapsed time since the start
    ahead = master + 2_400_000_000
    offset = measured_offset_ns(ahead - 10_000_000, master, ahead + 10_000_000)
    assert offset == 2_400_000_000 and skew_ns(offset) == offset
    behind = master - 7_000_000_000
    assert skew_ns(measured_offset_ns(behind - 4_000, master, behind + 4_000)) == -7_000_000_000
    # a slow answer on a busy host (1.2 s round trip, clocks in sync) is no skew: the 0.55 s
    # midpoint error is within half the round trip
    slow = measured_offset_ns(master - 50_000_000, master, master + 1_150_000_000)
    assert slow == 550_000_000 and skew_ns(slow) == slow and skew_ns(slow, 1_200_000_000) == 0
    # a real 3 s skew is corrected even behind a 1.2 s round trip
    skewed = measured_offset_ns(ahead + 600_000_000 - 1_200_000_000, master, ahead + 600_000_000)
    assert skew_ns(skewed, 1_200_000_000) == skewed == 2_400_000_000
    # a reply received before it was asked is no measurement
    assert measured_offset_ns(ahead, master, ahead - 1) is None


def test_a_skewed_workers_seconds_move_onto_the_masters_clock() -> None:
    report = {
        "series": {"1000": {"requests": 1}, "1001": {"requests": 2}},
        "health": {"1000": {"cpu_percent": 5.0}},
        "first_ns": 1000_200_000_000,
        "last_ns": 1001_900_000_000,
        "outcomes": {"ok": 3},
    }
    moved = to_master_clock(report, 2_400_000_000, "health")  # the worker's clock is 2.4 s ahead
    assert moved["series"] == {"998": {"requests": 1}, "999": {"requests": 2}}
    assert moved["health"] == {"998": {"cpu_percent": 5.0}}
    assert (moved["first_ns"], moved["last_ns"]) == (997_800_000_000, 999_500_000_000)
    assert moved["outcomes"] == {"ok": 3}
    assert to_master_clock(report, 0, "health") is report


def test_worker_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker.main([]) == 2
    assert "--master-host" in capsys.readouterr().err
    assert worker.main(["--master-host", "master.invalid", "--master-port", "0"]) == 2
    assert "--master-port: bad value 0; allowed: 1..65535" in capsys.readouterr().err
    assert worker.main(["--master-host", "a;b"]) == 2
    assert "--master-host: bad value 'a;b'" in capsys.readouterr().err
    assert worker.main(["--master-host", "m.invalid", "--master-port", "abc"]) == 2
    err = capsys.readouterr().err
    assert "--master-port: invalid value 'abc' (allowed: an integer 1..65535)" in err
    assert len(err.strip().splitlines()) == 1
    assert worker.main(["--bogus"]) == 2  # the unknown flag is named, not the missing host
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert worker.main(["--master-host", "m.invalid", "--connect-timeout", "2s"]) == 2
    assert "--connect-timeout: bad value '2s'; allowed: 5s to 24h" in capsys.readouterr().err
    assert worker.main(["--master-host", "m.invalid", "--connect-timeout", "soon"]) == 2
    assert "--connect-timeout: bad duration 'soon'" in capsys.readouterr().err
    argv = worker.worker_argv("master.invalid", 5557)
    assert argv[-5:] == ["--worker", "--master-host", "master.invalid", "--master-port", "5557"]
    assert "--sb-config" not in argv  # the configuration comes from the master


def test_a_sweep_cell_runs_as_a_master_from_its_run_table(tmp_path: Path) -> None:
    from loadtests.sweep_plan import cell_argv, parse_plan

    plan = parse_plan(
        {
            "name": "across",
            "duration": "5s",
            "loads": [4, 8],
            "run": {
                "master": True,
                "expect-workers": 2,
                "master-bind-host": "0.0.0.0",
                "target": "http://llm-gateway.invalid:8000",
            },
        }
    )
    argv = cell_argv(plan, plan.cells()[1], tmp_path / "cell")
    s = parse_run_args(argv[1:])
    assert (s.master, s.expect_workers, s.master_bind_host, s.users) == (True, 2, "0.0.0.0", 8)


@pytest.mark.parametrize(("timeout_s", "count"), [(5, 0), (6, 1), (10, 1), (300, 59), (301, 60)])
def test_the_connect_timeout_becomes_locusts_retry_count(timeout_s: float, count: int) -> None:
    """Locust gives up after count + 1 tries of 5 s: the wait is rounded up to whole tries."""
    assert connect_retry_count(timeout_s, 5.0) == count
    runners = SimpleNamespace(CONNECT_TIMEOUT=5, CONNECT_RETRY_COUNT=60)
    apply_connect_timeout({CONNECT_TIMEOUT_ENV: str(timeout_s)}, runners)
    assert count == runners.CONNECT_RETRY_COUNT
    untouched = SimpleNamespace(CONNECT_TIMEOUT=5, CONNECT_RETRY_COUNT=60)
    apply_connect_timeout({}, untouched)  # a plain `locust --worker`: Locust's own
    assert untouched.CONNECT_RETRY_COUNT == 60
