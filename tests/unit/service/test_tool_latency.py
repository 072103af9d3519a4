"""The simulated tool latency: fixed by default, a seeded lognormal with --tool-latency-sigma."""

from __future__ import annotations

import math
import statistics

import pytest
import respx

from service.agent import MAX_TOOL_LATENCY_MS, ToolLatency
from service.cli import parse_settings
from service.settings import SettingsError

from .conftest import (
    COMPLETIONS,
    DONE,
    USAGE,
    make_app,
    request,
    running,
    sse_chunk,
    stream_response,
)


def test_sigma_zero_is_the_fixed_latency_of_before() -> None:
    tool = ToolLatency(50.0, 0.0, seed=3)
    assert {tool.draw_s() for _ in range(100)} == {0.05}
    assert ToolLatency(0.0, 2.0, seed=3).draw_s() == 0.0


def test_draws_are_seeded() -> None:
    a, b, c = (ToolLatency(40.0, 0.8, seed=s) for s in (7, 7, 8))
    first = [a.draw_s() for _ in range(50)]
    assert first == [b.draw_s() for _ in range(50)]
    assert first != [c.draw_s() for _ in range(50)]
    assert len(set(first)) == 50


@pytest.mark.parametrize("sigma", [0.25, 1.0])
def test_median_is_the_setting_and_sigma_the_spread_of_the_log(sigma: float) -> None:
    tool = ToolLatency(40.0, sigma, seed=11)
    draws_ms = [tool.draw_s() * 1000 for _ in range(20_000)]
    assert statistics.median(draws_ms) == pytest.approx(40.0, rel=0.05)
    logs = [math.log(d / 40.0) for d in draws_ms]
    assert statistics.pstdev(logs) == pytest.approx(sigma, rel=0.05)
    assert min(draws_ms) > 0


def test_a_long_tail_is_clipped() -> None:
    tool = ToolLatency(MAX_TOOL_LATENCY_MS, 5.0, seed=1)
    draws = [tool.draw_s() for _ in range(200)]
    assert max(draws) == MAX_TOOL_LATENCY_MS / 1000  # half the draws are above the median
    assert all(0 < d <= MAX_TOOL_LATENCY_MS / 1000 for d in draws)


@pytest.mark.parametrize("value", ["-0.1", "5.5", "nan", "inf", "x"])
def test_sigma_out_of_bounds_names_the_flag(value: str) -> None:
    with pytest.raises(SettingsError, match="--tool-latency-sigma"):
        parse_settings(["--tool-latency-sigma", value], env={})


def test_settings_build_the_distribution() -> None:
    s = parse_settings(
        ["--tool-latency-ms", "30", "--tool-latency-sigma", "0.5", "--seed", "9"], env={}
    )
    ours, same = ToolLatency.from_settings(s), ToolLatency(30.0, 0.5, seed=9)
    assert [ours.draw_s() for _ in range(5)] == [same.draw_s() for _ in range(5)]


@pytest.mark.anyio
@pytest.mark.timeout(20)
async def test_each_tool_call_of_a_request_waits_its_own_draw() -> None:
    app = make_app(agent_steps=4, tool_latency_ms=5, tool_latency_sigma=1.0, seed=21)
    expected = ToolLatency(5.0, 1.0, seed=21)
    draws_ms = [expected.draw_s() * 1000 for _ in range(3)]  # three tool calls in 4 steps
    assert len(set(draws_ms)) == 3
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(
            side_effect=lambda req: stream_response(sse_chunk("t"), USAGE, DONE)
        )
        async with running(app):
            call = await request(app, "POST", "/chat/stream", {"question": "q"})
    tool_ms = call.events()[-1][1]["timings_ms"]["tool"]
    # asyncio.sleep never wakes early; the loop may add a little on a busy machine
    assert sum(draws_ms) * 0.99 <= tool_ms <= sum(draws_ms) + 200
