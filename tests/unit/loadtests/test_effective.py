"""The runner's `GET /config` client against a real HTTP server on 127.0.0.1 (port 0)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtests.effective import MAX_BYTES, describe, expect, fetch_config, parse_config_answer

ANSWERS: dict[str, tuple[int, bytes]] = {
    "/service/config": (
        200,
        json.dumps(
            {
                "component": "service",
                "settings": {
                    "admission": "queue",
                    "max_concurrent": 32,
                    "auth_token": "***",
                    "port": 0,
                },
            }
        ).encode(),
    ),
    "/html/config": (200, b"<html>hello</html>"),
    "/list/config": (200, b"[1, 2]"),
    "/robot/config": (200, b'{"component": "robot", "settings": {}}'),
    "/huge/config": (200, b'{"component": "mock", "settings": {"x": "' + b"a" * MAX_BYTES + b'"}}'),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = ANSWERS.get(self.path, (404, b'{"error": {"type": "not_found"}}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_reports_its_settings(base_url: str) -> None:
    reported = fetch_config(f"{base_url}/service")
    assert reported.component == "service" and reported.settings is not None
    assert reported.settings["max_concurrent"] == 32 and reported.settings["auth_token"] == "***"
    line = describe("service", reported)
    assert line.startswith("service effective configuration: admission=queue max_concurrent=32")
    assert "+2 more in config.json" in line
    assert expect("mock", reported).settings is None


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/absent", "HTTP 404"),
        ("/html", "not JSON"),
        ("/list", 'not {"component", "settings"} JSON'),
        ("/robot", "unknown component 'robot'"),
        ("/huge", "over 1000000 bytes"),
    ],
)
def test_no_or_bad_answer_is_recorded_as_none_with_the_reason(
    base_url: str, path: str, problem: str
) -> None:
    reported = fetch_config(base_url + path)
    assert reported.settings is None and problem in reported.problem
    line = describe("service", reported, ("--max-concurrent", "8"))
    assert problem in line and line.endswith("started with: --max-concurrent 8")


def test_nothing_listening_is_not_an_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reported = fetch_config(f"http://127.0.0.1:{port}", timeout_s=2.0)
    assert reported.settings is None and reported.problem.startswith("GET /config: ")
    assert parse_config_answer(b"\xff").problem == "not JSON"
