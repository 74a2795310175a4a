"""The watch loop and the signal handling of ``yinqi up``, with real signals and processes."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from yinqi.ops.supervisor import ChildSpec, Supervisor
from yinqi.ops.up import Stopper, watch


def test_ctrl_c_asks_for_a_stop_and_a_second_one_for_haste() -> None:
    stopper = Stopper()
    before = signal.getsignal(signal.SIGINT)
    stopper.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stopper.stop.wait(5) and not stopper.hurry.is_set()
        assert stopper.reason == "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.hurry.wait(5)
        assert stopper.reason == "SIGINT"  # the first one is what is reported
    finally:
        stopper.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_watch_names_the_child_that_ended_by_itself(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=5)
    for name, script in (("prefect-server", "exec sleep 60"),
                         ("sandbox-bank", "sleep 0.3; echo 'address already in use'; exit 1"),
                         ("serve", "exec sleep 60")):
        supervisor.start(ChildSpec(name, ["sh", "-c", script], dict(os.environ),
                                   tmp_path / f"{name}.log"))
    try:
        failure = watch(supervisor, Stopper(), interval=0.05)
    finally:
        stopped = supervisor.stop_all()
    assert failure is not None
    assert failure.startswith("sandbox-bank (pid ")
    assert "ended unexpectedly (exit code 1)" in failure
    assert "address already in use" in failure
    assert [(s.name, s.how) for s in stopped] == [("serve", "terminated"),
                                                  ("sandbox-bank", "exited"),
                                                  ("prefect-server", "terminated")]


def test_watch_returns_on_a_stop_request(tmp_path: Path) -> None:
    supervisor = Supervisor(grace=5)
    supervisor.start(ChildSpec("serve", ["sleep", "60"], dict(os.environ),
                               tmp_path / "serve.log"))
    stopper = Stopper()
    threading.Timer(0.2, stopper.stop.set).start()
    try:
        assert watch(supervisor, stopper, interval=0.05) is None
    finally:
        supervisor.stop_all()
