"""The agent-session Locust user: multi-turn conversations through the service's /chat/stream.

Imported only by the locustfile, which builds the user class on its shared base with one line
(``AgentSessionUser = session_user_class(_SurgeUser)``), so the stream reading, recording and
Locust reporting stay in one place. Each turn is one request in every per-request metric (TTFT,
ITL, outcomes); the session as a whole goes into the process's `SessionTally`
(summary.json's ``sessions`` block). The plan (turns, think times, sizes) comes from
`loadtests.sessions`, including whether a turn asks the service for agent mode
(``agent_steps`` in its body).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_RUNNING, LOCUST_STATE_WAITING

from loadtests import outcomes as oc
from loadtests.recorder import RequestRecord
from loadtests.sessions import Conversation, SessionPlanner, SessionSettings, SessionTally
from loadtests.stream import ServiceStreamTracker, StreamTracker


class _Sessions(Protocol):
    """What the session user needs from the process state (``SurgeState.workload``)."""

    session_planner: SessionPlanner
    session_tally: SessionTally
    session_settings: SessionSettings


def session_user_class(base: type[Any]) -> type[Any]:
    """`AgentSessionUser` on the locustfile's shared user base."""

    class AgentSessionUser(base):  # type: ignore[misc,valid-type]
        """Agent sessions through the service: N turns, think time, a growing history."""

        _sessions_run = 0

        def request(self) -> None:
            import gevent

            state: _Sessions = self.state.workload
            plan = state.session_planner.plan()
            self._sessions_run += 1
            conv = Conversation(
                key=id(self) ^ self._sessions_run,
                max_history_tokens=state.session_settings.max_history_tokens,
            )
            started = time.monotonic()
            measured = time.time_ns() >= self.state.recorder.measure_from_ns  # not warm-up
            tally = state.session_tally if measured else SessionTally()
            completed = 0
            final_ttft_ms: float | None = None
            failed = ""

            def cut_off() -> None:
                """The run stopped mid-session: neither completed nor failed."""
                tally.record_session(
                    turns_planned=len(plan),
                    turns_completed=completed,
                    duration_s=time.monotonic() - started,
                    final_ttft_ms=None,
                    cut_off=True,
                    history_drops=conv.dropped_messages,
                )

            for turn in plan:
                try:
                    if turn.think_s > 0 and not self.state.stopping:
                        # as Locust's own wait: a user stopped while waiting is stopped at once
                        self._state = LOCUST_STATE_WAITING
                        gevent.sleep(turn.think_s)
                        self._state = LOCUST_STATE_RUNNING
                except gevent.GreenletExit:  # stopped in think time
                    cut_off()
                    raise
                if self.state.stopping:  # no new turn (nor think time) once the test stops
                    cut_off()
                    raise StopUser()
                body = turn.body(conv.ask(turn.user_tokens))
                tracker = ServiceStreamTracker(
                    time.time_ns(), self._intended if turn.number == 1 else None
                )
                try:
                    record = self._turn(body, tracker)
                except gevent.GreenletExit:  # the turn was in flight (counted unfinished)
                    cut_off()
                    raise
                if record.outcome != oc.OK:
                    failed = record.outcome
                    break
                completed += 1
                ttft = record.ttft_ns
                final_ttft_ms = None if ttft is None else ttft / 1e6
                tally.record_turn(
                    record.timings_ms,
                    final_ttft_ms,
                    turn.number,
                    record.prompt_tokens,
                    agent=turn.is_agent or "tool" in record.timings_ms,
                )
                # usage counts every LLM call of the turn (agent mode); the answer is the last
                # call's, capped by max_tokens
                conv.answered(min(record.output_tokens, turn.max_tokens))
            self._last_outcome = failed or oc.OK
            tally.record_session(
                turns_planned=len(plan),
                turns_completed=completed,
                duration_s=time.monotonic() - started,
                final_ttft_ms=final_ttft_ms,
                failed_outcome=failed,
                history_drops=conv.dropped_messages,
            )

        def _turn(self, body: dict[str, Any], tracker: StreamTracker) -> RequestRecord:
            """One turn over the base's stream reader; the tracker's record is the result."""
            self._stream("/chat/stream", body, tracker, "/chat/stream (session turn)")
            return tracker.record

    return AgentSessionUser
