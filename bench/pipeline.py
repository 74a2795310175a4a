"""Benchmark the whole payment pipeline: voucher file to verified receipts, through Prefect.

    python -m bench.pipeline [--payments N ...] [--poll-seconds S] [--settle-after S] [--json]

For each size, in a fresh temporary folder: a Prefect server is started as its own process
(``prefect server start`` on a free loopback port, its database under the folder,
``PREFECT_API_URL`` pointed at it; the time until it answers /api/health is reported apart
as ``prefect_server_start_seconds``), a demo installation with a sandbox bank process on
loopback is set up (``yinqi.demo.setup.demo_world``), N payments are generated
(``yinqi.demo.vouchers.generate``, with its ~1% broken rows and ~1% payees the bank refuses),
imported (``run_import``), approved by the demo approvers with their one-time codes, and the
"Payment run" flow carries them to the bank and back: batching, signing, submission, status
polling, receipts (each downloaded, its signature verified, stored).

Each size prints one line (one JSON object with ``--json``):

- ``payments``: payments created (accepted vouchers); ``vouchers`` the rows of the file;
- ``total_seconds``: intake + approval + the flow run's wall time (server start and the demo
  set-up excluded); ``payments_per_second`` over it;
- ``stage_seconds``: intake, approval, then the flow's tasks: batching, signing,
  submission, following (status polling, which includes waiting for the bank to settle),
  receipts, summary; ``flow_seconds`` is the flow run's wall time;
- ``prefect_overhead_share``: the share of the flow's wall time spent outside task bodies
  (what the flow itself returns in ``timing``);
- ``prefect_server_start_seconds``, ``peak_rss_mb`` (this process: Yinqi and the flow),
  ``bank_peak_rss_mb`` (the sandbox bank process), ``states`` (payments per final state),
  ``receipts`` (collected, bad signatures), ``audit_ok``.

With several sizes each runs in its own process, so the peak RSS belongs to that size alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

DEFAULT_SIZES = (1000, 10_000, 100_000)
SEED = 7
#: Task function -> stage name in ``stage_seconds``.
STAGES = {"form_batches": "batching", "sign_batches": "signing", "send_batches": "submission",
          "follow_statuses": "following", "collect_receipts": "receipts",
          "summarise": "summary"}
PREFECT_QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


@dataclass
class Server:
    start_seconds: float
    pid: int


@contextmanager
def prefect_server(folder: Path) -> Iterator[Server]:
    """A Prefect server process on a free port with its state in ``folder``; this process's
    Prefect client points at it. Yields it with the seconds it took to answer /api/health."""
    from yinqi.demo.bank import free_port

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **PREFECT_QUIET, "PREFECT_HOME": str(folder),
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)
    log = folder / "server.log"
    started = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--no-ui"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}: "
                                   f"{log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer within 180 s; see {log}")
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        # Set before Prefect is imported here: its settings are read once, at import.
        os.environ.update(PREFECT_QUIET)
        os.environ["PREFECT_HOME"] = str(folder / "client")
        os.environ["PREFECT_API_URL"] = url
        yield Server(seconds, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: The demo company's accounts at the sandbox bank hold 120 million; generated payments
#: average ~100,000 each, so from a few thousand on most would fail for lack of funds (AM04)
#: and the benchmark would measure refusals. It funds them for any size instead.
COMPANY = "演示科技有限公司"
FUNDS = "1000000000000.00"


def funded(folder: Path, **kwargs: Any) -> Path:
    """``yinqi.demo.bank.sandbox_config`` with the company's accounts funded and their daily
    limits lifted to ``FUNDS``; every other line of the sandbox config stays as shipped."""
    from yinqi.demo.bank import sandbox_config

    path = sandbox_config(folder, **kwargs)
    out, company = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        key = line.split("=")[0].strip()
        if line.startswith("["):
            company = False
        elif key == "name":
            company = COMPANY in line
        elif company and key in ("balance", "daily_limit"):
            line = f'{key} = "{FUNDS}"'
        out.append(line)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its living descendants (Prefect's server runs
    uvicorn in a child process)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {pid}, 0.0
    for _ in range(5):  # a few generations are plenty
        tree |= {p for p, (parent, _) in stats.items() if parent in tree}
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


def _rss_mb(pid: int) -> float | None:
    """Peak resident set size of another process (VmHWM), in MB; None where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def measure(count: int, *, poll_seconds: float, settle_after: float, keep: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"yinqi-bench-pipeline-{count}-"))
    try:
        with prefect_server(folder / "prefect") as server:
            return _run(folder, count, server, poll_seconds=poll_seconds,
                        settle_after=settle_after)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _run(folder: Path, count: int, server: Server, *, poll_seconds: float,
         settle_after: float) -> dict[str, Any]:
    from sqlalchemy import func, select

    from flows.payment import payment_run
    from tasks.context import Timed, use_app
    from yinqi.cli.vouchers_cmd import run_import
    from yinqi.demo.approve import approve_pending
    from yinqi.demo.setup import demo_world
    from yinqi.demo.vouchers import generate
    from yinqi.store.models import Alert, Payment, Receipt

    stages: dict[str, float] = {}
    with mock.patch("yinqi.demo.setup.sandbox_config", funded), \
            demo_world(folder / "home", settle_after=settle_after) as world:
        app = world.app
        today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
        file = folder / f"vouchers-{count}.csv"
        file.write_bytes(generate(count, SEED, day=today))

        bank_pid = world.bank.process.pid
        cpu = {"yinqi": _own_cpu(), "bank": cpu_seconds(bank_pid),
               "prefect_server": cpu_seconds(server.pid)}
        started = time.perf_counter()
        intake = run_import(app, file, imported_by="bench")
        stages["intake"] = time.perf_counter() - started
        mark = time.perf_counter()
        approve_pending(app, datetime.now(UTC))
        stages["approval"] = time.perf_counter() - mark

        use_app(app)
        Timed.by_task.clear()
        mark = time.perf_counter()
        out = payment_run(wait_for_approval=False, poll_seconds=poll_seconds,
                          max_follow_seconds=max(600.0, count / 50))
        flow_seconds = time.perf_counter() - mark
        total = time.perf_counter() - started
        cpu = {"yinqi": _own_cpu() - cpu["yinqi"],
               "bank": cpu_seconds(bank_pid) - cpu["bank"],
               "prefect_server": cpu_seconds(server.pid) - cpu["prefect_server"]}
        for task, spent in Timed.by_task.items():
            name = STAGES.get(task, task)
            stages[name] = stages.get(name, 0.0) + spent

        with app.sessions() as s:
            states = dict(s.execute(select(Payment.state, func.count())
                                    .group_by(Payment.state)).all())
            bad = s.execute(select(func.count()).select_from(Receipt)
                            .where(Receipt.signature_valid.is_(False))).scalar_one()
            receipts = s.execute(select(func.count()).select_from(Receipt)).scalar_one()
            alerts = dict(s.execute(select(Alert.kind, func.count())
                                    .group_by(Alert.kind)).all())
            audit_ok = app.audit.verify(s).ok
        bank_rss = _rss_mb(world.bank.process.pid)

    timing = out["timing"]
    return {
        "payments": intake.accepted,
        "vouchers": intake.accepted + len(intake.quarantined),
        "total_seconds": round(total, 3),
        "payments_per_second": round(intake.accepted / total, 1),
        "flow_seconds": round(flow_seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "prefect_overhead_share": timing["prefect_overhead_share"],
        "flow_call_overhead_seconds": round(flow_seconds - timing["wall_seconds"], 3),
        "prefect_server_start_seconds": round(server.start_seconds, 3),
        # CPU over total_seconds, per process: this one (Yinqi and the flow), the sandbox
        # bank, the Prefect server. The machine has 2 cores for all three.
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bank_peak_rss_mb": bank_rss,
        "states": dict(sorted(states.items())),
        "receipts": {"collected": receipts, "bad_signature": bad},
        "alerts": alerts,
        "audit_ok": audit_ok,
        "poll_seconds": poll_seconds,
        "settle_after_seconds": settle_after,
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(figures: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(figures, ensure_ascii=False)
    return "  ".join(f"{name}={value}" for name, value in figures.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, action="append", metavar="N",
                        help=f"payments per run; repeatable (default: {DEFAULT_SIZES})")
    parser.add_argument("--poll-seconds", type=float, default=0.25, metavar="S",
                        help="the flow's status polling base interval (default: 0.25)")
    parser.add_argument("--settle-after", type=float, default=1.0, metavar="S",
                        help="seconds the sandbox bank takes to settle a payment (default: 1)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (databases, archive, logs)")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args(argv)
    sizes = args.payments or list(DEFAULT_SIZES)
    if any(size < 1 for size in sizes):
        parser.error("--payments must be 1 or more")
    if len(sizes) == 1:
        figures = measure(sizes[0], poll_seconds=args.poll_seconds,
                          settle_after=args.settle_after, keep=args.keep)
        print(report(figures, args.json), flush=True)
        return 0
    for size in sizes:
        command = [sys.executable, "-m", "bench.pipeline", "--payments", str(size),
                   "--poll-seconds", str(args.poll_seconds),
                   "--settle-after", str(args.settle_after)]
        command += ["--json"] if args.json else []
        command += ["--keep"] if args.keep else []
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
