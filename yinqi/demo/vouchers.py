"""Demo voucher files: the shipped one, or N generated payments with a few bad rows.

Generated files are deterministic for a seed. Payees are the sandbox bank's own customers
(internal transfers, some to closed or blacklisted accounts the bank refuses) and payees at
other banks (cleared through CNAPS), so a run shows settlement, fees and rejections.

The risk rules (config/defaults/risk_rules.toml) screen every payment, so generated files
look like a real company's day: from 100 payments on, the payments are spread over more
payees (about :data:`PER_PAYEE` each) instead of paying ten payees thousands of times a day,
which would rightly be held as daily totals above the limit and duplicate amounts. Files of
fewer than 100 payments are what they always were.

:func:`large_payment` is the demo's one deliberate risk hold: a payment above the
single-payment threshold, held at intake and released by the treasurer (``yinqi demo``).
"""

from __future__ import annotations

import csv
import io
import random
from datetime import date
from decimal import Decimal
from pathlib import Path

SHIPPED = Path(__file__).with_name("vouchers.csv")

HEADER = ["单据编号", "单据日期", "付款账号", "收款户名", "收款账号", "收款银行", "联行号", "金额",
          "币种", "用途", "类别", "加急", "制单人", "期望付款日"]

DEBTORS = ("1202021209900123456", "1202021209900654321", "755912345610808")
MAKERS = ("wu.maker", "zhou.maker")
# (name, account, bank name, CNAPS)
PAYEES = (
    ("北京华信科技股份有限公司", "6829597379400215148", "中国工商银行北京分行营业部", "102100099996"),
    ("赵敏", "5723627309655206", "中国工商银行北京分行营业部", "102100099996"),
    ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996"),
    ("上海申通物流有限公司", "8769396106189063", "中国工商银行北京分行营业部", "102100099996"),
    ("苏州工业园区精密制造有限公司", "3086271497094009492", "招商银行深圳分行", "308584000013"),
    ("刘洋", "84105404833470521", "招商银行深圳分行", "308584000013"),
    ("杨磊", "49505976717236739", "中国建设银行上海浦东分行", "105290036005"),
    ("杭州西湖茶业有限公司", "67790081923749510", "中国农业银行南京分行", "103301000016"),
    ("成都天府软件有限公司", "4592388274506937765", "中国银行杭州分行", "104331000018"),
    ("张伟", "8294741680209475", "兴业银行广州分行", "309581000011"),
)
# The bank refuses these: a closed account (internal) and a blacklisted one.
REFUSED_PAYEES = (
    ("已销户测试账户", "9999000011112222", "中国工商银行北京分行营业部", "102100099996"),
)
CATEGORIES = (("供应商", "货款"), ("工资", "11月工资"), ("报销", "差旅费报销"))
#: Payments per payee in a generated file of 100 or more (see the module docstring).
PER_PAYEE = 5
# Banks of spread payees: all outside the sandbox, so their payments clear through CNAPS.
_OTHER_BANKS = (("中国建设银行上海浦东分行", "105290036005"), ("中国农业银行南京分行", "103301000016"),
                ("中国银行杭州分行", "104331000018"), ("兴业银行广州分行", "309581000011"))
_CITIES = ("北京", "上海", "广州", "深圳", "杭州", "南京", "苏州", "成都", "武汉", "西安",
           "天津", "重庆", "长沙", "青岛", "厦门", "宁波", "合肥", "郑州", "济南", "昆明")
_WORDS = ("华信", "恒通", "瑞丰", "永盛", "安达", "宏远", "鑫源", "嘉禾", "中联", "新元",
          "同创", "博远", "金桥", "海纳", "启明", "卓越", "长城", "东方", "天成", "汇丰")
_TRADES = ("科技", "物流", "建材", "机电", "软件", "贸易", "制造", "包装", "电子", "化工",
           "印务", "餐饮", "设备", "咨询", "医药")


def generate(n: int, seed: int, *, day: date, bad_rows: int | None = None,
             refused_share: float = 0.01) -> bytes:
    """A UTF-8 CSV of ``n`` valid vouchers plus ``bad_rows`` broken ones (default: 1%, >= 3)."""
    rng = random.Random(seed)
    # A second generator picks the spread payees, so the first draws exactly what it always
    # drew (debtors, amounts, categories, which payments the bank refuses).
    spread = random.Random(f"{seed}:payees")
    variants = n // (PER_PAYEE * len(PAYEES)) if n >= 100 else 0
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for i in range(1, n + 1):
        payee = rng.choice(REFUSED_PAYEES) if rng.random() < refused_share else rng.choice(PAYEES)
        if variants:
            payee = _spread(payee, spread.randrange(variants + 1))
        category, purpose = rng.choice(CATEGORIES)
        # Mostly small amounts, a few large ones that need the CFO.
        amount = Decimal(rng.randint(100, 4_999_999)) / 100 if rng.random() < 0.9 else \
            Decimal(rng.randint(5_000_000, 150_000_000)) / 100
        w.writerow([f"DM{seed:04d}{i:08d}", day.isoformat(), rng.choice(DEBTORS), payee[0],
                    payee[1], payee[2], payee[3], f"{amount:.2f}", "CNY", purpose, category,
                    "否", rng.choice(MAKERS), day.isoformat()])
    bad = max(3, n // 100) if bad_rows is None else bad_rows
    broken = (
        lambda k: [f"DMBAD{seed:04d}{k:06d}", day.isoformat(), DEBTORS[0], "杨磊",
                   "49505976717236739", "中国建设银行上海浦东分行", "105290036005", "-5.00", "CNY",
                   "负数金额", "供应商", "否", "wu.maker", day.isoformat()],
        lambda k: [f"DMBAD{seed:04d}{k:06d}", day.isoformat(), DEBTORS[0], "杨磊",
                   "49505976717236739", "中国建设银行上海浦东分行", "10529003600", "12.00", "CNY",
                   "联行号少一位", "供应商", "否", "wu.maker", day.isoformat()],
        lambda k: [f"DMBAD{seed:04d}{k:06d}", day.isoformat(), "6222000000000000000", "杨磊",
                   "49505976717236739", "中国建设银行上海浦东分行", "105290036005", "12.00", "CNY",
                   "不是本公司账户", "供应商", "否", "wu.maker", day.isoformat()],
        lambda k: [f"DMBAD{seed:04d}{k:06d}", day.isoformat(), DEBTORS[1], "",
                   "49505976717236739", "中国建设银行上海浦东分行", "105290036005", "12.345", "CNY",
                   "无收款人", "供应商", "否", "wu.maker", day.isoformat()],
    )
    for k in range(bad):
        w.writerow(broken[k % len(broken)](k))
    return out.getvalue().encode("utf-8")


def _spread(payee: tuple[str, str, str, str], k: int) -> tuple[str, str, str, str]:
    """Variant ``k`` of a payee (0: the payee itself): another company at another bank, or,
    for a payee the bank refuses, another account the sandbox bank does not know (refused
    with AC01), so that each refused account is refused a few times, not thousands."""
    if k == 0:
        return payee
    refused = payee in REFUSED_PAYEES
    base = (REFUSED_PAYEES if refused else PAYEES).index(payee)
    pick = random.Random(f"{payee[1]}:{k}")
    if refused:
        return (f"{payee[0]}{k}", f"99990000{base:02d}{k:07d}", payee[2], payee[3])
    index = base * 100_000 + k
    sizes = (len(_CITIES), len(_WORDS), len(_TRADES))
    name = (_CITIES[index % sizes[0]] + _WORDS[index // sizes[0] % sizes[1]]
            + _TRADES[index // (sizes[0] * sizes[1]) % sizes[2]] + "有限公司")
    if index >= sizes[0] * sizes[1] * sizes[2]:
        name += f"第{index // (sizes[0] * sizes[1] * sizes[2])}分公司"
    bank, cnaps = _OTHER_BANKS[k % len(_OTHER_BANKS)]
    return name, str(pick.randrange(10**16, 10**19)), bank, cnaps


#: The demo's deliberate hold: above the single-payment threshold (5,000,000.00 CNY in
#: risk_rules.toml), to a payee the shipped file already pays.
LARGE_PAYMENT = ("FK2026900001", DEBTORS[0], "苏州工业园区精密制造有限公司", "3086271497094009492",
                 "招商银行深圳分行", "308584000013", "6800000.00", "设备款", "供应商")


def large_payment(day: date) -> bytes:
    """A voucher file with the one payment a risk rule holds on purpose (see run.py)."""
    ref, debtor, name, account, bank, cnaps, amount, purpose, category = LARGE_PAYMENT
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    w.writerow([ref, day.isoformat(), debtor, name, account, bank, cnaps, amount, "CNY",
                purpose, category, "否", "wu.maker", day.isoformat()])
    return out.getvalue().encode("utf-8")
