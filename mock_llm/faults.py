"""Seeded fault injection: which fault (if any) a request gets.

Each request draws once from the process's fault RNG (seeded by `--seed`), in arrival order. A
request may also force a fault with the header `X-Mock-Fault: KIND` (for deterministic tests).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mock_llm.settings import MockSettings

KINDS = ("500", "503", "429", "disconnect", "stall", "slow_first_token")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # one of KINDS, or "" for none

    @property
    def http_status(self) -> int:
        return int(self.kind) if self.kind in ("500", "503", "429") else 0


NO_FAULT = Fault("")


class FaultPlan:
    """Draws faults with the configured probabilities from one seeded RNG."""

    def __init__(self, settings: MockSettings) -> None:
        s = settings
        self._table = [
            (k, p)
            for k, p in (
                ("500", s.fault_500_prob),
                ("503", s.fault_503_prob),
                ("429", s.fault_429_prob),
                ("disconnect", s.disconnect_prob),
                ("stall", s.stall_prob),
                ("slow_first_token", s.slow_first_token_prob),
            )
            if p > 0.0
        ]
        self._rng = random.Random(f"faults:{s.seed}")

    def draw(self, forced: str | None = None) -> Fault:
        """The fault of the next request; `forced` (a header value) wins when it is a known kind."""
        if forced is not None:
            return Fault(forced) if forced in KINDS else NO_FAULT
        if not self._table:
            return NO_FAULT
        x = self._rng.random()
        for kind, p in self._table:
            if x < p:
                return Fault(kind)
            x -= p
        return NO_FAULT
