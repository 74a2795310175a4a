"""Benchmark backups: a full backup of an installation with N payments, its verification, and
restores into a fresh SQLite file and a fresh PostgreSQL database.

    python -m bench.backup [--payments N] [--seed S] [--json] [--no-postgresql] [--keep]
                           [--profile STEP] [--receipt-files K]

The installation is made once per size and kept under ``var/bench-cache/`` (keyed by the
size, the seed, the schema revision and the generator's revision), so later runs skip it.
It is not made through the pipeline (a few hundred payments a second) but written in bulk,
as the pipeline would have left it after ``N / 2,000`` working days: every day one voucher
file of about 2,000 rows (1% of them quarantined), payments from the company's four
accounts to 5,000 recurring payees, approvals by the policy's levels (one decision per
payment and level, as approvers decide them), batches of at most 100 payments, two status
reports per payment sent, receipts, a statement per account and day with a line per payment
(and a fee line for payments to other banks), reconciliation matches, risk hits and alerts
for new payees, and the audit chain of all of it: every event is sealed with the real chain
functions (``yinqi.audit.link``), so restores verify it end to end. All days but the last
are finished (~99% RECONCILED, the rest FAILED, REJECTED, CANCELLED or RETURNED); the last
day is in flight (pending approval, held, approved, batched ... receipted).

One JSON object with ``--json``:

- ``payments``, ``rows`` (every table), ``database_mb`` (the SQLite file), ``audit_events``;
- ``generate_seconds`` (making the installation; null when it came from the cache, then
  ``generate_seconds_cached`` is what it took back then);
- ``backup``: ``seconds``, ``cpu_seconds`` (this process), ``rows_per_second``, ``stored_mb``,
  ``parts``; ``verify``: ``seconds``, ``cpu_seconds``;
- ``restore_sqlite`` and ``restore_postgresql``: ``seconds``, ``cpu_seconds`` (this process
  only: PostgreSQL's own CPU is not in it), ``audit_events_verified``; the PostgreSQL restore
  is null with a ``reason`` when PostgreSQL is unreachable;
- ``incremental``: once ``yinqi.backup.create_backup`` exists, an incremental backup after
  1% of the payments changed (``changes``: that many RECONCILED payments moved to RETURNED,
  audited, and one more working day of that many new payments; ``change_seconds``): its
  ``seconds``, ``cpu_seconds``, ``stored_mb``, ``parts``, ``rows_written`` (and per table),
  ``rows_deleted``, and ``restore_chain_sqlite``, the full backup plus the incremental
  restored into a fresh SQLite file; else null with the reason;
- ``peak_rss_mb`` and ``rss_high_water_mb`` (the process's high-water mark after each step:
  where it rises, that step raised it).

``--receipt-files K`` also writes K receipt-sized files (10 KiB, sealed, so incompressible)
into the archive: a real installation keeps one per receipted payment, and the backup packs
them; they are left out by default so the figures are the database's.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import json
import math
import os
import pstats
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, bindparam, text

DEFAULT_PAYMENTS = 1_000_000
#: Bump whenever the generated installation changes: cached installations are then remade.
GENERATOR_REVISION = 1
CACHE_DIR = Path("var/bench-cache")
MASTER_SECRET = "bench-backup-master-secret-" + "m" * 32
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"

PER_DAY = 2000
BATCH_SIZE = 100
PAYEES = 5000
APPROVAL_SITTING = 10
RECEIPTS_PER_ANSWER = 250
FLUSH_ROWS = 200_000
LAST_DAY = date(2026, 11, 20)
FEE_MINOR = 550
RECEIPT_FILE_BYTES = 10 * 1024
#: 1% of the payments: as many state moves and as many new payments before the incremental.
CHANGE_SHARE = 0.01

MAKERS = ("wu.maker", "zhou.maker")
LEVEL_ONE = ("li.approver", "sun.approver")
BY_ROLE = {"finance_manager": "chen.manager", "cfo": "wang.cfo"}
CATEGORIES = (("supplier", "供应商", "货款"), ("payroll", "工资", "11月工资"),
              ("expense", "报销", "差旅费报销"), ("supplier", "供应商", "服务费"))
BANKS = (("中国工商银行北京分行营业部", "102100099996"), ("招商银行深圳分行", "308584000013"),
         ("中国建设银行上海浦东分行", "105290036005"), ("中国农业银行南京分行", "103301000016"),
         ("中国银行杭州分行", "104331000018"), ("兴业银行广州分行", "309581000011"))
CITIES = ("北京", "上海", "广州", "深圳", "杭州", "南京", "苏州", "成都", "武汉", "西安")
WORDS = ("华信", "恒通", "瑞丰", "永盛", "安达", "宏远", "鑫源", "嘉禾", "中联", "新元")
TRADES = ("科技", "物流", "建材", "机电", "软件", "贸易", "制造", "包装", "电子", "化工")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"
#: Bank code -> its CNAPS prefix: payments to other banks clear through CNAPS, with a fee.
OWN_CNAPS = {"icbc-sandbox": "102", "cmb-sandbox": "308"}
STATEMENT_CHECKS = ("required_fields", "statement_currency", "period", "balance", "continuity",
                    "sequence", "line_required_fields", "line_currency", "line_status",
                    "line_dates", "line_amount_nonzero", "line_amount_decimals",
                    "entry_ref_unique")

#: Ladder of a batched payment; a batch's payments all stand on its rung (or FAILED).
BATCHED, SIGNED, SUBMITTING, ACCEPTED, SETTLED, RECEIPTED, RECONCILED = range(3, 10)
BATCH_STATE = {BATCHED: "BUILT", SIGNED: "SIGNED", SUBMITTING: "SUBMITTING",
               ACCEPTED: "ACCEPTED"}
#: The last day's batches: how far each got (the share of batches on each rung).
IN_FLIGHT_RUNGS = ((BATCHED, 0.15), (SIGNED, 0.1), (SUBMITTING, 0.1), (ACCEPTED, 0.2),
                   (SETTLED, 0.2), (RECEIPTED, 0.25))


# --- writing rows in bulk ------------------------------------------------------------------

class _TableWriter:
    """Rows of one table, converted by the column types' own bind processors (so timestamps,
    JSON and sealed JSON are stored exactly as the models store them) and written with the
    driver's executemany. Columns named in ``sealed`` take values already sealed: payee names
    and accounts repeat, and deterministic sealing is paid once per distinct value."""

    def __init__(self, conn: Connection, table: Table, sealed: frozenset[str]) -> None:
        dialect = conn.dialect
        self.table = table.name
        self.columns = [c.name for c in table.columns]
        self.required = {c.name for c in table.columns if not c.nullable}
        self.processors = [
            (i, proc) for i, c in enumerate(table.columns) if c.name not in sealed
            for proc in [c.type.dialect_impl(dialect).bind_processor(dialect)] if proc]
        q = dialect.identifier_preparer.quote
        self.sql = (f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in self.columns)}) "
                    f"VALUES ({', '.join('?' * len(self.columns))})")
        self.rows: list[list[Any]] = []
        self.written = 0
        self._checked = False

    def add(self, row: dict[str, Any]) -> None:
        if not self._checked:
            unknown = row.keys() - set(self.columns)
            missing = self.required - row.keys()
            if unknown or missing:
                raise ValueError(f"{self.table}: unknown {sorted(unknown)}, "
                                 f"missing {sorted(missing)}")
            self._checked = True
        self.rows.append([row.get(c) for c in self.columns])

    def flush(self, conn: Connection) -> None:
        if not self.rows:
            return
        for values in self.rows:
            for i, proc in self.processors:
                values[i] = proc(values[i])
        conn.exec_driver_sql(self.sql, [tuple(values) for values in self.rows])
        self.written += len(self.rows)
        self.rows = []


class _Writers:
    def __init__(self, conn: Connection) -> None:
        from yinqi.store.models import Base

        sealed = {"payments": {"creditor_name", "creditor_account"},
                  "statements": {"account"},
                  "statement_lines": {"counterparty_name", "counterparty_account"},
                  "recon_exceptions": {"account"}}
        self.conn = conn
        # Dependency order: a flush never writes a row before the row it refers to.
        self.by_table = {t.name: _TableWriter(conn, t, frozenset(sealed.get(t.name, ())))
                         for t in Base.metadata.sorted_tables}

    def __getitem__(self, table: str) -> _TableWriter:
        return self.by_table[table]

    @property
    def pending(self) -> int:
        return sum(len(w.rows) for w in self.by_table.values())

    def flush(self) -> None:
        for writer in self.by_table.values():
            writer.flush(self.conn)


# --- the installation ------------------------------------------------------------------------

@dataclass(frozen=True)
class Payee:
    name: str
    account: str
    bank_name: str
    cnaps: str
    sealed_name: str
    sealed_account: str


@dataclass(frozen=True)
class Account:
    id: int
    bank: str
    dialect: str
    number: str
    sealed: str
    currency: str


@dataclass
class _Payment:
    id: int
    voucher_id: int
    e2e: str
    account: Account
    payee_index: int
    payee: Payee
    amount: int
    category: str
    purpose: str
    urgent: bool
    maker: str
    levels: tuple[str, ...]
    #: What happens to it: "held", "cancelled", "rejected", "pending", "approved", "batched".
    fate: str
    approved_levels: int = 0
    rung: int = 0
    failed: bool = False
    returned: bool = False
    batch: _BatchPlan | None = None
    bank_reference: str | None = None
    moves: int = 0
    state: str = "REQUESTED"
    reason: str | None = None
    updated_at: datetime | None = None


@dataclass
class _BatchPlan:
    id: int
    msg_id: str
    account: Account
    urgent: bool
    rung: int
    payments: list[_Payment] = field(default_factory=list)


def _hex(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def _levels(category: str, amount_minor: int) -> tuple[str, ...]:
    """The shipped approval policy (config/defaults/approval_policy.toml)."""
    if category == "payroll" or 5_000_000 <= amount_minor < 100_000_000:
        return ("approver", "finance_manager")
    if amount_minor < 5_000_000:
        return ("approver",)
    return ("approver", "finance_manager", "cfo")


class World:
    """Writes an installation's history day by day; see the module docstring."""

    def __init__(self, app: Any, conn: Connection, seed: int) -> None:
        from yinqi.security.master import derive_key

        self.app, self.conn = app, conn
        self.rng = random.Random(seed)
        self.w = _Writers(conn)
        self.audit_key = derive_key(app.master_secret, "audit/chain")
        self.seq, self.head_hash = self._chain_head()
        self.next_id = {name: self._max_id(name) + 1 for name in (
            "import_files", "vouchers", "quarantined_rows", "payments", "batches", "approvals",
            "status_reports", "receipts", "statements", "statement_lines", "recon_matches",
            "recon_match_items", "recon_exceptions", "alerts", "risk_hits")}
        self.accounts = self._accounts()
        self.payees = self._payees()
        self.seen_payees: set[int] = set()
        self.balances = self._balances()
        self.statement_seq = {a.id: 0 for a in self.accounts}
        self.receipt_paths: list[str] = []

    # -- what the database already holds

    def _chain_head(self) -> tuple[int, str]:
        from yinqi import audit

        row = self.conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
        return (int(row[0]), str(row[1])) if row else (0, audit.GENESIS_HASH)

    def _max_id(self, table: str) -> int:
        return int(self.conn.execute(text(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"'))
                   .scalar_one())

    def _accounts(self) -> list[Account]:
        fields = self.app.fields
        rows = self.conn.execute(text(
            "SELECT id, bank, number, currency FROM bank_accounts ORDER BY id")).all()
        banks = self.app.config.banks
        return [Account(int(i), str(bank), str(banks[bank].dialect),
                        fields.open(number, "account"), str(number), str(currency))
                for i, bank, number, currency in rows]

    def _balances(self) -> dict[int, int]:
        rows = self.conn.execute(text(
            "SELECT bank_account_id, closing_minor FROM statements WHERE id IN "
            "(SELECT MAX(id) FROM statements GROUP BY bank_account_id)")).all()
        known = {int(a): int(c) for a, c in rows if a is not None}
        return {a.id: known.get(a.id, 0) for a in self.accounts}

    def _payees(self) -> list[Payee]:
        rng, fields = random.Random("payees"), self.app.fields
        payees = []
        for n in range(PAYEES):
            if n % 4 == 3:
                name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN)
                                                      for _ in range(rng.choice((1, 2))))
            else:
                name = (f"{rng.choice(CITIES)}{rng.choice(WORDS)}{rng.choice(TRADES)}有限公司"
                        + (f"第{n}分公司" if n >= 1000 else ""))
            account = str(rng.randrange(10**15, 10**19))
            bank_name, cnaps = rng.choice(BANKS)
            payees.append(Payee(name, account, bank_name, cnaps, fields.seal(name, "name"),
                                fields.seal(account, "account")))
        return payees

    # -- ids and the audit chain

    def _id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    def event(self, at: datetime, actor: str, action: str, subject_type: str,
              ids: Sequence[object], details: dict[str, Any]) -> None:
        """Append one event to the chain with the real chain functions (details must be
        plain JSON: string keys, lists, so they read back exactly as hashed)."""
        from yinqi import audit

        self.seq += 1
        event = audit.AuditEvent(seq=self.seq, occurred_at=at, actor=actor, action=action,
                                 subject_type=subject_type,
                                 subject_ids=audit.subject_ids(ids), details=details)
        sealed = audit.link(self.head_hash, event, self.audit_key)
        self.head_hash = sealed.hash
        self.w["audit_events"].add({
            "seq": event.seq, "occurred_at": at, "actor": actor, "action": action,
            "subject_type": subject_type, "subject_ids": list(event.subject_ids),
            "details": details, "prev_hash": sealed.prev_hash, "hash": sealed.hash,
            "mac": sealed.mac})

    def move(self, at: datetime, actor: str, payments: Sequence[_Payment], to: str,
             reason: str | None) -> None:
        """A ``payment.state`` event as ``yinqi.store.transitions.move_payments`` writes it."""
        for chunk in _chunks(sorted(payments, key=lambda p: p.id), 5000):
            sources: dict[str, int] = {}
            for p in chunk:
                sources[p.state] = sources.get(p.state, 0) + 1
                p.state, p.reason, p.updated_at = to, reason, at
                p.moves += 1
            self.event(at, actor, "payment.state", "payment", [p.id for p in chunk],
                       {"to": to, "from": dict(sorted(sources.items())), "reason": reason})

    def finish(self) -> None:
        from yinqi import audit

        self.w.flush()
        head = audit.make_head(self.seq, self.head_hash, self.audit_key)
        self.conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h, mac = :m "
                               "WHERE id = 1"), {"s": head.seq, "h": head.hash, "m": head.mac})

    def maybe_flush(self) -> None:
        if self.w.pending >= FLUSH_ROWS:
            self.w.flush()

    # -- one working day

    def day(self, day: date, count: int, *, in_flight: bool) -> None:
        rng = self.rng
        clock = datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)

        def at(hour: float) -> datetime:
            return clock + timedelta(hours=hour - 9, microseconds=rng.randrange(10**6))

        maker = MAKERS[day.toordinal() % 2]
        payments = [self._payment(day, maker, in_flight) for _ in range(count)]
        self._intake(day, at(9), maker, payments)
        self._approvals(at, payments)
        batches = self._batches(day, payments, in_flight)
        self._pipeline(day, at, batches)
        if not in_flight:
            self._reconcile(day, at(21), payments)
        self._write_payments(payments, at(9))
        self.maybe_flush()

    def _payment(self, day: date, maker: str, in_flight: bool) -> _Payment:
        rng = self.rng
        r = rng.random()
        account = self.accounts[0 if r < 0.4 else 1 if r < 0.7 else 2 if r < 0.98 else 3]
        category, _, purpose = rng.choice(CATEGORIES)
        r = rng.random()
        low, high = (10_000, 5_000_000) if r < 0.75 else \
            (5_000_000, 100_000_000) if r < 0.98 else (100_000_000, 490_000_000)
        amount = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        r = rng.random()
        if in_flight:
            fate = ("held" if r < 0.005 else "rejected" if r < 0.008 else
                    "cancelled" if r < 0.010 else "pending" if r < 0.35 else
                    "approved" if r < 0.45 else "batched")
        else:
            fate = "rejected" if r < 0.003 else "cancelled" if r < 0.005 else "batched"
        if fate == "held":
            amount = 500_000_000 + rng.randrange(100_000_000)
        payee_index = rng.randrange(PAYEES)
        return _Payment(
            id=self._id("payments"), voucher_id=self._id("vouchers"),
            e2e=f"YQ{rng.getrandbits(128):032X}", account=account, payee_index=payee_index,
            payee=self.payees[payee_index], amount=amount, category=category,
            purpose=purpose, urgent=rng.random() < 0.05, maker=maker,
            levels=_levels(category, amount), fate=fate)

    def _intake(self, day: date, at: datetime, maker: str, payments: list[_Payment]) -> None:
        rng, w = self.rng, self.w
        file_id = self._id("import_files")
        name = f"/data/erp/exports/payments-{day.strftime('%Y%m%d')}.csv"
        sha = _hex(rng, 64)
        bad = max(1, len(payments) // 100)
        w["import_files"].add({
            "id": file_id, "source": "erp", "file_name": name, "sha256": sha,
            "imported_at": at, "imported_by": maker, "accepted": len(payments),
            "quarantined": bad, "duplicates": 0})
        for row, p in enumerate(payments, start=2):
            w["vouchers"].add({
                "id": p.voucher_id, "source": "erp",
                "external_ref": f"PV{day.strftime('%Y%m%d')}{row:06d}",
                "import_file_id": file_id, "row_number": row,
                "payload": self._voucher_fields(day, p, row), "received_at": at})
        for k in range(bad):
            p = payments[k]
            fields = self._voucher_fields(day, p, len(payments) + 2 + k)
            fields["联行号"] = fields["联行号"][:-1]
            w["quarantined_rows"].add({
                "id": self._id("quarantined_rows"), "import_file_id": file_id,
                "row_number": len(payments) + 2 + k,
                "reason": f"联行号 '{fields['联行号']}': has 11 digits, a CNAPS code has 12",
                "payload": fields, "created_at": at})
        self.event(at, maker, "vouchers.imported", "import_file", [file_id], {
            "file": name, "sha256": sha, "source": "erp", "rows": len(payments) + bad,
            "accepted": len(payments), "quarantined": bad, "duplicates": 0})
        fresh = [p for p in payments if p.payee_index not in self.seen_payees]
        self.seen_payees.update(p.payee_index for p in fresh)
        if fresh:
            self._risk(at, maker, fresh, "new_payee", "alert", "warning")
        held = [p for p in payments if p.fate == "held"]
        if held:
            self._risk(at, maker, held, "large_single_amount", "hold", "critical")
        self.move(at, maker, [p for p in payments if p.fate != "held"], "PENDING_APPROVAL",
                  f"imported from {name}")
        if held:
            self.move(at, maker, held, "HELD", "risk: held by large_single_amount")

    def _voucher_fields(self, day: date, p: _Payment, row: int) -> dict[str, str]:
        label = next(c[1] for c in CATEGORIES if c[0] == p.category)
        return {"单据编号": f"PV{day.strftime('%Y%m%d')}{row:06d}", "单据日期": day.isoformat(),
                "付款账号": p.account.number, "收款户名": p.payee.name,
                "收款账号": p.payee.account, "收款银行": p.payee.bank_name,
                "联行号": p.payee.cnaps, "金额": f"{p.amount // 100}.{p.amount % 100:02d}",
                "币种": p.account.currency, "用途": p.purpose, "类别": label,
                "加急": "是" if p.urgent else "否", "制单人": p.maker,
                "期望付款日": day.isoformat()}

    def _risk(self, at: datetime, actor: str, hits: list[_Payment], rule: str, action: str,
              severity: str) -> None:
        alert_id = self._id("alerts")
        first = (f"first payment to payee account ****{hits[0].payee.account[-4:]}"
                 if rule == "new_payee" else
                 f"payment of {hits[0].amount / 100:,.2f} CNY to "
                 f"****{hits[0].payee.account[-4:]} is at or above the single-payment "
                 "threshold 5,000,000.00 CNY")
        self.w["alerts"].add({
            "id": alert_id, "kind": f"risk.{rule}", "severity": severity,
            "subject": f"{len(hits)} payment(s) hit risk rule {rule}",
            "message": first + (f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""),
            "details": {"rule": rule, "action": action, "stage": "intake",
                        "payment_ids": [p.id for p in hits][:1000]},
            "created_at": at})
        for p in hits:
            self.w["risk_hits"].add({
                "id": self._id("risk_hits"), "rule": rule, "action": action,
                "subject_type": "payment", "subject_id": p.id, "payment_id": p.id,
                "message": first if p is hits[0] else
                f"first payment to payee account ****{p.payee.account[-4:]}",
                "details": {"account": f"****{p.payee.account[-4:]}", "stage": "intake"},
                "status": "open", "created_at": at})
        self.event(at, actor, "risk.fired", "payment", [p.id for p in hits], {
            "rule": rule, "action": action, "stage": "intake", "hits": len(hits),
            "alert_id": alert_id, "first": first})

    def _approvals(self, at: Callable[[float], datetime], payments: list[_Payment]) -> None:
        """Approvers decide one payment at a time; a sitting of ten decisions ends with the
        completed payments' move to APPROVED."""
        rng, w = self.rng, self.w
        deciding = [p for p in payments if p.fate in ("rejected", "pending", "approved",
                                                      "batched")]
        for p in deciding:
            if p.fate == "pending":
                p.approved_levels = rng.randrange(len(p.levels))
            elif p.fate != "rejected":
                p.approved_levels = len(p.levels)
        for level in (1, 2, 3):
            todo = [p for p in deciding if p.approved_levels >= level]
            hour = 9.5 + level * 1.5
            for sitting in _chunks(todo, APPROVAL_SITTING):
                role = sitting[0].levels[level - 1]
                who = rng.choice(LEVEL_ONE) if level == 1 else BY_ROLE[role]
                when = at(hour)
                hour += 0.01
                for p in sitting:
                    w["approvals"].add({
                        "id": self._id("approvals"), "payment_id": p.id, "approval_round": 1,
                        "level": level, "role": p.levels[level - 1], "approver": who,
                        "decision": "approved", "reason": None, "decided_at": when})
                    self.event(when, who, "approval.approved", "payment", [p.id], {
                        "levels": {str(level): [p.id]},
                        "roles": {str(level): p.levels[level - 1]}, "reason": None})
                done = [p for p in sitting if p.approved_levels == level]
                if done:
                    self.move(when, who, done, "APPROVED", None)
        for p in (p for p in deciding if p.fate == "rejected"):
            when, who = at(10), rng.choice(LEVEL_ONE)
            reason = "duplicate of an earlier payment to this payee"
            w["approvals"].add({
                "id": self._id("approvals"), "payment_id": p.id, "approval_round": 1,
                "level": 1, "role": "approver", "approver": who, "decision": "rejected",
                "reason": reason, "decided_at": when})
            self.event(when, who, "approval.rejected", "payment", [p.id],
                       {"levels": {"1": [p.id]}, "roles": {"1": "approver"},
                        "reason": reason})
            self.move(when, who, [p], "REJECTED", reason)
        cancelled = [p for p in payments if p.fate == "cancelled"]
        if cancelled:
            self.move(at(12), cancelled[0].maker, cancelled, "CANCELLED",
                      "cancelled by the maker: paid by other means")

    def _batches(self, day: date, payments: list[_Payment], in_flight: bool
                 ) -> list[_BatchPlan]:
        rng = self.rng
        groups: dict[tuple[int, bool], list[_Payment]] = {}
        for p in payments:
            if p.fate == "batched":
                groups.setdefault((p.account.id, p.urgent), []).append(p)
        batches = []
        for (_, urgent), members in sorted(groups.items()):
            for chunk in _chunks(members, BATCH_SIZE):
                rung = RECONCILED
                if in_flight:
                    r, rung = rng.random(), BATCHED
                    for candidate, share in IN_FLIGHT_RUNGS:
                        rung = candidate
                        if r < share:
                            break
                        r -= share
                batch = _BatchPlan(self._id("batches"),
                                   f"YQB{day.strftime('%Y%m%d')}{rng.getrandbits(64):016X}",
                                   chunk[0].account, urgent, rung, list(chunk))
                for p in chunk:
                    p.batch, p.rung = batch, rung
                    p.failed = rung >= ACCEPTED and rng.random() < 0.005
                    p.returned = rung == RECONCILED and not p.failed and rng.random() < 0.0005
                batches.append(batch)
        return batches

    def _pipeline(self, day: date, at: Callable[[float], datetime],
                  batches: list[_BatchPlan]) -> None:
        rng, w = self.rng, self.w
        worker = f"vm:{1000 + day.toordinal() % 9000}"
        folder = f"archive/{{bank}}/{day.isoformat()}"
        for b in batches:
            built = at(16)
            ext = "xml" if b.account.dialect == "iso20022" else "json"
            order = f"{folder.format(bank=b.account.bank)}/{built:%H%M%S%f}-order-{b.msg_id}.{ext}"
            order_sha = _hex(rng, 64)
            self.move(built, worker, b.payments, "BATCHED", f"batch {b.msg_id}")
            total = sum(p.amount for p in b.payments)
            self.event(built, worker, "batch.built", "batch", [b.id], {
                "msg_id": b.msg_id, "bank": b.account.bank, "payments": len(b.payments),
                "total": f"{total // 100}.{total % 100:02d}",
                "currency": b.account.currency, "execution_date": day.isoformat()})
            signed = sent = polled = None
            if b.rung >= SIGNED:
                signed = at(16.2)
                self.move(signed, worker, b.payments, "SIGNED", f"batch {b.msg_id}")
                self.event(signed, worker, "batch.signed", "batch", [b.id], {
                    "msg_id": b.msg_id, "sha256": order_sha, "file": order})
            if b.rung >= SUBMITTING:
                sent = at(16.4)
                self.move(sent, worker, b.payments, "SUBMITTING",
                          f"batch {b.msg_id} attempt 1")
                self.event(sent, worker, "batch.sending", "batch", [b.id], {
                    "msg_id": b.msg_id, "sha256": order_sha, "attempt": 1,
                    "bank": b.account.bank})
            if b.rung >= ACCEPTED:
                polled = at(16.6)
                self._answer(b, polled, worker, folder)
            if b.rung >= SETTLED:
                settled = at(17)
                ok = [p for p in b.payments if not p.failed]
                self._status_reports(b, ok, settled, folder, "ACSC")
                self.move(settled, worker, ok, "SETTLED", None)
                if b.rung >= RECEIPTED:
                    self._receipts(b, ok, at(18), worker, folder)
            w["batches"].add({
                "id": b.id, "msg_id": b.msg_id, "bank": b.account.bank,
                "dialect": b.account.dialect, "debtor_account_id": b.account.id,
                "currency": b.account.currency, "urgent": b.urgent,
                "state": BATCH_STATE.get(b.rung, "COMPLETED"),
                "payment_count": len(b.payments), "total_minor": total,
                "execution_date": day, "file_path": order if signed else None,
                "file_sha256": order_sha if signed else None, "signed_at": signed,
                "next_poll_at": polled + timedelta(seconds=30) if polled else None,
                "poll_count": 1 if polled else 0, "last_error": None,
                "claimed_by": worker if sent else None, "claimed_at": sent,
                "lease_until": None, "send_attempts": 1 if sent else 0, "frozen": False,
                "rerun_of_id": None, "created_at": built, "updated_at": polled or built})

    def _answer(self, b: _BatchPlan, at: datetime, worker: str, folder: str) -> None:
        ok = [p for p in b.payments if not p.failed]
        failed = [p for p in b.payments if p.failed]
        self._status_reports(b, b.payments, at, folder, "ACSP")
        self.move(at, worker, ok, "ACCEPTED", None)
        if failed:
            self.move(at, worker, failed, "FAILED", "AC01: creditor account unknown at this bank")
        moved = {"ACCEPTED": len(ok)} | ({"FAILED": len(failed)} if failed else {})
        self.event(at, worker, "batch.answered", "batch", [b.id], {
            "msg_id": b.msg_id, "taken": True, "replayed": False, "moved": moved,
            "answer_sha256": _hex(self.rng, 64)})

    def _status_reports(self, b: _BatchPlan, payments: list[_Payment], at: datetime,
                        folder: str, status: str) -> None:
        kind = "pain.002" if b.account.dialect == "iso20022" else "h2h.query.answer"
        path = f"{folder.format(bank=b.account.bank)}/{at:%H%M%S%f}-{kind}-{b.msg_id}.xml"
        sha = _hex(self.rng, 64)
        for p in payments:
            rejected = p.failed and status == "ACSP"
            self.w["status_reports"].add({
                "id": self._id("status_reports"), "batch_id": b.id, "payment_id": p.id,
                "bank_msg_id": b.msg_id, "group_status": status,
                "tx_status": "RJCT" if rejected else status,
                "reason_code": "AC01" if rejected else None,
                "reason_text": "AC01: creditor account unknown at this bank" if rejected
                else None, "archive_path": path, "sha256": sha, "received_at": at})

    def _receipts(self, b: _BatchPlan, payments: list[_Payment], at: datetime, worker: str,
                  folder: str) -> None:
        rng = self.rng
        for answer in _chunks(payments, RECEIPTS_PER_ANSWER):
            digests: dict[str, str] = {}
            for p in answer:
                p.bank_reference = f"P{rng.getrandbits(64):016X}"
                path = (f"{folder.format(bank=b.account.bank)}/"
                        f"{at:%H%M%S}{rng.randrange(10**6):06d}-receipt-{p.e2e}.pdf")
                digests[str(p.id)] = _hex(rng, 64)
                self.receipt_paths.append(path)
                self.w["receipts"].add({
                    "id": self._id("receipts"), "payment_id": p.id,
                    "bank_reference": p.bank_reference,
                    "verification_code": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ234567")
                                                 for _ in range(16)),
                    "file_path": path, "sha256": digests[str(p.id)], "signature_valid": True,
                    "received_at": at})
            self.move(at, worker, answer, "RECEIPTED",
                      "bank receipt collected and its signature verified")
            self.event(at, worker, "receipt.collected", "payment", [p.id for p in answer],
                       {"sha256": digests})

    def _reconcile(self, day: date, at: datetime, payments: list[_Payment]) -> None:
        rng, w = self.rng, self.w
        actor = "yinqi.reconcile"
        booked = [p for p in payments if p.rung == RECONCILED and not p.failed]
        matches: dict[str, int] = {"exact_reference": 0, "amount_plus_fee": 0, "return": 0}
        lines_total = 0
        for account in self.accounts:
            mine = [p for p in booked if p.account is account]
            statement_id = self._id("statements")
            opening = self.balances[account.id]
            line_no = 0

            def line(amount: int, **values: Any) -> int:
                nonlocal line_no
                line_no += 1
                line_id = self._id("statement_lines")
                w["statement_lines"].add({
                    "id": line_id, "statement_pk": statement_id, "line_no": line_no,
                    "amount_minor": amount, "currency": account.currency,
                    "booking_date": day, "value_date": day, "is_reversal": False,
                    "status": "BOOK", **values})
                return line_id

            outflow = sum(p.amount for p in mine) + FEE_MINOR * len(mine)
            funding = outflow + rng.randrange(10**8) if mine else 0
            if funding:
                funded = line(funding, bank_reference=f"B{rng.getrandbits(64):016X}",
                              remittance="资金调拨")
                w["recon_exceptions"].add({
                    "id": self._id("recon_exceptions"), "payment_id": None,
                    "statement_line_id": funded, "account": account.sealed, "day": day,
                    "amount_minor": funding, "currency": account.currency, "candidates": [],
                    "status": "written_off", "resolution": "transfer between own accounts",
                    "resolved_by": "liu.treasurer", "resolved_at": at, "created_at": at})
            for p in mine:
                items = [line(-p.amount, end_to_end_id=p.e2e, bank_reference=p.bank_reference,
                              counterparty_name=p.payee.sealed_name,
                              counterparty_account=p.payee.sealed_account,
                              remittance=p.purpose)]
                other_bank = not p.payee.cnaps.startswith(OWN_CNAPS[account.bank])
                if other_bank:
                    items.append(line(-FEE_MINOR, bank_reference=f"B{rng.getrandbits(64):016X}",
                                      remittance=f"手续费 charges for {p.e2e}"))
                if p.returned:
                    items.append(line(p.amount, end_to_end_id=p.e2e,
                                      bank_reference=p.bank_reference,
                                      counterparty_name=p.payee.sealed_name,
                                      counterparty_account=p.payee.sealed_account,
                                      remittance=f"退汇 {p.e2e}", is_reversal=True))
                rule = "return" if p.returned else \
                    "amount_plus_fee" if other_bank else "exact_reference"
                matches[rule] += 1
                match_id = self._id("recon_matches")
                note = f"e2e {p.e2e} equal; amount {p.amount / 100:,.2f} {account.currency} equal"
                if other_bank:
                    note += f"; plus 1 separate fee line(s) {FEE_MINOR / 100:.2f} " \
                            f"{account.currency} naming it (remittance names e2e {p.e2e})"
                w["recon_matches"].add({
                    "id": match_id, "rule": rule, "score": 1.0 if rule == "exact_reference"
                    else 0.9, "status": "confirmed", "note": note, "created_by": actor,
                    "created_at": at})
                w["recon_match_items"].add({"id": self._id("recon_match_items"),
                                            "match_id": match_id, "payment_id": p.id})
                for item in items:
                    w["recon_match_items"].add({"id": self._id("recon_match_items"),
                                                "match_id": match_id,
                                                "statement_line_id": item})
            closing = opening + funding - outflow + sum(p.amount for p in mine if p.returned)
            self.balances[account.id] = closing
            self.statement_seq[account.id] += 1
            lines_total += line_no
            masked = f"****{account.number[-4:]}"
            prefix = account.bank.split("-")[0].upper()
            kind = "camt.053" if account.dialect == "iso20022" else "cn-h2h"
            sid = f"{prefix}-{masked}-{day.strftime('%Y%m%d')}"
            sha = _hex(rng, 64)
            source = f"{account.bank} statements {day}..{day}"
            w["statements"].add({
                "id": statement_id, "bank_account_id": account.id, "account": account.sealed,
                "currency": account.currency, "statement_id": sid, "msg_id": sid,
                "sequence": str(self.statement_seq[account.id]), "from_date": day,
                "to_date": day, "opening_minor": opening, "closing_minor": closing,
                "content_sha256": sha, "source": source, "status": "accepted",
                "reason": None, "kind": kind, "line_count": line_no,
                "checks": _statement_checks(masked, account.currency, sid, kind, day,
                                            line_no),
                "received_at": at})
            self.event(at, actor, "statement.accepted", "statement", [statement_id], {
                "statement_id": sid, "account": masked, "kind": kind, "lines": line_no,
                "status": "accepted", "source": source, "sha256": sha})
        self.move(at, actor, booked, "RECONCILED", "matched to the bank statement")
        returned = [p for p in booked if p.returned]
        if returned:
            self.move(at, actor, returned, "RETURNED",
                      "returned by the beneficiary's bank: account closed")
        self.event(at, actor, "reconcile.run", "reconciliation", [], {
            "first": day.isoformat(), "last": day.isoformat(), "payments": len(booked),
            "lines": lines_total, "matches": matches})

    def _write_payments(self, payments: list[_Payment], created: datetime) -> None:
        for p in payments:
            batched = p.batch is not None
            self.w["payments"].add({
                "id": p.id, "voucher_id": p.voucher_id, "end_to_end_id": p.e2e,
                "debtor_account_id": p.account.id, "creditor_name": p.payee.sealed_name,
                "creditor_account": p.payee.sealed_account,
                "creditor_bank_name": p.payee.bank_name, "creditor_cnaps": p.payee.cnaps,
                "creditor_bic": None, "amount_minor": p.amount,
                "currency": p.account.currency, "purpose": p.purpose, "category": p.category,
                "urgent": p.urgent, "requested_date": created.date(), "maker": p.maker,
                "state": p.state, "state_reason": p.reason,
                "batch_id": p.batch.id if batched and p.batch else None,
                "bank_reference": p.bank_reference, "send_round": 1, "approval_round": 1,
                "approved_digest": _hex(self.rng, 64)
                if p.approved_levels == len(p.levels) else None,
                "version": 1 + p.moves, "created_at": created,
                "updated_at": p.updated_at or created})


def _statement_checks(masked: str, currency: str, sid: str, kind: str, day: date,
                      lines: int) -> dict[str, Any]:
    """The shape ``yinqi.statement_checks`` records for an accepted statement."""
    return {
        "statement": {"account": masked, "currency": currency, "statement_id": sid,
                      "sequence": "1", "kind": kind, "from_date": day.isoformat(),
                      "to_date": day.isoformat(), "lines": lines},
        "passed": True, "verdict": "accepted",
        "checks": dict.fromkeys(STATEMENT_CHECKS, "passed"), "failures": [], "skipped": [],
        "warnings": [], "validator": "great_expectations 1.24.1",
        "expectations": [{"check": check, "expectation": "expect_column_values_to_not_be_null",
                          "columns": ["amount"], "success": True, "rows": lines,
                          "unexpected_count": 0} for check in STATEMENT_CHECKS]}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _app(home: Path, database_url: str | None = None) -> Any:
    from config import load_settings
    from yinqi.bootstrap import App

    return App(load_settings(home=home, database_url=database_url or
                             f"sqlite:///{home / 'yinqi.db'}", master_secret=MASTER_SECRET))


def generate(home: Path, payments: int, seed: int, receipt_files: int) -> dict[str, Any]:
    """A new installation in ``home`` with ``payments`` payments (see the module docstring)."""
    from yinqi.cli.init_cmd import run_init

    app = _app(home)
    try:
        run_init(app)
        days = max(1, math.ceil(payments / PER_DAY))
        # The first day takes what is left over, so every later day has PER_DAY payments.
        counts = [payments - PER_DAY * (days - 1)] + [PER_DAY] * (days - 1)
        with app.engine.begin() as conn:
            world = World(app, conn, seed)
            for n, count in enumerate(counts):
                world.day(LAST_DAY - timedelta(days=days - 1 - n), count,
                          in_flight=n == days - 1 and days > 1)
            world.finish()
            paths = world.receipt_paths[-receipt_files:] if receipt_files else []
        _write_receipt_files(app, paths)
    finally:
        app.close()
    # Into the database file itself, so the cache is one file that copies whole.
    with closing(sqlite3.connect(home / "yinqi.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"audit_events": world.seq, "receipt_files": len(paths)}


def _write_receipt_files(app: Any, paths: list[str]) -> None:
    """Receipt-sized files sealed as the archive seals them (incompressible, like real ones)."""
    body = os.urandom(RECEIPT_FILE_BYTES - 64)
    for path in paths:
        target = app.settings.home / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(app.files.seal(body, path))


# --- changing 1% before an incremental -------------------------------------------------------

def change_one_percent(app: Any, payments: int, seed: int) -> dict[str, int]:
    """Move 1% of the payments to another state (audited, as ``move_payments`` would) and add
    1% new payments as one more working day."""
    from yinqi.security.master import derive_key
    from yinqi.store.audit_log import AuditLog
    from yinqi.store.engine import session_factory
    from yinqi.store.types import UtcDateTime

    changes = max(1, int(payments * CHANGE_SHARE))
    rng = random.Random(f"{seed}:changes")
    log = AuditLog(derive_key(app.master_secret, "audit/chain"))
    with session_factory(app.engine).begin() as session:
        reconciled = session.execute(text(
            "SELECT id FROM payments WHERE state = 'RECONCILED' ORDER BY id")).scalars().all()
        moved = sorted(rng.sample(list(reconciled), min(changes, len(reconciled))))
        update = text(
            "UPDATE payments SET state = 'RETURNED', state_reason = :r, "
            "version = version + 1, updated_at = :t WHERE id IN :ids"
        ).bindparams(bindparam("t", type_=UtcDateTime()), bindparam("ids", expanding=True))
        for chunk in _chunks(list(moved), 1000):
            session.execute(update, {"r": "returned by the beneficiary's bank: account closed",
                                     "t": datetime.now(UTC), "ids": list(chunk)})
            log.append(session, actor="yinqi.reconcile", action="payment.state",
                       subject_type="payment", subject_ids=list(chunk),
                       details={"to": "RETURNED", "from": {"RECONCILED": len(chunk)},
                                "reason": "returned by the beneficiary's bank: account closed"})
    with app.engine.begin() as conn:
        world = World(app, conn, seed + 1)
        world.seen_payees = set(range(PAYEES))
        world.day(LAST_DAY + timedelta(days=1), changes, in_flight=True)
        world.finish()
    return {"moved": len(moved), "added": changes}


# --- the backup API, current and coming ------------------------------------------------------

@dataclass(frozen=True)
class BackupApi:
    """The calls the benchmark makes, whichever form ``yinqi.backup`` has: ``create_backup``
    with ``kind`` (chains, incrementals) or only ``create_full_backup``; verify and restore
    given a backup folder, or a target and a backup name."""

    chains: bool
    by_name: bool

    @classmethod
    def detect(cls) -> BackupApi:
        import yinqi.backup as backup

        second = list(inspect.signature(backup.verify_backup).parameters)[1:2]
        return cls(chains=hasattr(backup, "create_backup"), by_name=second == ["name"])

    def create(self, app: Any, root: Path, kind: str = "full") -> Any:
        import yinqi.backup as backup

        args = dict(home=app.settings.home, config_dir=app.settings.config_dir)
        if self.chains:
            return backup.create_backup(app.engine, backup.LocalTarget(root), app.master_secret,
                                        kind=kind, **args)
        return backup.create_full_backup(  # type: ignore[attr-defined]
            app.engine, backup.LocalTarget(root), app.master_secret, **args)

    def verify(self, root: Path, name: str, master: bytes) -> Any:
        import yinqi.backup as backup

        verify: Callable[..., Any] = backup.verify_backup
        if self.by_name:
            return verify(backup.LocalTarget(root), name, master)
        return verify(root / name, master)

    def restore(self, root: Path, name: str, url: str, master: bytes, home: Path) -> Any:
        import yinqi.backup as backup

        restore: Callable[..., Any] = backup.restore_backup
        if self.by_name:
            return restore(backup.LocalTarget(root), name, url, master, home)
        return restore(root / name, url, master, home)


# --- measuring -------------------------------------------------------------------------------

def _rss_high_water_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Steps:
    """Times each step (wall and this process's CPU), optionally under cProfile."""

    def __init__(self, profile: str | None, profile_dir: Path) -> None:
        self.profile, self.profile_dir = profile, profile_dir
        self.high_water: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, figures: dict[str, Any]) -> Iterator[None]:
        profiler = cProfile.Profile() if self.profile == name else None
        start, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        try:
            yield
        finally:
            if profiler:
                profiler.disable()
            figures["seconds"] = round(time.perf_counter() - start, 2)
            figures["cpu_seconds"] = round(time.process_time() - cpu, 2)
            self.high_water[name] = _rss_high_water_mb()
            if profiler:
                self._dump(name, profiler)

    def _dump(self, name: str, profiler: cProfile.Profile) -> None:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / f"{name}.prof"
        profiler.dump_stats(str(path))
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(30)
        print(f"--- {name}: cProfile by own time (saved to {path}) ---\n{out.getvalue()}",
              file=sys.stderr)


@contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL); dropped afterwards."""
    import psycopg

    name = f"yinqi_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_unreachable(admin_url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to connect is the reason to report
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"PostgreSQL not reachable at {admin_url}: {first}"
    return None


def cached_installation(payments: int, seed: int, receipt_files: int, cache: Path
                        ) -> tuple[Path, dict[str, Any], bool]:
    """The cached installation's home and what making it took; made (in a child process, so
    its memory is not this process's) when missing."""
    from yinqi.store.migrate import head_revision

    key = f"backup-{payments}-s{seed}-f{receipt_files}-{head_revision()}-g{GENERATOR_REVISION}"
    folder = cache.resolve() / key
    done = folder / "generated.json"
    made = False
    if not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        command = [sys.executable, "-m", "bench.backup", "--generate-only", str(folder),
                   "--payments", str(payments), "--seed", str(seed),
                   "--receipt-files", str(receipt_files)]
        subprocess.run(command, check=True)
        made = True
    return folder / "home", json.loads(done.read_text()), made


def _generate_into(folder: Path, payments: int, seed: int, receipt_files: int) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    info = generate(folder / "home", payments, seed, receipt_files)
    info.update(generate_seconds=round(time.perf_counter() - start, 1),
                generate_cpu_seconds=round(time.process_time() - cpu, 1),
                peak_rss_mb=_rss_high_water_mb())
    (folder / "generated.json").write_text(json.dumps(info))


def _copy_home(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*-wal", "*-shm"))


def _row_counts(app: Any) -> dict[str, int]:
    from yinqi.backup import facts
    from yinqi.store.models import Base

    with app.engine.connect() as conn:
        return {t.name: facts.row_count(conn, t.name) for t in Base.metadata.sorted_tables}


def _mb(size: float) -> float:
    return round(size / 2**20, 1)


def measure(payments: int, seed: int, *, postgresql: bool, pg_admin_url: str,
            receipt_files: int, cache: Path, keep: bool, profile: str | None
            ) -> dict[str, Any]:
    source_home, generated, made = cached_installation(payments, seed, receipt_files, cache)
    api = BackupApi.detect()
    work = Path(tempfile.mkdtemp(prefix="yinqi-bench-backup-"))
    steps = Steps(profile, cache.resolve() / "profiles")
    figures: dict[str, Any] = {"payments": payments}
    try:
        home = work / "home"
        _copy_home(source_home, home)
        app = _app(home)
        master = app.master_secret
        rows = _row_counts(app)
        figures.update(rows=sum(rows.values()), audit_events=rows["audit_events"],
                       database_mb=_mb((home / "yinqi.db").stat().st_size),
                       generate_seconds=generated["generate_seconds"] if made else None,
                       generate_seconds_cached=None if made else generated["generate_seconds"],
                       receipt_files=generated["receipt_files"])
        root = work / "backups"

        backup: dict[str, Any] = {}
        with steps.step("backup", backup):
            result = api.create(app, root)
        backup.update(rows_per_second=round(sum(result.rows.values()) / backup["seconds"]),
                      stored_mb=_mb(result.stored_bytes), parts=result.parts)
        figures["backup"] = backup

        verify: dict[str, Any] = {}
        with steps.step("verify", verify):
            api.verify(root, result.name, master)
        figures["verify"] = verify

        restored: dict[str, Any] = {}
        with steps.step("restore_sqlite", restored):
            report = api.restore(root, result.name, f"sqlite:///{work / 'restored.db'}",
                                 master, work / "restored-home")
        restored["audit_events_verified"] = report.audit_events_verified
        figures["restore_sqlite"] = restored
        for path in work.glob("restored.db*"):
            path.unlink()
        shutil.rmtree(work / "restored-home", ignore_errors=True)

        figures["restore_postgresql"] = _restore_postgresql(
            api, steps, root, result.name, master, work, postgresql, pg_admin_url)
        figures["incremental"] = _incremental(api, steps, app, root, payments, seed, master,
                                              work)
        app.close()
        figures["peak_rss_mb"] = _rss_high_water_mb()
        figures["rss_high_water_mb"] = steps.high_water
        figures["backup_api"] = "create_backup" if api.chains else "create_full_backup"
        figures["seed"] = seed
        return figures
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _restore_postgresql(api: BackupApi, steps: Steps, root: Path, name: str, master: bytes,
                        work: Path, enabled: bool, admin_url: str) -> dict[str, Any]:
    if not enabled:
        return {"seconds": None, "reason": "--no-postgresql"}
    reason = pg_unreachable(admin_url)
    if reason is not None:
        return {"seconds": None, "reason": reason}
    figures: dict[str, Any] = {}
    with fresh_pg_database(admin_url) as url:
        with steps.step("restore_postgresql", figures):
            report = api.restore(root, name, url, master, work / "pg-home")
    figures["audit_events_verified"] = report.audit_events_verified
    shutil.rmtree(work / "pg-home", ignore_errors=True)
    return figures


def _incremental(api: BackupApi, steps: Steps, app: Any, root: Path, payments: int,
                 seed: int, master: bytes, work: Path) -> dict[str, Any]:
    if not api.chains:
        return {"seconds": None, "reason": "yinqi.backup has no create_backup (full backups "
                                           "only)"}
    figures: dict[str, Any] = {}
    start = time.perf_counter()
    figures["changes"] = change_one_percent(app, payments, seed)
    figures["change_seconds"] = round(time.perf_counter() - start, 2)
    with steps.step("incremental", figures):
        result = api.create(app, root, kind="incremental")
    written = getattr(result, "written", result.rows)
    figures.update(kind=getattr(result, "kind", "incremental"), stored_mb=_mb(result.stored_bytes),
                   parts=result.parts, rows_written=sum(written.values()),
                   rows_deleted=sum(getattr(result, "deleted", {}).values()),
                   rows_written_by_table={t: n for t, n in written.items() if n})
    restored: dict[str, Any] = {}
    with steps.step("restore_chain_sqlite", restored):
        report = api.restore(root, result.name, f"sqlite:///{work / 'chain.db'}", master,
                             work / "chain-home")
    restored["audit_events_verified"] = report.audit_events_verified
    figures["restore_chain_sqlite"] = restored
    return figures


def report(figures: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(figures)
    return "  ".join(f"{name}={value}" for name, value in figures.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=DEFAULT_PAYMENTS, metavar="N",
                        help=f"payments in the installation (default: {DEFAULT_PAYMENTS:,})")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default: 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--no-postgresql", action="store_true",
                        help="skip the restore into PostgreSQL")
    parser.add_argument("--pg-admin-url", default=os.environ.get("YINQI_BENCH_PG_URL",
                                                                 PG_ADMIN_URL),
                        help=f"PostgreSQL to create the restore database in "
                             f"(default: {PG_ADMIN_URL})")
    parser.add_argument("--receipt-files", type=int, default=0, metavar="K",
                        help="also keep K receipt files of 10 KiB in the archive (default: 0)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR,
                        help=f"where generated installations are kept (default: {CACHE_DIR})")
    parser.add_argument("--keep", action="store_true", help="keep the backups and restores")
    parser.add_argument("--profile", choices=("backup", "verify", "restore_sqlite",
                                              "restore_postgresql", "incremental",
                                              "restore_chain_sqlite"),
                        help="run this step under cProfile; the top functions go to stderr "
                             "and the profile under <cache-dir>/profiles/")
    parser.add_argument("--generate-only", type=Path, metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.payments < 1 or args.receipt_files < 0:
        parser.error("--payments must be 1 or more and --receipt-files 0 or more")
    if args.generate_only:
        _generate_into(args.generate_only, args.payments, args.seed, args.receipt_files)
        return 0
    figures = measure(args.payments, args.seed, postgresql=not args.no_postgresql,
                      pg_admin_url=args.pg_admin_url, receipt_files=args.receipt_files,
                      cache=args.cache_dir, keep=args.keep, profile=args.profile)
    print(report(figures, args.json), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
