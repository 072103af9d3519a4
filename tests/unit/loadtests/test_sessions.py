"""Agent sessions: seeded plans, the growing and bounded history, the mergeable tally."""

from __future__ import annotations

import pytest

from loadtests.sessions import (
    Conversation,
    SessionPlanner,
    SessionSettings,
    SessionSpecError,
    SessionTally,
)
from loadtests.trace import CHAT_MESSAGE_OVERHEAD_TOKENS


def test_plans_are_seeded_and_follow_the_specs() -> None:
    settings = SessionSettings(
        turns="uniform:2:5", think_ms="uniform:100:300", user_tokens="10", answer_tokens="20"
    )
    a = [SessionPlanner(settings).plan() for _ in range(1)]
    planner_a, planner_b = SessionPlanner(settings), SessionPlanner(settings)
    plans_a = [planner_a.plan() for _ in range(50)]
    plans_b = [planner_b.plan() for _ in range(50)]
    assert plans_a == plans_b and a[0] == plans_a[0]
    assert {len(p) for p in plans_a} == {2, 3, 4, 5}
    for plan in plans_a:
        assert [t.number for t in plan] == list(range(1, len(plan) + 1))
        assert plan[0].think_s == 0.0
        assert all(0.1 <= t.think_s <= 0.3 for t in plan[1:])
        assert all(t.user_tokens == 10 and t.max_tokens == 20 for t in plan)
    other = SessionPlanner(SessionSettings(turns="uniform:2:5", seed=2))
    assert [other.plan() for _ in range(50)] != plans_a


def test_no_think_time() -> None:
    plan = SessionPlanner(SessionSettings(turns="4", think_ms="0")).plan()
    assert [t.think_s for t in plan] == [0.0] * 4


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"turns": "many"}, "turns"),
        ({"think_ms": "-5"}, "think_ms"),
        ({"user_tokens": "uniform:9:1"}, "user_tokens"),
        ({"answer_tokens": "lognormal:1"}, "answer_tokens"),
        ({"max_history_tokens": 0}, "max_history_tokens"),
    ],
)
def test_bad_settings_name_the_option(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(SessionSpecError, match=f"^{name}:"):
        SessionSettings(**kwargs)  # type: ignore[arg-type]


def test_history_grows_turn_by_turn() -> None:
    conv = Conversation(key=1, max_history_tokens=10_000)
    q1 = conv.ask(10)
    assert len(q1.split(" ")) == 10 and (len(q1) + 3) // 4 == 10
    assert conv.expected_prompt_tokens() == 10 + CHAT_MESSAGE_OVERHEAD_TOKENS
    conv.answered(25)
    q2 = conv.ask(5)
    assert q2.startswith(q1 + " ")  # the earlier turn is resent
    assert len(q2.split(" ")) == 40 and (len(q2) + 3) // 4 == 40
    assert conv.expected_prompt_tokens() == 40 + CHAT_MESSAGE_OVERHEAD_TOKENS
    conv.answered(0)  # a failed answer adds nothing
    assert conv.text_tokens == 40


def test_history_is_bounded_by_dropping_the_oldest() -> None:
    conv = Conversation(key=2, max_history_tokens=50)
    conv.ask(20)
    conv.answered(20)
    q = conv.ask(20)  # 60 > 50: the first message goes
    assert conv.text_tokens == 40 and conv.dropped_messages == 1
    assert len(q.split(" ")) == 40
    big = conv.ask(500)  # one message over the bound is clipped to it, alone
    assert len(big.split(" ")) == 50 and conv.text_tokens == 50


def test_tally_block_and_merge() -> None:
    a, b, master = SessionTally(), SessionTally(), SessionTally()
    assert master.block() is None
    a.record_turn({"total": 120.0, "queue_wait": 5.0, "upstream_ttft": 80.0}, 90.0, 1, 30)
    a.record_turn({"total": 200.0, "tool": 50.0}, 150.0, 2, 90)
    a.record_session(turns_planned=2, turns_completed=2, duration_s=1.5, final_ttft_ms=150.0)
    b.record_turn({"total": 100.0}, None, 1, 20)
    b.record_session(
        turns_planned=4,
        turns_completed=1,
        duration_s=0.4,
        final_ttft_ms=None,
        failed_outcome="rejected",
        history_drops=1,
    )
    master.merge_dict(a.drain())
    master.merge_dict(b.drain())
    assert a.drain()["counts"]["started"] == 0
    block = master.block()
    assert block is not None
    assert (block["started"], block["completed"], block["failed"]) == (2, 1, 1)
    assert block["turns_completed"] == 3 and block["history_drops"] == 1
    assert block["failed_at_turn"] == {"2": 1}
    assert block["failed_by_outcome"] == {"rejected": 1}
    assert block["session_duration_ms"]["count"] == 1
    assert block["session_duration_ms"]["p50"] == pytest.approx(1500.0, rel=1e-3)
    assert block["final_answer_ttft_ms"]["max"] == pytest.approx(150.0, rel=1e-3)
    assert block["turn_total_ms"]["count"] == 3
    assert block["turn_tool_ms"]["count"] == 1
    assert block["turns_per_session"]["p50"] == pytest.approx(2.0, rel=1e-3)
    assert block["prompt_tokens_by_turn"] == {"1": 25.0, "2": 90.0}
