"""Realistic reconciliation data with the truth attached, for tests and the benchmark.

``generate(n, seed)`` makes ``n`` statement lines for one month over a few accounts, the
payments behind them, and ``truth``: for every line, which payments (if any) it belongs to
and by which rule. It follows how the sandbox bank writes statements
(``connectors/sandbox/bank.py``): one debit per payment, batch-booked debits collapsed into
one entry per batch, separate fee entries whose text names the payment ("手续费 charges for
YQ..."), returns (退票) as credits that name the original, and what the camt / MT940 /
Chinese direct-connect statements carry: end-to-end IDs, bank references (流水号), payee
names and accounts (sometimes masked, in MT940 with '?' for every Chinese character).

The mix (shares of lines, :class:`Mix`): exact references; batch bookings of 5-100 payments;
lines without references whose payee name is written differently (全角/半角, spaces, case,
有限公司/有限责任公司, Co., Ltd./Company Limited); lines with the fee included, by reference
or not; payments with a separate fee line; returns by reference, by text or by the payee's
account only; near-misses that must stay unmatched (same amount on another account, date
outside the window, another payee, a reference on another account, a fee above the
maximum), each next to an open payment it resembles; and noise (incoming payments, interest,
account fees, direct debits). Pending payments have no line at all.

Amounts of the payments that only name, account and date can identify are distinct, so the
truth is unambiguous: a matcher that makes any false match is wrong, not unlucky.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

import numpy as np
import pandas as pd

from yinqi.matching.names import dice, normalise_names
from yinqi.matching.params import MatchParams
from yinqi.reconciliation import MatchRule

ACCOUNTS = (("1202021209900123456", "CNY"), ("1202021209900654321", "CNY"),
            ("755912345610808", "CNY"), ("31050161373600001234", "CNY"),
            ("110060149018001234567", "CNY"), ("4000023009200123456", "CNY"),
            ("1202021209900777888", "USD"), ("1202021209900999000", "EUR"))
ACCOUNT_WEIGHTS = np.array([0.25, 0.2, 0.15, 0.1, 0.1, 0.05, 0.1, 0.05])
FEES = np.array([50, 100, 200, 500, 1000, 1500, 2500, 5000], dtype=np.int64)
CITIES = ("北京", "上海", "深圳市前海", "广州", "杭州", "成都", "武汉", "南京", "苏州", "天津",
          "重庆", "西安", "长沙", "厦门", "青岛")
CORE = "华联安达信诚恒泰鑫盛博远宏图金鼎瑞祥中天海纳百川新元正德永兴东方明珠凯旋嘉禾润泽万通利康"
INDUSTRIES = ("科技", "贸易", "物流", "建设工程", "医药", "食品", "电子", "信息技术", "咨询",
              "实业", "供应链管理", "机械设备")
SUFFIXES = ("有限公司", "有限责任公司", "股份有限公司", "集团有限公司")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国红"
EN_FIRST = ("Acme", "Global", "Pacific", "Golden", "Bright", "Silver", "Eastern", "Northern",
            "Prime", "United")
EN_SECOND = ("Star", "Sun", "River", "Peak", "Bay", "Stone", "Lotus", "Dragon")
EN_TRADE = ("Trading", "Logistics", "Electronics", "Foods", "Machinery", "Textiles", "Software",
            "Chemicals")
EN_FORMS = ("Co., Ltd.", "Company Limited", "Ltd.", "Inc.", "Corporation")
PURPOSES = ("货款", "服务费", "工程款", "设备采购", "咨询费 发票号 00012345", "运费", "租金")
TRANSFER_FEE_TEXTS = ("手续费", "汇划手续费", "跨行转账手续费", "transfer charges")
ACCOUNT_FEE_TEXTS = ("账户管理费", "短信通知费", "网银年费", "对账服务费")
DIRECT_DEBITS = ("国家税务总局北京市税务局", "北京市社会保险基金管理中心", "国网北京市电力公司",
                 "北京自来水集团有限责任公司")
_FULL_WIDTH = str.maketrans({**{chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)},
                             " ": "\u3000"})


@dataclass(frozen=True)
class Mix:
    """Shares of the lines; ``fee_separate`` counts pairs (a transfer and its fee line)."""

    exact: float = 0.55
    batch: float = 0.01
    name: float = 0.12
    fee_included: float = 0.03
    fee_separate: float = 0.03
    returns: float = 0.02
    near_miss: float = 0.05
    noise: float = 0.16
    #: Exact-reference lines the statement repeats (the same entry downloaded twice): the
    #: copy must stay unmatched.
    duplicates: float = 0.002
    #: Payments with no line at all (pending), as a share of the lines.
    pending: float = 0.02


class _Rng:
    def __init__(self, seed: int) -> None:
        self.g = np.random.default_rng(seed)

    def hex(self, k: int, prefix: str, nbytes: int = 16) -> np.ndarray:
        if k == 0:
            return np.empty(0, dtype=object)
        raw = self.g.bytes(k * nbytes).hex().upper().encode("ascii")
        arr = np.frombuffer(raw, dtype=f"S{2 * nbytes}").astype(str)
        return np.char.add(prefix, arr).astype(object)

    def digits(self, k: int, width: int) -> np.ndarray:
        lo, hi = 10 ** (width - 1), 10 ** width
        return pd.Series(self.g.integers(lo, hi, size=k)).astype(str).to_numpy(dtype=object)

    def pick(self, options: tuple[str, ...] | np.ndarray, k: int) -> np.ndarray:
        return np.asarray(options, dtype=object)[self.g.integers(0, len(options), size=k)]

    def flag(self, k: int, p: float) -> np.ndarray:
        return self.g.random(k) < p


def _cat(*parts: np.ndarray | str) -> np.ndarray:
    out: pd.Series | None = None
    n = max(len(p) for p in parts if not isinstance(p, str))
    for p in parts:
        s = pd.Series(np.full(n, p, dtype=object) if isinstance(p, str) else p, dtype="str")
        out = s if out is None else out + s
    assert out is not None
    return out.to_numpy(dtype=object)


class _Payees:
    """Who we pay: names, the way they are written, and their accounts."""

    def __init__(self, rng: _Rng, count: int) -> None:
        g = rng.g
        k_en = max(1, count // 10)
        k_person = max(1, count // 5)
        k_co = count * 2  # duplicates are dropped below
        city = g.integers(0, len(CITIES), size=k_co)
        core = _cat(rng.pick(tuple(CORE), k_co), rng.pick(tuple(CORE), k_co))
        industry = g.integers(0, len(INDUSTRIES), size=k_co)
        suffix = rng.pick(SUFFIXES, k_co)
        bracket = rng.flag(k_co, 0.15)
        cities, industries = np.asarray(CITIES, dtype=object), np.asarray(INDUSTRIES, dtype=object)
        company = np.where(bracket,
                           _cat(core, "(", cities[city], ")", industries[industry], suffix),
                           _cat(cities[city], core, industries[industry], suffix))
        person = _cat(rng.pick(tuple(SURNAMES), k_person),
                      np.where(rng.flag(k_person, 0.6),
                               _cat(rng.pick(tuple(GIVEN), k_person),
                                    rng.pick(tuple(GIVEN), k_person)),
                               rng.pick(tuple(GIVEN), k_person)))
        english = _cat(rng.pick(EN_FIRST, k_en), " ", rng.pick(EN_SECOND, k_en), " ",
                       rng.pick(EN_TRADE, k_en), " ", rng.pick(EN_FORMS, k_en))
        names = pd.Series(np.concatenate([company, person, english]), dtype="str")
        kind = np.concatenate([np.zeros(k_co, np.int8), np.ones(k_person, np.int8),
                               np.full(k_en, 2, np.int8)])
        norm = normalise_names(names)
        keep = ~norm.duplicated().to_numpy()
        names, kind, norm = names[keep], kind[keep], norm[keep]
        # Shuffle, then keep `count` (companies dominate, as on a real payment run).
        order = g.permutation(len(names))[:count]
        self.name = names.to_numpy(dtype=object)[order]
        self.norm = norm.to_numpy(dtype=object)[order]
        self.kind = kind[order]
        self.account = _cat(np.where(rng.flag(len(order), 0.5), "6222", "6217"),
                            rng.digits(len(order), 15))
        self.count = len(order)

    def variant(self, rng: _Rng, who: np.ndarray) -> np.ndarray:
        """The name as a statement prints it: the same payee, written differently."""
        name = pd.Series(self.name[who], dtype="str")
        k = len(who)
        choice = rng.g.integers(0, 6, size=k)
        swapped = name.str.replace("有限责任公司", "\x00", regex=False).str.replace(
            "有限公司", "有限责任公司", regex=False).str.replace("\x00", "有限公司", regex=False)
        spaced = name.str.slice(0, 2) + " " + name.str.slice(2)
        full = name.str.translate(_FULL_WIDTH)
        upper = name.str.upper().str.replace("CO., LTD.", "COMPANY LIMITED", regex=False)
        both = (swapped.str.slice(0, 2) + "\u3000" + swapped.str.slice(2))
        both = both.str.translate(_FULL_WIDTH)
        options = [name, swapped, spaced, full, upper, both]
        out = name.copy()
        for n, option in enumerate(options):
            out = out.where(pd.Series(choice != n), option)
        return out.to_numpy(dtype=object)

    def unlike(self, rng: _Rng, who: np.ndarray) -> np.ndarray:
        """For each payee another one whose name is clearly different (similarity < 0.5)."""
        other = rng.g.integers(0, self.count, size=len(who))
        for _ in range(20):
            sim = dice(pd.Series(self.norm[who], dtype="str"),
                       pd.Series(self.norm[other], dtype="str"))
            bad = (sim >= 0.5) | (other == who)
            if not bad.any():
                break
            other[bad] = rng.g.integers(0, self.count, size=int(bad.sum()))
        return other


class _Amounts:
    """Distinct amounts (minor units) for the payments only name and date can identify."""

    def __init__(self, rng: _Rng, needed: int) -> None:
        span = max(50_000_000, needed * 200)
        self.values = rng.g.choice(span, size=needed, replace=False).astype(np.int64) + 10_000
        self.used = 0

    def take(self, k: int) -> np.ndarray:
        out = self.values[self.used:self.used + k]
        self.used += k
        return out


def _business_days(first: date, count: int) -> np.ndarray:
    days = pd.bdate_range(first, periods=count)
    return days.to_numpy(dtype="datetime64[D]").astype(np.int64)


def _counts(n: int, mix: Mix) -> dict[str, int]:
    shares = {f.name: getattr(mix, f.name) for f in fields(mix)}
    line_weight = {**shares, "fee_separate": 2 * shares["fee_separate"]}
    counts = {k: int(n * v) for k, v in shares.items()}
    used = sum(int(n * line_weight[k]) for k in line_weight if k != "pending")
    counts["exact"] += n - used
    return counts


def generate(n: int, seed: int = 0, *, params: MatchParams | None = None, mix: Mix | None = None,
             first_day: date = date(2026, 11, 2)
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(payments, lines, truth)`` for ``n`` statement lines.

    ``truth``: line_id, payment_id (Int64; NA for a line that matches nothing), rule (the
    :class:`MatchRule` value that should match it, or NA), category (how it was made), and
    returned (the payment is returned by this line). One row per (line, payment): a batch
    line has one row per payment in it; payments without any line are absent.
    """
    params = params or MatchParams()
    mix = mix or Mix()
    rng = _Rng(seed)
    g = rng.g
    c = _counts(n, mix)
    W = params.date_window_days
    max_fee = params.max_fee_minor
    days = _business_days(first_day, 21)
    payees = _Payees(rng, max(200, n // 20))
    batch_sizes = g.integers(5, 101, size=c["batch"])
    amounts = _Amounts(rng, 2 * n + 100)

    P: list[pd.DataFrame] = []       # payments
    L: list[pd.DataFrame] = []       # lines
    T: list[pd.DataFrame] = []       # truth: (line key, payment key, rule, category)
    next_pay, next_line, next_sort = [0], [0], [0]

    def pay_keys(k: int) -> np.ndarray:
        out = np.arange(next_pay[0], next_pay[0] + k)
        next_pay[0] += k
        return out

    def line_keys(k: int) -> np.ndarray:
        out = np.arange(next_line[0], next_line[0] + k)
        next_line[0] += k
        return out

    def acct_pick(k: int) -> np.ndarray:
        return g.choice(len(ACCOUNTS), size=k, p=ACCOUNT_WEIGHTS)

    def pick_days(k: int) -> np.ndarray:
        return rng.pick(days, k).astype(np.int64)

    def add_payments(key: np.ndarray, acct: np.ndarray, amount: np.ndarray, day: np.ndarray,
                     who: np.ndarray, *, batch: np.ndarray | None = None,
                     settled: bool = False) -> pd.DataFrame:
        k = len(key)
        bref = np.where(rng.flag(k, 0.9), rng.hex(k, "P", 8), None)
        frame = pd.DataFrame({
            "key": key, "end_to_end_id": rng.hex(k, "YQ"), "bank_reference": bref,
            "batch_key": batch if batch is not None else np.full(k, None, dtype=object),
            "acct": acct, "amount_minor": amount.astype(np.int64), "day": day,
            "creditor_name": payees.name[who], "creditor_account": payees.account[who],
            "who": who, "settled": np.full(k, settled)})
        P.append(frame)
        return frame

    def add_lines(key: np.ndarray, acct: np.ndarray, amount: np.ndarray, day: np.ndarray, *,
                  e2e: np.ndarray | None = None, bref: np.ndarray | None = None,
                  name: np.ndarray | None = None, cacct: np.ndarray | None = None,
                  remit: np.ndarray | None = None, reversal: np.ndarray | None = None,
                  batch: np.ndarray | None = None, charges: np.ndarray | None = None,
                  sort: np.ndarray | None = None, sub: int = 0) -> None:
        k = len(key)
        none = np.full(k, None, dtype=object)
        if sort is None:
            sort = np.arange(next_sort[0], next_sort[0] + k)
            next_sort[0] += k
        L.append(pd.DataFrame({
            "key": key, "acct": acct, "amount_minor": amount.astype(np.int64), "day": day,
            "end_to_end_id": none if e2e is None else e2e,
            "bank_reference": rng.hex(k, "B", 8) if bref is None else bref,
            "counterparty_name": none if name is None else name,
            "counterparty_account": none if cacct is None else cacct,
            "remittance": none if remit is None else remit,
            "is_reversal": np.zeros(k, bool) if reversal is None else reversal,
            "batch_key": none if batch is None else batch,
            "charges_minor": pd.array(np.full(k, None) if charges is None else charges,
                                      dtype="Int64"),
            "sort": sort, "sub": np.full(k, sub)}))

    def truth(line: np.ndarray, pay: np.ndarray | None, rule: MatchRule | None,
              category: str | np.ndarray, returned: bool = False) -> None:
        k = len(line)
        T.append(pd.DataFrame({
            "line": line, "pay": np.full(k, -1) if pay is None else pay,
            "rule": np.full(k, None if rule is None else rule.value, dtype=object),
            "category": category, "returned": np.full(k, returned)}))

    def shifted(day: np.ndarray) -> np.ndarray:
        """A line's value date: mostly the payment's, sometimes a day or two later."""
        return day + np.where(rng.flag(len(day), 0.2), g.integers(1, 3, size=len(day)), 0)

    def mixed_amounts(k: int) -> tuple[np.ndarray, np.ndarray]:
        """Amounts with references: some round (shared by many payments), most distinct."""
        round_ = rng.flag(k, 0.2)
        values = amounts.take(k)
        values = np.where(round_, g.integers(1, 500, size=k) * 100_000, values)
        return values, ~round_

    # --- exact references -----------------------------------------------------------------
    k = c["exact"]
    acct, day, who = acct_pick(k), pick_days(k), g.integers(0, payees.count, k)
    amount, distinct = mixed_amounts(k)
    pays = add_payments(pay_keys(k), acct, amount, day, who)
    lk = line_keys(k)
    by_e2e = rng.flag(k, 0.8)
    e2e = np.where(by_e2e, pays["end_to_end_id"].to_numpy(), None)
    # Without the e2e ID the bank prints its own reference for the payment (流水号).
    has_bref = pays["bank_reference"].notna().to_numpy()
    e2e = np.where(~by_e2e & ~has_bref, pays["end_to_end_id"].to_numpy(), e2e)
    line_bref = np.where(by_e2e & ~rng.flag(k, 0.1), rng.hex(k, "B", 8),
                         pays["bank_reference"].to_numpy())
    add_lines(lk, acct, -amount, shifted(day), e2e=e2e, bref=line_bref,
              name=np.where(rng.flag(k, 0.9), payees.variant(rng, who), None),
              cacct=np.where(rng.flag(k, 0.7), payees.account[who], None),
              remit=rng.pick(PURPOSES, k))
    truth(lk, pays["key"].to_numpy(), MatchRule.EXACT_REFERENCE, "exact")
    exact_pays = pays[distinct]
    k = min(c["duplicates"], len(lk))
    if k:
        copies = L[-1].iloc[g.choice(len(lk), size=k, replace=False)].copy()
        copies["key"] = line_keys(k)
        copies["sub"] = 2                        # right after the original
        L.append(copies)
        truth(copies["key"].to_numpy(), None, None, "duplicate_line")

    # --- batch bookings -------------------------------------------------------------------
    k = c["batch"]
    if k:
        sizes = batch_sizes
        total = int(sizes.sum())
        owner = np.repeat(np.arange(k), sizes)
        acct, day = acct_pick(k), pick_days(k)
        keys = _cat(np.full(k, "YQB", dtype=object),
                    np.asarray(pd.to_datetime(day, unit="D").strftime("%Y%m%d"), dtype=object),
                    rng.hex(k, "", 8))
        amount = g.integers(30, 300, size=total) * 10_000 + np.where(
            rng.flag(total, 0.3), g.integers(0, 10_000, size=total), 0)
        pays = add_payments(pay_keys(total), acct[owner], amount, day[owner],
                            g.integers(0, payees.count, total), batch=keys[owner])
        sums = np.zeros(k, dtype=np.int64)
        np.add.at(sums, owner, amount)
        lk = line_keys(k)
        add_lines(lk, acct, -sums, day, batch=np.where(rng.flag(k, 0.5), keys, None),
                  remit=_cat(np.full(k, "批量代付 ", dtype=object),
                             pd.Series(sizes).astype(str).to_numpy(dtype=object), "笔"))
        truth(lk[owner], pays["key"].to_numpy(), MatchRule.BATCH_BOOKING, "batch")

    # --- names only -----------------------------------------------------------------------
    def unreferenced(k: int, extra: np.ndarray, rule: MatchRule, category: str,
                     itemise: bool = False) -> None:
        acct, day, who = acct_pick(k), pick_days(k), g.integers(0, payees.count, k)
        amount = amounts.take(k)
        pays = add_payments(pay_keys(k), acct, amount, day, who)
        lk = line_keys(k)
        name = payees.variant(rng, who)
        shown = rng.flag(k, 0.5)
        account = pd.Series(payees.account[who], dtype="str")
        masked = _cat(account.str.slice(0, 4).to_numpy(dtype=object), "********",
                      account.str.slice(-4).to_numpy(dtype=object))
        cacct = np.where(shown, np.where(rng.flag(k, 0.2), masked, payees.account[who]), None)
        # MT940: '?' for every Chinese character; then the account must be shown.
        mt940 = rng.flag(k, 0.05)
        name = np.where(mt940, pd.Series(name, dtype="str").str.replace(
            r"[^\x00-\x7F]", "?", regex=True).to_numpy(dtype=object), name)
        cacct = np.where(mt940, payees.account[who], cacct)
        add_lines(lk, acct, -(amount + extra), shifted(day), name=name, cacct=cacct,
                  remit=rng.pick(PURPOSES, k),
                  charges=np.where(rng.flag(k, 0.3), extra, None) if itemise else None)
        truth(lk, pays["key"].to_numpy(), rule, category)

    unreferenced(c["name"], np.zeros(c["name"], np.int64), MatchRule.AMOUNT_ACCOUNT_DATE_NAME,
                 "name")

    # --- fee included -------------------------------------------------------------------
    k = c["fee_included"]
    with_ref = k // 2
    fee = rng.pick(FEES, k).astype(np.int64)
    unreferenced(k - with_ref, fee[with_ref:], MatchRule.AMOUNT_PLUS_FEE, "fee_included",
                 itemise=True)
    acct, day, who = acct_pick(with_ref), pick_days(with_ref), \
        g.integers(0, payees.count, with_ref)
    amount, _ = mixed_amounts(with_ref)
    pays = add_payments(pay_keys(with_ref), acct, amount, day, who)
    lk = line_keys(with_ref)
    add_lines(lk, acct, -(amount + fee[:with_ref]), shifted(day),
              e2e=pays["end_to_end_id"].to_numpy(), name=payees.variant(rng, who),
              remit=rng.pick(PURPOSES, with_ref))
    truth(lk, pays["key"].to_numpy(), MatchRule.AMOUNT_PLUS_FEE, "fee_included_ref")

    # --- separate fee lines -------------------------------------------------------------
    k = c["fee_separate"]
    acct, day, who = acct_pick(k), pick_days(k), g.integers(0, payees.count, k)
    amount, _ = mixed_amounts(k)
    pays = add_payments(pay_keys(k), acct, amount, day, who)
    principal, fee_line = line_keys(k), line_keys(k)
    sort = np.arange(next_sort[0], next_sort[0] + k)
    next_sort[0] += k
    vday = shifted(day)
    add_lines(principal, acct, -amount, vday, e2e=pays["end_to_end_id"].to_numpy(),
              name=payees.variant(rng, who), remit=rng.pick(PURPOSES, k), sort=sort)
    names_it = rng.flag(k, 0.5)
    remit = np.where(names_it, _cat("手续费 charges for ", pays["end_to_end_id"].to_numpy()),
                     rng.pick(TRANSFER_FEE_TEXTS, k))
    add_lines(fee_line, acct, -rng.pick(FEES, k).astype(np.int64), vday, remit=remit,
              sort=sort, sub=1)
    truth(principal, pays["key"].to_numpy(), MatchRule.AMOUNT_PLUS_FEE, "fee_principal")
    truth(fee_line, pays["key"].to_numpy(), MatchRule.AMOUNT_PLUS_FEE,
          np.where(names_it, "fee_line_ref", "fee_line_next"))

    # --- returns (退票) -------------------------------------------------------------------
    k = c["returns"]
    from_here = min(int(k * 0.75), len(exact_pays))
    earlier = k - from_here
    chosen = exact_pays.iloc[g.choice(len(exact_pays), size=from_here, replace=False)] \
        if from_here else exact_pays.iloc[:0]
    acct, day, who = acct_pick(earlier), pick_days(earlier) - 10, \
        g.integers(0, payees.count, earlier)
    old = add_payments(pay_keys(earlier), acct, amounts.take(earlier), day, who, settled=True)
    returned = pd.concat([chosen, old], ignore_index=True)
    lk = line_keys(k)
    how = g.integers(0, 4, size=k)            # 0, 1: e2e on the line; 2: in the text; 3: none
    short = np.where((how < 3) & rng.flag(k, 0.1), rng.pick(FEES[:4], k).astype(np.int64), 0)
    e2e = returned["end_to_end_id"].to_numpy()
    rday = returned["day"].to_numpy() + g.integers(2, 11, size=k)
    add_lines(lk, returned["acct"].to_numpy(), returned["amount_minor"].to_numpy() - short, rday,
              e2e=np.where(how < 2, e2e, None),
              name=returned["creditor_name"].to_numpy(),
              cacct=returned["creditor_account"].to_numpy(),
              remit=np.where(how == 2, _cat("退票 原业务参考号 ", e2e),
                             np.where(how == 3, "退票 账户已销户", "退票")),
              reversal=rng.flag(k, 0.2))
    truth(lk, returned["key"].to_numpy(), MatchRule.RETURN,
          np.where(how < 2, "return_ref", np.where(how == 2, "return_text", "return_account")),
          returned=True)

    # --- near-misses: an open payment and a line that resembles it, but must not match -----
    k = c["near_miss"]
    acct, day, who = acct_pick(k), pick_days(k), g.integers(0, payees.count, k)
    amount = amounts.take(k)
    pays = add_payments(pay_keys(k), acct, amount, day, who)
    lk = line_keys(k)
    kind = g.integers(0, 5, size=k)
    other_acct = (acct + g.integers(1, len(ACCOUNTS), size=k)) % len(ACCOUNTS)
    line_acct = np.where((kind == 0) | (kind == 3), other_acct, acct)
    line_day = np.where(kind == 1, day + W + g.integers(2, 10, size=k), day)
    other = payees.unlike(rng, who)
    line_who = np.where(kind == 2, other, who)
    too_big = max_fee + g.integers(1, 5_000, size=k)
    line_amount = np.where(kind == 4, amount + too_big, amount)
    add_lines(lk, line_acct, -line_amount, line_day,
              e2e=np.where(kind == 3, pays["end_to_end_id"].to_numpy(), None),
              name=payees.variant(rng, line_who),
              cacct=np.where((kind == 2) & rng.flag(k, 0.5), payees.account[line_who], None),
              remit=rng.pick(PURPOSES, k))
    labels = np.array(["near_miss_account", "near_miss_date", "near_miss_name",
                       "near_miss_reference_account", "near_miss_fee"], dtype=object)
    truth(lk, None, None, labels[kind])

    # --- pending payments: no line yet ------------------------------------------------------
    k = c["pending"]
    add_payments(pay_keys(k), acct_pick(k), amounts.take(k), pick_days(k),
                 g.integers(0, payees.count, k))

    # --- noise ------------------------------------------------------------------------------
    k = c["noise"]
    kind = g.choice(4, size=k, p=[0.6, 0.1, 0.2, 0.1])
    acct, day = acct_pick(k), pick_days(k)
    customers = _Payees(rng, max(50, k // 10))
    cust = g.integers(0, customers.count, size=k)
    amount = np.select([kind == 0, kind == 1, kind == 2],
                       [amounts.take(k), g.integers(1, 50_000, size=k),
                        -g.integers(100, 5_000, size=k)], -amounts.take(k))
    lk = line_keys(k)
    add_lines(lk, acct, amount, day,
              e2e=np.where((kind == 0) & rng.flag(k, 0.5), rng.hex(k, "E2E", 8), None),
              name=np.select([kind == 0, kind == 3],
                             [customers.name[cust], rng.pick(DIRECT_DEBITS, k)], None),
              cacct=np.where(kind == 0, customers.account[cust], None),
              remit=np.select([kind == 0, kind == 1, kind == 2],
                              [rng.pick(("货款", "服务费", "预付款"), k), rng.pick(("利息", "结息"), k),
                               rng.pick(ACCOUNT_FEE_TEXTS, k)], rng.pick(("代扣税款", "社保", "电费"), k)))
    truth(lk, None, None, np.array(["noise_incoming", "noise_interest", "noise_account_fee",
                                    "noise_direct_debit"], dtype=object)[kind])

    return _finish(rng, P, L, T)


def _finish(rng: _Rng, P: list[pd.DataFrame], L: list[pd.DataFrame], T: list[pd.DataFrame]
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    g = rng.g
    pay = pd.concat(P, ignore_index=True)
    line = pd.concat(L, ignore_index=True)
    tru = pd.concat(T, ignore_index=True)
    accounts = np.array([a for a, _ in ACCOUNTS], dtype=object)
    currencies = np.array([c for _, c in ACCOUNTS], dtype=object)

    # Payment ids in random order, so that ids say nothing about how a payment was made.
    pay_id = g.permutation(len(pay)).astype(np.int64) + 1
    pay_id_of_key = np.empty(len(pay), dtype=np.int64)
    pay_id_of_key[pay["key"].to_numpy()] = pay_id
    payments = pd.DataFrame({
        "payment_id": pay_id,
        "end_to_end_id": pd.Series(pay["end_to_end_id"].to_numpy(), dtype="str"),
        "bank_reference": pd.Series(pay["bank_reference"].to_numpy(), dtype="str"),
        "batch_key": pd.Series(pay["batch_key"].to_numpy(), dtype="str"),
        "account": pd.Series(accounts[pay["acct"].to_numpy()], dtype="str"),
        "currency": pd.Series(currencies[pay["acct"].to_numpy()], dtype="str"),
        "amount_minor": pay["amount_minor"].to_numpy(dtype=np.int64),
        "value_date": pay["day"].to_numpy().astype("datetime64[D]").astype("datetime64[ns]"),
        "creditor_name": pd.Series(pay["creditor_name"].to_numpy(), dtype="str"),
        "creditor_account": pd.Series(pay["creditor_account"].to_numpy(), dtype="str"),
        "settled": pay["settled"].to_numpy(dtype=bool),
    }).sort_values("payment_id", ignore_index=True)

    # Lines in statement order: per account and day, a fee line right after its transfer.
    shuffle = g.permutation(int(line["sort"].max()) + 1 if len(line) else 0)
    order = np.lexsort((line["sub"].to_numpy(), shuffle[line["sort"].to_numpy()],
                        line["day"].to_numpy(), line["acct"].to_numpy()))
    line = line.iloc[order].reset_index(drop=True)
    line_id = np.arange(1, len(line) + 1, dtype=np.int64)
    line_id_of_key = np.empty(len(line), dtype=np.int64)
    line_id_of_key[line["key"].to_numpy()] = line_id
    day = line["day"].to_numpy().astype("datetime64[D]").astype("datetime64[ns]")
    lines = pd.DataFrame({
        "line_id": line_id,
        "account": pd.Series(accounts[line["acct"].to_numpy()], dtype="str"),
        "currency": pd.Series(currencies[line["acct"].to_numpy()], dtype="str"),
        "amount_minor": line["amount_minor"].to_numpy(dtype=np.int64),
        "booking_date": day,
        "value_date": day,
        **{c: pd.Series(line[c].to_numpy(), dtype="str") for c in (
            "end_to_end_id", "bank_reference", "counterparty_name", "counterparty_account",
            "remittance")},
        "is_reversal": line["is_reversal"].to_numpy(dtype=bool),
        "entry_ref": pd.Series(rng.hex(len(line), "N", 6), dtype="str"),
        "batch_key": pd.Series(line["batch_key"].to_numpy(), dtype="str"),
        "charges_minor": line["charges_minor"].array,
    })
    pays_of = tru["pay"].to_numpy()
    truth = pd.DataFrame({
        "line_id": line_id_of_key[tru["line"].to_numpy()],
        "payment_id": pd.array(np.where(pays_of >= 0, pay_id_of_key[np.maximum(pays_of, 0)], 0),
                               dtype="Int64"),
        "rule": pd.Series(tru["rule"].to_numpy(), dtype="str"),
        "category": pd.Series(tru["category"].to_numpy(), dtype="str"),
        "returned": tru["returned"].to_numpy(dtype=bool),
    })
    truth.loc[pays_of < 0, "payment_id"] = pd.NA
    truth = truth.sort_values(["line_id", "payment_id"], ignore_index=True)
    return payments, lines, truth


def evaluate(result: object, truth: pd.DataFrame) -> dict[str, object]:
    """Precision and recall of a :class:`~yinqi.matching.MatchResult` against ``truth``.

    Per line: the set of payments the matches give it must be exactly the truth's set.
    precision = right lines / lines matched; recall = right lines / lines the truth matches.
    Also: lines matched by another rule than the truth's, returned payments right, and
    recall per category.
    """
    items: pd.DataFrame = result.items  # type: ignore[attr-defined]
    matches: pd.DataFrame = result.matches  # type: ignore[attr-defined]
    on_line = items.dropna(subset=["line_id"])[["match_id", "line_id"]]
    on_pay = items.dropna(subset=["payment_id"])[["match_id", "payment_id"]]
    pred = on_line.merge(on_pay, on="match_id").astype({"line_id": np.int64,
                                                        "payment_id": np.int64})
    pred = pred.merge(matches[["match_id", "rule"]], on="match_id")
    want = truth.dropna(subset=["payment_id"]).astype({"payment_id": np.int64})
    both = pred.merge(want[["line_id", "payment_id"]], on=["line_id", "payment_id"])
    n_pred = pred.groupby("line_id").size()
    n_want = want.groupby("line_id").size()
    n_both = both.groupby("line_id").size()
    per = pd.DataFrame({"pred": n_pred, "want": n_want, "both": n_both}).fillna(0).astype(int)
    right = (per["pred"] == per["want"]) & (per["want"] == per["both"]) & (per["pred"] > 0)
    predicted = int((per["pred"] > 0).sum())
    matchable = int((per["want"] > 0).sum())
    correct = int(right.sum())
    rule_of_line = pred.drop_duplicates("line_id").set_index("line_id")["rule"]
    want_rule = want.drop_duplicates("line_id").set_index("line_id")["rule"]
    right_ids = per.index[right]
    rule_wrong = int((rule_of_line.reindex(right_ids) != want_rule.reindex(right_ids)).sum())
    category = truth.drop_duplicates("line_id").set_index("line_id")["category"]
    got = pd.Series(right.reindex(category.index, fill_value=False).to_numpy(),
                    index=category.index)
    matched_any = pd.Series((per["pred"] > 0).reindex(category.index, fill_value=False).to_numpy(),
                            index=category.index)
    by_category = pd.DataFrame({"lines": category.groupby(category).size(),
                                "right": got.groupby(category).sum(),
                                "matched": matched_any.groupby(category).sum()})
    want_returned = set(truth.loc[truth["returned"], "payment_id"].dropna().astype(int))
    got_returned = set(int(x) for x in result.returned_payment_ids)  # type: ignore[attr-defined]
    return {
        "precision": correct / predicted if predicted else 1.0,
        "recall": correct / matchable if matchable else 1.0,
        "lines_matched": predicted,
        "lines_matchable": matchable,
        "lines_right": correct,
        "false_matches": predicted - correct,
        "rule_mismatches": rule_wrong,
        "returns_right": want_returned == got_returned,
        "by_category": {str(k): {c: int(v) for c, v in row.items()}
                        for k, row in by_category.iterrows()},
    }
