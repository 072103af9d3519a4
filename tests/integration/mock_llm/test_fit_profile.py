"""`surgebench fit` writes a profile that `surgebench mock --profile FILE` loads and serves."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from surgebench.process import surgebench_argv
from tests.integration.mock_llm.conftest import StartMock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# made with mock_llm.fit.predict from step_base 10 ms, per_seq 0.5 ms, per prefill token 0.05 ms,
# overhead 5 ms, max_batched_tokens 512, OSL 12 (tests/unit/mock_llm/test_fit.py recovers these)
TABLE = """\
# synthetic: the mock's own replay of a known profile
concurrency,isl,osl,ttft_ms,itl_ms,tokens_per_s
1,100,12,20.000,10.500,86.1
4,100,12,37.708,12.310,267.9
16,100,12,75.875,21.062,597.1
1,400,12,35.000,10.500,77.5
4,400,12,66.633,15.732,193.5
16,400,12,167.139,39.457,302.4
"""


def test_fitted_profile_file_loads_and_serves(tmp_path: Path, start_mock: StartMock) -> None:
    table = tmp_path / "table.csv"
    table.write_text(TABLE, "utf-8")
    profile = tmp_path / "fitted.toml"
    fitted = subprocess.run(
        surgebench_argv(
            "fit", "--table", str(table), "--out", str(profile), "--prefill-policy", "mixed",
            "--fix", "max_batched_tokens=512", "--max-evals", "60", "--rounds", "1",
        ),
        capture_output=True,
        text=True,
        timeout=500,
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    assert "MAPE:" in fitted.stdout and f"wrote {profile}" in fitted.stdout
    proc = start_mock("--profile", str(profile))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", proc.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        events = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    content = [e for e in events[:-1] if '"content"' in e and '"content":""' not in e]
    assert len(content) == 12  # the table's OSL became the profile's output_tokens
    metrics = httpx.get(proc.url + "/metrics", timeout=10).text
    # engine mode: the tokens went out in engine steps (one prefill step, then one per token)
    assert "mock_batch_size_count 12.0" in metrics


def _gaps_s(url: str, content: str) -> list[float]:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "stream": True,
        "max_tokens": 20,
    }
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        times = [
            time.monotonic()
            for line in r.iter_lines()
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line
        ]
    assert len(times) == 20
    return [b - a for a, b in itertools.pairwise(times)]


def test_live_mock_step_cost_grows_with_the_context(start_mock: StartMock) -> None:
    # 2 ms + 0.05 ms per context token: a 1004-token prompt (4000 characters + 4 per message)
    # makes each decode step about 52 ms; a 5-token prompt, about 2.3 ms
    proc = start_mock(
        "--mode", "engine", "--step-base-ms", "2", "--step-per-kv-token-ms", "0.05",
        "--output-tokens", "20",
    )  # fmt: skip
    long_gaps = _gaps_s(proc.url, "abcd" * 1000)
    short_gaps = _gaps_s(proc.url, "hi")
    # a late step is caught up (steps keep the model's clock), so a busy machine moves the mean
    # gap by at most the first token's lateness / 19: loose bounds around 52 and 2.3 ms
    assert statistics.fmean(long_gaps) > 0.8 * 0.0522, long_gaps
    assert statistics.fmean(short_gaps) < 0.5 * statistics.fmean(long_gaps), short_gaps


def test_live_mock_frontend_rate_paces_the_stream(start_mock: StartMock) -> None:
    # 1 ms steps, but the frontend sends 100 tokens/s: the client sees one token per 10 ms
    proc = start_mock(
        "--mode", "engine", "--step-base-ms", "1", "--frontend-tokens-per-s", "100",
        "--output-tokens", "20",
    )  # fmt: skip
    gaps = _gaps_s(proc.url, "hi")
    # the queue keeps the model's clock, so a busy machine makes single gaps late, not the mean
    # short: the mean is about 10 ms, far from the engine's 1 ms steps
    assert statistics.fmean(gaps) > 0.8 * 0.010, gaps
    assert httpx.get(proc.url + "/config", timeout=10).json()["settings"][
        "frontend_tokens_per_s"
    ] == pytest.approx(100.0)


def test_live_mock_roofline_sets_the_step_cost(start_mock: StartMock) -> None:
    # 1 ms steps by the usual sum, but 5 ms per token computed: a step of one decode token costs
    # max(1, 5 x 1) = 5 ms, so one stream's tokens come 5 ms apart; without it, 1 ms
    proc = start_mock(
        "--mode", "engine", "--step-base-ms", "1", "--step-compute-per-token-ms", "5",
        "--output-tokens", "20",
    )  # fmt: skip
    gaps = _gaps_s(proc.url, "hi")
    # steps keep the model's clock: a busy machine makes single gaps late, not the mean short
    assert statistics.fmean(gaps) > 0.8 * 0.005, gaps
    plain = start_mock("--mode", "engine", "--step-base-ms", "1", "--output-tokens", "20")
    assert statistics.fmean(_gaps_s(plain.url, "hi")) < 0.5 * statistics.fmean(gaps)
