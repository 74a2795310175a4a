"""The lock and state file a running ``yinqi up`` leaves in $YINQI_HOME/run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from yinqi.ops.errors import OpsError
from yinqi.ops.state import ChildRecord, RunLock, RunPaths, UpState, read_state, write_state


def a_state() -> UpState:
    return UpState(pid=4321, started=99, started_at="2026-11-26T08:00:00+00:00",
                   home="/srv/yinqi", ui_url="http://127.0.0.1:4200",
                   api_url="http://127.0.0.1:4200/api", prefect_home="/srv/yinqi/prefect",
                   prefect_database="SQLite /srv/yinqi/prefect/prefect.db",
                   intake_folder="/srv/yinqi/inbox", deployments=["payment-run"],
                   children=[ChildRecord("prefect-server", 4322, 100,
                                         ["python", "-m", "prefect", "server", "start"],
                                         "/srv/yinqi/logs/prefect-server.log",
                                         "http://127.0.0.1:4200")])


def test_state_file_round_trips_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "home")
    paths.ensure()
    write_state(paths.state, a_state())
    assert read_state(paths.state) == a_state()
    assert stat.S_IMODE(paths.state.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.run_dir.stat().st_mode) == 0o700
    assert json.loads(paths.state.read_text())["version"] == 1
    assert [p.name for p in paths.run_dir.iterdir()] == ["up.json"]  # no temporary left


def test_a_missing_state_file_is_none_and_a_broken_one_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "up.json"
    assert read_state(path) is None
    path.write_text("{not json")
    with pytest.raises(OpsError, match=r"up.json is not a state file .*delete it"):
        read_state(path)
    path.write_text(json.dumps({**a_state().to_json(), "version": 7}))
    with pytest.raises(OpsError, match="version 7"):
        read_state(path)


def test_one_lock_holder_at_a_time_and_released_when_its_process_dies(tmp_path: Path) -> None:
    lock_path = tmp_path / "run" / "up.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from yinqi.ops.state import RunLock; "
         "assert RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); "
         "time.sleep(60)", str(lock_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert RunLock.held(lock_path)
        assert RunLock.holder(lock_path) == holder.pid
        assert RunLock(lock_path).acquire() is False
    finally:
        holder.kill()  # as a SIGKILLed `yinqi up`: no clean-up runs
        holder.wait()
    assert not RunLock.held(lock_path)
    mine = RunLock(lock_path)
    assert mine.acquire()
    assert RunLock.holder(lock_path) == os.getpid()
    assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600
    mine.release()
    assert not RunLock.held(lock_path)


def test_no_lock_file_means_nothing_holds_it(tmp_path: Path) -> None:
    assert RunLock.held(tmp_path / "up.lock") is False
    assert RunLock.holder(tmp_path / "up.lock") is None
