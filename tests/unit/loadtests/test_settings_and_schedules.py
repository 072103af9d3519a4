from __future__ import annotations

import random
from pathlib import Path

import pytest

from loadtests.arrivals import ArrivalBook, ArrivalSettings, intended_times_ns
from loadtests.cli import main
from loadtests.prompts import LengthSpec, PromptSource, PromptSpecError
from loadtests.runner import locust_argv, locust_env
from loadtests.schedules import ShapeSpecError, parse_schedule
from loadtests.settings import DEFAULT_SHAPE, parse_run_args


def test_no_flags_give_the_short_meaningful_default() -> None:
    s = parse_run_args([])
    assert s.duration_s == 60 and s.shape == DEFAULT_SHAPE and s.user_class == "StreamingChatUser"
    assert s.users == 24 and s.warmup_s == 5
    assert "--queue-size" in s.service_args and "--ttft-ms" in s.mock_args


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
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err


def test_locust_command_and_shape_environment(tmp_path: Path) -> None:
    s = parse_run_args(["--processes", "2", "--duration", "30s", "--rate", "20"])
    argv = locust_argv(s, "http://127.0.0.1:9", tmp_path)
    assert argv[1:3] == ["-m", "locust"] and "--headless" in argv
    assert argv[argv.index("--processes") + 1] == "2"
    assert argv[argv.index("--sb-rate") + 1] == "20"
    assert "SURGEBENCH_SHAPE" not in locust_env(s)
    spiky = parse_run_args(["--shape", "spike:1:5:2:3", "--duration", "10s"])
    assert locust_env(spiky)["SURGEBENCH_SHAPE"].startswith("spike:1:5:2:3|10|")


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
