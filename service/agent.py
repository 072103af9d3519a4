"""The work of one admitted request: K LLM calls (agent mode) or one (plain relay), with deadlines.

Agent mode (`--agent-steps K`, K > 1, or a request's own ``agent_steps``) imitates a tool-using
agent: call 1 plans, calls 2..K-1 read a tool result and decide, call K answers; after each
non-final call a simulated tool runs for a drawn latency (`ToolLatency`: `--tool-latency-ms`,
lognormal around it with `--tool-latency-sigma`, seeded by `--seed`). Only the answer is relayed
as tokens; each call is announced by a `thinking` event. All calls go through the same pool and
the same slot.

Deadlines share one `asyncio.timeout` scope, moved forward as the request progresses: the
TTFT deadline while a call waits for its first token, the idle deadline between tokens, and the
total deadline (from arrival) whenever it is nearer. `RequestTimeout.stage` says which fired.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import RequestTimeout
from .settings import ServiceSettings
from .upstream import CallTiming, UpstreamClient, Usage

TokenSink = Callable[[list[str]], Awaitable[None]]
StepSink = Callable[[str, int], Awaitable[None]]


@dataclass
class Timings:
    """Where one request's time went (clock seconds; reported in ms)."""

    t_arrival: float
    t_enter: float | None = None
    t_granted: float | None = None
    t_first_out: float | None = None
    t_end: float | None = None
    pool_wait_s: float = 0.0
    upstream_ttft_s: float = 0.0
    tool_s: float = 0.0
    calls: int = 0
    steps: int = 0
    """LLM calls the request was to make (set when its work starts); > 1: agent mode."""

    def as_ms(self, now: float) -> dict[str, float]:
        """The breakdown of the time to first token, plus the total (and ``tool`` in agent mode).

        queue_wait + pool_wait + upstream_ttft (+ tool) + relay_overhead = time to first token
        (or to the end, when no token was sent). relay_overhead is the service's own share:
        reading and validating the body, scheduling, parsing and writing the first event.
        """
        end = self.t_end if self.t_end is not None else now
        first = self.t_first_out if self.t_first_out is not None else end
        granted = self.t_granted if self.t_granted is not None else first
        entered = self.t_enter if self.t_enter is not None else granted
        queue = max(0.0, granted - entered)
        ttft = first - self.t_arrival
        relay = ttft - queue - self.pool_wait_s - self.upstream_ttft_s - self.tool_s
        out = {
            "queue_wait": round(queue * 1000, 3),
            "pool_wait": round(self.pool_wait_s * 1000, 3),
            "upstream_ttft": round(self.upstream_ttft_s * 1000, 3),
            "relay_overhead": round(relay * 1000, 3),
            "ttft": round(ttft * 1000, 3),
            "total": round((end - self.t_arrival) * 1000, 3),
        }
        if self.steps > 1:
            out["tool"] = round(self.tool_s * 1000, 3)
        return out


STEP_NAMES = ("plan", "tool", "answer")


def step_name(index: int, steps: int) -> str:
    if index == steps - 1:
        return "answer"
    return "plan" if index == 0 else "tool"


MAX_TOOL_LATENCY_MS = 3_600_000.0
"""Longest single tool latency drawn (a lognormal tail is clipped here; the request's total
timeout ends the wait sooner anyway)."""


class ToolLatency:
    """Seeded draws of one simulated tool call's latency, in seconds.

    ``median_ms x LogNormal(0, sigma)``: ``median_ms`` is the median of the draws, and with
    ``sigma`` 0 every draw is exactly ``median_ms``. One RNG per process (seeded with ``seed``),
    drawn once per tool call in the order the calls finish their LLM step, so a process started
    with the same seed draws the same sequence.
    """

    def __init__(self, median_ms: float, sigma: float, seed: int) -> None:
        if not (0.0 <= median_ms <= MAX_TOOL_LATENCY_MS and 0.0 <= sigma <= 5.0):
            raise ValueError(f"tool latency {median_ms} ms, sigma {sigma}: out of range")
        self.median_ms = median_ms
        self.sigma = sigma
        self._rng = random.Random(f"tool-latency:{seed}")

    @classmethod
    def from_settings(cls, s: ServiceSettings) -> ToolLatency:
        return cls(s.tool_latency_ms, s.tool_latency_sigma, s.seed)

    def draw_s(self) -> float:
        ms = self.median_ms
        if self.sigma > 0.0 and ms > 0.0:
            ms = min(MAX_TOOL_LATENCY_MS, ms * self._rng.lognormvariate(0.0, self.sigma))
        return ms / 1000.0


class Agent:
    """Runs the upstream calls of one request against its deadlines."""

    def __init__(
        self, settings: ServiceSettings, upstream: UpstreamClient, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.clock = clock
        self.tool_latency = ToolLatency.from_settings(settings)

    async def run(
        self,
        question: str,
        max_tokens: int | None,
        timings: Timings,
        on_tokens: TokenSink,
        on_step: StepSink | None = None,
        steps: int | None = None,
    ) -> Usage:
        """Make the calls (``steps``, or the service's ``--agent-steps`` when None); relay the
        answer's tokens through `on_tokens`. Raises on failure."""
        s = self.settings
        steps = s.agent_steps if steps is None else steps
        timings.steps = steps
        loop = asyncio.get_running_loop()
        remaining = s.timeout_s - (self.clock() - timings.t_arrival)
        total_at = loop.time() + remaining
        stage = "total"
        usage = Usage()
        try:
            async with asyncio.timeout(total_at) as scope:

                def arm(kind: str, seconds: float) -> None:
                    nonlocal stage
                    at = loop.time() + seconds
                    if at < total_at:
                        scope.reschedule(at)
                        stage = kind
                    else:
                        scope.reschedule(total_at)
                        stage = "total"

                messages: list[dict[str, str]] = [{"role": "user", "content": question}]
                for index in range(steps):
                    final = index == steps - 1
                    if on_step is not None and steps > 1:
                        await on_step(step_name(index, steps), index + 1)
                    timing = CallTiming(t_start=self.clock())
                    arm("ttft", s.ttft_timeout_s)
                    pieces: list[str] = []
                    async with self.upstream.call(
                        messages, max_tokens if final else None, timing
                    ) as call:
                        timings.calls += 1
                        before_first = timings.t_first_out is None
                        if before_first:
                            timings.pool_wait_s += timing.pool_wait_s
                        async for tokens in call.chunks():
                            arm("idle", s.idle_timeout_s)
                            if final:
                                if timings.t_first_out is None:
                                    t_first = timing.t_first
                                    assert t_first is not None
                                    timings.upstream_ttft_s += t_first - timing.connected_at
                                    timings.t_first_out = self.clock()
                                await on_tokens(tokens)
                            else:
                                pieces.extend(tokens)
                        usage.add(call.usage)
                    self._observe(timing)
                    if not final:
                        t_end = timing.t_end if timing.t_end is not None else self.clock()
                        timings.upstream_ttft_s += t_end - timing.connected_at
                        messages.append({"role": "assistant", "content": "".join(pieces)})
                        messages.append({"role": "user", "content": "tool result: ok"})
                        tool_s = self.tool_latency.draw_s()
                        if tool_s > 0:
                            arm("total", s.timeout_s)
                            t0 = self.clock()
                            await asyncio.sleep(tool_s)
                            timings.tool_s += self.clock() - t0
        except TimeoutError:
            raise RequestTimeout(self._timeout_message(stage), stage) from None
        timings.t_end = self.clock()
        return usage

    def _observe(self, timing: CallTiming) -> None:
        m = self.upstream.metrics
        if timing.t_first is not None:
            m.upstream_ttft.observe(timing.t_first - timing.connected_at)
        if timing.t_end is not None:
            m.upstream_latency.observe(timing.t_end - timing.t_start)

    def _timeout_message(self, stage: str) -> str:
        s = self.settings
        if stage == "ttft":
            return f"no first token from the LLM within {s.ttft_timeout_s:g} s"
        if stage == "idle":
            return f"no token for {s.idle_timeout_s:g} s"
        return f"request exceeded its total timeout of {s.timeout_s:g} s"
