"""`surgebench run --trace` end to end (directly and through the service), bad trace files, and
the agent-session user, each against the real mock and service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.trace import TraceWindow, load_trace
from tests.integration.loadtests.conftest import RunCommand

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
AZURE = Path(__file__).resolve().parents[2] / "data" / "azure_conv_head200.csv"
FAST_MOCK = ("--mock-ttft-ms", "5", "--mock-itl-ms", "0")


@pytest.mark.parametrize("user", ["direct", "stream"])
def test_trace_replay_sends_every_row_with_its_exact_lengths(
    surge_run: RunCommand, user: str
) -> None:
    # recorded seconds 10 to 30 at 4x: 5 s of replay
    window = TraceWindow(start_s=10.0, duration_s=5.0, speedup=4.0)
    expected = list(load_trace(AZURE, window).schedule())
    run = surge_run(
        "--user", user, "--trace", str(AZURE), "--trace-start", "10s", "--trace-speedup", "4",
        "--duration", "5s", "--warmup", "0s", "--users", "64", *FAST_MOCK,
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.summary is not None and run.run_dir is not None
    s = run.summary
    t = s.trace
    assert t is not None, run.output
    assert s.load_model == "trace:azure_conv_head200.csv:4x"
    assert t["rows_in_window"] == len(expected) == t["sent"] == t["completed"], t
    assert t["dropped"] == 0 and t["not_sent"] == 0 and t["unfinished"] == 0
    assert t["format"] == "azure" and t["speedup"] == 4.0 and t["start_s"] == 10.0
    requested_out = sum(i.output_tokens for i in expected)
    requested_prompt = sum(i.prompt_tokens for i in expected)
    assert t["output_tokens"] == {
        "requested": requested_out, "received": requested_out, "mismatched_requests": 0,
    }  # fmt: skip
    assert t["prompt_tokens"] == {
        "requested": requested_prompt, "reported": requested_prompt, "mismatched_requests": 0,
    }  # fmt: skip
    assert t["lateness_ms"]["count"] == len(expected)
    assert sum(t["arrivals_per_s"]["scheduled"]) == len(expected)
    assert s.outcomes["ok"] == len(expected) == s.requests
    assert s.open_loop is not None and s.open_loop["sent"] == len(expected)
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["trace"] == str(AZURE) and config["trace_speedup"] == 4.0
    assert "max_tokens" in config["mock_args"]  # the mock answers with exactly max_tokens


def test_bad_trace_file_exits_2_naming_the_line(surge_run: RunCommand, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.1,10,5\n2023-11-16 18:15:47.2,ten,5\n",
        "utf-8",
    )
    run = surge_run("--trace", str(bad), "--duration", "5s")
    assert run.code == 2, run.output
    assert "--trace:" in run.output and "line 3" in run.output and "Traceback" not in run.output
    run = surge_run("--trace", str(AZURE), "--trace-start", "2h", "--duration", "5s")
    assert run.code == 2 and "no rows in the window" in run.output, run.output
    run = surge_run("--trace", str(AZURE), "--rate", "5", "--duration", "5s")
    assert run.code == 2 and "--trace:" in run.output, run.output
    run = surge_run("--trace", str(AZURE), "--user", "chat", "--duration", "5s")
    assert run.code == 2 and "--user stream or direct" in run.output, run.output


def test_agent_sessions_grow_their_prompt_and_are_reported(surge_run: RunCommand) -> None:
    run = surge_run(
        "--user", "session", "--users", "3", "--duration", "6s", "--warmup", "0s",
        "--session-turns", "3", "--session-think-ms", "0", "--session-user-tokens", "20",
        "--session-answer-tokens", "10", *FAST_MOCK, "--mock-output-tokens-dist", "max_tokens",
        "--service-agent-steps", "2", "--service-tool-latency-ms", "5",
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.summary is not None
    sessions = run.summary.sessions
    assert sessions is not None, run.output
    assert sessions["completed"] >= 3 and sessions["failed"] == 0, sessions
    assert sessions["turns_completed"] >= 3 * sessions["completed"]
    assert sessions["turns_per_session"]["max"] == pytest.approx(3.0, rel=1e-3)
    # agent mode, 2 calls per turn: call 1 sends the history (words + 4), call 2 adds the plan
    # answer, its 4, and the tool result; the history grows by 20 + 10 words a turn
    by_turn = sessions["prompt_tokens_by_turn"]
    assert by_turn["1"] < by_turn["2"] < by_turn["3"], by_turn
    assert by_turn["2"] - by_turn["1"] == pytest.approx(2 * 30, abs=0.5)
    assert sessions["turn_tool_ms"]["count"] == sessions["turns_completed"]
    assert sessions["final_answer_ttft_ms"]["count"] == sessions["completed"]
    assert sessions["session_duration_ms"]["p50"] > 0


def test_sessions_choose_agent_turns_per_turn(surge_run: RunCommand) -> None:
    # a plain service; half the turns ask for agent mode (3 calls, 2 tool calls with drawn
    # latencies), the others for a plain answer
    run = surge_run(
        "--user", "session", "--users", "3", "--duration", "6s", "--warmup", "0s",
        "--session-turns", "4", "--session-think-ms", "0", "--session-user-tokens", "20",
        "--session-answer-tokens", "10", "--session-agent-share", "0.5",
        "--session-agent-steps", "3", *FAST_MOCK, "--mock-output-tokens-dist", "max_tokens",
        "--service-tool-latency-ms", "5", "--service-tool-latency-sigma", "0.5",
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.summary is not None
    assert run.summary.effective["service"]["tool_latency_sigma"] == 0.5
    assert run.summary.effective["service"]["agent_steps"] == 1
    sessions = run.summary.sessions
    assert sessions is not None, run.output
    assert sessions["completed"] >= 3 and sessions["failed"] == 0, sessions
    turns, agent = sessions["turns_completed"], sessions["agent_turns"]
    assert 0 < agent < turns, sessions
    # only the agent turns ran tools; their answers came after two more LLM calls and two tools
    assert sessions["turn_tool_ms"]["count"] == agent
    assert sessions["turn_tool_ms"]["p50"] > 0
    assert sessions["agent_turn_ttft_ms"]["count"] == agent
    # each agent turn's first answer token comes after its tools: TTFT >= tool time, turn by
    # turn, so the medians are ordered too (HdrHistogram keeps 3 significant digits)
    tool_p50 = sessions["turn_tool_ms"]["p50"]
    assert sessions["agent_turn_ttft_ms"]["p50"] >= tool_p50 * 0.999


def test_session_option_errors_exit_2(surge_run: RunCommand) -> None:
    run = surge_run("--user", "session", "--session-turns", "many", "--duration", "5s")
    assert run.code == 2 and "--session-turns" in run.output, run.output


def test_two_processes_replay_each_row_once(surge_run: RunCommand) -> None:
    window = TraceWindow(start_s=0.0, duration_s=5.0, speedup=4.0)
    trace = load_trace(AZURE, window)
    rows, prompt_tokens = len(trace), sum(trace.prompt_tokens)
    run = surge_run(
        "--user", "direct", "--trace", str(AZURE), "--trace-speedup", "4", "--duration", "5s",
        "--warmup", "0s", "--users", "32", "--processes", "2", *FAST_MOCK,
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.summary is not None and run.summary.trace is not None
    t = run.summary.trace
    assert t["rows_in_window"] == rows == t["sent"] == t["completed"], t
    assert t["output_tokens"]["mismatched_requests"] == 0
    assert t["prompt_tokens"]["requested"] == prompt_tokens  # every row once, none twice
    assert run.summary.outcomes["ok"] == rows
