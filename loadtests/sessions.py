"""Agent sessions: multi-turn conversations planned from a seed, and their per-session metrics.

Locust-free. A session is N turns (N drawn from a length spec); before every turn but the first
the user thinks (a drawn pause); each turn sends the whole conversation so far plus a new user
message as the service's ``question``, so the prompt grows turn by turn (and with it the
engine's prefill cost). With ``agent_share`` 0 the service answers each turn in its configured
mode (plain relay, or its agent mode ``--agent-steps K``: K upstream calls with simulated tool
calls between them); with ``agent_share`` P > 0 each turn is drawn to be an agent turn with
probability P and says so in its body (``agent_steps``: ``agent_steps`` for an agent turn, 1 for
a plain one), from an RNG of its own, so the sizes and pauses drawn do not depend on P.

The history carries sizes, not meaning: every message is made of three-letter words (one token
each by the mock's rule, `loadtests.trace.PROMPT_WORDS`) and an answer is carried into the
history as that many words (its streamed text is not kept). The history is bounded: past
``max_history_tokens`` the oldest messages are dropped, as a chat client's context window would.

`SessionTally` accounts for sessions (mergeable across Locust workers) and becomes summary.json's
``sessions`` block: time to first token of the final answer, time inside the service per turn
(from ``done``'s ``timings_ms``), session duration, turns completed, and the sessions that failed
with the turn at which they failed.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadtests.prompts import LengthSpec, PromptSpecError
from loadtests.recorder import encode_histogram, new_histogram, stats_from_histogram
from loadtests.trace import CHAT_MESSAGE_OVERHEAD_TOKENS, PROMPT_WORDS

MAX_TURNS = 1000
"""Most turns one session may have (a drawn count above it is clipped)."""
MAX_THINK_S = 3600.0
MAX_AGENT_STEPS = 1000
"""Most LLM calls an agent turn may ask for (the service refuses more than its
``--agent-steps-limit``, 16 by default)."""


class SessionSpecError(ValueError):
    """A session option that cannot be used; the message names the option and what is allowed."""


@dataclass(frozen=True)
class SessionSettings:
    """How sessions are drawn. Length specs as in `loadtests.prompts.LengthSpec`
    (``N``, ``uniform:LO:HI``, ``normal:MEAN:STD``, ``lognormal:MEDIAN:SIGMA``); ``think_ms``
    may also be ``0`` (no pause). ``agent_share``: the probability that a turn is an agent turn
    (0: every turn in the service's own mode); ``agent_steps``: the LLM calls of an agent turn."""

    turns: str = "uniform:2:6"
    think_ms: str = "uniform:500:2000"
    user_tokens: str = "uniform:8:64"
    answer_tokens: str = "uniform:32:128"
    max_history_tokens: int = 3800
    agent_share: float = 0.0
    agent_steps: int = 3
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("turns", "user_tokens", "answer_tokens"):
            _spec(name, getattr(self, name))
        if self.think_ms.strip() != "0":
            _spec("think_ms", self.think_ms)
        if not 1 <= self.max_history_tokens <= 10_000_000:
            raise SessionSpecError(
                f"max_history_tokens: {self.max_history_tokens}; allowed: 1 to 10000000"
            )
        if not 0.0 <= self.agent_share <= 1.0:  # NaN fails too
            raise SessionSpecError(f"agent_share: {self.agent_share}; allowed: 0 to 1")
        if not 2 <= self.agent_steps <= MAX_AGENT_STEPS:
            raise SessionSpecError(
                f"agent_steps: {self.agent_steps}; allowed: 2 to {MAX_AGENT_STEPS} (LLM calls of "
                "an agent turn: plan, tool steps, answer)"
            )


def _spec(name: str, text: str) -> LengthSpec:
    try:
        spec = LengthSpec.parse(text)
    except PromptSpecError as exc:
        raise SessionSpecError(f"{name}: {exc}") from None
    return spec


@dataclass(frozen=True)
class TurnPlan:
    """One turn: its number (1-based), the pause before it, the new user message's size, the
    answer's cap (sent as ``max_tokens``) and the LLM calls asked for (sent as ``agent_steps``;
    None: not sent, the service's own mode)."""

    number: int
    think_s: float
    user_tokens: int
    max_tokens: int
    agent_steps: int | None = None

    @property
    def is_agent(self) -> bool:
        return self.agent_steps is not None and self.agent_steps > 1

    def body(self, question: str) -> dict[str, Any]:
        """The ``/chat/stream`` body of this turn."""
        body: dict[str, Any] = {"question": question, "max_tokens": self.max_tokens}
        if self.agent_steps is not None:
            body["agent_steps"] = self.agent_steps
        return body


class SessionPlanner:
    """Seeded session plans: the same seed gives the same sessions in the same order."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._rng = random.Random(f"sessions:{settings.seed}")
        self._agent_rng = random.Random(f"session-agent:{settings.seed}")
        self._turns = _spec("turns", settings.turns)
        self._think = (
            None if settings.think_ms.strip() == "0" else _spec("think_ms", settings.think_ms)
        )
        self._user = _spec("user_tokens", settings.user_tokens)
        self._answer = _spec("answer_tokens", settings.answer_tokens)

    def plan(self) -> list[TurnPlan]:
        rng = self._rng
        n = min(MAX_TURNS, self._turns.sample(rng))
        share = self.settings.agent_share
        turns: list[TurnPlan] = []
        for number in range(1, n + 1):
            think_s = 0.0
            if number > 1 and self._think is not None:
                think_s = min(MAX_THINK_S, self._think.sample(rng) / 1000.0)
            steps: int | None = None
            if share > 0.0:
                steps = self.settings.agent_steps if self._agent_rng.random() < share else 1
            turns.append(
                TurnPlan(number, think_s, self._user.sample(rng), self._answer.sample(rng), steps)
            )
        return turns


class Conversation:
    """The history one session sends: every message so far, oldest dropped past the bound."""

    def __init__(self, key: int, max_history_tokens: int) -> None:
        self._rng = random.Random(f"conversation:{key}")
        self.max_history_tokens = max_history_tokens
        self._messages: deque[str] = deque()
        self._tokens = 0
        self.dropped_messages = 0

    @property
    def text_tokens(self) -> int:
        """Words (tokens) in the history now."""
        return self._tokens

    def _add(self, tokens: int) -> None:
        tokens = max(1, min(tokens, self.max_history_tokens))
        self._messages.append(" ".join(self._rng.choices(PROMPT_WORDS, k=tokens)))
        self._tokens += tokens
        while self._tokens > self.max_history_tokens and len(self._messages) > 1:
            oldest = self._messages.popleft()
            self._tokens -= oldest.count(" ") + 1
            self.dropped_messages += 1

    def ask(self, user_tokens: int) -> str:
        """Add a user message of ``user_tokens`` words; the question to send (whole history)."""
        self._add(user_tokens)
        return " ".join(self._messages)

    def answered(self, output_tokens: int) -> None:
        """Carry the answer (its length) into the history."""
        if output_tokens > 0:
            self._add(output_tokens)

    def expected_prompt_tokens(self) -> int:
        """What the mock reports for the last question as one chat message."""
        return self._tokens + CHAT_MESSAGE_OVERHEAD_TOKENS


# ----------------------------------------------------------------------------------- accounting
TURN_TIMINGS = ("total", "queue_wait", "upstream_ttft", "tool")
"""``done`` timings recorded per turn (the time spent inside the service, by part)."""


class SessionTally:
    """Per-session and per-turn measurements; mergeable across Locust workers."""

    COUNTERS = (
        "started",
        "completed",
        "failed",
        "cut_off",
        "turns_completed",
        "agent_turns",
        "history_drops",
    )

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self.failed_at_turn: dict[str, int] = {}
        self.failed_by_outcome: dict[str, int] = {}
        self.hists: dict[str, Any] = {}
        self.prompt_by_turn: dict[str, list[int]] = {}
        """turn number -> [turns, prompt tokens reported]: how the history grows."""

    def _record_ms(self, name: str, ms: float) -> None:
        hist = self.hists.get(name)
        if hist is None:
            hist = self.hists[name] = new_histogram()
        hist.record_value(min(max(1, int(ms * 1000)), 3_600_000_000))

    def record_turn(
        self,
        timings_ms: Mapping[str, float],
        ttft_ms: float | None,
        number: int = 1,
        prompt_tokens: int | None = None,
        agent: bool = False,
    ) -> None:
        """A turn that completed: its TTFT seen by the client, the service's timings, the
        prompt tokens the service reported for it (all of its LLM calls), and whether it asked
        for agent mode (its TTFT is then also kept apart, as ``agent_turn_ttft_ms``)."""
        self.counts["turns_completed"] += 1
        if agent:
            self.counts["agent_turns"] += 1
        if prompt_tokens is not None:
            key = str(min(number, MAX_TURNS))
            entry = self.prompt_by_turn.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += prompt_tokens
        if ttft_ms is not None:
            self._record_ms("turn_ttft_ms", ttft_ms)
            if agent:
                self._record_ms("agent_turn_ttft_ms", ttft_ms)
        for part in TURN_TIMINGS:
            value = timings_ms.get(part)
            if value is not None:
                self._record_ms(f"turn_{part}_ms", value)

    def record_session(
        self,
        *,
        turns_planned: int,
        turns_completed: int,
        duration_s: float,
        final_ttft_ms: float | None,
        failed_outcome: str = "",
        history_drops: int = 0,
        cut_off: bool = False,
    ) -> None:
        """A finished session; ``failed_outcome`` is the failing turn's outcome ("" = ok);
        ``cut_off``: the run stopped before the session ended (neither completed nor failed;
        a turn in flight then is counted ``unfinished`` among the requests)."""
        c = self.counts
        c["started"] += 1
        c["history_drops"] += history_drops
        if cut_off:
            c["cut_off"] += 1
            return
        if failed_outcome:
            c["failed"] += 1
            turn = str(turns_completed + 1)
            self.failed_at_turn[turn] = self.failed_at_turn.get(turn, 0) + 1
            self.failed_by_outcome[failed_outcome] = (
                self.failed_by_outcome.get(failed_outcome, 0) + 1
            )
            return
        c["completed"] += 1
        self._record_ms("session_duration_ms", duration_s * 1000.0)
        self._record_ms("session_turns", float(turns_completed))  # stored as "ms" = count
        if final_ttft_ms is not None:
            self._record_ms("final_answer_ttft_ms", final_ttft_ms)

    def drain(self) -> dict[str, Any]:
        data = {
            "counts": dict(self.counts),
            "failed_at_turn": dict(self.failed_at_turn),
            "failed_by_outcome": dict(self.failed_by_outcome),
            "hists": {k: encode_histogram(h) for k, h in self.hists.items()},
            "prompt_by_turn": {k: list(v) for k, v in self.prompt_by_turn.items()},
        }
        self._reset()
        return data

    def merge_dict(self, data: Mapping[str, Any]) -> None:
        for key, n in data.get("counts", {}).items():
            if key in self.counts:
                self.counts[key] += int(n)
        for key, n in data.get("failed_at_turn", {}).items():
            self.failed_at_turn[str(key)] = self.failed_at_turn.get(str(key), 0) + int(n)
        for key, n in data.get("failed_by_outcome", {}).items():
            self.failed_by_outcome[str(key)] = self.failed_by_outcome.get(str(key), 0) + int(n)
        for key, (n, tokens) in data.get("prompt_by_turn", {}).items():
            entry = self.prompt_by_turn.setdefault(str(key), [0, 0])
            entry[0] += int(n)
            entry[1] += int(tokens)
        for key, text in data.get("hists", {}).items():
            hist = self.hists.get(key)
            if hist is None:
                hist = self.hists[key] = new_histogram()
            hist.decode_and_add(str(text).encode("ascii"))

    def block(self) -> dict[str, Any] | None:
        """summary.json's ``sessions`` block; None when no session ran."""
        c = self.counts
        if not c["started"]:
            return None
        stats: dict[str, Any] = {}
        for name, hist in sorted(self.hists.items()):
            s = stats_from_histogram(hist)
            if name == "session_turns":  # a count, recorded in thousandths
                stats["turns_per_session"] = {
                    "mean": _round(s.mean), "p50": _round(s.p50), "max": _round(s.max)
                }  # fmt: skip
                continue
            stats[name] = {
                "count": s.count,
                "mean": s.mean,
                "p50": s.p50,
                "p90": s.p90,
                "p99": s.p99,
                "max": s.max,
            }
        return {
            "started": c["started"],
            "completed": c["completed"],
            "failed": c["failed"],
            "cut_off": c["cut_off"],
            "turns_completed": c["turns_completed"],
            "agent_turns": c["agent_turns"],
            "history_drops": c["history_drops"],
            "failed_at_turn": dict(sorted(self.failed_at_turn.items(), key=lambda kv: int(kv[0]))),
            "failed_by_outcome": dict(sorted(self.failed_by_outcome.items())),
            "prompt_tokens_by_turn": {
                k: round(tokens / n, 1)
                for k, (n, tokens) in sorted(self.prompt_by_turn.items(), key=lambda kv: int(kv[0]))
                if n
            },
            **stats,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
