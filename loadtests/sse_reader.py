"""Server-sent-event parsing that timestamps each event at the moment its bytes arrive.

Locust-free: the Locust users feed it the body bytes as each segment arrives, and the asyncio
benchmark client feeds it raw chunks. Nothing here reads a block of N bytes, so no event waits
for later bytes. A ``: t=<ns>`` comment line (a send stamp, docs/contracts.md) before an event
gives that event's ``sent_ns``, from which the client's own lag is ``t_ns - sent_ns``.

Arrival time of an event is the arrival time of the line that completed it (the blank line),
which in practice is the same read as its ``data:`` line.

Two ways to take the events: `SSEParser.feed` returns them as `SSEEvent` objects; a parser built
with an `EventSink` hands each one straight to it as plain values (`SSEParser.push`), with no
object or list per event: the Locust users' hot path (one call per event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STAMP_PREFIX = b": t="

EventSink = Callable[[str, bytes, int, "int | None"], None]
"""Takes one dispatched event: ``(event, data, t_ns, sent_ns)``."""


@dataclass(slots=True)
class SSEEvent:
    """One dispatched SSE event."""

    event: str
    data: bytes
    t_ns: int
    sent_ns: int | None = None


class SSEParser:
    """Incremental SSE parser (WHATWG framing: ``\\n``, ``\\r\\n`` or ``\\r`` line ends).

    Use `feed_line` with whole lines (as geventhttpclient's ``readline(b"\\n")`` returns them) or
    `feed` with arbitrary byte chunks; both return the events completed by that input. With a
    ``sink``, `push` (any chunk) hands each completed event to it instead.
    """

    __slots__ = (
        "_data",
        "_event",
        "_out",
        "_partial",
        "_pending_cr",
        "_sink",
        "_stamp",
        "comments",
    )

    def __init__(self, sink: EventSink | None = None) -> None:
        self._event = ""
        self._data: list[bytes] = []
        self._stamp: int | None = None
        self._partial = b""
        self._pending_cr = False
        self._out: list[SSEEvent] = []
        self._sink: EventSink = self._collect if sink is None else sink
        self.comments = 0
        """Comment lines other than send stamps (pings) seen so far."""

    def _collect(self, event: str, data: bytes, t_ns: int, sent_ns: int | None) -> None:
        self._out.append(SSEEvent(event, data, t_ns, sent_ns))

    def feed_line(self, line: bytes, t_ns: int) -> SSEEvent | None:
        """Process one line (with or without its line end); return the event it completes
        (a parser built with a sink gives it to the sink and returns None)."""
        self._line(line, t_ns)
        out = self._out
        if out:
            self._out = []
            return out[0]
        return None

    def feed(self, chunk: bytes, t_ns: int) -> list[SSEEvent]:
        """Process a chunk of bytes split anywhere; return the events it completes (a parser
        built with a sink gives them to the sink and returns [])."""
        self.push(chunk, t_ns)
        out = self._out
        if out:
            self._out = []
        return out

    def _line(self, line: bytes, t_ns: int) -> None:
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch(t_ns)
            return
        if line[0] == 0x3A:  # ':' comment
            if line.startswith(STAMP_PREFIX):
                try:
                    self._stamp = int(line[len(STAMP_PREFIX) :])
                except ValueError:
                    self.comments += 1
            else:
                self.comments += 1
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # id:, retry: and unknown fields carry nothing we measure.

    def push(self, chunk: bytes, t_ns: int) -> None:
        """Process a chunk of bytes split anywhere; each event it completes goes to the sink."""
        if self._pending_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = False
        buf = self._partial + chunk if self._partial else chunk
        if b"\r" not in buf:  # the common case: \n line ends, one split, the usual lines inline
            lines = buf.split(b"\n")
            self._partial = lines.pop()
            data = self._data
            if not data and self._stamp is None and not self._event:
                # Whole usual events while nothing is pending, each `[stamp] [event] data`
                # and its blank line (one per chunk, or a few when the reader fell behind).
                sink = self._sink
                n = len(lines)
                if n == 3 and not lines[2]:  # the usual chunk: one stamped event, straight
                    stamp, line = lines[0][4:], lines[1]
                    if (
                        line.startswith(b"data: ")
                        and lines[0].startswith(STAMP_PREFIX)
                        and stamp.isdigit()
                    ):
                        sink("message", line[6:], t_ns, int(stamp))
                        return
                i = 0
                while i + 1 < n:
                    line = lines[i]
                    if line.startswith(b"data: "):
                        if lines[i + 1]:
                            break
                        sink("message", line[6:], t_ns, None)
                        i += 2
                        continue
                    stamp = line[4:]
                    if not (line.startswith(STAMP_PREFIX) and stamp.isdigit() and i + 2 < n):
                        break
                    line = lines[i + 1]
                    if line.startswith(b"data: ") and not lines[i + 2]:
                        sink("message", line[6:], t_ns, int(stamp))
                        i += 3
                        continue
                    if not (line.startswith(b"event: ") and i + 3 < n) or lines[i + 3]:
                        break
                    data_line = lines[i + 2]
                    if not data_line.startswith(b"data: "):
                        break
                    sink(
                        line[7:].decode("utf-8", "replace") or "message",
                        data_line[6:],
                        t_ns,
                        int(stamp),
                    )
                    i += 4
                if i:
                    if i == n:
                        return
                    del lines[:i]
            for line in lines:
                if not line:  # dispatch (as `_dispatch`, inline: one call less per event)
                    if data or self._event:
                        self._sink(
                            self._event or "message",
                            data[0] if len(data) == 1 else b"\n".join(data),
                            t_ns,
                            self._stamp,
                        )
                        data = self._data = []
                        self._event = ""
                        self._stamp = None
                elif line.startswith(b"data:"):
                    data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(STAMP_PREFIX):
                    try:
                        self._stamp = int(line[4:])
                    except ValueError:
                        self.comments += 1
                else:
                    self._line(line, t_ns)  # never dispatches: `data` stays self._data
            return
        start = 0
        size = len(buf)
        while start < size:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if nl < 0 and cr < 0:
                break
            if cr < 0 or (0 <= nl < cr):
                end, nxt = nl, nl + 1
            elif cr == size - 1:
                end, nxt = cr, cr + 1
                self._pending_cr = True
            elif buf[cr + 1 : cr + 2] == b"\n":
                end, nxt = cr, cr + 2
            else:
                end, nxt = cr, cr + 1
            self._line(buf[start:end], t_ns)
            start = nxt
        self._partial = buf[start:]

    def _dispatch(self, t_ns: int) -> None:
        if not self._data and not self._event:
            return  # a stray blank line; a pending stamp stays for the next event
        data, stamp = self._data, self._stamp
        event = self._event or "message"
        self._event = ""
        self._data = []
        self._stamp = None
        self._sink(event, data[0] if len(data) == 1 else b"\n".join(data), t_ns, stamp)
