"""``yinqi down`` and ``yinqi status`` over what a ``yinqi up`` that was killed left behind:
real processes, a real state file, no live ``yinqi up``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from yinqi.ops.control import down, status, stop_leftovers
from yinqi.ops.procs import group_members, is_running, start_ticks
from yinqi.ops.state import ChildRecord, RunPaths, UpState, write_state


Start = Callable[[str], "subprocess.Popen[bytes]"]


@pytest.fixture
def leftovers() -> Iterator[Start]:
    """Process groups started as `yinqi up` starts them, whose parent then vanished."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(script: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def record(name: str, proc: subprocess.Popen[bytes], started: int | None = None) -> ChildRecord:
    return ChildRecord(name, proc.pid, started if started is not None else start_ticks(proc.pid),
                       ["sh"], f"/tmp/{name}.log")


def state_of(home: Path, children: list[ChildRecord], pid: int = 9_999_999) -> UpState:
    return UpState(pid=pid, started=1, started_at="2026-11-26T08:00:00+00:00", home=str(home),
                   ui_url="http://127.0.0.1:1", api_url="http://127.0.0.1:1/api",
                   prefect_home=str(home / "prefect"), prefect_database="SQLite",
                   children=children, deployments=["payment-run"])


def settle(procs: list[subprocess.Popen[bytes]], members: int) -> None:
    deadline = time.monotonic() + 10
    while any(len(group_members(p.pid)) < members for p in procs):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_leftover_groups_are_stopped_whole(leftovers: Start, tmp_path: Path) -> None:
    server, serve = leftovers("exec sleep 60"), leftovers("sleep 60 & exec sleep 60")
    settle([serve], 2)
    state = state_of(tmp_path, [record("prefect-server", server), record("serve", serve)])
    done = stop_leftovers(state, grace=5)
    assert done == [f"serve (pid {serve.pid}) terminated",
                    f"prefect-server (pid {server.pid}) terminated"]
    assert group_members(server.pid) == [] and group_members(serve.pid) == []


def test_a_pid_now_naming_another_process_is_left_alone(leftovers: Start,
                                                       tmp_path: Path) -> None:
    other = leftovers("exec sleep 60")
    settle([other], 1)
    # The recorded start time differs: the pid was handed out again to someone else.
    stale = record("serve", other, started=(start_ticks(other.pid) or 0) + 1)
    assert stop_leftovers(state_of(tmp_path, [stale]), grace=1) == []
    assert is_running(other.pid)


def test_status_and_down_after_a_killed_up(leftovers: Start, tmp_path: Path) -> None:
    serve = leftovers("exec sleep 60")
    settle([serve], 1)
    paths = RunPaths(tmp_path)
    paths.ensure()
    write_state(paths.state, state_of(tmp_path, [record("serve", serve)]))
    seen = status(tmp_path)
    assert not seen.running and not seen.ok
    assert seen.processes == [{"name": "serve", "pid": serve.pid, "alive": True, "url": None,
                               "log": "/tmp/serve.log"}]
    assert any("is not running: its state file is left over" in p for p in seen.problems)
    assert any("does not answer" in p for p in seen.problems)
    said: list[str] = []
    down(tmp_path, timeout=5, grace=5, say=said.append)
    assert said[0].startswith("yinqi up (pid 9999999) ended without cleaning up")
    assert f"stopped serve (pid {serve.pid}) terminated" in said
    assert group_members(serve.pid) == []
    assert not paths.state.exists()
    again: list[str] = []
    down(tmp_path, timeout=5, grace=5, say=again.append)
    assert again == [f"yinqi up is not running for {tmp_path}"]
    assert status(tmp_path).to_json()["ok"] is False


STUBBORN_UP = """
import os, signal, subprocess, sys, time
from pathlib import Path
from yinqi.ops.procs import start_ticks
from yinqi.ops.state import ChildRecord, RunLock, RunPaths, UpState, write_state

paths = RunPaths(Path(sys.argv[1]))
paths.ensure()
lock = RunLock(paths.lock)
assert lock.acquire()
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # hung: deaf to `yinqi down`
write_state(paths.state, UpState(
    pid=os.getpid(), started=start_ticks(os.getpid()), started_at="now", home=sys.argv[1],
    ui_url="", api_url="http://127.0.0.1:1/api", prefect_home="", prefect_database="",
    children=[ChildRecord("serve", child.pid, start_ticks(child.pid), ["sleep"], "log")]))
print(child.pid, flush=True)
time.sleep(60)
"""


def test_down_kills_an_up_that_does_not_stop_and_then_what_it_left(tmp_path: Path) -> None:
    import sys

    up = subprocess.Popen([sys.executable, "-c", STUBBORN_UP, str(tmp_path)],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        serve = int(up.stdout.readline())
        assert status(tmp_path).running
        said: list[str] = []
        down(tmp_path, timeout=0.3, grace=5, say=said.append, quick_stop=0.3)
        assert up.wait(timeout=10) == -9
        assert said[0] == f"stopping yinqi up (pid {up.pid}) ..."
        assert "still running after 0.3 s" in said[1]
        assert f"stopped serve (pid {serve}) terminated" in said
        assert said[-1] == "stopped"
        assert group_members(serve) == []
        assert not RunPaths(tmp_path).state.exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
