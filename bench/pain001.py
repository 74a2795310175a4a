"""Benchmark the pain.001 path a batch takes before it leaves: build, validate, sign, verify.

    python -m bench.pain001 [--payments N ...] [--json]

Each size prints one line (one JSON object with ``--json``): ``payments``, ``bytes`` (the
unsigned pain.001.001.09), ``build_seconds``, ``validate_seconds`` (official XSD),
``sign_seconds`` (enveloped XML-DSig, throwaway RSA-2048 key), ``verify_seconds`` (signxml,
as the bank checks it), ``total_seconds`` (those four), ``payments_per_second`` (over the total)
and ``peak_rss_mb``. With several sizes each runs in its own process, so the peak RSS belongs
to that size alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connectors.iso20022.pain001 import (
    Debtor,
    Order,
    build_pain001,
    sign_envelope,
    validate_pain001,
    verify_bank_envelope,
)
from yinqi.money import Money
from yinqi.payments import Category, Payment

DEFAULT_SIZES = (1, 1000, 100_000)
VERSION = "pain.001.001.09"
DEBTOR = Debtor(name="上海示例贸易有限公司", account="1202021209900654321", bic="ICBKCNBJ",
                cnaps="102290000001", credit_code="91350100M000100Y43")
# A payroll-sized spread of receiving banks, names and purposes, as real batches have.
BANKS = (("102100099996", "中国工商银行北京海淀支行"), ("103100000026", "中国农业银行北京分行"),
         ("104100000004", "中国银行北京分行"), ("105100000017", "中国建设银行北京分行"),
         ("308584000013", "招商银行深圳分行"))
NAMES = ("北京某某科技股份有限公司", "深圳市前海某某贸易有限公司", "张伟", "王芳", "Acme & Sons Ltd.")
PURPOSES = ("货款", "2026年11月工资", "差旅费报销", "服务费 发票号 00012345")

T = TypeVar("T")


def payments(count: int) -> list[Payment]:
    return [
        Payment(
            end_to_end_id=f"E2E-{n:010d}",
            debtor_account=DEBTOR.account,
            creditor_name=NAMES[n % len(NAMES)],
            creditor_account=f"6222020200{n:09d}",
            amount=Money.from_minor(100 + (n * 7919) % 10_000_000, "CNY"),
            purpose=PURPOSES[n % len(PURPOSES)],
            category=Category.SUPPLIER,
            maker="bench",
            requested_date=date(2026, 11, 25),
            creditor_cnaps=BANKS[n % len(BANKS)][0],
            creditor_bank_name=BANKS[n % len(BANKS)][1],
        )
        for n in range(count)
    ]


def throwaway_signer() -> tuple[rsa.RSAPrivateKey, bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return key, cert.public_bytes(serialization.Encoding.PEM), fingerprint


def timed(step: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start


def measure(count: int) -> dict[str, float | int]:
    order = Order(msg_id=f"BENCH-{count}", created_at=datetime.now(timezone(timedelta(hours=8))),
                  debtor=DEBTOR, execution_date=date(2026, 11, 26), payments=payments(count),
                  initiating_party=DEBTOR.name, currency="CNY")
    key, cert_pem, fingerprint = throwaway_signer()
    document, build = timed(lambda: build_pain001(order, VERSION))
    _, validate = timed(lambda: validate_pain001(document, VERSION))
    envelope, sign = timed(lambda: sign_envelope(document, key, cert_pem))
    (_, signer), verify = timed(lambda: verify_bank_envelope(envelope, {fingerprint: cert_pem}))
    assert signer == fingerprint
    total = build + validate + sign + verify
    return {
        "payments": count,
        "bytes": len(document),
        "build_seconds": round(build, 3),
        "validate_seconds": round(validate, 3),
        "sign_seconds": round(sign, 3),
        "verify_seconds": round(verify, 3),
        "total_seconds": round(total, 3),
        "payments_per_second": round(count / total),
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def report(figures: dict[str, float | int], as_json: bool) -> str:
    if as_json:
        return json.dumps(figures)
    return "  ".join(f"{name}={value}" for name, value in figures.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pain001", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, action="append", metavar="N",
                        help=f"payments per file; repeatable (default: {DEFAULT_SIZES})")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args(argv)
    sizes = args.payments or list(DEFAULT_SIZES)
    if any(size < 1 for size in sizes):
        parser.error("--payments must be 1 or more")
    if len(sizes) == 1:
        print(report(measure(sizes[0]), args.json), flush=True)
        return 0
    for size in sizes:
        command = [sys.executable, "-m", "bench.pain001", "--payments", str(size)]
        subprocess.run(command + (["--json"] if args.json else []), check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
