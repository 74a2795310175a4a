"""Demo voucher files: the shipped one, or N generated payments with a few bad rows.

Generated files are deterministic for a seed. Payees are the sandbox bank's own customers
(internal transfers, some to closed or blacklisted accounts the bank refuses) and payees at
other banks (cleared through CNAPS), so a run shows settlement, fees and rejections.
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


def generate(n: int, seed: int, *, day: date, bad_rows: int | None = None,
             refused_share: float = 0.01) -> bytes:
    """A UTF-8 CSV of ``n`` valid vouchers plus ``bad_rows`` broken ones (default: 1%, >= 3)."""
    rng = random.Random(seed)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for i in range(1, n + 1):
        payee = rng.choice(REFUSED_PAYEES) if rng.random() < refused_share else rng.choice(PAYEES)
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
