"""The fast reader against the real mock and service on 127.0.0.1 (and a TLS server).

Plain threads and stdlib sockets here (no gevent): the reader is the same code Locust runs.
The Locust side (one request event per request, the fallback) is in test_run.py and below.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from loadtests import outcomes as oc
from loadtests.fast_reader import Connection, Response, reader_choice
from loadtests.hub_read import SO_TIMESTAMPNS
from loadtests.settings import RunSettings, config_document
from loadtests.stream import OpenAIStreamTracker, ServiceStreamTracker, StreamFeed, StreamTracker
from reports.results import read_summary, write_config
from tests.integration.conftest import Start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STREAM = {"Accept": "text/event-stream", "Content-Type": "application/json"}


def connect(url: str, read_timeout_s: float = 10.0) -> Connection:
    target, why = reader_choice(url, environ={})
    assert target is not None, why
    return Connection(target, connect_timeout_s=5.0, read_timeout_s=read_timeout_s)


def post_stream(
    conn: Connection, path: str, body: dict[str, object], tracker: StreamTracker
) -> tuple[Response, StreamFeed]:
    payload = orjson.dumps(body)
    feed = StreamFeed(tracker)
    response = conn.exchange(conn.request_head("POST", path, STREAM, len(payload)) + payload, feed)
    return response, feed


def chat(tokens: int) -> dict[str, object]:
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": tokens,
        "stream_options": {"include_usage": True},
    }


def test_mock_streams_are_read_whole_with_stamps_on_one_kept_alive_socket(start: Start) -> None:
    mock = start("mock", "--stamp", "--ttft-ms", "30", "--itl-ms", "5", "--output-tokens", "20")
    conn = connect(mock.url + "/v1")
    sockets = []
    for _ in range(3):
        tracker = OpenAIStreamTracker(0)
        response, feed = post_stream(conn, "/chat/completions", chat(12), tracker)
        record = tracker.finish(feed.end_ns)
        assert response.status == 200 and record.outcome == oc.OK, record.error
        assert record.output_tokens == 12 and len(record.itl_ns) == 11
        assert len(record.client_lag_ns) >= 12  # every token carried a send stamp
        sockets.append(conn.sock)
    assert sockets[0] is not None and sockets == [sockets[0]] * 3  # keep-alive reuse
    conn.close()


def test_a_non_streamed_answer_is_kept_whole(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "5", "--itl-ms", "1")
    conn = connect(mock.url + "/v1")
    body = {**chat(7), "stream": False}
    del body["stream_options"]
    payload = orjson.dumps(body)
    head = conn.request_head(
        "POST", "/chat/completions", {"Content-Type": "application/json"}, len(payload)
    )
    response = conn.exchange(head + payload, None)
    assert response.status == 200 and not response.truncated
    assert json.loads(response.body)["usage"]["completion_tokens"] == 7


def test_service_stream_and_a_rejection_with_retry_after(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "600", "--itl-ms", "5", "--output-tokens", "5")
    service = start("serve", "--upstream-url", mock.url + "/v1", "--admission", "queue",
                    "--max-concurrent", "1", "--queue-size", "1",
                    "--retry-after-s", "3")  # fmt: skip
    records = []

    def one() -> None:
        tracker = ServiceStreamTracker(0)
        _, feed = post_stream(connect(service.url), "/chat/stream", {"question": "q"}, tracker)
        records.append(tracker.finish(feed.end_ns))

    admitted = [threading.Thread(target=one) for _ in range(2)]
    for thread in admitted:
        thread.start()
    # admission is visible as the `thinking` event; poll the service's queue depth instead of
    # sleeping: both streams hold the one slot and the one queue place
    conn = connect(service.url)
    deadline = 200
    while deadline:
        deadline -= 1
        metrics = conn.exchange(conn.request_head("GET", "/metrics", {}, 0), None)
        if b"surge_service_queue_depth 1" in metrics.body:
            break
        threading.Event().wait(0.02)
    tracker = ServiceStreamTracker(0)
    response, _ = post_stream(conn, "/chat/stream", {"question": "q"}, tracker)
    assert response.status == 503 and response.retry_after == "3"
    assert oc.classify_status(response.status, bytes(response.body)) == oc.REJECTED
    for thread in admitted:
        thread.join(10)
    assert [r.outcome for r in records] == [oc.OK, oc.OK]
    assert all(r.output_tokens == 5 and r.thinking_ns for r in records)


def test_read_timeout_and_refused_connection_are_classified(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "3000", "--itl-ms", "5")
    conn = connect(mock.url + "/v1", read_timeout_s=0.3)
    with pytest.raises(Exception) as info:
        post_stream(conn, "/chat/completions", chat(3), OpenAIStreamTracker(0))
    assert oc.classify_exception(info.value) == oc.TIMEOUT
    assert conn.sock is None
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = connect(f"http://127.0.0.1:{port}")
    with pytest.raises(OSError) as refusal:
        refused.exchange(b"GET / HTTP/1.1\r\n\r\n", None)
    assert oc.classify_exception(refusal.value) == oc.ERROR


GEVENT_READ = """
from gevent import monkey; monkey.patch_all()
import json, sys, time
from loadtests import outcomes as oc
from loadtests.fast_reader import Connection, reader_choice
from loadtests.stream import OpenAIStreamTracker, StreamFeed
url, read_timeout_s, tokens = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
target, _ = reader_choice(url, environ={})
conn = Connection(target, connect_timeout_s=5.0, read_timeout_s=read_timeout_s)
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "stream": True, "max_tokens": tokens}).encode()
data = conn.request_head("POST", "/chat/completions", {}, len(body)) + body
out = []
for _ in range(2):
    tracker = OpenAIStreamTracker(time.time_ns())
    feed = StreamFeed(tracker)
    start = time.monotonic()
    try:
        conn.exchange(data, feed.push)
        outcome = tracker.finish(feed.end_ns).outcome
    except Exception as exc:
        outcome = oc.classify_exception(exc) + " " + type(exc).__name__ + ": " + str(exc)
    out.append({"outcome": outcome, "tokens": tracker.record.output_tokens,
                "s": time.monotonic() - start, "watchdog": conn.watchdog is not None})
print(json.dumps(out))
"""


def gevent_read(url: str, read_timeout_s: float, tokens: int) -> list[dict[str, object]]:
    """Two streams read by the fast reader on gevent's sockets, in a monkey-patched process."""
    argv = [sys.executable, "-c", GEVENT_READ, url, str(read_timeout_s), str(tokens)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    result: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_on_gevent_the_read_timeout_is_on_the_gaps_not_the_whole_stream(start: Start) -> None:
    """One timer per request (not gevent's timer per recv): a stream slower in total than the
    read timeout, with every gap shorter, is read whole, twice on one connection."""
    mock = start("mock", "--ttft-ms", "100", "--itl-ms", "60", "--output-tokens", "8")
    runs = gevent_read(mock.url + "/v1", 0.25, 8)
    assert [r["outcome"] for r in runs] == [oc.OK, oc.OK], runs
    assert all(r["tokens"] == 8 and r["watchdog"] for r in runs), runs
    assert all(float(str(r["s"])) > 0.25 for r in runs), runs  # longer than the read timeout


def test_on_gevent_a_burst_larger_than_one_recv_is_read_whole(start: Start) -> None:
    """Zero ITL: the answer arrives in full 64 KiB reads (read again at once, no wait between)
    and every token is counted, twice on one kept-alive connection."""
    mock = start("mock", "--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "3000", "--stamp")
    runs = gevent_read(mock.url + "/v1", 5.0, 3000)
    assert [(r["outcome"], r["tokens"]) for r in runs] == [(oc.OK, 3000), (oc.OK, 3000)], runs


def test_on_gevent_a_silent_server_times_out_as_a_read_timeout(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "3000", "--itl-ms", "5")
    runs = gevent_read(mock.url + "/v1", 0.3, 3)
    for run in runs:  # the second request on a fresh connection, timed out the same way
        assert str(run["outcome"]) == f"{oc.TIMEOUT} TimeoutError: timed out", runs
        assert 0.29 < float(str(run["s"])) < 2.5, runs


SSE_PIECES = [
    b": t=1\n",
    b'data: {"choices":[{"delta":{"content":"tls"}}]}\n',
    b"\ndata: [DONE]\n\n",
]
SSE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in SSE_PIECES)
    + b"0\r\n\r\n"
)


def serve_tls(tmp_path: Path, writes: list[bytes]) -> tuple[str, threading.Thread]:
    """A TLS server (self-signed certificate) on 127.0.0.1 that answers two requests on one
    kept-alive connection, each with ``writes`` (one ``sendall`` each, 1 ms apart)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener, context.wrap_socket(listener.accept()[0], server_side=True) as conn:
            for _ in range(2):  # two requests on one kept-alive connection
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(4096)
                for i, piece in enumerate(writes):
                    if i:
                        threading.Event().wait(0.001)
                    conn.sendall(piece)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"https://127.0.0.1:{port}/v1", thread


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[str]:
    """A TLS server answering every request with SSE_ANSWER (one write)."""
    url, thread = serve_tls(tmp_path, [SSE_ANSWER])
    yield url
    thread.join(10)


def test_https_target(tls_server: str) -> None:
    conn = connect(tls_server)
    assert conn.target.tls
    for _ in range(2):
        tracker = OpenAIStreamTracker(0)
        response, feed = post_stream(conn, "/chat/completions", chat(1), tracker)
        record = tracker.finish(feed.end_ns)
        assert response.status == 200 and record.outcome == oc.OK, record.error
        assert record.output_tokens == 1 and record.client_lag_ns
    assert isinstance(conn.sock, ssl.SSLSocket)


GEVENT_TLS_READ = """
from gevent import monkey; monkey.patch_all()
import json, sys, time
from loadtests import outcomes as oc
from loadtests.fast_reader import Connection, reader_choice
from loadtests.stream import OpenAIStreamTracker, StreamFeed
target, _ = reader_choice(sys.argv[1], environ={})
conn = Connection(target, connect_timeout_s=5.0, read_timeout_s=5.0)
body = b'{"stream": true}'
data = conn.request_head("POST", "/chat/completions", {}, len(body)) + body
out = []
for _ in range(2):  # two requests on one kept-alive TLS connection
    tracker = OpenAIStreamTracker(time.time_ns())
    feed = StreamFeed(tracker)
    lags = []
    conn.exchange(data, feed.push, lags)
    record = tracker.finish(feed.end_ns)
    out.append({"outcome": record.outcome, "tokens": record.output_tokens,
                "reads": len(lags), "open": conn.sock is not None})
print(json.dumps({"runs": out, "timestamps": conn.timestamps, "tls": conn._tls is not None}))
"""


def test_on_gevent_https_is_read_from_the_shared_poll_with_kernel_timestamps(
    tls_server: str,
) -> None:
    """Under gevent, TLS runs in memory over the plain socket: its reads keep their kernel
    timestamps and the connection is kept alive across requests."""
    argv = [sys.executable, "-c", GEVENT_TLS_READ, tls_server]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stamps = "kernel" if sys.platform == "linux" else "read"
    assert result["timestamps"] == stamps and result["tls"], result
    for run in result["runs"]:
        assert run["outcome"] == oc.OK and run["tokens"] == 1 and run["open"], result
        assert run["reads"] >= 1 or stamps == "read", result


def test_on_gevent_a_long_https_stream_is_read_whole(tmp_path: Path) -> None:
    """Many small writes and one event larger than a TLS record (16 KiB) and than one read:
    the TLS layer in memory hands the parser every byte, whatever the reads cut."""
    events = [b'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % i for i in range(150)]
    big = b'data: {"choices":[{"delta":{"content":"' + b"x" * 100_000 + b'"}}]}\n\n'
    events.insert(75, big)
    events.append(b"data: [DONE]\n\n")
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writes = [head] + [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [b"0\r\n\r\n"]
    url, thread = serve_tls(tmp_path, writes)
    argv = [sys.executable, "-c", GEVENT_TLS_READ, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    thread.join(10)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["outcome"], r["tokens"]) for r in result["runs"]] == [(oc.OK, 151)] * 2, result


def test_locust_falls_back_behind_a_proxy_and_says_so(start: Start, tmp_path: Path) -> None:
    """With a proxy variable set, the users read over geventhttpclient; summary.json says so."""
    mock = start("mock", "--ttft-ms", "10", "--itl-ms", "2", "--output-tokens", "5")
    env = {**os.environ, "http_proxy": "http://127.0.0.1:9", "no_proxy": "*"}
    root = Path(__file__).resolve().parents[3]
    settings = RunSettings(warmup_s=0.0, user="direct", progress_s=0.0)
    config = write_config(tmp_path, config_document(settings, {}))
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(root / "loadtests/locustfile.py"),
         "DirectLLMUser", "--headless", "-u", "2", "-r", "2", "-t", "5s",
         "-H", mock.url + "/v1", "--only-summary", "--sb-config", str(config)],
        env=env, capture_output=True, text=True, timeout=45, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = read_summary(tmp_path)
    assert summary.config["generator"]["reader"] == "fallback"
    assert "http_proxy" in summary.config["generator"]["fallback_reason"]
    # every request ended ok, except those of the 2 users cut off at the stop (no stop timeout)
    unfinished = summary.outcomes.get("unfinished", 0)
    assert summary.outcomes["ok"] > 0 and unfinished <= 2
    assert summary.requests == summary.outcomes["ok"] + unfinished


GEVENT_BLOCKED_READ = """
from gevent import monkey; monkey.patch_all()
import json, sys
from gevent.monkey import get_original
from loadtests.fast_reader import Connection, reader_choice
block = get_original("time", "sleep")  # blocks the whole process, as a busy event loop does
target, _ = reader_choice(sys.argv[1], environ={})
conn = Connection(target, connect_timeout_s=5.0, read_timeout_s=10.0)
arrivals, lags = [], []
def sink(chunk, now_ns):
    arrivals.append([chunk.decode(), now_ns])
    if len(arrivals) == 1:
        block(float(sys.argv[2]))  # the next piece arrives while nothing reads
conn.exchange(b"GET /s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", sink, lags)
print(json.dumps({"arrivals": arrivals, "read_lag_ns": lags, "timestamps": conn.timestamps}))
"""


def test_on_gevent_arrival_times_are_the_kernels_not_the_late_reads() -> None:
    """A piece that arrives while the reading process is blocked gets its arrival time, not the
    time it was read: the reader takes the kernel's receive timestamp. The delay is kept as read
    lag. (Before: the read time, 150 ms late here.)

    Linux turns receive stamping on for the whole host in deferred work when the first socket
    asks for it: on a busy machine where no socket stamped yet, the first reply came unstamped
    (CI: two lags, not three). A socket of this process asks first, so every read here is
    stamped."""
    block_s, gap_s = 0.3, 0.15
    stamping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if sys.platform == "linux":
        stamping.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sent_ns: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            sent_ns.append(time.time_ns())
            threading.Event().wait(gap_s)  # the reader is blocked now (for block_s)
            conn.sendall(b"6\r\nsecond\r\n")
            sent_ns.append(time.time_ns())
            threading.Event().wait(block_s)  # after the reader woke
            conn.sendall(b"5\r\nthird\r\n0\r\n\r\n")
            sent_ns.append(time.time_ns())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    argv = [sys.executable, "-c", GEVENT_BLOCKED_READ, url, str(block_s)]
    with stamping:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    thread.join(10)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if sys.platform != "linux":
        assert result["timestamps"] == "read"
        return
    assert result["timestamps"] == "kernel"
    pieces = {text: t_ns for text, t_ns in result["arrivals"]}
    assert list(pieces) == ["first", "second", "third"], result
    for text, sent in zip(pieces, sent_ns, strict=True):
        # the kernel stamps the arrival before sendall returns; 20 ms covers a busy machine
        assert -20e6 < pieces[text] - sent < 20e6, (text, pieces[text] - sent, result)
    lags_ms = [lag / 1e6 for lag in result["read_lag_ns"]]
    assert len(lags_ms) >= 3 and max(lags_ms) > (block_s - gap_s) * 1000 * 0.8, lags_ms


GEVENT_KILLED_READ = """
from gevent import monkey; monkey.patch_all()
import json, sys, time
import gevent
from loadtests.fast_reader import Connection, reader_choice
from loadtests.stream import OpenAIStreamTracker, StreamFeed
target, _ = reader_choice(sys.argv[1], environ={})
conn = Connection(target, connect_timeout_s=5.0, read_timeout_s=10.0)
def request(tokens):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       "stream": True, "max_tokens": tokens}).encode()
    tracker = OpenAIStreamTracker(time.time_ns())
    feed = StreamFeed(tracker)
    conn.exchange(conn.request_head("POST", "/chat/completions", {}, len(body)) + body, feed.push)
    return tracker
reading = gevent.spawn(request, 1000)  # 1000 tokens at 5 ms: killed while it reads
gevent.sleep(0.3)
reading.kill(timeout=5)
killed = {"dead": reading.dead, "closed": conn.sock is None}
gevent.sleep(0.1)  # the hub goes on: no callback of the killed read fires any more
second = request(5)  # the same Connection, a new socket
print(json.dumps({**killed, "second_tokens": second.record.output_tokens,
                  "second_finished": second.finished}))
"""


def test_on_gevent_a_read_killed_midway_stops_and_the_connection_is_reusable(start: Start) -> None:
    """Locust kills a user's greenlet mid-stream at the stop: the hub's read of that answer
    stops (its socket closed), nothing of it runs afterwards, and the connection serves the
    next request on a new socket."""
    mock = start("mock", "--ttft-ms", "10", "--itl-ms", "5", "--output-tokens", "1000")
    argv = [sys.executable, "-c", GEVENT_KILLED_READ, mock.url + "/v1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"dead": True, "closed": True, "second_tokens": 5, "second_finished": True}, (
        result,
        done.stderr[-2000:],
    )
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


GEVENT_POLL_ORDER = """
from gevent import monkey; monkey.patch_all()
import json, socket
import gevent
from gevent.monkey import get_original
from loadtests.hub_read import shared_poll
block = get_original("time", "sleep")
poll = shared_poll(gevent.get_hub())
order = []
class Reader:
    def __init__(self, i, sock):
        self.i, self.sock = i, sock
    def on_readable(self):
        self.sock._sock.recv(16)
        order.append(self.i)
        poll.remove(self.sock.fileno())
pairs = [socket.socketpair() for _ in range(40)]
for i, (a, _b) in enumerate(pairs):
    poll.add(a.fileno(), Reader(i, a))
for _a, b in pairs:  # ready one after the other while the loop cannot run
    b.send(b"x")
    block(0.0005)
gevent.sleep(0.2)
print(json.dumps(order))
"""


def test_sockets_ready_together_are_read_first_ready_first() -> None:
    """A burst: 40 sockets become ready one after the other while the event loop is busy. They
    are read in the order they became ready (libev's own watchers would serve the last first,
    and the first-ready socket, whose next token may already be on its way, would wait most)."""
    argv = [sys.executable, "-c", GEVENT_POLL_ORDER]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    order = json.loads(done.stdout.strip().splitlines()[-1])
    assert order == list(range(40)), order
