"""The Locust side of trace replay and agent sessions, kept on ``SurgeState.workload``.

Imported only by hooks.py (it uses gevent). Trace replay: a dispatcher greenlet sleeps until each
row of this process's share is due and puts it in a queue the users take from; a row that finds
the backlog full (every user busy and ``users`` rows already waiting) is dropped. Its
`ArrivalBook` also feeds the run's ``open_loop`` counts (so dropped rows make the run invalid,
as for ``--rate``) and its `TraceTally` becomes summary.json's ``trace`` block. Sessions: the
planner the session users draw from and the `SessionTally` for the ``sessions`` block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
from gevent.queue import Queue

from loadtests import outcomes as oc
from loadtests.arrivals import MAX_CATCH_UP_S, ArrivalBook, ArrivalSettings
from loadtests.recorder import RequestRecord
from loadtests.sessions import SessionPlanner, SessionSettings, SessionTally
from loadtests.settings import RunSettings
from loadtests.trace import ReplayItem, Trace, TraceTally, TraceWindow, load_trace, trace_source

REPORT_KEY = "workload"


def session_settings(settings: RunSettings) -> SessionSettings:
    return SessionSettings(
        turns=settings.session_turns,
        think_ms=settings.session_think_ms,
        user_tokens=settings.session_user_tokens,
        answer_tokens=settings.session_answer_tokens,
        max_history_tokens=settings.session_max_history_tokens,
        agent_share=settings.session_agent_share,
        agent_steps=settings.session_agent_steps,
        seed=settings.seed,
    )


class Workload:
    """Trace replay (when ``settings.trace``) and session accounting of one Locust process."""

    def __init__(self, settings: RunSettings, worker_index: int) -> None:
        self.settings = settings
        self.worker_index = worker_index
        self.session_settings = session_settings(settings)
        self.session_planner = SessionPlanner(
            replace(self.session_settings, seed=settings.seed * 1000 + worker_index)
        )
        self.session_tally = SessionTally()
        self.trace_tally: TraceTally | None = TraceTally() if settings.trace else None
        self.trace: Trace | None = None
        self.book: ArrivalBook | None = None
        self.queue: Queue | None = None
        self._start_ns = 0
        self._dispatcher: Any = None

    @property
    def replaying(self) -> bool:
        return self.queue is not None

    def window(self) -> TraceWindow:
        s = self.settings
        return TraceWindow(
            start_s=s.trace_start_s, duration_s=s.duration_s, speedup=s.trace_speedup
        )

    def start(
        self, now_ns: int, users: int, spawn: Callable[..., Any], measure_from_ns: int
    ) -> None:
        """A process that runs users: load its share of the trace, start the dispatcher."""
        self.session_tally = SessionTally()
        if not self.settings.trace:
            return
        processes = max(1, self.settings.processes)
        self.trace = load_trace(Path(self.settings.trace), self.window())
        self.trace_tally = TraceTally()
        self.book = ArrivalBook(ArrivalSettings(rate_per_s=1.0), max(1, users // processes))
        self.queue = Queue()
        self._start_ns = now_ns
        share = self.worker_index % processes
        self._dispatcher = gevent.spawn(self._dispatch, share, processes, now_ns, measure_from_ns)
        spawn(self._dispatcher)

    def stop(self) -> None:
        """The test is stopping: no row is sent from now on (those left are ``not_sent``);
        users waiting for a row get None and stop."""
        if self._dispatcher is not None:
            self._dispatcher.kill(block=False)
        if self.queue is not None:
            self.queue.put_nowait(None)

    def _dispatch(self, share: int, shares: int, start_ns: int, measure_from_ns: int) -> None:
        assert self.trace is not None and self.book is not None and self.queue is not None
        tally = self.trace_tally
        assert tally is not None
        for item in self.trace.schedule(share, shares):  # the window, counted up front
            tally.record_scheduled(item)
        catch_up_from_ns = time.time_ns() - int(MAX_CATCH_UP_S * 1e9)
        for item in self.trace.schedule(share, shares):  # rows are built as they fall due
            intended = start_ns + int(item.offset_s * 1e9)
            if intended < catch_up_from_ns:
                continue  # due long before this worker joined: not sent (`MAX_CATCH_UP_S`)
            delay_s = (intended - time.time_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
            counted = intended >= measure_from_ns
            if self.book.offer(self.queue.qsize(), counted):
                self.queue.put_nowait((intended, item))
            else:
                tally.record_dropped()

    def next_arrival(self, measure_from_ns: int) -> tuple[int, ReplayItem] | None:
        """Replay: block until a row is due and return (intended ns, row); else None at once."""
        if self.queue is None or self.book is None:
            return None
        due = self.queue.get()
        if due is None:  # the test is stopping (`stop`): wake the next waiting user too
            self.queue.put_nowait(None)
            return None
        intended, item = due
        now_ns = time.time_ns()
        self.book.take(intended, now_ns, intended >= measure_from_ns)
        if self.trace_tally is not None:
            self.trace_tally.record_sent(now_ns - intended, (now_ns - self._start_ns) / 1e9)
        return intended, item

    def completed(self, item: ReplayItem, record: RequestRecord) -> None:
        """A replayed row's request ended: compare its lengths when it succeeded."""
        if self.trace_tally is None:
            return
        self.trace_tally.record_finished()
        if record.outcome != oc.OK:
            return
        ttft = record.ttft_ns
        self.trace_tally.record_completed(
            prompt_requested=item.prompt_tokens,
            prompt_reported=record.prompt_tokens,
            output_requested=item.output_tokens,
            output_received=record.output_tokens,
            ttft_ms=None if ttft is None else ttft / 1e6,
        )

    # -- distribution --------------------------------------------------------------------------
    def drain(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sessions": self.session_tally.drain()}
        if self.trace_tally is not None:
            data["trace"] = self.trace_tally.drain()
        return data

    def merge(self, data: Mapping[str, Any] | None) -> None:
        if not data:
            return
        self.session_tally.merge_dict(data.get("sessions") or {})
        trace = data.get("trace")
        if trace is not None:
            if self.trace_tally is None:
                self.trace_tally = TraceTally()
            self.trace_tally.merge_dict(trace)

    def blocks(self) -> dict[str, Any]:
        """The summary's ``trace`` and ``sessions`` blocks (None where absent)."""
        trace_block = None
        if self.trace_tally is not None and self.settings.trace:
            if self.trace is not None:
                source = trace_source(self.trace)
            else:  # the master of distributed workers does not read the file
                w = self.window()
                source = {"file": self.settings.trace, "start_s": w.start_s,
                          "duration_s": w.duration_s, "speedup": w.speedup}  # fmt: skip
            trace_block = self.trace_tally.block(source)
        return {"trace": trace_block, "sessions": self.session_tally.block()}
