"""`yinqi doctor`'s Prefect row finds the server `yinqi up` runs for the home when the shell
has no PREFECT_API_URL: from $YINQI_HOME/run/up.json, while that `up` holds its lock."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from yinqi.doctor import Status, check_prefect
from yinqi.ops.state import RunLock, RunPaths, UpState, write_state


class _Health(BaseHTTPRequestHandler):
    """Answers as a Prefect server's /api/health does."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        ok = self.path == "/api/health"
        body = b"true" if ok else b"{}"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _no_prefect_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up_state(home: Path, api: str) -> RunPaths:
    """What a running `yinqi up` (this process) leaves: its state file."""
    paths = RunPaths(home)
    paths.ensure()
    write_state(paths.state, UpState(
        pid=os.getpid(), started=None, started_at="2026-11-26T08:00:00+00:00", home=str(home),
        ui_url=api.removesuffix("/api"), api_url=api, prefect_home=str(paths.prefect_home),
        prefect_database="SQLite", deployments=["payment-run"]))
    return paths


@pytest.fixture
def up_lock(tmp_path: Path) -> Iterator[None]:
    lock = RunLock(RunPaths(tmp_path).lock)
    assert lock.acquire()
    yield
    lock.release()


def test_the_server_of_a_running_up_is_checked(tmp_path: Path, server_api: str,
                                               up_lock: None) -> None:
    _up_state(tmp_path, server_api)
    [check] = check_prefect(tmp_path)
    assert check.status is Status.OK, check
    assert check.detail.startswith(f"{server_api} healthy (started by `yinqi up`")
    assert f"PREFECT_API_URL={server_api}" in check.detail


def test_a_running_up_whose_server_does_not_answer_fails(tmp_path: Path, up_lock: None) -> None:
    api = f"http://127.0.0.1:{_closed_port()}/api"
    paths = _up_state(tmp_path, api)
    [check] = check_prefect(tmp_path)
    assert check.status is Status.FAIL, check
    assert check.detail == (f"{api}: not healthy (ConnectError); `yinqi status`; the server's "
                            f"log is in {paths.logs}")


def test_a_state_file_left_by_a_dead_up_is_a_warning(tmp_path: Path, server_api: str) -> None:
    paths = _up_state(tmp_path, server_api)  # nobody holds up.lock
    [check] = check_prefect(tmp_path)
    assert check.status is Status.WARN, check
    assert check.detail.startswith(f"yinqi up (pid {os.getpid()}) is not running, its "
                                   f"{paths.state} is left over")


def test_without_up_or_prefect_api_url_flows_run_locally(tmp_path: Path) -> None:
    [check] = check_prefect(tmp_path)
    assert check.status is Status.OK and check.detail.startswith("local mode"), check


def test_prefect_api_url_wins_over_the_state_file(tmp_path: Path, server_api: str,
                                                  up_lock: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _up_state(tmp_path, f"http://127.0.0.1:{_closed_port()}/api")
    monkeypatch.setenv("PREFECT_API_URL", server_api)
    [check] = check_prefect(tmp_path)
    assert (check.status, check.detail) == (Status.OK, f"{server_api} healthy")
