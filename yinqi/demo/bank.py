"""A sandbox bank process on a free loopback port, and a Yinqi config that points at it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time as clock_time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import connectors.sandbox
from config.loader import DEFAULTS_DIR

SANDBOX_DEFAULT = Path(connectors.sandbox.__file__).with_name("default.toml")
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOLIDAYS = frozenset({date(2026, 12, 31), date(2027, 1, 1)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def business_morning(now: datetime | None = None) -> datetime:
    """09:30 in Shanghai on the first business day from today: the demo bank's start."""
    day = (now or datetime.now(UTC)).astimezone(SHANGHAI).date()
    while day.weekday() >= 5 or day in HOLIDAYS:
        day += timedelta(days=1)
    return datetime.combine(day, clock_time(9, 30), SHANGHAI).astimezone(UTC)


def sandbox_config(folder: Path, *, settle_after: float = 1.0,
                   faults: Mapping[str, object] | None = None,
                   start: datetime | None = None) -> Path:
    """The shipped sandbox config on a clock that starts on a business morning."""
    text = SANDBOX_DEFAULT.read_text(encoding="utf-8")
    head = {"clock": '"shifted"', "control_api": "true",
            "settle_after_seconds": repr(float(settle_after)),
            "fake_clock_start": (start or business_morning()).isoformat()}
    lines = [ln for ln in text.splitlines() if ln.split(" =")[0] not in head]
    text = "\n".join([f"{k} = {v}" for k, v in head.items()] + lines) + "\n"
    for key, value in (faults or {}).items():
        text = _set_in_table(text, "faults", key, value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sandbox.toml"
    path.write_text(text, encoding="utf-8")
    # Relative paths in the sandbox config are relative to its folder.
    return path


def _set_in_table(text: str, table: str, key: str, value: object) -> str:
    out, inside, done = [], False, False
    rendered = json.dumps(value) if isinstance(value, str) else (
        str(value).lower() if isinstance(value, bool) else repr(value))
    for line in text.splitlines():
        if line.startswith("["):
            if inside and not done:
                out.append(f"{key} = {rendered}")
                done = True
            inside = line.strip() == f"[{table}]"
        if inside and line.split(" =")[0] == key:
            out.append(f"{key} = {rendered}")
            done = True
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def product_config(folder: Path, port: int, *, read_timeout: float = 10.0) -> Path:
    """The shipped banks.toml pointed at ``port``; other files stay the shipped defaults."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (DEFAULTS_DIR / "banks.toml").read_text(encoding="utf-8")
    text = text.replace("127.0.0.1:8443", f"127.0.0.1:{port}")
    text = text.replace("read_timeout_seconds = 30", f"read_timeout_seconds = {read_timeout:g}")
    (folder / "banks.toml").write_text(text, encoding="utf-8")
    return folder


@dataclass
class SandboxProcess:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def sandbox_process(config: Path, state: Path, port: int, log: Path,
                    env: Mapping[str, str] | None = None) -> Iterator[SandboxProcess]:
    """``yinqi sandbox-bank serve`` in its own process, stopped (and waited for) afterwards."""
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    proc_env.update(env or {})
    proc_env.setdefault("YINQI_HOME", str(state.parent))
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "yinqi", "sandbox-bank", "serve", "--config", str(config),
             "--port", str(port), "--state-dir", str(state)],
            env=proc_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, log)
        yield SandboxProcess(f"https://127.0.0.1:{port}", port, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sandbox bank exited with {proc.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the sandbox bank did not listen on port {port} within 60 s; see {log}")
