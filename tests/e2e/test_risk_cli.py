"""`yinqi risk hits|freezes|release|reject|freeze|unfreeze` as operators run them: a real
process per command, each person in their own real session, with their one-time codes.

The held payment is made by the real intake with the shipped risk rules (a payment above the
single-payment threshold). Each person acts at most twice (a code works once per 30-second
step; the current and the next step's codes are both accepted).
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli_support import app_of, as_user, code_of, yinqi
from yinqi.approvals import Role
from yinqi.demo.vouchers import HEADER
from yinqi.store.intake import import_vouchers, own_accounts
from yinqi.store.setup import NewUser, ensure_users
from yinqi.vouchers import DEFAULT_MAPPING, load_mappings, read_rows, validate_rows

CMB = "755912345610808"
PAYEE = ("杭州西湖茶业有限公司", "67790081923749510")


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
    base.update(YINQI_HOME=str(tmp_path / "home"), YINQI_DATABASE_URL=db_url, COLUMNS="250")
    yinqi("init", env=base)
    app = app_of(base)
    try:
        with app.sessions.begin() as s:
            # A second treasurer, who enters the large payment (and so may not release it).
            ensure_users(s, [NewUser("qian.treasurer", "钱司库", frozenset({Role.TREASURER}))],
                         app.field_cipher, app.audit)
    finally:
        app.close()
    return base


class Codes:
    """Each person's next code: this step's, then the next step's (both accepted now)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.used: dict[str, int] = {}

    def __call__(self, user: str) -> str:
        k = self.used.get(user, 0)
        assert k < 2, f"{user} acts a third time within one code window"
        self.used[user] = k + 1
        return code_of(self.env, user, datetime.now(UTC) + k * timedelta(seconds=30))


def held_payment(env: dict[str, str], maker: str) -> int:
    """One payment above the single-payment threshold, through the screened intake."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    day = datetime.now(UTC).date().isoformat()
    w.writerow(["FK2026E2E001", day, CMB, *PAYEE, "中国农业银行南京分行", "103301000016",
                "7000000.00", "CNY", "设备款", "供应商", "否", maker, day])
    data = out.getvalue().encode("utf-8")
    app = app_of(env)
    try:
        mapping = load_mappings(app.settings.config_dir)[DEFAULT_MAPPING]
        with app.sessions.begin() as s:
            checked = validate_rows(read_rows(data, "large.csv"), mapping,
                                    own_accounts=own_accounts(s), source="erp")
            summary = import_vouchers(s, app.audit, source="erp", file_name="large.csv",
                                      data=data, rows_result=checked, imported_by=maker,
                                      risk_rules=app.config.risk_rules)
    finally:
        app.close()
    [pid] = summary.payment_ids
    return pid


def run(env: dict[str, str], user: str, *args: str, check: int | None = 0
        ) -> tuple[Any, str]:
    proc = yinqi("risk", *args, env=as_user(env, user), check=check)
    for number in (CMB, PAYEE[1]):
        assert number not in proc.stdout + proc.stderr
    return (json.loads(proc.stdout) if "--json" in args else proc.stdout), proc.stderr


def test_a_hold_is_listed_refused_to_its_maker_and_released_by_a_finance_manager(
        env: dict[str, str]) -> None:
    codes = Codes(env)
    pid = held_payment(env, maker="qian.treasurer")

    listed, _ = run(env, "zhao.auditor", "hits", "--open", "--json")
    [hold] = [h for h in listed["hits"] if h["action"] == "hold"]
    assert (hold["rule"], hold["payment_id"], hold["status"]) == \
        ("large_single_amount", pid, "open")
    assert hold["details"]["account"] == "****9510"
    table, _ = run(env, "zhao.auditor", "hits")
    assert "large_single_amount" in table and "****9510" in table

    # Its maker may not release it (exit 1, one line); a maker-role user may not even ask.
    out, err = run(env, "qian.treasurer", "release", str(pid), "--as", "qian.treasurer",
                   "--code", codes("qian.treasurer"), check=1)
    assert err.startswith("refused: MAKER_CANNOT_RELEASE:") and len(err.splitlines()) == 1
    proc = yinqi("risk", "release", str(pid), "--as", "wu.maker", "--code", "123456",
                 env=as_user(env, "wu.maker"), check=1)
    assert "needs role" in proc.stderr
    # --as names the logged-in person, no one else.
    proc = yinqi("risk", "release", str(pid), "--as", "wang.cfo", "--code", "123456",
                 env=as_user(env, "chen.manager"), check=1)
    assert "is not you" in proc.stderr

    released, _ = run(env, "chen.manager", "release", str(pid), "--as", "chen.manager",
                      "--code", codes("chen.manager"), "--reason", "called the supplier",
                      "--json")
    assert released["ok"] and released["state"] == "PENDING_APPROVAL"
    listed, _ = run(env, "zhao.auditor", "hits", "--open", "--json")
    assert not [h for h in listed["hits"] if h["action"] == "hold"]
    listed, _ = run(env, "zhao.auditor", "hits", "--payment", str(pid), "--json")
    [hold] = [h for h in listed["hits"] if h["action"] == "hold"]
    assert (hold["status"], hold["resolved_by"]) == ("released", "chen.manager")


def test_an_account_freeze_needs_two_people_to_lift(env: dict[str, str]) -> None:
    codes = Codes(env)
    frozen, _ = run(env, "admin", "freeze", "account", CMB, "--as", "admin",
                    "--code", codes("admin"), "--reason", f"card {CMB} reported stolen",
                    "--json")
    assert frozen["ok"]
    fid = frozen["freeze_id"]
    listed, _ = run(env, "zhao.auditor", "freezes", "--active", "--json")
    [row] = listed["freezes"]
    assert (row["id"], row["rule"], row["status"], row["frozen_by"]) == \
        (fid, "manual", "active", "admin")
    assert row["subject"] == "account ****0808 at cmb-sandbox (frozen)"
    assert row["reason"] == "card ****0808 reported stolen"

    asked, _ = run(env, "liu.treasurer", "unfreeze", str(fid), "--as", "liu.treasurer",
                   "--code", codes("liu.treasurer"), "--reason", "card was found")
    assert "requested by liu.treasurer" in asked and "second person" in asked
    _, err = run(env, "liu.treasurer", "unfreeze", str(fid), "--as", "liu.treasurer",
                 "--code", codes("liu.treasurer"), "--reason", "card was found", check=1)
    assert err.startswith("refused: SAME_PERSON:")
    table, _ = run(env, "zhao.auditor", "freezes")
    assert "asked by liu.treasurer, needs a second person" in table

    lifted, _ = run(env, "admin", "unfreeze", str(fid), "--as", "admin",
                    "--code", codes("admin"), "--reason", "confirmed with the bank", "--json")
    assert lifted["ok"] and lifted["step"] == "lifted"
    listed, _ = run(env, "zhao.auditor", "freezes", "--json")
    [row] = listed["freezes"]
    assert (row["status"], row["unfreeze_requested_by"], row["lifted_by"]) == \
        ("lifted", "liu.treasurer", "admin")
    assert row["subject"].endswith("(active)")
    # Bad input is exit 2 with one line.
    proc = yinqi("risk", "freeze", "planet", "1", "--as", "admin", "--code", "123456",
                 "--reason", "x", env=as_user(env, "admin"), check=2)
    assert "cannot freeze a 'planet'" in proc.stderr
