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
        ({"agent_share": 1.01}, "agent_share"),
        ({"agent_share": float("nan")}, "agent_share"),
        ({"agent_steps": 1}, "agent_steps"),
        ({"agent_steps": 1001}, "agent_steps"),
    ],
)
def test_bad_settings_name_the_option(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(SessionSpecError, match=f"^{name}:"):
        SessionSettings(**kwargs)  # type: ignore[arg-type]


def test_without_an_agent_share_turns_leave_the_mode_to_the_service() -> None:
    plan = SessionPlanner(SessionSettings(turns="20")).plan()
    assert all(t.agent_steps is None and not t.is_agent for t in plan)
    assert plan[0].body("q") == {"question": "q", "max_tokens": plan[0].max_tokens}


@pytest.mark.parametrize("share", [0.3, 1.0])
def test_agent_turns_are_drawn_per_turn_with_the_share(share: float) -> None:
    settings = SessionSettings(turns="uniform:2:6", agent_share=share, agent_steps=4, seed=5)
    first = SessionPlanner(settings).plan()
    planner = SessionPlanner(settings)
    turns = [t for _ in range(400) for t in planner.plan()]
    assert first == turns[: len(first)]  # seeded
    assert {t.agent_steps for t in turns} <= {1, 4}
    agent = sum(t.is_agent for t in turns)
    assert agent / len(turns) == pytest.approx(share, abs=0.05)
    for t in turns:
        body = t.body("hi")
        assert body["agent_steps"] == (4 if t.is_agent else 1)
    # the sizes and pauses drawn do not depend on the share: same seed, same sessions
    plain = SessionPlanner(SessionSettings(turns="uniform:2:6", seed=5))
    plain_turns = [t for _ in range(400) for t in plain.plan()]
    assert [(t.think_s, t.user_tokens, t.max_tokens) for t in plain_turns] == [
        (t.think_s, t.user_tokens, t.max_tokens) for t in turns
    ]


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
    b.record_session(  # the run stopped during its second turn
        turns_planned=3, turns_completed=1, duration_s=0.9, final_ttft_ms=None, cut_off=True
    )
    master.merge_dict(a.drain())
    master.merge_dict(b.drain())
    assert a.drain()["counts"]["started"] == 0
    block = master.block()
    assert block is not None
    assert (block["started"], block["completed"], block["failed"], block["cut_off"]) == (3, 1, 1, 1)
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
    assert block["agent_turns"] == 0 and "agent_turn_ttft_ms" not in block


def test_agent_turns_are_counted_and_their_ttft_kept_apart() -> None:
    a, master = SessionTally(), SessionTally()
    a.record_turn({"total": 300.0, "tool": 40.0}, 250.0, 1, 30, agent=True)
    a.record_turn({"total": 100.0}, 60.0, 2, 60)
    a.record_session(turns_planned=2, turns_completed=2, duration_s=0.5, final_ttft_ms=60.0)
    master.merge_dict(a.drain())
    block = master.block()
    assert block is not None
    assert block["agent_turns"] == 1 and block["turns_completed"] == 2
    assert block["agent_turn_ttft_ms"]["count"] == 1
    assert block["agent_turn_ttft_ms"]["p50"] == pytest.approx(250.0, rel=1e-3)
    assert block["turn_ttft_ms"]["count"] == 2
