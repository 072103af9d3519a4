"""One configuration's runs across offered loads: what sweep figures and capacity read."""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.results import Summary


@dataclass(frozen=True)
class Curve:
    """One configuration's points across offered loads (ascending)."""

    configuration: str
    loads: list[float]
    runs: list[Summary]
    attempts: list[int] = field(default_factory=list)
    """Runs behind each point (1 + reruns after a transiently invalid result); empty: 1 each."""

    def attempts_at(self, index: int) -> int:
        return self.attempts[index] if index < len(self.attempts) else 1
