from __future__ import annotations

import sys
from pathlib import Path

import pytest

from surgebench.cli import main
from surgebench.process import ServerProcess, ServerStartError


def test_unknown_command_exits_2_naming_the_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err
    assert "mock" in err and "compare" in err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "surgebench COMMAND" in capsys.readouterr().out


SERVER = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(f"listening on http://127.0.0.1:{s.getsockname()[1]}", flush=True)
conn, _ = s.accept(); conn.close(); sys.stdin.read()
"""


def test_server_process_reads_the_bound_address(tmp_path: Path) -> None:
    import socket

    with ServerProcess([sys.executable, "-c", SERVER], log_path=tmp_path / "log") as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    assert server.process.poll() is not None


def test_server_process_reports_a_silent_exit() -> None:
    with pytest.raises(ServerStartError, match="did not print") as info:
        ServerProcess([sys.executable, "-c", "print('boom')"], start_timeout_s=10)
    assert info.value.returncode == 0 and info.value.output == "boom\n"


def test_server_process_names_the_exit_code_not_a_timeout() -> None:
    """A child that refused its flags exited at once: not "did not print ... within 30s"."""
    code = "import sys; print('surgebench mock: --x: invalid value'); sys.exit(2)"
    with pytest.raises(ServerStartError, match=r"\(it exited with code 2\)") as info:
        ServerProcess([sys.executable, "-c", code], start_timeout_s=30)
    assert info.value.returncode == 2
    assert "within" not in str(info.value)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from surgebench import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"surgebench {__version__}\n"
