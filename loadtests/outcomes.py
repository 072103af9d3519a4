"""Outcome classes of one request: each is counted apart; a rejection is not a failure.

Classes (``reports.results.OUTCOMES``): ok, rejected (admission refused: queue full / overloaded),
timeout, upstream_error, client_error (4xx other than 408/429), cancelled, error (anything else:
connection refused or reset, a truncated stream, an unparseable answer), unfinished (still in
flight when the run stopped: the user was stopped after the stop timeout; neither ok nor error).
"""

from __future__ import annotations

import socket

import orjson

OK = "ok"
REJECTED = "rejected"
TIMEOUT = "timeout"
UPSTREAM_ERROR = "upstream_error"
CLIENT_ERROR = "client_error"
CANCELLED = "cancelled"
ERROR = "error"
UNFINISHED = "unfinished"

_ERROR_EVENT_TYPES = {
    "timeout": TIMEOUT,
    "upstream": UPSTREAM_ERROR,
    "upstream_error": UPSTREAM_ERROR,
    "overloaded": REJECTED,
    "cancelled": CANCELLED,
}


def error_type_of(body: bytes) -> str:
    """``error.type`` of a JSON error body (service or OpenAI shape), or "" when there is none."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            kind = error.get("type") or error.get("code") or ""
            return str(kind)
    return ""


def classify_status(status: int, body: bytes = b"") -> str:
    """Outcome of an HTTP status (with its body, for 503s that are or are not rejections)."""
    if 200 <= status < 300:
        return OK
    if status == 429:
        return REJECTED
    if status == 503:
        return REJECTED if error_type_of(body) == "overloaded" else UPSTREAM_ERROR
    if status in (408, 504):
        return TIMEOUT
    if status == 499:
        return CANCELLED
    if 400 <= status < 500:
        return CLIENT_ERROR
    if status >= 500:
        return UPSTREAM_ERROR
    return ERROR


def classify_error_event(error_type: str) -> str:
    """Outcome of a service ``event: error`` by its ``error.type``."""
    return _ERROR_EVENT_TYPES.get(error_type, ERROR)


def classify_exception(exc: BaseException) -> str:
    """Outcome of a client-side exception (timeouts by type or name, the rest is `error`)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return TIMEOUT
    name = type(exc).__name__.lower()
    if "timeout" in name:
        return TIMEOUT
    return ERROR
