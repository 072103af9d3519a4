"""docs/reliability.md lists the bounds of every number of `mock`, `serve` and `run`."""

from __future__ import annotations

from pathlib import Path

from loadtests.settings import RUN_BOUNDS, RunSettings
from mock_llm.settings import MockSettings
from service.settings import ServiceSettings
from surgebench import options

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def run_limits_table() -> str:
    defaults = vars(RunSettings())
    return options.bounds_table_markdown(
        (flag, defaults[name], lo, hi) for name, (flag, lo, hi) in RUN_BOUNDS.items()
    )


def test_reliability_doc_holds_the_three_limits_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert options.limits_table_markdown(MockSettings) in text
    assert options.limits_table_markdown(ServiceSettings) in text
    assert run_limits_table() in text


if __name__ == "__main__":  # print the tables to paste into the doc
    print(options.limits_table_markdown(MockSettings), end="\n\n")
    print(options.limits_table_markdown(ServiceSettings), end="\n\n")
    print(run_limits_table())
