"""The scheduler: one discrete-event core that drives every running stream of the process.

It never reads a clock: callers pass `now` (seconds, monotonic) to `submit`, `cancel` and
`advance`, and ask `next_deadline()` when to call `advance` again. The server calls it from one
timer; unit tests call it with a fake clock.

Hosted mode: streams are independent; each has its own TTFT and ITL draws. Due streams sit in a
wheel of 1 ms buckets, so one timer serves all of them and the work of a busy moment is spread
over buckets instead of one batch.

Engine mode: continuous batching as in vLLM. One step at a time; at its start the waiting queue
(FIFO) is admitted while fewer than `max_num_seqs` run, every running sequence past prefill gets
one decode token, and prefill chunks fill the rest of the `max_batched_tokens` budget. At the
step's end each decoded sequence emits its token, and a sequence whose prefill finished emits its
first token. With `frontend_tokens_per_s` set, the step's tokens go to a frontend queue instead,
which sends them in order at that rate (the engine frees a slot at its last computed token).

Both modes cap running sequences at `max_num_seqs` (0 = no cap); the others wait in FIFO order.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from mock_llm.latency import HostedModel, StepModel
from mock_llm.metrics import MockStats
from mock_llm.settings import MockSettings

PENDING, WAITING, RUNNING, DONE = 0, 1, 2, 3


class Emitter(Protocol):
    def emit(self, seq: Sequence, n: int, now: float, done: bool) -> bool:
        """Send tokens seq.sent .. seq.sent + n - 1 (then the end, if `done`).

        Return False when the receiver is gone (the sequence is then dropped)."""


@dataclass(slots=True, eq=False)
class Sequence:
    """One generation: what it must send and where it stands."""

    prompt_tokens: int
    out_tokens: int
    sink: Emitter
    rng: random.Random
    extra_ttft_s: float = 0.0
    stall_at: int = -1
    stall_s: float = 0.0
    # scheduler state
    state: int = PENDING
    sent: int = 0
    made: int = 0  # engine mode: tokens computed (more than `sent` while the frontend lags)
    gone: bool = False  # the client left (queued tokens are dropped)
    arrival: float = 0.0
    admitted_at: float = 0.0
    last_at: float = 0.0
    due: float = 0.0
    due_key: int = -1
    prefill_left: int = 0
    finish_reason: str = ""


@dataclass
class Scheduler:
    settings: MockSettings
    stats: MockStats = field(default_factory=MockStats)

    def __post_init__(self) -> None:
        s = self.settings
        self.engine = s.mode == "engine"
        self.hosted = HostedModel.from_settings(s)
        self.step_model = StepModel.from_settings(s)
        self.rng = random.Random(f"engine:{s.seed}")
        self.overhead_s = s.ttft_overhead_ms / 1000.0 if self.engine else 0.0
        # a fixed ITL needs no draw per token (-1: draw from the model)
        self._fixed_itl_s = s.itl_ms / 1000.0 if s.itl_cv <= 0.0 else -1.0
        self.cap = s.max_num_seqs if s.max_num_seqs > 0 else math.inf
        self._prefill_first = s.prefill_policy == "prefill_first"
        self.n_running = 0
        self.n_waiting = 0
        self._waiting: deque[Sequence] = deque()
        self._arrivals: list[tuple[float, int, Sequence]] = []  # delayed entries (slow first token)
        self._arrival_no = 0
        # hosted: wheel of 1 ms buckets
        self._wheel: dict[int, list[Sequence]] = {}
        self._keys: list[int] = []
        # engine: the step in flight
        self._running: list[Sequence] = []
        self._step_end: float | None = None
        self._idle_until: float | None = None
        self._decode: list[Sequence] = []
        self._prefilled: list[Sequence] = []
        # engine: the frontend's token queue (0 = tokens go out at their step's end)
        self._token_s = 1.0 / s.frontend_tokens_per_s if s.frontend_tokens_per_s > 0 else 0.0
        # (when the frontend is done with a step's tokens, [(sequence, its last token?)])
        self._out: deque[tuple[float, list[tuple[Sequence, bool]]]] = deque()
        self._out_free = 0.0

    # ----------------------------------------------------------------- public API
    def can_accept(self) -> bool:
        """False when the waiting queue is capped and full (the request should be rejected)."""
        mw = self.settings.max_waiting
        return mw <= 0 or self.n_running < self.cap or self.n_waiting < mw

    def submit(self, seq: Sequence, now: float) -> None:
        """A new request arrives at `now`."""
        seq.arrival = now
        delay = seq.extra_ttft_s + self.overhead_s
        if delay > 0.0 and self.engine:
            # frontend time (and a slow-first-token fault) before the request reaches the engine
            self._arrival_no += 1
            heapq.heappush(self._arrivals, (now + delay, self._arrival_no, seq))
            return
        self._enter(seq, now)

    def cancel(self, seq: Sequence, now: float) -> None:
        """The client left: free the slot at once."""
        seq.gone = True
        if seq.state == DONE:
            return
        if seq.state == WAITING:
            seq.state = DONE
            self.n_waiting -= 1
            self._waiting.remove(seq)
            return
        if seq.state == PENDING:
            seq.state = DONE
            return
        self._finish(seq, now, "abort")

    def next_deadline(self) -> float | None:
        """When `advance` must run next (None: nothing is scheduled)."""
        best = math.inf
        if self._arrivals:
            best = self._arrivals[0][0]
        if self._keys:
            best = min(best, self._keys[0] / 1000.0)
        if self._step_end is not None:
            best = min(best, self._step_end)
        elif self._idle_until is not None:
            best = min(best, self._idle_until)
        if self._out:
            best = min(best, self._out[0][0])
        return None if best == math.inf else best

    def advance(self, now: float) -> None:
        """Run everything due at or before `now`, in time order."""
        if self.engine:
            self._advance_engine(now)
            return
        arrivals, keys, wheel = self._arrivals, self._keys, self._wheel
        now_key = int(now * 1000.0)
        while arrivals and arrivals[0][0] <= now:
            at, _, seq = heapq.heappop(arrivals)
            if seq.state == PENDING:
                self._enter(seq, at)
        while keys and keys[0] <= now_key:
            key = heapq.heappop(keys)
            for seq in wheel.pop(key):
                if seq.state == RUNNING and seq.due_key == key:
                    self._fire(seq, now)

    # ----------------------------------------------------------------- shared
    def _enter(self, seq: Sequence, now: float) -> None:
        if self.n_running < self.cap:
            self._admit(seq, now)
        else:
            seq.state = WAITING
            self.n_waiting += 1
            self._waiting.append(seq)

    def _admit(self, seq: Sequence, now: float) -> None:
        seq.state = RUNNING
        seq.admitted_at = now
        self.n_running += 1
        self.stats.queue_s.observe(now - seq.arrival)
        self.stats.prompt_tokens += seq.prompt_tokens
        if self.engine:
            seq.prefill_left = max(1, seq.prompt_tokens)
            seq.due = now
            self._running.append(seq)
            if self._step_end is None:
                self._start_step(now)
        else:
            ttft_s = self.hosted.ttft_draw_ms(seq.prompt_tokens, seq.rng) / 1000.0
            self._schedule(seq, now + ttft_s + seq.extra_ttft_s)

    def _finish(self, seq: Sequence, now: float, reason: str) -> None:
        seq.state = DONE
        self.n_running -= 1
        stats = self.stats
        stats.bump(stats.requests_finished, reason)
        stats.e2e_s.observe(now - seq.arrival)
        if reason == "abort":
            stats.disconnects += 1
        if self.engine:
            # the waiting queue is admitted at the next step boundary, as in vLLM's scheduler
            if self._waiting and self._step_end is None:
                self._idle_until = None
                self._start_step(now)
            return
        while self._waiting and self.n_running < self.cap:
            nxt = self._waiting.popleft()
            self.n_waiting -= 1
            self._admit(nxt, now)

    def _record_emit(self, seq: Sequence, n: int, now: float) -> None:
        stats = self.stats
        if seq.sent == 0:
            stats.ttft_s.observe(now - seq.arrival)
            if n > 1:
                stats.itl_s.observe(0.0, n - 1)
        else:
            stats.itl_s.observe(now - seq.last_at)
            if n > 1:
                stats.itl_s.observe(0.0, n - 1)
        stats.generation_tokens += n
        seq.last_at = now

    # ----------------------------------------------------------------- hosted mode
    def _schedule(self, seq: Sequence, due: float) -> None:
        seq.due = due
        key = int(due * 1000.0)
        seq.due_key = key
        bucket = self._wheel.get(key)
        if bucket is None:
            self._wheel[key] = [seq]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(seq)

    def _fire(self, seq: Sequence, now: float) -> None:
        """Emit the tokens of `seq` that are due by `now` (usually one) and schedule the next."""
        out = seq.out_tokens
        sent = seq.sent
        due = seq.due
        n = 0
        itl_s = self._fixed_itl_s
        while True:
            n += 1
            after = sent + n
            if after >= out:
                break
            if after == seq.stall_at:
                due += seq.stall_s
            due += itl_s if itl_s >= 0.0 else self.hosted.itl_draw_ms(seq.rng) / 1000.0
            if due > now:
                break
        done = sent + n >= out
        stats = self.stats
        if sent and n == 1:  # the common case, inlined from _record_emit
            stats.itl_s.observe(now - seq.last_at)
            stats.generation_tokens += 1
            seq.last_at = now
        else:
            self._record_emit(seq, n, now)
        alive = seq.sink.emit(seq, n, now, done)
        seq.sent = sent + n
        if done:
            self._finish(seq, now, seq.finish_reason or "stop")
        elif not alive:
            self._finish(seq, now, "abort")
        else:
            seq.due = due
            key = int(due * 1000.0)
            seq.due_key = key
            bucket = self._wheel.get(key)
            if bucket is None:
                self._wheel[key] = [seq]
                heapq.heappush(self._keys, key)
            else:
                bucket.append(seq)

    # ----------------------------------------------------------------- engine mode
    def _advance_engine(self, now: float) -> None:
        arrivals, out = self._arrivals, self._out
        while True:
            ta = arrivals[0][0] if arrivals else math.inf
            ts = self._step_end if self._step_end is not None else self._idle_until
            ts = math.inf if ts is None else ts
            td = out[0][0] if out else math.inf
            t = min(ta, ts, td)
            if t > now:
                return
            if td <= t:
                self._deliver(td)
            elif ta <= ts:
                _, _, seq = heapq.heappop(arrivals)
                if seq.state == PENDING:
                    self._enter(seq, ta)
            elif self._step_end is not None:
                self._end_step(ts, now)
            else:
                self._idle_until = None
                self._start_step(ts)

    def _enter_waiting_engine(self, t: float) -> None:
        waiting = self._waiting
        while waiting and self.n_running < self.cap:
            seq = waiting.popleft()
            self.n_waiting -= 1
            seq.state = RUNNING
            seq.admitted_at = t
            seq.prefill_left = max(1, seq.prompt_tokens)
            seq.due = t
            self.n_running += 1
            self.stats.queue_s.observe(t - seq.arrival)
            self.stats.prompt_tokens += seq.prompt_tokens
            self._running.append(seq)

    def _start_step(self, t: float) -> None:
        self._enter_waiting_engine(t)
        decode: list[Sequence] = []
        prefilled: list[Sequence] = []
        budget = self.settings.max_batched_tokens
        prefill_tokens = 0
        kv_tokens = 0
        next_due = math.inf
        prefill_waiting = False
        for seq in self._running:
            if seq.state != RUNNING:
                continue
            if seq.prefill_left == 0:
                if seq.due <= t:
                    decode.append(seq)
                    kv_tokens += seq.prompt_tokens + seq.made
                else:
                    next_due = min(next_due, seq.due)
            else:
                prefill_waiting = True
        if self._prefill_first and prefill_waiting:
            # prefill-first (vLLM without chunked prefill, SGLang's default): while prompts wait,
            # a step prefills them alone and the running sequences skip their decode token
            decode = []
            kv_tokens = 0
        budget -= len(decode)
        for seq in self._running:
            if budget <= 0:
                break
            if seq.state == RUNNING and seq.prefill_left > 0:
                take = min(seq.prefill_left, budget)
                seq.prefill_left -= take
                budget -= take
                prefill_tokens += take
                if seq.prefill_left == 0:
                    prefilled.append(seq)
        if not decode and prefill_tokens == 0:
            self._step_end = None
            self._idle_until = None if next_due == math.inf else next_due
            return
        self._decode, self._prefilled = decode, prefilled
        self.stats.batch_size.observe(len(decode) + len(prefilled))
        ms = self.step_model.step_ms(len(decode), prefill_tokens, self.rng, kv_tokens)
        self._step_end = t + ms / 1000.0

    def _end_step(self, t: float, now: float) -> None:
        if self._token_s > 0.0:
            self._end_step_queued(t, now)
            return
        stats = self.stats
        # the common case, inlined from _record_emit: most sequences of a step share one gap
        # (they decoded in the previous step too), so gaps are counted, then observed once each
        gaps: dict[float, int] = {}
        for group in (self._decode, self._prefilled):
            for seq in group:
                if seq.state != RUNNING:
                    continue
                done = seq.sent + 1 >= seq.out_tokens
                if seq.sent:
                    gap = now - seq.last_at
                    gaps[gap] = gaps.get(gap, 0) + 1
                    stats.generation_tokens += 1
                    seq.last_at = now
                else:
                    self._record_emit(seq, 1, now)
                alive = seq.sink.emit(seq, 1, now, done)
                seq.sent += 1
                seq.made = seq.sent
                if seq.sent == seq.stall_at:
                    seq.due = t + seq.stall_s
                if done:
                    self._finish(seq, now, seq.finish_reason or "stop")
                elif not alive:
                    self._finish(seq, now, "abort")
        for gap, n in gaps.items():
            stats.itl_s.observe(gap, n)
        self._next_step(t)

    def _end_step_queued(self, t: float, now: float) -> None:
        """The step's tokens go to the frontend as one batch: the frontend handles batches in
        order, each taking 1 / rate seconds per token, and sends a batch's tokens when it is
        done with it. A sequence leaves the engine (its slot is free) at its last computed token."""
        batch: list[tuple[Sequence, bool]] = []
        for group in (self._decode, self._prefilled):
            for seq in group:
                if seq.state != RUNNING:
                    continue
                seq.made += 1
                done = seq.made >= seq.out_tokens
                batch.append((seq, done))
                if seq.made == seq.stall_at:
                    seq.due = t + seq.stall_s
                if done:
                    self._finish(seq, now, seq.finish_reason or "stop")
        if batch:
            self._out_free = max(self._out_free, now) + self._token_s * len(batch)
            self._out.append((self._out_free, batch))
        self._next_step(t)

    def _deliver(self, t: float) -> None:
        """Send the frontend's batches that are done by `t` (the client sees them then)."""
        out = self._out
        while out and out[0][0] <= t:
            at, batch = out.popleft()
            for seq, done in batch:
                if seq.gone:
                    continue  # the client left: its queued tokens are dropped
                self._record_emit(seq, 1, at)
                alive = seq.sink.emit(seq, 1, at, done)
                seq.sent += 1
                if not alive and not done:
                    seq.gone = True
                    if seq.state == RUNNING:
                        self._finish(seq, at, "abort")

    def _next_step(self, t: float) -> None:
        self._running = [s for s in self._running if s.state == RUNNING]
        self._decode, self._prefilled = [], []
        self._step_end = None
        if self._running or self._waiting:
            self._start_step(t)
