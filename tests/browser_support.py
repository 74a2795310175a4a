"""A real Prefect server with its UI, and Debian's Chromium driven by Playwright.

``prefect_test_harness`` serves the API only, so tests of the console start
``prefect server start`` as an operator would. Playwright's own browser download needs a
network this machine does not have: the browser is the distribution's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
# Without the background-networking flags Chromium keeps trying to reach Google's services and
# the sandboxed network refuses its connections many at a time.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if found and os.access(found, os.X_OK):
            return found
    return None


@dataclass
class UIServer:
    """A ``prefect server start`` process: ``url`` is the UI's root, ``api_url`` its API."""

    url: str
    api_url: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def server_env(home: Path, port: int) -> dict[str, str]:
    """The server's environment: nothing inherited from the caller's Prefect profile, no
    telemetry, and the UI told the API's real port (it otherwise calls the default 4200)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    api_url = f"http://127.0.0.1:{port}/api"
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_API_URL": api_url,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    })
    return env


@contextmanager
def prefect_ui_server(home: Path, *, startup_timeout: float = 180.0) -> Iterator[UIServer]:
    """Start a Prefect server with its UI on a free loopback port; stopped on exit.

    Ready means both the API's health check and the UI's HTML (the bundle is copied on first
    start, after the API already answers)."""
    from yinqi.demo.bank import free_port

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "server.log"
    with log.open("wb") as out:
        # Its own process group: stopping it stops whatever it started, and nothing else.
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"], env=server_env(home, port),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    server = UIServer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api", home, log,
                      process)
    try:
        _wait_ready(server, startup_timeout)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: UIServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=10, follow_redirects=True) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {server.process.returncode}:\n"
                                   f"{server.log_tail()}")
            try:
                health = http.get(f"{server.api_url}/health")
                page = http.get(server.url + "/", headers={"Accept": "text/html"})
                if health.status_code == 200 and page.status_code == 200 \
                        and "<html" in page.text and "/assets/" in page.text:
                    return
                last = f"health {health.status_code}, UI {page.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
    raise RuntimeError(f"prefect server not ready after {timeout:.0f} s ({last}):\n"
                       f"{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def chromium_context(executable: str, user_data_dir: Path) -> Iterator[Any]:
    """A headless Chromium (a Playwright ``BrowserContext``) with a fresh profile."""
    from playwright.sync_api import sync_playwright

    user_data_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=executable, headless=True,
            args=list(CHROMIUM_ARGS), viewport={"width": 1400, "height": 1000},
            locale="en-US", timezone_id="Asia/Shanghai")
        try:
            yield context
        finally:
            context.close()
