"""``yinqi demo``: the whole pipeline on the embedded default, start to finish.

A fresh demo home each time (SQLite, keys, archive, Prefect's own database), a sandbox bank
process with two banks of different dialects on loopback, the demo company and its users,
a voucher file with bad rows, approvals with the users' one-time codes, the payment run as
a Prefect flow, and a summary of where every voucher ended.

The risk rules screen every voucher at intake. The demo shows one deliberate hold: a
6,800,000.00 CNY equipment payment (above the 5,000,000.00 single-payment threshold) arrives in
its own file after the main one, is held, and the treasurer releases it with his one-time code
back into approval, where the approvers (up to the CFO) approve it like any other.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from yinqi.demo.approve import approve_pending, release_deliberate_holds
from yinqi.demo.setup import demo_world
from yinqi.demo.vouchers import SHIPPED, generate, large_payment
from yinqi.pipeline.run import totals_by_state


@dataclass
class DemoOptions:
    home: Path
    payments: int | None = None
    seed: int = 1
    database_url: str | None = None
    poll_seconds: float = 0.5
    settle_after: float = 1.0
    max_follow_seconds: float = 600.0
    prefect: bool = True
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: Set by :func:`run_demo`: the payment run's id in Prefect (the summary stays as it was).
    flow_run_id: str | None = None


def prefect_environment(home: Path) -> None:
    """Prefect without network and with its state inside the demo home, unless the operator
    points at a running server (PREFECT_API_URL)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_HOME"] = str(home / "prefect")
        # A fresh ephemeral server migrates its database first; 20 s is often too short here.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def run_demo(options: DemoOptions) -> dict[str, Any]:
    if options.prefect:
        prefect_environment(options.home)
    started = time.perf_counter()
    stages = options.stage_seconds
    with demo_world(options.home / "yinqi", database_url=options.database_url,
                    settle_after=options.settle_after) as world:
        app = world.app
        stages["setup"] = time.perf_counter() - started
        mark = time.perf_counter()
        if options.payments is None:
            file = SHIPPED
        else:
            today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
            file = options.home / f"vouchers-{options.payments}-seed{options.seed}.csv"
            file.write_bytes(generate(options.payments, options.seed, day=today))
        from yinqi.cli.vouchers_cmd import run_import

        intake = run_import(app, file, imported_by="demo")
        large = options.home / "vouchers-large-payment.csv"
        large.write_bytes(large_payment(datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
                                        .date()))
        deliberate = run_import(app, large, imported_by="demo")
        stages["intake"] = time.perf_counter() - mark
        mark = time.perf_counter()
        released = release_deliberate_holds(app, datetime.now(UTC))
        approvals = approve_pending(app, datetime.now(UTC))
        stages["approval"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if options.prefect:
            from flows.payment import payment_run
            from tasks.context import use_app

            use_app(app)
            state = payment_run(wait_for_approval=False, poll_seconds=options.poll_seconds,
                                max_follow_seconds=options.max_follow_seconds,
                                return_state=True)
            options.flow_run_id = str(state.state_details.flow_run_id)
            timing = state.result()["timing"]
        else:
            from yinqi.pipeline import Pacing, drive

            drive(app, pacing=Pacing(base=options.poll_seconds),
                  deadline=time.monotonic() + options.max_follow_seconds)
            timing = {}
        stages["payment_run"] = time.perf_counter() - mark
        mark = time.perf_counter()
        recon = _reconcile(world, options.prefect)
        stages["reconciliation"] = time.perf_counter() - mark
        with app.sessions() as s:
            verdict = app.audit.verify(s)
            from yinqi.store.models import Alert, Batch

            batches = s.execute(select(Batch.bank, Batch.state, func.count())
                                .group_by(Batch.bank, Batch.state)).all()
            alerts = s.execute(select(Alert.kind, func.count()).group_by(Alert.kind)).all()
            risk = _risk_summary(s, released)
        states = {t.state: {"count": t.count, "amounts": t.amounts}
                  for t in totals_by_state(app)}
        open_states = {"APPROVED", "BATCHED", "SIGNED", "SUBMITTING", "UNKNOWN", "ACCEPTED"}
        unfinished = sum(v["count"] for st, v in states.items() if st in open_states)
        return {
            "home": str(options.home),
            "voucher_file": str(file),
            "vouchers": {"rows": intake.accepted + len(intake.quarantined),
                         "accepted": intake.accepted,
                         "quarantined": [{"row": r, "reason": why}
                                         for r, why in intake.quarantined],
                         "duplicates": len(intake.duplicates),
                         "deliberate_large_payment": deliberate.payment_ids},
            "risk": risk,
            "approvals": dict(approvals),
            "payments": sum(v["count"] for v in states.values()),
            "states": states,
            "unfinished": unfinished,
            "batches": [{"bank": b, "state": st, "count": n} for b, st, n in batches],
            "alerts": {k: n for k, n in alerts},
            "audit": {"ok": verdict.ok, "events": verdict.checked},
            "reconciliation": recon,
            "prefect": timing,
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
            "total_seconds": round(time.perf_counter() - started, 3),
            "ok": verdict.ok and unfinished == 0 and recon["open_exceptions"] == 0,
        }


def _risk_summary(session: Any, released: list[int]) -> dict[str, Any]:
    """What the risk rules did: hits per rule and action, holds released, what is still held
    or frozen (the demo means to leave nothing held)."""
    from yinqi.store.models import Freeze, Payment, RiskHit

    hits = session.execute(select(RiskHit.rule, RiskHit.action, func.count())
                           .group_by(RiskHit.rule, RiskHit.action)).all()
    still_held = list(session.execute(select(Payment.id).where(Payment.state == "HELD")
                                      .order_by(Payment.id)).scalars())
    frozen = session.execute(select(func.count()).select_from(Freeze)
                             .where(Freeze.status == "active")).scalar_one()
    return {"hits": {f"{rule} ({action})": n for rule, action, n in sorted(hits)},
            "released_by_treasurer": released, "still_held": still_held,
            "active_freezes": frozen}


def _reconcile(world: Any, prefect: bool) -> dict[str, Any]:
    """Close the bank's business day (the sandbox's clock jumps to the next morning), then
    fetch the day's statements, check them, match them and report."""
    answer = world.control("POST", "clock", json={"advance_seconds": 86_400})
    bank_now = datetime.fromisoformat(answer["now"]).astimezone(ZoneInfo("Asia/Shanghai"))
    day = bank_now.date() - timedelta(days=1)
    if prefect:
        from flows.reconciliation import daily_reconciliation

        out = daily_reconciliation(day=day)
        matching, statements = out["matching"], out["statements"]
    else:
        from yinqi.recon import fetch_statements, reconcile

        fetched = fetch_statements(world.app, None, day, day)
        statements = {"accepted": len(fetched.intake.accepted),
                      "quarantined": len(fetched.intake.quarantined),
                      "errors": fetched.errors}
        matching = reconcile(world.app, first=day, last=day).as_json()
    written_off = _write_off_funding(world.app)
    from yinqi.identifiers import mask
    from yinqi.recon import daily_report, list_exceptions

    still_open = len(list_exceptions(world.app))
    report = [{**r.as_json(), "account": mask(r.account)}
              for r in daily_report(world.app, day)]
    return {"day": day.isoformat(), "statements": statements, "written_off": written_off,
            "open_exceptions": still_open,
            "match_rate": matching["match_rate"], "matched_lines": matching["matched_lines"],
            "lines": matching["lines"], "matches": matching["matches"],
            "reconciled": matching["reconciled"], "exceptions": matching["new_exceptions"],
            "accounts": [{k: r[k] for k in ("account", "bank_closing", "ledger_balance",
                                            "difference", "unmatched_lines")} for r in report]}


def _write_off_funding(app: Any) -> int:
    """The treasurer's part of the morning: the sandbox bank funded each demo account with
    one credit on its first day, which no payment explains; it is written off with that
    reason (audited), as an operator would."""
    from yinqi.recon import list_exceptions, write_off

    done = 0
    for e in list_exceptions(app):
        if e["side"] == "line" and not e["amount"].startswith("-") and not e["reference"] \
                and not e["counterparty"]:
            write_off(app, e["id"], actor="liu.treasurer",
                      reason="opening balance: the sandbox bank funded the account")
            done += 1
    return done


def default_home(base: Path, now: date | datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return base / "demo" / stamp
