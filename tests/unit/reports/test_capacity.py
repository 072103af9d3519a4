from __future__ import annotations

import pytest

from reports.capacity import capacity_markdown, find_capacity, knee, littles_law_in_flight
from reports.curves import Curve
from reports.errors import SloError
from reports.results import LatencyStats, Summary
from reports.slo import parse_slo


def point(
    ttft_p95: float, ok: int, rejected: int = 0, e2e_mean: float = 1000.0, valid: bool = True
) -> Summary:
    """A run of 10 measured seconds with the given TTFT p95 and outcome counts."""
    return Summary(
        name="cell",
        started_at="2026-11-25T00:00:00Z",
        duration_s=10.0,
        measured_s=10.0,
        valid=valid,
        invalid_reasons=[] if valid else ["client lag"],
        outcomes={"ok": ok, "rejected": rejected},
        latency={
            "ttft_ms": LatencyStats(count=ok, p50=ttft_p95 / 2, p95=ttft_p95),
            "e2e_ms": LatencyStats(count=ok, mean=e2e_mean),
        },
    )


SLO = "ttft_p95<800ms,rejections<1%"


def test_slo_parses_units_strictly() -> None:
    slo = parse_slo("ttft_p95<0.8s, rejections<=1%,ok_rps>=5req/s")
    assert [(t.metric.name, t.op, t.limit) for t in slo.terms] == [
        ("ttft_p95", "<", 800.0),
        ("rejections", "<=", 0.01),
        ("ok_rps", ">=", 5.0),
    ]
    assert slo.limit_of("ttft_p95") == 800.0


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("ttft_p95<800", ["ttft_p95<800", "unit", "ms, s"]),
        ("ttft_p96<800ms", ["ttft_p96", "unknown metric", "ttft_p95"]),
        ("rejections<1ms", ["rejections<1ms", "%"]),
        ("ttft_p95~800ms", ["ttft_p95~800ms", "not valid"]),
        ("ttft_p95<800ms,", ["empty term"]),
        ("", ["empty SLO"]),
    ],
)
def test_bad_slo_names_the_term_and_what_is_allowed(text: str, names: list[str]) -> None:
    with pytest.raises(SloError) as caught:
        parse_slo(text)
    for name in names:
        assert name in str(caught.value)


def test_capacity_known_answer_and_recommendation() -> None:
    loads = [10.0, 20.0, 40.0, 80.0]
    small = Curve(
        "max_concurrent=4",
        loads,
        [
            point(300, 100),
            point(500, 200),
            point(1200, 210),
            point(3000, 200, rejected=50),
        ],
    )
    large = Curve(
        "max_concurrent=16",
        loads,
        [
            point(250, 100),
            point(300, 200),
            point(600, 400),
            point(900, 500, rejected=100),
        ],
    )
    result = find_capacity([small, large], parse_slo(SLO), "users")
    assert [c.configuration for c in result.ranking] == ["max_concurrent=16", "max_concurrent=4"]
    best, second = result.ranking
    assert (best.max_load, second.max_load) == (40.0, 20.0)
    assert best.first_failure is not None and best.first_failure.load == 80.0
    sentence = result.recommendation
    assert sentence.startswith("Use max_concurrent=16: it holds 40 users")
    assert "TTFT p95 600.0 ms" in sentence and "40.0 ok req/s" in sentence
    assert "2.0x the 20 users of the next best, max_concurrent=4" in sentence
    assert "at 80 users it breaks the SLO" in sentence and "ttft_p95 900.0 ms" in sentence
    markdown = capacity_markdown(result, "users")
    assert "| 1 | max_concurrent=16 | 40 |" in markdown


def test_a_pass_above_a_failure_is_not_capacity() -> None:
    curve = Curve("c", [10.0, 20.0, 30.0], [point(500, 10), point(900, 10), point(500, 10)])
    result = find_capacity([curve], parse_slo(SLO), "users")
    assert result.ranking[0].max_load == 10.0


def test_invalid_runs_fail_unless_included() -> None:
    curve = Curve("c", [10.0, 20.0], [point(100, 10), point(100, 10, valid=False)])
    assert find_capacity([curve], parse_slo(SLO), "users").ranking[0].max_load == 10.0
    assert find_capacity([curve], parse_slo(SLO), "users", True).ranking[0].max_load == 20.0


def test_no_configuration_meets_the_slo() -> None:
    curve = Curve("c", [10.0, 20.0], [point(900, 10), point(1900, 10)])
    result = find_capacity([curve], parse_slo(SLO), "users")
    assert result.best is None
    assert result.recommendation.startswith("No configuration meets the SLO")
    assert "lowest tested load (10 users)" in result.recommendation


def test_knee_of_a_hockey_stick() -> None:
    assert knee([10, 20, 30, 40, 50], [100, 102, 104, 400, 1000]) == 30
    assert knee([10, 20, 30, 40], [100, 200, 300, 400]) is None  # straight line: no knee
    assert knee([10, 20], [100, 900]) is None


def test_littles_law() -> None:
    # 50 ok in 10 s = 5 req/s, mean e2e 2 s -> 10 in flight.
    assert littles_law_in_flight(point(100, 50, e2e_mean=2000.0)) == pytest.approx(10.0)


def test_recommendation_names_the_bottleneck_at_the_first_failure() -> None:
    failing = point(1500, 100)
    failing.breakdown_ms = {
        "queue_wait": LatencyStats(count=100, p95=1200.0),
        "upstream_ttft": LatencyStats(count=100, p95=110.0),
    }
    curve = Curve("c", [10.0, 20.0], [point(300, 100), failing])
    sentence = find_capacity([curve], parse_slo(SLO), "users").recommendation
    assert sentence.endswith(
        "(largest TTFT part there: queue wait p95 1200 ms: requests waited in the service's "
        "admission queue)."
    )


LAG = "load generator saturated: client lag p99 16.2 ms > 5 ms (tokens were read late); advice"


def stalled(ttft_p95: float, ok: int) -> Summary:
    run = point(ttft_p95, ok)
    run.valid, run.invalid_reasons = False, [LAG]
    return run


def test_a_transient_stall_is_named_and_not_taken_for_a_failure() -> None:
    # the sweep of the issue: max-concurrent=8 @ 8 users was invalid for client lag only
    loads = [4.0, 8.0, 16.0, 32.0]
    eight = Curve(
        "max-concurrent=8",
        loads,
        [point(150, 40), stalled(206, 80), point(600, 160), point(2000, 100)],
        attempts=[1, 3, 1, 1],
    )
    many = Curve(
        "max-concurrent=24",
        loads,
        [point(150, 40), point(160, 80), point(300, 160), point(2000, 100)],
    )
    result = find_capacity([eight, many], parse_slo(SLO), "users")
    best, second = result.ranking
    assert (best.configuration, best.max_load) == ("max-concurrent=24", 16.0)
    assert second.max_load == 4.0 and second.limit_untrusted
    assert second.first_failure is not None and second.first_failure.untrusted
    sentence = result.recommendation
    assert "4.0x" not in sentence and "x the" not in sentence  # no ratio from an untrusted cell
    assert "the next best, max-concurrent=8, holds at least 4 users" in sentence
    assert (
        "Could not trust 1 cell (the load generator, not the service, was the bottleneck "
        "there): max-concurrent=8 @ 8 users: invalid after 2 reruns (client lag p99 16.2 ms)."
    ) in sentence
    markdown = capacity_markdown(result, "users")
    assert "| 8: untrusted: invalid after 2 reruns (client lag p99 16.2 ms) |" in markdown


def test_the_best_configuration_stopped_by_an_untrusted_cell_holds_at_least() -> None:
    curve = Curve("c", [10.0, 20.0], [point(100, 10), stalled(100, 10)])
    sentence = find_capacity([curve], parse_slo(SLO), "users").recommendation
    assert "at 20 users its cell could not be trusted (invalid (not rerun) (client lag p99 " in (
        sentence
    )
    assert "so it holds at least 10 users" in sentence and "breaks the SLO" not in sentence
    # --include-invalid: the figures are used as they are
    assert find_capacity([curve], parse_slo(SLO), "users", True).ranking[0].max_load == 20.0


def test_other_invalid_causes_still_count_as_failures() -> None:
    run = point(100, 10)
    run.valid = False
    run.invalid_reasons = [LAG, "only 1 of 2 load processes sent their measurements"]
    curve = Curve("c", [10.0, 20.0], [point(100, 10), run])
    capacity = find_capacity([curve], parse_slo(SLO), "users").ranking[0]
    assert capacity.first_failure is not None and not capacity.first_failure.untrusted
    assert "Could not trust" not in find_capacity([curve], parse_slo(SLO), "users").recommendation
