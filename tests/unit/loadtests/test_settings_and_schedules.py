from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from loadtests.arrivals import ArrivalBook, ArrivalSettings, intended_times_ns
from loadtests.cli import main
from loadtests.prompts import LengthSpec, PromptSource, PromptSpecError
from loadtests.runner import locust_argv, locust_env
from loadtests.schedules import ShapeSpecError, parse_schedule
from loadtests.settings import (
    DEFAULT_SHAPE,
    DEFAULTS,
    DEMO_SERVICE,
    RunSettings,
    SettingsError,
    build_parser,
    config_document,
    parse_run_args,
    read_config,
)


def test_no_flags_give_the_short_meaningful_default() -> None:
    s = parse_run_args([])
    assert s.duration_s == 60 and s.shape == DEFAULT_SHAPE and s.user_class == "StreamingChatUser"
    assert s.users == 24 and s.warmup_s == 5 and s.demo
    assert s.service_args == DEMO_SERVICE and "--ttft-ms" in s.mock_args


@pytest.mark.parametrize(
    "argv",
    [
        ["--users", "30", "--duration", "20s"],
        ["--rate", "5"],
        ["--shape", "spike:1:5:2:3"],
        ["--users", "32", "--service-max-concurrent", "32"],
    ],
)
def test_a_run_that_names_its_load_gets_the_service_defaults_plus_its_own_flags(
    argv: list[str],
) -> None:
    """The demo's small queue (8 + 8) is the no-flag demo's only: it once overrode every run."""
    s = parse_run_args(argv)
    assert not s.demo
    assert "--queue-size" not in s.service_args and "--workers" not in s.service_args
    service_flags = [a for a in argv if a.startswith("--service-")]
    assert len(s.service_args) == 2 * len(service_flags)


def test_demo_service_flags_named_by_the_user_win() -> None:
    s = parse_run_args(["--service-max-concurrent", "32"])
    assert s.demo and s.service_args == (*DEMO_SERVICE, "--max-concurrent", "32")
    assert "--workers" not in s.service_args  # else workers would still cap a queue at 8


def test_settings_round_trip_through_config_json(tmp_path: Path) -> None:
    s = parse_run_args(
        ["--users", "7", "--rate", "3", "--think", "250ms", "--reject-wait", "0s",
         "--slo-ttft-ms", "300", "--mock-ttft-ms", "5", "--name", "rt", "--processes", "2"]
    )  # fmt: skip
    path = tmp_path / "config.json"
    effective = {"mock": {"ttft_ms": 5.0}, "service": None}
    path.write_text(json.dumps(config_document(s, effective)))
    again = read_config(path)
    assert again == s and isinstance(again.out, Path) and again.reject_wait_s == 0.0
    assert json.loads(path.read_text())["effective"] == effective


def test_config_json_of_another_version_or_type_is_refused(tmp_path: Path) -> None:
    data = RunSettings().to_dict()
    with pytest.raises(SettingsError, match="config_version"):
        RunSettings.from_dict({**data, "config_version": 99})
    with pytest.raises(SettingsError, match="users"):
        RunSettings.from_dict({**data, "users": "many"})


def test_every_flag_default_is_the_settings_default() -> None:
    """One default per setting: the parser's defaults parse back to `RunSettings()`'s."""
    s = parse_run_args(["--users", str(DEFAULTS.users)])
    for name in (
        "duration_s",
        "warmup_s",
        "think_s",
        "reject_wait_s",
        "progress_s",
        "stop_timeout_s",
        "request_timeout_s",
        "max_client_lag_ms",
        "max_loop_lag_ms",
        "max_cpu_percent",
        "strict",
        "prompt_words",
        "model",
        "seed",
        "arrival",
        "user",
        "name",
    ):
        assert getattr(s, name) == getattr(DEFAULTS, name), name  # fmt: skip
    assert "--sb-" not in build_parser().format_help()


def test_passthrough_flags_reach_the_servers_and_later_values_win() -> None:
    s = parse_run_args(
        ["--mock-ttft-ms", "250", "--service-max-concurrent=4", "--mock-no-stamp", "--users", "3"]
    )
    assert s.mock_args[-3:] == ("--ttft-ms", "250", "--no-stamp")
    assert s.service_args[-2:] == ("--max-concurrent", "4")
    assert s.users == 3 and s.shape == ""  # explicit users: closed loop, no default shape


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--users", "0"], "--users"),
        (["--duration", "soon"], "--duration"),
        (["--arrival", "bursty", "--rate", "5"], "poisson, constant"),
        (["--user", "robot"], "stream, chat, batch, direct"),
        (["--shape", "ramp:1:2"], "step:START"),
        (["--rate", "5", "--shape", "spike:1:2:3:4"], "--shape"),
        (["--processes", "0"], "--processes"),
        (["--target", "ftp://x"], "--target"),
        (["--max-tokens", "many"], "--max-tokens"),
        (["--frobnicate"], "--frobnicate"),
        (["--save-baseline", "../etc"], "--save-baseline"),
        (["--compare-baseline", "a b"], "--compare-baseline"),
        (["--thresholds", "/nonexistent.toml"], "--thresholds"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err


def test_locust_command_carries_only_the_config_path(tmp_path: Path) -> None:
    s = replace(
        parse_run_args(["--processes", "2", "--duration", "30s", "--rate", "20"]),
        host="http://127.0.0.1:9",
    )
    argv = locust_argv(s, tmp_path)
    assert argv[1:3] == ["-m", "locust"] and "--headless" in argv
    assert argv[argv.index("--processes") + 1] == "2"
    assert argv[argv.index("-H") + 1] == "http://127.0.0.1:9"
    # The distributed master listens on loopback only, on its own port (never the fixed 5557).
    assert argv[argv.index("--master-bind-host") + 1] == "127.0.0.1"
    port = argv[argv.index("--master-bind-port") + 1]
    assert argv[argv.index("--master-port") + 1] == port and port != "5557"
    assert [a for a in argv if a.startswith("--sb-")] == ["--sb-config"]
    assert argv[argv.index("--sb-config") + 1] == str(tmp_path / "config.json")
    assert not any(k.startswith("SURGEBENCH") for k in locust_env())
    assert "shape_locustfile" not in argv[argv.index("-f") + 1]
    spiky = parse_run_args(["--shape", "spike:1:5:2:3", "--duration", "10s"])
    assert argv_files(locust_argv(spiky, tmp_path))[1].endswith("shape_locustfile.py")


def argv_files(argv: list[str]) -> list[str]:
    return argv[argv.index("-f") + 1].split(",")


def test_schedules() -> None:
    step = parse_schedule("step:2:3:10:9", 60)
    assert [step.users_at(t) for t in (0, 9.9, 10, 25, 59)] == [2, 2, 5, 8, 9]
    assert step.users_at(60) is None
    spike = parse_schedule("spike:4:20:10:5", 30)
    assert [spike.users_at(t) for t in (0, 10, 14.9, 15)] == [4, 20, 20, 4]
    sweep = parse_schedule("sweep:1,5,10:4", 100)
    assert [sweep.users_at(t) for t in (0, 4, 11.9)] == [1, 5, 10]
    assert sweep.users_at(12) is None and sweep.duration_s == 12
    with pytest.raises(ShapeSpecError):
        parse_schedule("sweep::4", 10)


def test_poisson_and_constant_arrivals_have_the_asked_rate() -> None:
    poisson = intended_times_ns(ArrivalSettings(50.0, "poisson", seed=3), 0)
    times = [next(poisson) for _ in range(5000)]
    rate = len(times) / (times[-1] / 1e9)
    assert 47 < rate < 53
    constant = intended_times_ns(ArrivalSettings(10.0, "constant"), 0)
    assert [next(constant) for _ in range(3)] == [100_000_000, 200_000_000, 300_000_000]


def test_arrival_book_counts_late_and_dropped() -> None:
    book = ArrivalBook(ArrivalSettings(1.0, late_after_ms=10), backlog_limit=2)
    assert book.offer(0) and book.offer(1) and not book.offer(2)
    book.take(0, 5_000_000)
    book.take(0, 50_000_000)
    assert book.drain() == {"intended": 3, "sent": 2, "late": 1, "dropped": 1}
    assert book.drain() == {"intended": 0, "sent": 0, "late": 0, "dropped": 0}


def test_prompts_are_seeded_and_files_are_checked(tmp_path: Path) -> None:
    a = PromptSource(prompt_words="uniform:3:9", max_tokens="normal:50:10", seed=5)
    b = PromptSource(prompt_words="uniform:3:9", max_tokens="normal:50:10", seed=5)
    first = [a.next() for _ in range(20)]
    assert first == [b.next() for _ in range(20)]
    assert all(3 <= len(p.question.split()) <= 9 and p.max_tokens for p in first)
    assert LengthSpec.parse("7").sample(random.Random(1)) == 7
    for bad_spec in ("0", "-5", "uniform:5:3", "normal:nan:1", "lognormal:inf:1", "2000000"):
        with pytest.raises(PromptSpecError, match="bad length"):
            LengthSpec.parse(bad_spec)
    good = tmp_path / "p.jsonl"
    good.write_text('{"question": "hi", "max_tokens": 3}\n\n{"prompt": "yo"}\n')
    src = PromptSource(file=good, max_tokens="9")
    assert [(p.question, p.max_tokens) for p in (src.next(), src.next(), src.next())] == [
        ("hi", 3),
        ("yo", 9),
        ("hi", 3),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"max_tokens": 2}\n')
    with pytest.raises(PromptSpecError, match="line 2"):
        PromptSource(file=bad)


def test_strict_turns_an_invalid_run_into_exit_3_and_keeps_ctrl_c(tmp_path: Path) -> None:
    from loadtests.cli import INVALID_EXIT, exit_code
    from tests.unit.reports.synthetic import RunSpec, make_summary

    strict = parse_run_args(["--users", "2", "--strict"])
    assert strict.strict and not parse_run_args(["--users", "2"]).strict
    assert read_config_round_trip(strict, tmp_path).strict
    invalid, valid = make_summary(RunSpec(valid=False)), make_summary(RunSpec())
    assert exit_code(strict, invalid, 0) == INVALID_EXIT == 3
    assert exit_code(strict, invalid, 1) == 3  # ahead of a baseline regression
    assert exit_code(strict, invalid, 130) == 130
    assert exit_code(strict, valid, 0) == 0 and exit_code(strict, valid, 1) == 1
    assert exit_code(replace(strict, strict=False), invalid, 0) == 0


def read_config_round_trip(settings: RunSettings, tmp_path: Path) -> RunSettings:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_document(settings, {})))
    return read_config(path)
