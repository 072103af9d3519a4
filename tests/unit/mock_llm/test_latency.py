"""The pure latency model: formulas, distributions, output lengths."""

from __future__ import annotations

import random
import statistics

import pytest

from mock_llm.latency import HostedModel, StepModel, jitter_factor, output_length
from tests.unit.mock_llm.conftest import settings

pytestmark = pytest.mark.timeout(10)


def test_step_formula() -> None:
    m = StepModel(10.0, 0.5, 0.01, 0.0, "normal")
    assert m.step_ms(4, 1000, random.Random(1)) == pytest.approx(10 + 2 + 10)


def test_step_roofline_takes_the_larger_of_memory_and_compute() -> None:
    m = StepModel(5.0, 0.01, 0.002, 0.0, "normal", compute_per_token_ms=0.05)
    rng = random.Random(1)
    # 10 decodes: memory-bound 5 + 0.1 = 5.1 ms beats compute 0.05 x 10 = 0.5 ms
    assert m.step_ms(10, 0, rng) == pytest.approx(5.1)
    # 200 decodes + 100 prompt tokens: memory 5 + 2 + 0.2 = 7.2 ms, compute 0.05 x 300 = 15 ms
    assert m.step_ms(200, 100, rng) == pytest.approx(15.0)
    # off (0, the default): the memory-bound sum whatever the count
    off = StepModel(5.0, 0.01, 0.002, 0.0, "normal")
    assert off.step_ms(200, 100, rng) == pytest.approx(7.2)


def test_closed_loop_itl_formula_with_the_roofline() -> None:
    m = StepModel(4.0, 0.01, 0.005, 0.0, "normal", compute_per_token_ms=0.04)
    # C=20, ISL=OSL=200: memory 4 + 0.2 + 0.1 = 4.3 ms; compute 0.04 x 40 = 1.6 ms
    assert m.itl_ms_at(20, 200, 200) == pytest.approx(4.3)
    # C=250: memory 4 + 2.5 + 1.25 = 7.75 ms; compute 0.04 x 500 = 20 ms
    assert m.itl_ms_at(250, 200, 200) == pytest.approx(20.0)


def test_closed_loop_itl_formula() -> None:
    m = StepModel(12.9, 0.036, 0.06, 0.0, "normal")
    # C=200, ISL=OSL=200: 12.9 + 0.036*200 + 0.06*200
    assert m.itl_ms_at(200, 200, 200) == pytest.approx(32.1)


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_jitter_has_mean_one_and_the_asked_cv(dist: str) -> None:
    rng = random.Random(5)
    xs = [jitter_factor(rng, 0.3, dist) for _ in range(20000)]
    assert statistics.fmean(xs) == pytest.approx(1.0, abs=0.01)
    assert statistics.pstdev(xs) == pytest.approx(0.3, abs=0.02)
    assert min(xs) >= 0.0


def test_no_jitter_is_exact() -> None:
    assert jitter_factor(random.Random(1), 0.0, "lognormal") == 1.0


def test_hosted_ttft_median_and_prefill() -> None:
    m = HostedModel(400.0, 0.65, 0.1, 10.0, 0.3, "lognormal")
    rng = random.Random(3)
    draws = [m.ttft_draw_ms(0, rng) for _ in range(20000)]
    assert statistics.median(draws) == pytest.approx(400.0, rel=0.03)
    assert HostedModel(100.0, 0.0, 0.5, 10, 0, "normal").ttft_draw_ms(100, rng) == 150.0


def test_output_length_modes() -> None:
    rng = random.Random(1)
    assert output_length(settings(output_tokens=50), rng, None) == (50, "stop")
    assert output_length(settings(output_tokens=50), rng, 10) == (10, "length")
    assert output_length(settings(output_tokens=50), rng, 100) == (50, "stop")
    s = settings(output_tokens=50, output_tokens_dist="max_tokens")
    assert output_length(s, rng, 500) == (500, "length")
    assert output_length(s, rng, None) == (50, "stop")
    s = settings(output_tokens=100, output_tokens_dist="uniform", output_tokens_spread=0.5)
    lengths = {output_length(s, rng, None)[0] for _ in range(500)}
    assert min(lengths) >= 50 and max(lengths) <= 150 and len(lengths) > 50
    s = settings(output_tokens=100, output_tokens_dist="lognormal", output_tokens_spread=0.5)
    assert statistics.median(output_length(s, rng, None)[0] for _ in range(2000)) == (
        pytest.approx(100, rel=0.1)
    )


def test_output_length_min_tokens_and_ignore_eos() -> None:
    rng = random.Random(1)
    s = settings(output_tokens=50)
    assert output_length(s, rng, 400, min_tokens=300) == (300, "stop")  # at least 300
    assert output_length(s, rng, 400, min_tokens=400) == (400, "length")  # ignore_eos
    assert output_length(s, rng, None, min_tokens=70) == (70, "stop")
    assert output_length(s, rng, 20, min_tokens=0) == (20, "length")
    s = settings(output_tokens=100, output_tokens_dist="lognormal", output_tokens_spread=1.0)
    assert {output_length(s, rng, 37, min_tokens=37) for _ in range(200)} == {(37, "length")}
