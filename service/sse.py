"""SSE event encoding (docs/contracts.md): `event: <type>\\ndata: <one-line JSON>\\n\\n`.

The token event is the hot path: its constant prefix is pre-encoded and only the content string is
serialised (orjson, which escapes control characters, so a token holding newlines stays on one
`data:` line). Non-ASCII text is sent as UTF-8. Strings orjson refuses (lone surrogates) fall back
to the standard library's ASCII escaping, so any Python string survives the trip.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

_TOKEN_PREFIX = b'event: token\ndata: {"type":"token","content":'
_TOKEN_SUFFIX = b"}\n\n"


def _dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # lone surrogates and the like: escape to ASCII instead
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def encode_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One complete event; `payload` gains `"type": event_type` first."""
    return b"event: %s\ndata: %s\n\n" % (
        event_type.encode("ascii"),
        _dumps({"type": event_type, **payload}),
    )


def encode_token(content: str) -> bytes:
    """A `token` event for one piece of content."""
    return _TOKEN_PREFIX + _dumps(content) + _TOKEN_SUFFIX


def encode_tokens(contents: list[str], stamp: bool) -> bytes:
    """Several token events written at once (one send), each stamped when `stamp` is on."""
    if not stamp:
        if len(contents) == 1:
            return _TOKEN_PREFIX + _dumps(contents[0]) + _TOKEN_SUFFIX
        return b"".join(_TOKEN_PREFIX + _dumps(c) + _TOKEN_SUFFIX for c in contents)
    line = stamp_line()
    return b"".join(line + _TOKEN_PREFIX + _dumps(c) + _TOKEN_SUFFIX for c in contents)


def stamp_line() -> bytes:
    """The `: t=<time_ns>` comment that precedes an event when stamps are on."""
    return b": t=%d\n" % time.time_ns()


def decode_stream(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse a whole SSE body into (event, data) pairs; comments are skipped. For tests/tools."""
    events: list[tuple[str, dict[str, Any]]] = []
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    for block in text.split("\n\n"):
        name = "message"
        lines: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                lines.append(value)
        if lines:
            events.append((name, json.loads("\n".join(lines))))
    return events
