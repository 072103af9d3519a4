"""Settings from flags and SURGE_SERVICE_* env; CLI errors name flag, value and allowed values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.cli import is_loopback, main, parse_settings
from service.settings import ServiceSettings, SettingsError, flag_name, settings_table_markdown

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_loopback_and_documented_choices() -> None:
    s = parse_settings([], env={})
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.upstream_transport == "aiohttp" and s.admission == "queue"
    assert s.cors_origins == "" and s.auth_token == "" and not s.access_log


def test_flags_win_over_env_and_env_over_defaults() -> None:
    env = {"SURGE_SERVICE_MAX_CONCURRENT": "8", "SURGE_SERVICE_QUEUE_SIZE": "3"}
    s = parse_settings(["--queue-size", "5", "--admission", "semaphore", "--stamp"], env=env)
    assert (s.max_concurrent, s.queue_size, s.admission, s.stamp) == (8, 5, "semaphore", True)


def test_api_key_from_env_only_and_hidden() -> None:
    s = parse_settings([], env={"OPENAI_API_KEY": "sk-a"})
    assert s.upstream_api_key == "sk-a"
    s = parse_settings([], env={"OPENAI_API_KEY": "sk-a", "SURGE_SERVICE_UPSTREAM_API_KEY": "sk-b"})
    assert s.upstream_api_key == "sk-b"
    assert "sk-b" not in repr(s) and "sk-b" not in str(s.public_dict())


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--admission", "fifo"], ["--admission", "'fifo'", "queue, semaphore, none"]),
        (["--max-concurrent", "0"], ["--max-concurrent", "'0'", ">= 1"]),
        (["--max-concurrent", "lots"], ["--max-concurrent", "'lots'", "an integer"]),
        (["--timeout-s", "nan"], ["--timeout-s", "'nan'", "a number"]),
        (["--reject-status", "500"], ["--reject-status", "'500'", "503, 429"]),
        (["--upstream-transport", "curl"], ["--upstream-transport", "aiohttp, httpx"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_bad_flags_exit_2_naming_flag_value_allowed(
    argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--bogus"], "unrecognized arguments: --bogus (see surgebench serve --help)"),
        (
            ["--port"],
            "--port: no value given (a value that starts with '-' is written --port=VALUE)",
        ),
        # it started and listened, then failed every request upstream
        (
            ["--upstream-url", "notaurl"],
            "--upstream-url: invalid value 'notaurl' (allowed: an "
            "http:// or https:// base URL, e.g. http://127.0.0.1:8001/v1)",
        ),
        (["--upstream-url", "ftp://h/v1"], "--upstream-url: invalid value 'ftp://h/v1'"),
    ],
)
def test_bad_flags_are_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"surgebench serve: {line}") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8001/v1", "https://api.example.com/v1", "http://[::1]:8001"]
)
def test_upstream_urls_accepted(url: str) -> None:
    assert parse_settings(["--upstream-url", url], env={}).upstream_url == url


def test_bad_env_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SURGE_SERVICE_QUEUE_SIZE", "-1")
    assert main([]) == 2
    assert (
        "SURGE_SERVICE_QUEUE_SIZE (--queue-size): invalid value '-1' "
        "(allowed: an integer >= 0 and <= 1000000)"
    ) in capsys.readouterr().err


def test_settings_error_is_a_value_error() -> None:
    with pytest.raises(SettingsError):
        parse_settings(["--stamp", "--idle-timeout-s", "-3"], env={})


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


@pytest.mark.parametrize("doc", ["docs/service.md"])
def test_every_setting_is_in_the_docs_table(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert settings_table_markdown() in text
    for f in dataclasses.fields(ServiceSettings):
        if f.metadata["flag"]:
            assert flag_name(f.name) in text


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--port", "70000"], "an integer >= 0 and <= 65535"),
        (["--backlog", "1e23"], "an integer >= 1 and <= 65535"),
        (["--backlog", "100000"], "an integer >= 1 and <= 65535"),
        (["--max-concurrent", "99999999999999999999999"], "an integer >= 1 and <= 100000"),
        (["--workers", "10000000"], "an integer >= 0 and <= 100000"),
        (["--queue-size", "10000000"], "an integer >= 0 and <= 1000000"),
        (["--timeout-s", "inf"], "a number >= 0.001 and <= 86400"),
        (["--max-body-bytes", "1e12"], "an integer >= 1 and <= 268435456"),
    ],
)
def test_every_number_has_an_upper_bound_one_line_exit_2(
    argv: list[str], allowed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"surgebench serve: {argv[0]}: invalid value {argv[1]!r} (allowed: {allowed})\n"


def test_every_numeric_setting_has_finite_bounds() -> None:
    for f in dataclasses.fields(ServiceSettings):
        if type(f.default) in (int, float) and f.metadata["choices"] is None:
            assert f.metadata["lo"] <= f.default <= f.metadata["hi"] < float("inf"), f.name
