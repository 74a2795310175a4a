"""10,000 random payments against a sandbox bank with every fault switched on.

The client behaves as the exactly-once rules say: it resends the *same* bytes (same message
ID) until the bank gives a definitive answer. Afterwards the ledger must balance, every
booking must have two legs, and no payment may be booked twice.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from sandbox_support import Tx, document_of, pain001, running_sandbox, signed
from sandbox_support import write_config, xpath

PAYMENTS = 10_000
PER_MESSAGE = 100
SEED = 20261125

ICBC_DEBTORS = ["1202021209900123456", "1202021209900654321"]
CREDITORS = [  # (account, name, agent): internal, external, unknown, closed, blacklisted
    ("6829597379400215148", "北京华信科技股份有限公司", "102100099996"),
    ("5723627309655206", "赵敏", "102100099996"),
    ("49505976717236739", "杨磊", "105290036005"),
    ("3504094377509205", "刘洋", "104331000018"),
    ("1111222233334444", "无此人", "102100099996"),
    ("9999000011112222", "已销户", "102100099996"),
    ("6222000000000000000", "黑名单", "308584000013"),
]
CMB_CREDITORS = [
    ("3086271497094009492", "苏州工业园区精密制造有限公司", "308584000013"),
    ("49505976717236739", "杨磊", "105290036005"),
    ("6222000000000000000", "黑名单", "105290036005"),
]

FAULTS = {
    "seed": SEED, "latency_ms": 20, "latency_rate": 0.1, "http_5xx_rate": 0.08,
    "reset_rate": 0.08, "timeout_after_booking_rate": 0.08, "timeout_hold_seconds": 1.5,
    "duplicate_status_rate": 0.3, "out_of_order_status_rate": 0.3, "maintenance_rate": 0.08,
    "maintenance_retry_after": 1, "statement_twice_rate": 0.3, "statement_gap_rate": 0.3,
    "return_rate": 0.05, "return_after_days": 2, "expired_server_certificate": False,
}


def amount(rng: random.Random) -> Decimal:
    roll = rng.random()
    if roll < 0.9:
        cents = rng.randint(1, 2_000_00)
    elif roll < 0.99:
        cents = rng.randint(2_000_00, 20_000_00)
    else:
        cents = rng.randint(20_000_000_01, 25_000_000_00)  # above the per-transaction limit
    return Decimal(cents) / 100


def deliver(c: httpx.Client, path: str, body: bytes, headers: dict[str, str],
            tally: Counter[str]) -> httpx.Response:
    """Resend the same bytes until the bank answers definitively."""
    for _ in range(200):
        try:
            r = c.post(path, content=body, headers=headers)
        except httpx.ReadTimeout:
            tally["timeouts"] += 1
            continue
        except (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError):
            tally["resets"] += 1
            continue
        if r.status_code in (500, 502, 503):
            tally[f"http_{r.status_code}"] += 1
            continue
        assert r.status_code in (200, 422), r.text
        return r
    raise AssertionError("the bank never answered")


def balance(stmt, code: str, ns: dict[str, str]) -> Decimal:  # type: ignore[no-untyped-def]
    bal = stmt.xpath(f"d:Bal[d:Tp/d:CdOrPrtry/d:Cd='{code}']", namespaces=ns)[0]
    sign = -1 if bal.xpath("string(d:CdtDbtInd)", namespaces=ns) == "DBIT" else 1
    return sign * Decimal(bal.xpath("string(d:Amt)", namespaces=ns))


@pytest.mark.slow
def test_ten_thousand_payments_under_every_fault_keep_the_ledger_whole(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    config = write_config(tmp_path, settle_after_seconds=30.0)
    with running_sandbox(tmp_path, config=config) as bank:
        with bank.client(timeout=1.0) as c:
            c.put("/_sandbox/faults", content=json.dumps(FAULTS)).raise_for_status()
            tally: Counter[str] = Counter()
            accepted: set[tuple[str, str]] = set()
            sent = 0
            e2e_pool: list[str] = []
            n_msg = 0
            while sent < PAYMENTS:
                n_msg += 1
                size = min(PER_MESSAGE, PAYMENTS - sent)
                e2es = []
                for i in range(size):
                    # Now and then an end-to-end ID that was already used: must be DUPL.
                    reuse = e2e_pool and rng.random() < 0.01
                    e2es.append(rng.choice(e2e_pool) if reuse else f"C{n_msg:04d}-{i:04d}")
                if n_msg % 2:
                    txs = [Tx(e, amount(rng), *rng.choice(CREDITORS)) for e in e2es]
                    body = signed(bank, pain001(f"CHAOS-{n_msg:04d}", rng.choice(ICBC_DEBTORS),
                                                txs, batch_booking=rng.random() < 0.5))
                    r = deliver(c, "/banks/icbc/iso/pain.001", body, {}, tally)
                    doc = document_of(r.content)
                    for tx in xpath(doc, "//d:TxInfAndSts"):
                        if xpath(tx, "d:TxSts/text()")[0] != "RJCT":
                            e2e = xpath(tx, "d:OrgnlEndToEndId/text()")[0]
                            assert ("icbc", e2e) not in accepted, f"{e2e} accepted twice"
                            accepted.add(("icbc", e2e))
                else:
                    items = []
                    for e in e2es:
                        acct, name, agent = rng.choice(CMB_CREDITORS)
                        items.append({"业务参考号": e, "付款账号": "755912345610808",
                                      "收款账号": acct, "收款户名": name, "联行号": agent,
                                      "金额": str(amount(rng)), "币种": "CNY", "用途": "货款"})
                    payload = {"批次号": f"CMB-CHAOS-{n_msg:04d}", "明细": items}
                    body = json.dumps(payload, ensure_ascii=False).encode()
                    r = deliver(c, "/banks/cmb/h2h/transfer", body, bank.sign_h2h(body), tally)
                    for row in r.json()["结果"]:
                        if row["结果"] != "F":
                            accepted.add(("cmb", row["业务参考号"]))
                e2e_pool.extend(e2es)
                sent += size
        with bank.client(timeout=30) as c:
            c.put("/_sandbox/faults", content=json.dumps(
                {**FAULTS, **{k: 0.0 for k in FAULTS if k.endswith("_rate")
                              and not k.startswith("statement") and k != "return_rate"}})
                  ).raise_for_status()
            for _ in range(7):  # a week of bank days: settlement, then returns (退票)
                bank.control(c, "POST", "clock", json={"advance_seconds": 86_400})
            ledger = c.get("/_sandbox/ledger").json()
            booked = {(bank_code, p["end_to_end_id"]): p for bank_code in ("icbc", "cmb")
                      for p in c.get(f"/_sandbox/payments/{bank_code}").json()}
            statements = [document_of(c.get("/banks/icbc/iso/camt.053", params={
                "account": acct, "from": "2026-11-24", "to": "2026-12-01"}).content)
                for acct in ICBC_DEBTORS]
    assert ledger["balanced"], ledger
    assert ledger["sum_per_currency"] == {"CNY": 0, "USD": 0}
    assert ledger["unbalanced_bookings"] == [] and ledger["balance_drift_accounts"] == []
    assert ledger["payments_booked_twice"] == 0
    assert set(booked) == set(accepted), "a payment the bank accepted is missing or extra"
    assert len(accepted) > PAYMENTS * 0.5, "most random payments should be valid"
    statuses = Counter(p["status"] for p in booked.values())
    assert statuses["ACSP"] == 0, "every accepted payment settled or returned within a week"
    assert statuses["RTND"] > 0 and statuses["ACSC"] > 0
    injected = ledger["faults_injected"]
    for fault in ("latency", "maintenance", "http_5xx", "reset", "timeout_after_booking", "return"):
        assert injected.get(fault, 0) > 0, f"{fault} was never injected"
    assert tally["timeouts"] and tally["resets"] and tally["http_503"] and tally["http_500"]
    for stmt in statements:
        ns = {"d": stmt.nsmap[None]}
        seen: set[int] = set()
        ids = set(stmt.xpath("//d:Stmt/d:Id/text()", namespaces=ns))
        for s in stmt.xpath("//d:Stmt", namespaces=ns):
            seq = int(s.xpath("string(d:ElctrncSeqNb)", namespaces=ns))
            opening, closing = (balance(s, code, ns) for code in ("OPBD", "CLBD"))
            moves = sum(Decimal(e.xpath("string(d:Amt)", namespaces=ns))
                        * (1 if e.xpath("string(d:CdtDbtInd)", namespaces=ns) == "CRDT" else -1)
                        for e in s.xpath("d:Ntry", namespaces=ns))
            assert opening + moves == closing, f"statement {seq} does not add up"
            seen.add(seq)
        # Five closed business days (Tue-Fri, Mon); a re-delivered day keeps its number.
        assert len(ids) == len(seen) == 5, (ids, seen)
    print(f"\nchaos: {PAYMENTS} payments, {len(accepted)} accepted, {dict(statuses)}, "
          f"client saw {dict(tally)}, bank injected {injected}")
