"""The exceptions of `reports/`: each message names the bad value and what is allowed.

The CLI turns every one of them into one line on stderr and exit code 2.
"""

from __future__ import annotations

from reports.results import ResultsError


class ReportInputError(ValueError):
    """Bad input to a report command that is not a results folder (SLO, thresholds, flags)."""


class ThresholdError(ReportInputError):
    """A threshold or thresholds file that cannot be used."""


class SloError(ReportInputError):
    """An SLO expression that cannot be parsed."""


INPUT_ERRORS: tuple[type[Exception], ...] = (ReportInputError, ResultsError)
"""Everything a command reports as bad input (exit 2)."""

__all__ = ["INPUT_ERRORS", "ReportInputError", "ResultsError", "SloError", "ThresholdError"]
