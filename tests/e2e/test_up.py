"""``yinqi up`` as an operator runs it: a real process on a free port and a new Yinqi home.

It initialises the home, enrols with the sandbox bank, starts the Prefect server (UI and
API), the sandbox bank and the serve process; the test reads the deployments back from the
server's REST API, asks ``yinqi status``, then stops it the two ways an operator does
(Ctrl-C, and ``yinqi down`` from another shell) and looks for anything left running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import with_identity, yinqi

from yinqi.demo.bank import free_port, product_config

pytestmark = [pytest.mark.slow]

#: Every deployment of the shipped configuration, with its schedules.
EXPECTED: dict[str, list[tuple[str, Any]]] = {
    "payment-run": [],
    "collect-receipts": [],
    "rerun-batch": [],
    "reconcile-range": [],
    "status-sweep": [("interval", 300.0)],
    "voucher-intake": [("interval", 60.0)],
    "reconcile-cny-accounts": [("cron", "30 8 * * *")],
    "reconcile-usd-accounts": [("cron", "0 9 * * 1-5")],
    "backup-nightly": [("cron", "0 1 * * *")],
    "backup-weekly-full": [("cron", "0 2 * * 0")],
    "restore-drill": [("cron", "0 4 * * 0")],
}
CHILDREN = ["prefect-server", "sandbox-bank", "serve"]
#: A fresh Prefect server migrates its SQLite database first (30-90 s on a busy machine).
READY_SECONDS = 240


@dataclass
class World:
    root: Path
    home: Path
    env: dict[str, str]
    bank_port: int


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    output: Path
    state: dict[str, Any]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("up")
    home = root / "home"
    bank_port = free_port()
    product_config(home / "config", bank_port)  # the shipped banks.toml, on a free port
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YINQI_", "PREFECT_"))}
    env.update(YINQI_HOME=str(home), YINQI_CONFIG_DIR=str(home / "config"), COLUMNS="200")
    return World(root, home, env, bank_port)


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.25)


def _live_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are alive (zombies are not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _port_free(port: int) -> bool:
    """Nothing listens on ``port``, and a new server could (connections of the old one may
    linger in TIME_WAIT, which servers bind past with SO_REUSEADDR)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        pass
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def yinqi_up(world: World, label: str) -> Iterator[Running]:
    """``yinqi up`` started and ready; whatever the test does, nothing outlives it."""
    port = free_port()
    output = world.root / f"up-{label}.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "yinqi", "up", "--port", str(port)],
                                   env=with_identity(world.env), stdout=out,
                                   stderr=subprocess.STDOUT)
    running = Running(process, port, output, {})
    try:
        def ready() -> bool:
            assert process.poll() is None, f"yinqi up ended early:\n{running.text()}"
            return "Yinqi is up (ready in" in running.text()

        _wait(ready, READY_SECONDS, "yinqi up ready")
        running.state = json.loads((world.home / "run" / "up.json").read_text())
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in running.state.get("children", []):
            for pid in _live_in_group(child["pid"]):
                os.kill(pid, signal.SIGKILL)


def _at_once(env: dict[str, str], *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several ``yinqi`` commands run side by side, as from several shells."""
    procs = [subprocess.Popen([sys.executable, "-m", "yinqi", *args], env=with_identity(env),
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    done = []
    for proc, args in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def _deployments(api: str) -> dict[str, dict[str, Any]]:
    rows = httpx.post(f"{api}/deployments/filter", json={"limit": 200}, timeout=10).json()
    return {row["name"]: row for row in rows}


def _schedules(row: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for entry in row["schedules"]:
        schedule = entry["schedule"]
        assert entry["active"]
        if "interval" in schedule:
            found.append(("interval", float(schedule["interval"])))
        else:
            assert schedule["timezone"] == "Asia/Shanghai"
            found.append(("cron", schedule["cron"]))
    return found


def _scheduled_runs(api: str, deployment_id: str) -> int:
    body = {"deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    return int(httpx.post(f"{api}/flow_runs/count", json=body, timeout=10).json())


def _assert_all_gone(world: World, running: Running) -> None:
    for child in running.state["children"]:
        assert _live_in_group(child["pid"]) == [], f"{child['name']} left processes behind"
    assert _port_free(running.port), "the Prefect port is still taken"
    assert _port_free(world.bank_port), "the sandbox bank's port is still taken"
    assert not (world.home / "run" / "up.json").exists()


def test_up_serves_the_ui_and_every_deployment_and_ctrl_c_stops_all(world: World) -> None:
    with yinqi_up(world, "ctrl-c") as up:
        text = up.text()
        assert "initialising" in text  # a new home: `yinqi init` ran first
        assert "signing certificate signing-1 registered with sandbox bank icbc" in text
        assert f"Prefect UI: http://127.0.0.1:{up.port}" in text

        # The server and its UI.
        assert httpx.get(f"{up.api}/health", timeout=10).json() is True
        page = httpx.get(f"http://127.0.0.1:{up.port}/", timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()

        # Every deployment, with its schedule, registered by the serve process ...
        found = _deployments(up.api)
        assert set(found) == set(EXPECTED)
        for name, schedules in EXPECTED.items():
            assert sorted(_schedules(found[name])) == sorted(schedules), name
            assert not found[name]["paused"], name
        intake = found["voucher-intake"]["parameters"]["folder"]
        assert intake == str(world.home / "inbox") and Path(intake).is_dir()
        # ... scheduled by the server, and polled for by the serve process.
        for name, schedules in EXPECTED.items():
            if schedules:
                _wait(lambda n=name: _scheduled_runs(up.api, found[n]["id"]) > 0, 60,
                      f"a scheduled run of {name}")
        _wait(lambda: all(d["status"] == "READY" for d in _deployments(up.api).values()), 60,
              "every deployment READY")

        # The sandbox bank listens where banks.toml says.
        with socket.create_connection(("127.0.0.1", world.bank_port), timeout=5):
            pass

        # The state file: the owner's only, naming every process.
        state_file = world.home / "run" / "up.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        assert [c["name"] for c in up.state["children"]] == CHILDREN
        assert up.state["pid"] == up.process.pid

        # `yinqi status` sees everything alive, with links into the UI; a second `yinqi up`
        # for the same home is refused while this one runs. (Three commands at once: each
        # spends most of its time starting Python.)
        as_json, human, second = _at_once(world.env, ["status", "--json"], ["status"],
                                          ["up", "--port", str(free_port())])
        assert as_json.returncode == 0, as_json.stderr
        seen = json.loads(as_json.stdout)
        assert seen["ok"] and seen["running"] and seen["healthy"]
        assert [(p["name"], p["alive"]) for p in seen["processes"]] == \
            [(name, True) for name in CHILDREN]
        shown = {d["name"]: d for d in seen["deployments"]}
        assert set(shown) == set(EXPECTED) and all(d["served"] for d in shown.values())
        assert shown["status-sweep"]["schedules"] == ["every 5 min"]
        next_sweep = shown["status-sweep"]["next_run"]
        assert next_sweep["url"] == \
            f"http://127.0.0.1:{up.port}/runs/flow-run/{next_sweep['id']}"
        assert human.returncode == 0, human.stderr
        assert f"Prefect UI:  http://127.0.0.1:{up.port} (API healthy" in human.stdout
        assert f"serve            pid {up.state['children'][2]['pid']}" in human.stdout
        assert second.returncode == 1
        assert f"yinqi up already runs for {world.home} (pid {up.process.pid}" in second.stderr

        # Ctrl-C: everything stops, the last started first.
        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(timeout=90) == 0, up.text()
        text = up.text()
        stopping = text[text.index("SIGINT: stopping"):]
        assert stopping.index("serve (pid") < stopping.index("sandbox-bank (pid") \
            < stopping.index("prefect-server (pid")
        assert "everything stopped" in text
        _assert_all_gone(world, up)


def test_yinqi_down_from_another_shell_stops_a_running_up(world: World) -> None:
    with yinqi_up(world, "down") as up:
        # Deployments paused when the serve process stopped come back on their schedules.
        assert not any(d["paused"] for d in _deployments(up.api).values())
        stopped = yinqi("down", env=world.env)
        assert f"stopping yinqi up (pid {up.process.pid})" in stopped.stdout
        assert stopped.stdout.rstrip().endswith("stopped")
        # `down` returns once the `up` has let go of its lock: it has ended by then.
        assert up.process.wait(timeout=10) == 0, up.text()
        assert "SIGTERM: stopping" in up.text()
        _assert_all_gone(world, up)
    after, again = _at_once(world.env, ["status", "--json"], ["down"])
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False
    assert again.returncode == 0 and "yinqi up is not running" in again.stdout
