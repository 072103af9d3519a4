"""The trace and session flags of `surgebench run`: parsed into the one run configuration,
through config.json and back, with exit-2 messages that name the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.settings import RunSettings, SettingsError, parse_run_args

AZURE = Path(__file__).resolve().parents[2] / "data" / "azure_conv_head200.csv"


def test_trace_flags_resolve_and_round_trip() -> None:
    s = parse_run_args(
        ["--trace", str(AZURE), "--trace-speedup", "2", "--trace-start", "10s", "--duration", "20s"]
    )
    assert s.trace == str(AZURE.resolve()) and s.trace_speedup == 2.0 and s.trace_start_s == 10.0
    assert not s.demo and s.rate == 0 and not s.shape
    assert s.load_model == "trace:azure_conv_head200.csv:2x"
    assert 64 <= s.users <= 4096  # a minute of the window's peak second
    # exact lengths from the built-in servers, explicit flags still win (they come later)
    assert s.mock_args[-2:] == ("--output-tokens-dist", "max_tokens")
    assert "--max-question-chars" in s.service_args
    assert RunSettings.from_dict(s.to_dict()) == s


def test_explicit_users_and_server_flags_win() -> None:
    s = parse_run_args(
        ["--trace", str(AZURE), "--users", "7", "--mock-output-tokens-dist", "fixed",
         "--user", "direct"]
    )  # fmt: skip
    assert s.users == 7
    assert s.mock_args[-2:] == ("--output-tokens-dist", "fixed")
    assert "--max-question-chars" not in s.service_args
    target = parse_run_args(["--trace", str(AZURE), "--target", "http://127.0.0.1:9"])
    assert "max_tokens" not in target.mock_args  # nothing is started for a target


def test_session_flags_round_trip() -> None:
    s = parse_run_args(
        ["--user", "session", "--users", "2", "--session-turns", "uniform:1:9",
         "--session-think-ms", "0", "--session-max-history-tokens", "100"]
    )  # fmt: skip
    assert s.user_class == "AgentSessionUser"
    assert (s.session_turns, s.session_think_ms, s.session_max_history_tokens) == (
        "uniform:1:9",
        "0",
        100,
    )
    assert RunSettings.from_dict(s.to_dict()) == s


def test_session_agent_flags_round_trip() -> None:
    d = parse_run_args(["--user", "session"])
    assert (d.session_agent_share, d.session_agent_steps) == (0.0, 3)
    s = parse_run_args(
        ["--user", "session", "--session-agent-share", "0.25", "--session-agent-steps", "5"]
    )
    assert (s.session_agent_share, s.session_agent_steps) == (0.25, 5)
    assert RunSettings.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--trace", "/no/such/file.csv"], "--trace: /no/such/file.csv: No such file"),
        (["--trace", str(AZURE), "--trace-speedup", "0"], "--trace-speedup"),
        (["--trace", str(AZURE), "--trace-start", "soon"], "--trace-start"),
        (["--trace", str(AZURE), "--trace-start", "1h"], "no rows in the window"),
        (["--trace", str(AZURE), "--shape", "step:1:1:1:2"], "drop --rate / --shape"),
        (["--trace", str(AZURE), "--user", "batch"], "--user stream or direct"),
        (["--session-turns", "0"], "--session-turns"),
        (["--session-think-ms", "uniform:5:1"], "--session-think-ms"),
        (["--session-max-history-tokens", "0"], "--session-max-history-tokens"),
        (["--session-agent-share", "1.5"], "--session-agent-share: invalid value 1.5"),
        (["--session-agent-share", "nan"], "--session-agent-share"),
        (["--session-agent-share", "-0.1"], "--session-agent-share"),
        (["--session-agent-steps", "1"], "--session-agent-steps: invalid value 1"),
        (["--session-agent-steps", "1001"], "--session-agent-steps"),
    ],
)
def test_bad_flags_name_themselves(argv: list[str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle.replace("/", ".")):
        parse_run_args(argv)
