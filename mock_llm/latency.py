"""The latency model as pure functions of their inputs and a seeded RNG (no I/O, no clock).

Hosted mode (independent streams):
    TTFT = ttft_ms x LogNormal(0, ttft_sigma) + prefill_ms_per_token x prompt_tokens
    ITL  = itl_ms x J,   J has mean 1 and coefficient of variation itl_cv
Engine mode (continuous batching; one decode step emits one token to every running sequence):
    step_ms = (step_base_ms + step_per_seq_ms x n_decode
               + step_per_prefill_token_ms x n_prefill_tokens
               + step_per_kv_token_ms x kv_tokens) x J(step_jitter_cv)
    kv_tokens = the context (prompt + tokens generated so far) of the decoding sequences
With `step_compute_per_token_ms` set, a step also cannot be shorter than its compute (roofline:
the larger of the memory-bound sum above and step_compute_per_token_ms x (n_decode +
n_prefill_tokens)), before the jitter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mock_llm.settings import MockSettings


def jitter_factor(rng: random.Random, cv: float, dist: str) -> float:
    """A multiplicative factor with mean 1 and coefficient of variation `cv` (never negative)."""
    if cv <= 0.0:
        return 1.0
    if dist == "normal":
        return max(0.0, rng.gauss(1.0, cv))
    sigma = math.sqrt(math.log1p(cv * cv))
    return rng.lognormvariate(-0.5 * sigma * sigma, sigma)


@dataclass(frozen=True)
class HostedModel:
    """Per-stream draws of TTFT and ITL."""

    ttft_ms: float
    ttft_sigma: float
    prefill_ms_per_token: float
    itl_ms: float
    itl_cv: float
    jitter: str

    @classmethod
    def from_settings(cls, s: MockSettings) -> HostedModel:
        return cls(s.ttft_ms, s.ttft_sigma, s.prefill_ms_per_token, s.itl_ms, s.itl_cv, s.jitter)

    def ttft_draw_ms(self, prompt_tokens: int, rng: random.Random) -> float:
        base = self.ttft_ms
        if self.ttft_sigma > 0.0 and base > 0.0:
            base *= rng.lognormvariate(0.0, self.ttft_sigma)
        return base + self.prefill_ms_per_token * prompt_tokens

    def itl_draw_ms(self, rng: random.Random) -> float:
        if self.itl_cv <= 0.0:
            return self.itl_ms
        return self.itl_ms * jitter_factor(rng, self.itl_cv, self.jitter)


@dataclass(frozen=True)
class StepModel:
    """Duration of one engine step from what it computes."""

    base_ms: float
    per_seq_ms: float
    per_prefill_token_ms: float
    jitter_cv: float
    jitter: str
    per_kv_token_ms: float = 0.0
    compute_per_token_ms: float = 0.0

    @classmethod
    def from_settings(cls, s: MockSettings) -> StepModel:
        return cls(
            s.step_base_ms,
            s.step_per_seq_ms,
            s.step_per_prefill_token_ms,
            s.step_jitter_cv,
            s.jitter,
            s.step_per_kv_token_ms,
            s.step_compute_per_token_ms,
        )

    def step_ms(
        self, n_decode: int, n_prefill_tokens: int, rng: random.Random, kv_tokens: int = 0
    ) -> float:
        ms = (
            self.base_ms
            + self.per_seq_ms * n_decode
            + self.per_prefill_token_ms * n_prefill_tokens
            + self.per_kv_token_ms * kv_tokens
        )
        if self.compute_per_token_ms > 0.0:
            ms = max(ms, self.compute_per_token_ms * (n_decode + n_prefill_tokens))
        return ms * jitter_factor(rng, self.jitter_cv, self.jitter)

    def itl_ms_at(self, running: int, prompt_tokens: int, output_tokens: int) -> float:
        """Steady-state ITL of a closed loop of `running` users (prefill of arrivals included;
        each decoding sequence holds on average its prompt and half its output)."""
        prefill_per_step = running * prompt_tokens / max(1, output_tokens)
        kv_per_step = running * (prompt_tokens + output_tokens / 2.0)
        memory_ms = (
            self.base_ms
            + self.per_seq_ms * running
            + self.per_prefill_token_ms * prefill_per_step
            + self.per_kv_token_ms * kv_per_step
        )
        return max(memory_ms, self.compute_per_token_ms * (running + prefill_per_step))


def output_length(
    s: MockSettings, rng: random.Random, max_tokens: int | None, min_tokens: int = 0
) -> tuple[int, str]:
    """(tokens to send, finish_reason) from the configured distribution and the request's cap;
    at least ``min_tokens`` (vLLM's ``min_tokens`` / ``ignore_eos``)."""
    n = s.output_tokens
    if s.output_tokens_dist == "max_tokens":
        return (max_tokens, "length") if max_tokens is not None else (n, "stop")
    if s.output_tokens_dist == "uniform" and s.output_tokens_spread > 0:
        lo = max(1, round(n * (1.0 - s.output_tokens_spread)))
        hi = max(lo, round(n * (1.0 + s.output_tokens_spread)))
        n = rng.randint(lo, hi)
    elif s.output_tokens_dist == "lognormal" and s.output_tokens_spread > 0:
        n = max(1, round(n * rng.lognormvariate(0.0, s.output_tokens_spread)))
    n = max(n, min_tokens)
    if max_tokens is not None and (max_tokens < n or min_tokens >= max_tokens):
        return max_tokens, "length"
    return n, "stop"
