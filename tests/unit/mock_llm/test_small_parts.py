"""Rate limits, faults and the deterministic text."""

from __future__ import annotations

import pytest

from mock_llm.faults import FaultPlan
from mock_llm.ratelimit import RateLimiter
from mock_llm.text import Vocabulary
from tests.unit.mock_llm.conftest import settings

pytestmark = pytest.mark.timeout(10)


def test_rpm_limit_and_retry_after() -> None:
    lim = RateLimiter(rpm_limit=3, tpm_limit=0)
    assert [lim.check(10, 0.0).ok for _ in range(3)] == [True, True, True]
    v = lim.check(10, 0.0)
    assert not v.ok and v.limit_name == "requests" and v.retry_after_s == 20
    assert ("x-ratelimit-limit-requests", "3") in v.headers
    assert lim.check(10, 20.0).ok  # one request refilled after 60/3 s


def test_tpm_limit() -> None:
    lim = RateLimiter(rpm_limit=0, tpm_limit=1000)
    assert lim.check(600, 0.0).ok
    v = lim.check(600, 0.0)
    assert not v.ok and v.limit_name == "tokens" and v.retry_after_s == 12  # 200 tokens missing
    assert not RateLimiter(0, 0).enabled


def test_faults_are_seeded_and_have_the_asked_rate() -> None:
    s = settings(fault_500_prob=0.1, disconnect_prob=0.2, seed=4)
    a = [FaultPlan(s).draw().kind for _ in range(1)]
    plan1, plan2 = FaultPlan(s), FaultPlan(s)
    kinds1 = [plan1.draw().kind for _ in range(5000)]
    kinds2 = [plan2.draw().kind for _ in range(5000)]
    assert kinds1 == kinds2 and a[0] == kinds1[0]
    assert kinds1.count("500") / 5000 == pytest.approx(0.1, abs=0.02)
    assert kinds1.count("disconnect") / 5000 == pytest.approx(0.2, abs=0.02)
    assert FaultPlan(settings()).draw().kind == ""


def test_forced_fault() -> None:
    plan = FaultPlan(settings())
    assert plan.draw("503").http_status == 503
    assert plan.draw("stall").kind == "stall"
    assert plan.draw("bogus").kind == ""


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_text_is_deterministic(lang: str) -> None:
    a, b = Vocabulary(lang, 1), Vocabulary(lang, 1)
    assert a.text(a.offset_for(5), 20) == b.text(b.offset_for(5), 20)
    assert a.text(a.offset_for(5), 20) != a.text(a.offset_for(6), 20)
    if lang == "zh":
        assert any(ord(c) > 0x4E00 for c in a.text(0, 20))


def test_stop_cuts_before_the_stop_string() -> None:
    v = Vocabulary("en", 1)
    text = v.text(0, 10)
    word = v.tokens[v.token_index(0, 4)]
    n, hit = v.cut_at_stop(0, 10, [word])
    assert hit and n <= 4 and word not in v.text(0, n)
    assert v.cut_at_stop(0, 10, ["zzz-not-there"]) == (10, False)
    assert text.startswith(v.text(0, n))
