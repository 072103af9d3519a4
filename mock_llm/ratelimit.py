"""Requests-per-minute and tokens-per-minute limits as token buckets (pure; `now` is passed in)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Bucket:
    """A bucket of `limit` units refilled at `limit` per minute."""

    limit: int
    level: float = -1.0
    at: float = 0.0

    def _refill(self, now: float) -> None:
        if self.level < 0.0:
            self.level, self.at = float(self.limit), now
            return
        self.level = min(float(self.limit), self.level + (now - self.at) * self.limit / 60.0)
        self.at = now

    def wait_s(self, cost: float, now: float) -> float:
        """Seconds until `cost` units are available (0: available now)."""
        self._refill(now)
        missing = min(cost, float(self.limit)) - self.level
        return 0.0 if missing <= 0 else missing * 60.0 / self.limit

    def take(self, cost: float) -> None:
        self.level -= min(cost, float(self.limit))


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    retry_after_s: int = 0
    limit_name: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class RateLimiter:
    """OpenAI-style RPM/TPM limits. TPM is charged prompt tokens + the requested output cap."""

    def __init__(self, rpm_limit: int, tpm_limit: int) -> None:
        self.rpm = Bucket(rpm_limit) if rpm_limit > 0 else None
        self.tpm = Bucket(tpm_limit) if tpm_limit > 0 else None

    @property
    def enabled(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def check(self, tokens: int, now: float) -> Verdict:
        wait_r = self.rpm.wait_s(1, now) if self.rpm else 0.0
        wait_t = self.tpm.wait_s(tokens, now) if self.tpm else 0.0
        headers: list[tuple[str, str]] = []
        if self.rpm:
            headers += [
                ("x-ratelimit-limit-requests", str(self.rpm.limit)),
                ("x-ratelimit-remaining-requests", str(max(0, int(self.rpm.level) - 1))),
            ]
        if self.tpm:
            headers += [
                ("x-ratelimit-limit-tokens", str(self.tpm.limit)),
                ("x-ratelimit-remaining-tokens", str(max(0, int(self.tpm.level - tokens)))),
            ]
        wait = max(wait_r, wait_t)
        if wait > 0.0:
            name = "requests" if wait_r >= wait_t else "tokens"
            return Verdict(False, max(1, math.ceil(wait)), name, tuple(headers))
        if self.rpm:
            self.rpm.take(1)
        if self.tpm:
            self.tpm.take(tokens)
        return Verdict(True, 0, "", tuple(headers))
