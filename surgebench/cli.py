"""The `surgebench` command: one subcommand per job, each owned by its package.

Subcommands are imported lazily so that `surgebench compare` does not pay for (or get patched by)
Locust, and `surgebench mock` does not import matplotlib.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple


class Subcommand(NamedTuple):
    module: str
    function: str
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "mock": Subcommand("mock_llm.cli", "main", "run the mock OpenAI-compatible LLM server"),
    "fit": Subcommand("mock_llm.fit_cli", "main", "fit a mock engine profile to a table or sweep"),
    "serve": Subcommand("service.cli", "main", "run the reference streaming agent service"),
    "run": Subcommand(
        "loadtests.cli", "main", "start mock + service, run a Locust load test, write results"
    ),
    "worker": Subcommand(
        "loadtests.worker",
        "main",
        "one Locust worker for `surgebench run --master` on another host",
    ),
    "sweep": Subcommand("loadtests.sweep", "main", "run a matrix of configurations x loads"),
    "report": Subcommand("reports.cli", "report_main", "plots and an HTML/Markdown report of runs"),
    "compare": Subcommand(
        "reports.cli", "compare_main", "regression gate: compare two runs (exit 0/1/2)"
    ),
    "capacity": Subcommand(
        "reports.cli", "capacity_main", "largest load each configuration holds within an SLO"
    ),
}


def usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: surgebench COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    lines += ["", "Run `surgebench COMMAND --help` for the options of one command, "
              "`surgebench --version` for the version."]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version", "version"}:
        from surgebench import __version__

        print(f"surgebench {__version__}")
        return 0
    name, rest = args[0], args[1:]
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        allowed = ", ".join(SUBCOMMANDS)
        print(f"surgebench: unknown command {name!r}; allowed: {allowed}", file=sys.stderr)
        return 2
    module = importlib.import_module(sub.module)
    entry: Callable[[list[str]], int] = getattr(module, sub.function)
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
