"""Reading answers on gevent sockets from the hub's loop: one epoll set, first ready first read.

`loadtests.fast_reader` sends each request and hands the answer's socket here (`HubRead`): while
the answer is read, the socket is in this process's `SharedPoll`, whose epoll descriptor is the
only libev watcher; each ready socket is read once per turn, in the order it became ready, with
the kernel's receive timestamp (``recvmsg`` and ``SO_TIMESTAMPNS``), its bytes fed to the HTTP
parser right there, and the user's greenlet is woken (by a loop callback, after the ready sockets
are read) only when the answer is complete or failed. docs/loadtests.md, "How streams are read",
says why each piece is there and what it measured.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtests.fast_reader import Response, TlsBio

RECV_BYTES = 65536
"""At most this many bytes per ``recv`` (one arrival is usually one SSE event)."""
SO_TIMESTAMPNS = 35
"""Linux's ``SO_TIMESTAMPNS`` (= ``SCM_TIMESTAMPNS``; not in Python's socket module)."""
_TIMESPEC = struct.Struct("@ll")
"""The kernel's ``struct timespec`` in an ``SCM_TIMESTAMPNS`` message (native longs)."""
ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class StaleConnectionError(ConnectionError):
    """A kept-alive connection was closed by the server before any byte of the answer."""


POLL_BATCH = 64
"""Ready sockets asked of epoll at once."""
MAX_DRAIN = 4096
"""At most this many reads per turn of the hub's loop (then timers and the users' greenlets run,
and reading goes on at the next turn)."""


class SharedPoll:
    """One epoll set for every answer being read in this process, drained by one hub watcher.

    A socket is in the set only while its answer is read (`HubRead.read_all`). The set's own
    descriptor is watched by one libev watcher; when it fires, `drain` takes the ready sockets
    from epoll in the order they became ready (level triggered, `POLL_BATCH` at a time) and
    reads each once, until none is ready or `MAX_DRAIN` reads were made.

    Why not a libev watcher per socket: libev invokes the watchers that became ready together
    last in, first out, so in a burst (500 streams, a few hundred ready at once) the socket
    that was ready first waited longest; with kernel timestamps a read later than the stream's
    next token merges both into one read. Measured at 500 streams in one process (2026-12-01,
    `/tmp`-style probe of `measurement_fidelity.run_ours`, other work paused): per-socket
    watchers, TTFT p99 +20 to +25 ms in 9 of 9 runs (1-2 % of first tokens merged with the
    second); this drain with request ends deferred (`HubRead.on_readable`), +2.7 to +3.0 ms in
    3 of 3 runs, read lag p99 6.6-7.6 ms.
    """

    def __init__(self, hub: Any) -> None:
        from gevent.monkey import get_original  # (gevent removes select.epoll when it patches)

        epoll = get_original("select", "epoll")
        self._epoll: Any = epoll()
        self._readers: dict[int, HubRead] = {}
        self._watcher: Any = hub.loop.io(self._epoll.fileno(), 1)
        self._watcher.ref = False  # (an idle set does not keep the loop running)
        self._watcher.start(self.drain)
        self.pid = os.getpid()

    def add(self, fd: int, reader: HubRead) -> None:
        self._readers[fd] = reader
        try:
            self._epoll.register(fd, EPOLLIN)
        except FileExistsError:  # (a descriptor number reused before its removal took)
            self._epoll.modify(fd, EPOLLIN)

    def abandon(self) -> None:
        """In a forked child: let go of the parent's set (the child makes its own)."""
        self._watcher.stop()
        self._readers.clear()
        with contextlib.suppress(OSError):
            self._epoll.close()

    def remove(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def drain(self) -> None:
        """In the hub: read each ready socket once, batch after batch until none is ready (or
        `MAX_DRAIN` sockets were read: then the loop turns and comes back)."""
        readers = self._readers
        poll = self._epoll.poll
        left = MAX_DRAIN
        while left > 0:
            ready = poll(0, POLL_BATCH)
            for fd, _events in ready:
                reader = readers.get(fd)
                if reader is not None:
                    reader.on_readable()
            if len(ready) < POLL_BATCH:
                return
            left -= POLL_BATCH


EPOLLIN = 0x001
_POLL: SharedPoll | None = None


def shared_poll(hub: Any) -> SharedPoll:
    """This process's `SharedPoll` (a new one after a fork: Locust's ``--processes``)."""
    global _POLL
    if _POLL is None or _POLL.pid != os.getpid():
        if _POLL is not None:
            _POLL.abandon()
        _POLL = SharedPoll(hub)
    return _POLL


class HubRead:
    """One answer read on a plain gevent socket from the hub's loop: no greenlet switch per event.

    The socket joins this process's `SharedPoll`; each time bytes wait, `on_readable` runs in the
    hub and reads them once from the OS socket (``recvmsg`` with kernel timestamps, else
    ``recv``), feeds the parser and, when the answer is complete or something failed, leaves
    the poll and wakes the user's greenlet (parked in `read_all`) with the result or the
    exception. gevent's own wait would start and stop a watcher and switch greenlets twice for
    every event.
    """

    __slots__ = (
        "_fd",
        "_got_bytes",
        "_lags",
        "_parser",
        "_poll",
        "_recv",
        "_recvmsg",
        "_response",
        "_reused",
        "_run_callback",
        "_sock",
        "_tls",
        "_waiter",
        "ended_with_close",
    )

    def __init__(
        self,
        response: Response,
        parser: Any,
        hub_read: tuple[Any, Any, Any],
        stamped: bool,
        read_lag_ns: list[int] | None,
        reused: bool,
        tls: TlsBio | None = None,
    ) -> None:
        from gevent._waiter import Waiter  # gevent is loaded (its socket is in hub_read)

        self._tls = tls

        os_sock, hub, _watcher = hub_read
        self._sock = os_sock
        self._fd: int = os_sock.fileno()
        self._poll = shared_poll(hub)
        self._response = response
        self._parser = parser
        self._recv = os_sock.recv
        self._recvmsg = os_sock.recvmsg if stamped else None
        self._lags = read_lag_ns if read_lag_ns is not None else []
        self._reused = reused
        self._got_bytes = False
        self._waiter: Any = Waiter(hub)
        self._run_callback: Callable[..., Any] = hub.loop.run_callback
        self.ended_with_close = False

    def read_all(self) -> bool:
        """Wait (in the user's greenlet) until the answer is read; True when it ended with the
        connection. Raises what the read raised (or what the watchdog threw in)."""
        self._poll.add(self._fd, self)
        try:
            self._waiter.get()
        finally:
            self._poll.remove(self._fd)
        return self.ended_with_close

    def on_readable(self) -> None:
        """In the hub: read what waits, once. The user's greenlet is woken by a loop callback,
        after the sockets ready now are read: a request's end (its records, Locust's event, the
        next request) never holds up tokens that are waiting to be read."""
        try:
            done = self._read_once()
        except BaseException as exc:  # to the user's greenlet, whatever it is
            self._poll.remove(self._fd)
            self._run_callback(self._waiter.throw, exc)
            return
        if done:
            self._poll.remove(self._fd)
            self._run_callback(self._waiter.switch, None)

    def _read_once(self) -> bool:
        response = self._response
        try:
            if self._recvmsg is None:
                chunk = self._recv(RECV_BYTES)
                now_ns = time.time_ns()
            else:
                chunk, ancillary, _flags, _address = self._recvmsg(RECV_BYTES, ANCILLARY_BYTES)
                now_ns = read_ns = time.time_ns()
                if ancillary:
                    stamp = ancillary[0][2]
                    if len(stamp) == _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack(stamp)
                        now_ns = seconds * 1_000_000_000 + nanoseconds
                        self._lags.append(max(0, read_ns - now_ns))  # (0: a clock step)
        except BlockingIOError:  # woken with nothing to read
            return False
        except ConnectionResetError as exc:
            if self._reused and not self._got_bytes:
                raise StaleConnectionError(str(exc)) from exc
            raise
        tls = self._tls
        if chunk and tls is not None:
            plain = tls.decrypt(chunk)
            pending = tls.pending_output()
            if pending:  # (rare: the TLS layer's own answer; the socket's buffer takes it)
                self._sock.send(pending)
            if plain is None:  # close_notify: the end of the connection, as an empty read
                chunk = b""
            elif not plain:  # part of a TLS record: nothing to parse yet
                self._got_bytes = True
                return False
            else:
                chunk = plain
        if not chunk:
            if response.until_close:
                response.complete = True
                self.ended_with_close = True
                return True
            if self._reused and not self._got_bytes:
                raise StaleConnectionError("kept-alive connection closed by the server")
            raise ConnectionError("connection closed before the end of the answer")
        self._got_bytes = True
        response.now_ns = now_ns
        self._parser.feed_data(chunk)
        return response.complete
