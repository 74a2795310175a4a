"""What a running ``yinqi up`` leaves in ``$YINQI_HOME/run``: its lock and its state file.

The lock (``up.lock``, held with flock for the life of ``yinqi up``) says whether one runs:
the system releases it when the process ends, however it ends, so a state file left by a
killed ``yinqi up`` is told apart from a live one. The state file (``up.json``, mode 0600)
says what it started: pids (with their start times, so a pid reused later by another
program is never signalled), logs and addresses.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yinqi.ops.errors import OpsError

STATE_VERSION = 1


@dataclass(frozen=True)
class RunPaths:
    home: Path

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def state(self) -> Path:
        return self.run_dir / "up.json"

    @property
    def lock(self) -> Path:
        return self.run_dir / "up.lock"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    def ensure(self) -> None:
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass
class ChildRecord:
    name: str
    pid: int
    #: Start time in clock ticks after boot (see yinqi.ops.procs.start_ticks); None if unknown.
    started: int | None
    argv: list[str]
    log: str
    url: str | None = None


@dataclass
class UpState:
    pid: int
    started: int | None
    started_at: str
    home: str
    ui_url: str
    api_url: str
    prefect_home: str
    prefect_database: str
    intake_folder: str | None = None
    deployments: list[str] = field(default_factory=list)
    children: list[ChildRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, not {STATE_VERSION}")
        fields = {k: v for k, v in data.items() if k != "version"}
        fields["children"] = [ChildRecord(**c) for c in fields.get("children", [])]
        return cls(**fields)


def write_state(path: Path, state: UpState) -> None:
    """Written whole or not at all (a reader never sees half a file), readable by its owner
    only: it names the processes a ``yinqi down`` may stop."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(state.to_json(), indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_state(path: Path) -> UpState | None:
    """The state file, or None if there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return UpState.from_json(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise OpsError(f"{path} is not a state file of this Yinqi ({exc}): if no `yinqi up` "
                       "runs, delete it") from exc


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)


class RunLock:
    """The flock that one ``yinqi up`` holds while it runs; its file holds that pid."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; never waits."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    @staticmethod
    def held(path: Path) -> bool:
        """Whether a process holds the lock at ``path`` now."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid written into the lock file by its last holder."""
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None
