"""The one duration parser of the project: ``"30s"``, ``"2m"``, ``"250ms"``, ``"1.5h"``, ``"10"``.

Import-light (standard library only) so the load tests, the reports and both servers may use it
without importing each other. A bare number is seconds.
"""

from __future__ import annotations

import math
import re

DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_HELP = "a number with an optional unit ms, s, m or h (e.g. 250ms, 30s, 2m)"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


class DurationError(ValueError):
    """Text that is not a duration; the message says what is allowed."""


def parse_duration_s(text: str | int | float) -> float:
    """Seconds in `text`; raises `DurationError` (never returns a made-up value)."""
    if isinstance(text, bool):
        raise DurationError(f"bad duration {text!r}; allowed: {DURATION_HELP}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise DurationError(f"bad duration {text!r}; allowed: {DURATION_HELP}")
        return float(text)
    match = _DURATION.match(text.strip())
    if match is None:
        raise DurationError(f"bad duration {text!r}; allowed: {DURATION_HELP}")
    return float(match.group(1)) * DURATION_UNITS_S[match.group(2) or "s"]


def format_duration_s(seconds: float) -> str:
    """The shortest text `parse_duration_s` reads back as `seconds` (``"30s"``, ``"0.5s"``)."""
    return f"{seconds:g}s"
