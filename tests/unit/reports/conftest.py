from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.reports.synthetic import RunSpec, write_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic run folder under tmp_path; keyword arguments are `RunSpec` fields."""

    def make(**fields: object) -> Path:
        return write_run(tmp_path / "runs", RunSpec(**fields))  # type: ignore[arg-type]

    return make
