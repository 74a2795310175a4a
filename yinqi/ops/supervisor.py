"""Child processes started in order, watched, and stopped in reverse order, whole groups.

Each child leads a new session (its own process group), so a Ctrl-C in the terminal reaches
only the supervising process, which then stops the children one by one: the last started
first, so the serve process can still report its runs to the Prefect server while it stops.
Stopping a child signals its whole group: what it started itself (flow run processes)
stops with it. Terminate, wait ``grace`` seconds, then kill.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from yinqi.ops.errors import OpsError
from yinqi.ops.procs import group_members, start_ticks

POLL_SECONDS = 0.1
#: After the leader ended: how long what it left in its group gets at least, after SIGTERM.
GROUP_GRACE_SECONDS = 2.0
#: After a kill: how long to wait for the group to be gone before saying it is not.
KILL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log: Path
    #: Where it serves, shown to the operator (a URL), if anywhere.
    url: str | None = None


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    started: int | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()


@dataclass(frozen=True)
class Stopped:
    name: str
    pid: int
    #: "exited" (it had ended by itself), "terminated" (stopped on SIGTERM) or "killed".
    how: str
    code: int | None
    #: Processes of its group still alive after the kill (should always be empty).
    left: tuple[int, ...] = ()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text.splitlines()[-lines:] if ln.strip())


def _signal(pid: int, sig: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait(condition: Callable[[], bool], seconds: float,
          hurry: threading.Event | None) -> bool:
    """Whether ``condition()`` came true within ``seconds`` (not waiting once hurried)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline or (hurry is not None and hurry.is_set()):
            return False
        time.sleep(POLL_SECONDS)
    return True


def stop_group(pgid: int, leader_alive: Callable[[], bool], *, grace: float,
               hurry: threading.Event | None = None) -> str:
    """Stop the group that process ``pgid`` leads: SIGTERM to the leader, then to what is
    left of the group, SIGKILL to the group after ``grace`` seconds in all (at once when
    ``hurry`` is set). Returns "terminated", "killed", or "gone" when it had ended before.

    The leader is asked alone first: a serve process then cancels its flow runs and reports
    them to the Prefect server; a signal to the whole group would end the runs under it.
    """
    def gone() -> bool:
        return not leader_alive() and not group_members(pgid)

    if gone():
        return "gone"
    deadline = time.monotonic() + grace
    if leader_alive():
        _signal(pgid, signal.SIGTERM, group=False)
        _wait(lambda: not leader_alive(), grace, hurry)
    if not gone():
        _signal(pgid, signal.SIGTERM, group=True)
        _wait(gone, max(deadline - time.monotonic(), GROUP_GRACE_SECONDS), hurry)
    if gone():
        return "terminated"
    _signal(pgid, signal.SIGKILL, group=True)
    _wait(gone, KILL_WAIT_SECONDS, None)
    return "killed"


@dataclass
class Supervisor:
    grace: float = 15.0
    children: list[Child] = field(default_factory=list)

    def start(self, spec: ChildSpec) -> Child:
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        # Logs may quote payment data: readable by the owner only, like the state file.
        fd = os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            out.write(f"--- {stamp} {spec.name}: {shlex.join(spec.argv)}\n".encode())
            out.flush()
            process = subprocess.Popen(list(spec.argv), env=dict(spec.env), stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        child = Child(spec, process, start_ticks(process.pid))
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, ready: Callable[[], bool], *, timeout: float,
                   what: str, stop: threading.Event | None = None,
                   interval: float = 0.25) -> bool:
        """Poll ``ready()`` until it holds (True) or ``stop`` is set (False). Raises OpsError
        if the child exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if stop is not None and stop.is_set():
                return False
            code = child.exit_code()
            if code is not None:
                raise OpsError(self.exit_message(child, f"before {what}"))
            if ready():
                return True
            if time.monotonic() >= deadline:
                raise OpsError(f"{child.name} (pid {child.pid}) did not get {what} within "
                               f"{timeout:g} s; see {child.spec.log}")
            if stop is not None:
                stop.wait(interval)
            else:
                time.sleep(interval)

    def exited(self) -> Child | None:
        """The first child that has ended, if any."""
        for child in self.children:
            if child.exit_code() is not None:
                return child
        return None

    @staticmethod
    def exit_message(child: Child, when: str = "unexpectedly") -> str:
        tail = log_tail(child.spec.log)
        return (f"{child.name} (pid {child.pid}) ended {when} "
                f"({describe_exit(child.exit_code())}); see {child.spec.log}"
                + (f": {tail}" if tail else ""))

    def stop_all(self, *, hurry: threading.Event | None = None,
                 report: Callable[[Stopped], None] | None = None) -> list[Stopped]:
        """Stop every child, the last started first; each one's group is gone on return."""
        done = []
        for child in reversed(self.children):
            stopped = self.stop(child, hurry=hurry)
            done.append(stopped)
            if report is not None:
                report(stopped)
        self.children.clear()
        return done

    def stop(self, child: Child, *, hurry: threading.Event | None = None) -> Stopped:
        ended_before = child.exit_code() is not None
        # A session leader's group has its pid.
        how = stop_group(child.pid, lambda: child.exit_code() is None, grace=self.grace,
                         hurry=hurry)
        return Stopped(child.name, child.pid, "exited" if ended_before else how,
                       child.exit_code(), tuple(group_members(child.pid)))
