"""The shared options table: conversion, bounds, layers, errors, help, secrets, cheap import."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass

import pytest

from surgebench import options
from surgebench.options import OptionError, option

pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class Demo:
    port: int = option(8000, "TCP port", lo=0, hi=65535)
    delay_s: float = option(1.5, "a delay", lo=0.001, hi=60.0)
    mode: str = option("a", "a mode", choices=("a", "b"))
    status: int = option(503, "a status", choices=(429, 503))
    verbose: bool = option(False, "talk more")
    name: str = option("x", "a name")
    token: str = option("", "a secret", secret=True)
    key: str = option("", "env only", flag=False, env=("DEMO_KEY", "OTHER_KEY"), secret=True)


def field(name: str) -> object:
    return options.fields_of(Demo)[name]


def conv(name: str, raw: object) -> object:
    return options.convert(options.fields_of(Demo)[name], raw, f"--{name}")


def test_a_number_without_finite_bounds_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="finite bounds"):
        option(1, "no upper bound", lo=0)
    with pytest.raises(TypeError, match="finite bounds"):
        option(1.0, "infinite", lo=0, hi=float("inf"))
    with pytest.raises(TypeError, match="finite bounds"):
        option(100, "default outside", lo=0, hi=10)
    option(429, "a choice needs no bounds", choices=(429, 503))


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("port", "0", 0),
        ("port", "65535", 65535),
        ("port", 8080.0, 8080),  # a profile's JSON number
        ("delay_s", "0.001", 0.001),
        ("delay_s", 60, 60.0),
        ("mode", "b", "b"),
        ("status", "429", 429),
        ("verbose", "YES", True),
        ("verbose", "off", False),
        ("verbose", True, True),
        ("name", "anything", "anything"),
    ],
)
def test_good_values_convert(name: str, raw: object, value: object) -> None:
    got = conv(name, raw)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("port", "70000", "an integer >= 0 and <= 65535"),
        ("port", "-1", "an integer >= 0 and <= 65535"),
        ("port", "1e23", "an integer >= 0 and <= 65535"),
        ("port", "99999999999999999999999", "an integer >= 0 and <= 65535"),
        ("port", "9" * 5000, "an integer >= 0 and <= 65535"),
        ("port", 2.5, "an integer"),
        ("port", True, "an integer"),
        ("delay_s", "nan", "a number >= 0.001 and <= 60"),
        ("delay_s", "inf", "a number >= 0.001 and <= 60"),
        ("delay_s", "-inf", "a number >= 0.001 and <= 60"),
        ("delay_s", "60.5", "a number >= 0.001 and <= 60"),
        ("delay_s", "0", "a number >= 0.001 and <= 60"),
        ("mode", "c", "a, b"),
        ("status", "500", "429, 503"),
        ("verbose", "maybe", "true, false"),
        ("name", 3, "any text"),
    ],
)
def test_bad_values_name_source_value_and_allowed(name: str, raw: object, allowed: str) -> None:
    with pytest.raises(OptionError) as info:
        conv(name, raw)
    message = str(info.value)
    assert message.startswith(f"--{name}: invalid value ")
    assert f"(allowed: {allowed}" in message
    assert "\n" not in message and len(message) < 300  # one line, even for 5,000 digits


def test_layers_default_profile_env_flags() -> None:
    profile = options.from_mapping(Demo, {"port": 1, "delay-s": 2, "mode": "b"}, "profile p")
    env = {"DEMO_PORT": "3", "DEMO_DELAY_S": "4"}
    got = options.resolve(
        Demo, flags={"port": "5", "mode": None}, env=env, prefix="DEMO_", profile=profile
    )
    assert (got.port, got.delay_s, got.mode, got.name) == (5, 4.0, "b", "x")


def test_env_errors_name_the_variable_and_its_flag() -> None:
    with pytest.raises(OptionError, match=r"^DEMO_PORT \(--port\): invalid value 'x'"):
        options.from_env(Demo, {"DEMO_PORT": "x"}, "DEMO_")


def test_env_aliases_first_non_empty_wins_and_skip() -> None:
    assert options.from_env(Demo, {"OTHER_KEY": "b"}, "DEMO_")["key"] == "b"
    assert options.from_env(Demo, {"DEMO_KEY": "a", "OTHER_KEY": "b"}, "DEMO_")["key"] == "a"
    assert options.from_env(Demo, {"DEMO_KEY": "", "OTHER_KEY": "b"}, "DEMO_")["key"] == "b"
    assert options.from_env(Demo, {"DEMO_PORT": "1"}, "DEMO_", skip=("port",)) == {}


def test_profile_unknown_key_and_bad_value() -> None:
    with pytest.raises(OptionError, match="profile p: unknown setting 'speed'; allowed: port"):
        options.from_mapping(Demo, {"speed": 1}, "profile p")
    with pytest.raises(OptionError, match=r"profile p: delay_s: invalid value 'fast'"):
        options.from_mapping(Demo, {"delay_s": "fast"}, "profile p")


def test_parser_flags_help_and_env_only_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = options.build_parser(Demo, "DEMO_", prog="demo", description="A demo.")
    ns = vars(parser.parse_args(["--port", "7", "--verbose"]))
    assert ns["port"] == "7" and ns["verbose"] is True and ns["delay_s"] is None
    assert "key" not in ns  # env only
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "allowed: an integer >= 0 and <= 65535; env DEMO_PORT" in text
    assert "exits 2" in text


def test_public_settings_hide_set_secrets_only() -> None:
    shown = options.public_settings(Demo(token="t0ken", key=""))
    assert shown["token"] == "***" and shown["key"] == "" and shown["port"] == 8000
    assert "t0ken" not in repr(Demo(token="t0ken"))


def test_check_range_refuses_nan_inf_and_out_of_bounds() -> None:
    options.check_range("--rate", 5.0, 0, 10)
    for bad in (float("nan"), float("inf"), -1.0, 11.0):
        with pytest.raises(OptionError, match=r"^--rate: invalid value .* <= 10\)$"):
            options.check_range("--rate", bad, 0, 10)


def test_limits_table_lists_every_number() -> None:
    table = options.limits_table_markdown(Demo)
    assert "| `--port` | `8000` | 0 | 65535 |" in table
    assert "| `--delay-s` | `1.5` | 0.001 | 60 |" in table
    assert "--mode" not in table


def test_is_loopback() -> None:
    assert options.is_loopback("127.0.0.1") and options.is_loopback("::1")
    assert options.is_loopback("localhost") and not options.is_loopback("0.0.0.0")


def test_import_is_neutral_and_cheap() -> None:
    code = (
        "import sys; import surgebench.options; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'mock_llm', 'service', 'loadtests', 'reports', 'argparse', 'locust', 'gevent'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=20
    ).stdout
    assert out.strip() == "[]"


def test_parser_class_is_used() -> None:
    class Strict(argparse.ArgumentParser):
        pass

    parser = options.build_parser(Demo, "DEMO_", prog="d", description="d", parser_class=Strict)
    assert isinstance(parser, Strict)


@pytest.mark.parametrize(
    ("message", "line"),
    [
        ("argument --users: invalid int value: 'abc'",
         "--users: invalid value 'abc' (allowed: an integer >= 1 and <= 9)"),
        ("argument --rate: invalid float value: 'x'",
         "--rate: invalid value 'x' (allowed: a number)"),
        ("argument --duration: expected one argument",
         "--duration: no value given (a value that starts with '-' is written --duration=VALUE)"),
        ("unrecognized arguments: --bogus", "unrecognized arguments: --bogus (see prog --help)"),
        ("the following arguments are required: X", "the following arguments are required: X"),
    ],
)  # fmt: skip
def test_argparse_messages_in_the_one_line_form(message: str, line: str) -> None:
    assert options.argparse_message(message, "prog", {"--users": ">= 1 and <= 9"}) == line


def test_default_parser_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = options.build_parser(Demo, "DEMO_", prog="demo", description="A demo.")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--nope"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "demo: unrecognized arguments: --nope (see demo --help)\n"
