"""Across machines: how a Locust worker gets the master's run configuration, and how its
measurements are put on the master's clock.

Locust-free (the hooks call it on the Locust side). A worker started without ``--sb-config``
(``surgebench worker``, or a plain ``locust --worker``) needs nothing of the run's flags: the
master puts its ``config.json`` document (one typed form, `RunSettings.to_dict` plus
``effective``) into the custom option ``sb_config_document``, and Locust copies custom options
into every spawn message, which a worker applies *before* it fires ``test_start``. So the
configuration is there when the worker's test starts, in order, with no message of our own to
race the spawn. Before that, a worker runs nothing that reads the settings.

Clocks: TTFT, ITL and end-to-end times are differences of one host's clock, so skew between
hosts does not touch them. What does carry a host's absolute time is the per-second series (keys
are epoch seconds), the health points (same) and the phase boundaries (anchored on the master's
test start). A worker measures its offset from the master's clock once, as it connects: it sends
`CLOCK_REQUEST` with its time, the master answers with its own, and the offset is the worker's
midpoint of the round trip minus the master's time (`measured_offset_ns`, off by at most half
the round trip). At or above `SKEW_TOLERANCE_NS` beyond that uncertainty (`skew_ns`) the worker
moves the phase anchor and its per-second keys onto the master's clock (`to_master_clock`);
below it (hosts in sync, or a slow answer on a busy host), nothing changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadtests.settings import CONFIG_VERSION, RunSettings, SettingsError

DOCUMENT_OPTION = "sb_config_document"
"""The Locust custom option (``--sb-config-document``) that carries the master's configuration."""
VERSION_KEY = "surgebench_version"
"""The master's surgebench version, added to the document it sends."""
MAX_DOCUMENT_BYTES = 1_000_000
"""A configuration document larger than this is refused (a real one is a few kB)."""
SKEW_TOLERANCE_NS = 500_000_000
"""Below this offset from the master's clock a worker takes the clocks as in sync."""
CLOCK_REQUEST = "surgebench_clock"
"""Worker -> master: ``{"sent_ns": worker time}``."""
CLOCK_REPLY = "surgebench_clock_reply"
"""Master -> that worker: ``{"sent_ns": as received, "master_ns": master time}``."""
CLOCK_TRIES = 5
CLOCK_WAIT_S = 2.0
"""A worker asks at most `CLOCK_TRIES` times, `CLOCK_WAIT_S` apart; no answer: offset 0."""


MASTER_READY = "[surgebench] master: Locust is listening for workers"
"""Printed by a master's Locust (and echoed by `surgebench run`) once it listens and has read
the run's files: workers started from then on find it ready."""
CONNECT_TIMEOUT_ENV = "SURGE_WORKER_CONNECT_TIMEOUT_S"
"""`surgebench worker --connect-timeout` to its Locust worker: seconds, a decimal number."""


def connect_retry_count(timeout_s: float, try_s: float) -> int:
    """Locust's ``CONNECT_RETRY_COUNT`` for a worker that waits `timeout_s` for its master.
    Locust tries for `try_s` (its ``CONNECT_TIMEOUT``) and gives up after count + 1 tries, so
    the wait is `timeout_s` rounded up to whole tries."""
    return max(0, math.ceil(timeout_s / try_s) - 1)


def apply_connect_timeout(environ: Mapping[str, str], runners: Any) -> None:
    """In a Locust worker started by `surgebench worker`: set Locust's retry count (a module
    constant it reads at each try) from `CONNECT_TIMEOUT_ENV`, before the runner connects."""
    raw = environ.get(CONNECT_TIMEOUT_ENV)
    if raw:
        runners.CONNECT_RETRY_COUNT = connect_retry_count(float(raw), runners.CONNECT_TIMEOUT)


class DistributedError(ValueError):
    """The worker cannot take part in the master's run; the message says why, in one line."""


@dataclass(frozen=True)
class MasterConfig:
    """What a worker adopts from its master."""

    settings: RunSettings
    document: dict[str, Any]
    """The config.json document (`RunSettings.to_dict` plus ``effective``)."""


def master_document(document: Mapping[str, Any], settings: RunSettings, version: str) -> str:
    """The master's side: the run's config.json document (or, for a plain ``locust --master``
    with no ``--sb-config``, the settings it runs with) plus its surgebench version, as JSON."""
    body = dict(document) if document else settings.to_dict()
    body[VERSION_KEY] = version
    return json.dumps(body, separators=(",", ":"))


def adopt_master_document(text: str, version: str) -> MasterConfig:
    """The worker's side: check and read what the master sent; `DistributedError` (one line
    naming both versions) when this worker cannot run the master's configuration."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise DistributedError(
            f"the master's configuration is larger than {MAX_DOCUMENT_BYTES} bytes; refused"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DistributedError(f"the master's configuration is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DistributedError("the master's configuration is not a JSON object")
    master_version = data.pop(VERSION_KEY, None)
    config_version = data.get("config_version")
    if master_version != version or config_version != CONFIG_VERSION:
        raise DistributedError(
            f"version mismatch: the master runs surgebench {master_version} (config_version "
            f"{config_version}), this worker surgebench {version} (config_version "
            f"{CONFIG_VERSION}); install the same version on every host"
        )
    try:
        settings = RunSettings.from_dict(data)
    except SettingsError as exc:
        raise DistributedError(f"the master's configuration: {exc}") from None
    return MasterConfig(settings, data)


def measured_offset_ns(sent_ns: int, master_ns: int, received_ns: int) -> int | None:
    """This worker's offset from the master's clock (worker minus master), from one round trip:
    asked at `sent_ns`, answered `master_ns`, received at `received_ns` (worker times); None
    when the round trip makes no sense (received before sent)."""
    if received_ns < sent_ns:
        return None
    return (sent_ns + received_ns) // 2 - master_ns


def skew_ns(offset_ns: int | None, round_trip_ns: int = 0) -> int:
    """The offset to correct: 0 when unknown, or unless it is at least `SKEW_TOLERANCE_NS` even
    at the far end of its uncertainty (half the round trip): on a busy host a slow answer must
    not pass for a skewed clock."""
    if offset_ns is None:
        return 0
    surely_ns = abs(offset_ns) - max(0, round_trip_ns) // 2
    return offset_ns if surely_ns >= SKEW_TOLERANCE_NS else 0


def to_master_clock(report: dict[str, Any], offset_ns: int, health_key: str) -> dict[str, Any]:
    """A worker's report delta with its per-second keys (recorder ``series``, health points
    under `health_key`) and ``first_ns``/``last_ns`` moved onto the master's clock."""
    if offset_ns == 0:
        return report
    shift_s = round(offset_ns / 1e9)
    out = dict(report)
    series = report.get("series")
    if isinstance(series, dict):
        out["series"] = {str(int(k) - shift_s): v for k, v in series.items()}
    health = report.get(health_key)
    if isinstance(health, dict):
        out[health_key] = {str(int(k) - shift_s): v for k, v in health.items()}
    for key in ("first_ns", "last_ns"):
        value = report.get(key)
        if isinstance(value, int):
            out[key] = value - offset_ns
    return out
