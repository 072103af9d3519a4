"""What the servers say they run with: ``GET {base}/config`` -> ``{"component", "settings"}``.

Locust-free. The runner asks the mock and the service (or a ``--target``) once they are up and
records the answers in ``config.json`` and ``summary.json`` as ``effective``: ``{"mock": {...} |
None, "service": {...} | None}``. A server that does not answer (an older one, a deployment
without the endpoint), or answers something else than that JSON, is recorded as None, with the
reason on the console. Secrets arrive already redacted (``"***"``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from reports.results import effective_highlights

CONFIG_PATH = "/config"
COMPONENTS = ("mock", "service")
MAX_BYTES = 1_000_000
TIMEOUT_S = 5.0


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""No proxy: the servers are asked directly, whatever ``http_proxy`` says."""


@dataclass(frozen=True)
class Reported:
    """One server's answer: its component name and settings, or why there are none."""

    component: str | None
    settings: dict[str, Any] | None
    problem: str = ""


def parse_config_answer(body: bytes) -> Reported:
    """The ``/config`` JSON, checked; never raises."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Reported(None, None, "not JSON")
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        return Reported(None, None, 'not {"component", "settings"} JSON')
    component = data.get("component")
    if component not in COMPONENTS:
        return Reported(None, None, f"unknown component {component!r}")
    return Reported(str(component), dict(data["settings"]))


def fetch_config(base_url: str, timeout_s: float = TIMEOUT_S) -> Reported:
    """``GET {base_url}/config``; a missing endpoint or a bad answer is a `Reported` with
    ``settings=None`` and the reason."""
    url = base_url.rstrip("/") + CONFIG_PATH
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        return Reported(None, None, f"GET {CONFIG_PATH}: HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Reported(None, None, f"GET {CONFIG_PATH}: {reason}")
    if len(body) > MAX_BYTES:
        return Reported(None, None, f"GET {CONFIG_PATH}: answer over {MAX_BYTES} bytes")
    return parse_config_answer(body)


def expect(component: str, reported: Reported) -> Reported:
    """`reported` when it comes from `component`; else no settings and why."""
    if reported.settings is not None and reported.component != component:
        return Reported(None, None, f"answered as {reported.component!r}, not {component!r}")
    return reported


def describe(component: str, reported: Reported, started_with: tuple[str, ...] = ()) -> str:
    """The console line of one server's effective configuration."""
    if reported.settings is None:
        flags = f"; started with: {' '.join(started_with)}" if started_with else ""
        return f"{component} effective configuration: not reported ({reported.problem}){flags}"
    settings = reported.settings
    shown = [f"{k}={v}" for k, v in effective_highlights(component, settings).items()]
    rest = len(settings) - len(shown)
    more = f" (+{rest} more in config.json)" if rest > 0 else ""
    return f"{component} effective configuration: {' '.join(shown) or '-'}{more}"
