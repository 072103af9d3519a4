"""One configuration's runs across offered loads: what sweep figures and capacity read."""

from __future__ import annotations

from dataclasses import dataclass

from reports.results import Summary


@dataclass(frozen=True)
class Curve:
    """One configuration's points across offered loads (ascending)."""

    configuration: str
    loads: list[float]
    runs: list[Summary]
