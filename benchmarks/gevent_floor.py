"""The gevent floor: the least a gevent stream reader can do (a peer in measurement_fidelity.py).

Adapted from shared/tools/gevent_httptools.py (raw gevent sockets, httptools' response parser,
SSE lines split by hand, one ``time.time_ns()`` per ``recv``); changed only to keep requests that
start after a warm-up and to write raw samples as the asyncio peer does.
usage: python benchmarks/gevent_floor.py HOST:PORT STREAMS TOKENS WARMUP_S MEASURE_S OUT.json
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import httptools  # type: ignore[import-untyped]  # noqa: E402


def main() -> None:
    hp, streams, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    warmup_s, measure_s, out = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    host, port_text = hp.split(":")
    port = int(port_text)
    body = json.dumps(
        {"model": "m", "stream": True, "max_tokens": tokens,
         "messages": [{"role": "user", "content": "hi"}]}
    ).encode()  # fmt: skip
    req = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    samples: dict[str, list[float]] = {"ttft_ms": [], "itl_ms": [], "lag_ms": []}
    now = time.time()
    measure_from_ns, stop = int((now + warmup_s) * 1e9), now + warmup_s + measure_s

    class Stream:
        __slots__ = ("buf", "done", "first", "last", "now", "stamp", "t0")

        def __init__(self) -> None:
            self.buf, self.stamp, self.first, self.done = b"", 0, True, False
            self.now = self.last = self.t0 = 0

        def on_body(self, data: bytes) -> None:
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            measured = self.t0 >= measure_from_ns
            for line in lines:
                if line.startswith(b": t="):
                    self.stamp = int(line[4:])
                elif line.startswith(b"data: "):
                    if line.startswith(b"data: [DONE]"):
                        continue
                    token = b'"content":"' in line and b'"content":""' not in line
                    if measured:
                        if self.stamp:
                            samples["lag_ms"].append((self.now - self.stamp) / 1e6)
                        if self.first:
                            samples["ttft_ms"].append((self.now - self.t0) / 1e6)
                        if token and self.last:  # gaps between tokens (not the role chunk)
                            samples["itl_ms"].append((self.now - self.last) / 1e6)
                    if token:
                        self.last = self.now
                    self.first = False

        def on_message_complete(self) -> None:
            self.done = True

    def user() -> None:
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.time() < stop:
            st = Stream()
            p = httptools.HttpResponseParser(st)
            st.t0 = time.time_ns()
            s.sendall(req)
            while not st.done:
                data = s.recv(65536)
                if not data:
                    return
                st.now = time.time_ns()
                p.feed_data(data)

    gevent.joinall([gevent.spawn(user) for _ in range(streams)])
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(samples, fh)


if __name__ == "__main__":
    main()
