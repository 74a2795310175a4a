"""The supervisor of ``yinqi up`` with real short-lived child processes (sh, sleep)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from yinqi.ops.errors import OpsError
from yinqi.ops.procs import group_members, is_running, start_ticks
from yinqi.ops.supervisor import ChildSpec, Supervisor, describe_exit, stop_group


def spec(tmp_path: Path, name: str, script: str) -> ChildSpec:
    return ChildSpec(name, ["sh", "-c", script], dict(os.environ), tmp_path / f"{name}.log")


def wait_for(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_children_stop_last_started_first_and_leave_no_process(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=5)
    # Each child leaves a grandchild in its group, as a serve process leaves flow runs.
    children = [supervisor.start(spec(tmp_path, name, "sleep 60 & exec sleep 60"))
                for name in ("server", "bank", "serve")]
    assert wait_for(lambda: all(len(group_members(c.pid)) == 2 for c in children))
    # Each leads its own session: a Ctrl-C in the terminal reaches the supervisor alone.
    assert all(os.getpgid(c.pid) == c.pid != os.getpgid(0) for c in children)
    order: list[str] = []
    stopped = supervisor.stop_all(report=lambda s: order.append(s.name))
    assert order == ["serve", "bank", "server"]
    assert [s.how for s in stopped] == ["terminated"] * 3
    assert all(s.code == -signal.SIGTERM for s in stopped)
    for child in children:
        assert group_members(child.pid) == []
        assert not is_running(child.pid)
    assert supervisor.children == []


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=0.5)
    stubborn = supervisor.start(spec(tmp_path, "stubborn",
                                     "trap '' TERM; sleep 60 & sleep 60 & wait"))
    assert wait_for(lambda: len(group_members(stubborn.pid)) == 3)
    (stopped,) = supervisor.stop_all()
    assert stopped.how == "killed"
    assert stopped.code == -signal.SIGKILL
    assert stopped.left == ()
    assert group_members(stubborn.pid) == []


def test_a_second_signal_kills_without_waiting_for_the_grace(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=300)
    supervisor.start(spec(tmp_path, "stubborn", "trap '' TERM; while :; do sleep 1; done"))
    hurry = threading.Event()
    hurry.set()
    (stopped,) = supervisor.stop_all(hurry=hurry)
    assert stopped.how == "killed"


def test_the_leader_is_asked_alone_before_its_group(tmp_path: Path) -> None:
    # The leader, on SIGTERM, lets its own child finish cleanly (as a serve process cancels
    # and reports its flow runs): had the whole group been signalled at once, the child
    # would have died before writing its line.
    marker = tmp_path / "child-finished"
    script = (f"sh -c 'sleep 0.5; echo done > {marker}' & child=$!; "
              "trap 'wait $child; exit 0' TERM; while :; do sleep 0.1; done")
    supervisor = Supervisor(grace=10)
    leader = supervisor.start(spec(tmp_path, "serve", script))
    assert wait_for(lambda: len(group_members(leader.pid)) >= 2)
    (stopped,) = supervisor.stop_all()
    assert stopped.how == "terminated"
    assert stopped.code == 0
    assert marker.read_text().strip() == "done"


def test_a_child_that_ends_by_itself_is_found_with_its_exit_and_log(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=5)
    supervisor.start(spec(tmp_path, "steady", "exec sleep 60"))
    dying = supervisor.start(spec(tmp_path, "dying", "echo 'cannot bind port 4200'; exit 3"))
    assert wait_for(lambda: supervisor.exited() is not None)
    assert supervisor.exited() is dying
    message = supervisor.exit_message(dying)
    assert "dying" in message and "exit code 3" in message
    assert "cannot bind port 4200" in message
    assert str(dying.spec.log) in message
    stopped = {s.name: s.how for s in supervisor.stop_all()}
    assert stopped == {"dying": "exited", "steady": "terminated"}


def test_wait_ready_fails_when_the_child_dies_first(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=1)
    child = supervisor.start(spec(tmp_path, "server", "echo 'database locked'; exit 1"))
    with pytest.raises(OpsError, match=r"server .* ended before healthy .*database locked"):
        supervisor.wait_ready(child, lambda: False, timeout=30, what="healthy")
    supervisor.stop_all()


def test_wait_ready_times_out_and_stops_waiting_on_request(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=1)
    child = supervisor.start(spec(tmp_path, "server", "exec sleep 60"))
    with pytest.raises(OpsError, match=r"did not get healthy within 0.3 s; see .*server.log"):
        supervisor.wait_ready(child, lambda: False, timeout=0.3, what="healthy",
                              interval=0.05)
    stop = threading.Event()
    stop.set()
    assert supervisor.wait_ready(child, lambda: False, timeout=30, what="healthy",
                                 stop=stop) is False
    probes = iter([False, False, True])
    assert supervisor.wait_ready(child, lambda: next(probes), timeout=30, what="healthy",
                                 interval=0.01) is True
    supervisor.stop_all()


def test_the_log_records_each_start(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=1)
    child = supervisor.start(spec(tmp_path, "bank", "echo listening"))
    assert wait_for(lambda: child.exit_code() is not None)
    lines = child.spec.log.read_text().splitlines()
    assert lines[0].startswith("--- ") and "bank: sh -c 'echo listening'" in lines[0]
    assert lines[1] == "listening"


def test_stop_group_of_a_process_this_one_did_not_start(tmp_path: Path) -> None:
    # What `yinqi down` does with the leftovers of a killed `yinqi up`.
    import subprocess

    proc = subprocess.Popen(["sh", "-c", "sleep 60 & exec sleep 60"], start_new_session=True)
    started = start_ticks(proc.pid)
    assert wait_for(lambda: len(group_members(proc.pid)) == 2)
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it, as init would
    how = stop_group(proc.pid, lambda: is_running(proc.pid, started), grace=5)
    assert how == "terminated"
    assert group_members(proc.pid) == []
    assert stop_group(proc.pid, lambda: is_running(proc.pid, started), grace=5) == "gone"


def test_exits_are_described_for_operators() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(None) == "still running"
