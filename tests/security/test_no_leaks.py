"""Nothing a demo run leaves behind shows a whole account number or a secret.

A real ``yinqi demo --json`` runs in its own process on a fresh home; afterwards everything an
operator, a log collector or a thief of the disk could read is collected:

- the demo's stdout and stderr, and the output of the read-only commands an operator runs
  next (payments, batches, statements, reconciliation report with its Excel export, audit);
- every Prefect log line, artifact, flow run (parameters, state message) and task run of the
  run, read through the Prefect client from the Prefect home the demo used;
- every file Yinqi wrote: logs, archive (bank messages, receipts), exports, keys, config, the
  raw bytes of the SQLite database and its -wal, and Prefect's own database.

and searched for every account number of the demo's voucher file (payees and debtors), each
of our own account numbers (the demo config), the master secret (as given, base64 and hex),
every user's TOTP secret (decrypted with the app's field cipher: base32, hex and base64 of
the key) and any PEM private key that is not encrypted. Any hit fails the test with where it
was found and 60 characters of masked context.

Left out on purpose: the sandbox bank's own state folder, config and log. That process plays
the *bank*, which knows the accounts it keeps; its files are the bank's, not Yinqi's.

The scanner is tested on its own first, so that the search cannot pass by finding nothing.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from yinqi.demo.setup import DEMO_MASTER_SECRET
from yinqi.demo.vouchers import SHIPPED
from yinqi.security.masking import mask_account, redact

CONTEXT = 60
DEMO_TIMEOUT = 900
# The sandbox bank's side of the demo home (relative to the Yinqi home): the bank's data.
BANK_SIDE = ("sandbox", "sandbox-config", "sandbox-bank.log")


# --- the scanner ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Needle:
    """A value that must appear nowhere. ``what`` names it in reports without showing it."""

    what: str
    value: str


@dataclass(frozen=True)
class Hit:
    where: str
    what: str
    context: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: ...{self.context}..."


# An unencrypted PEM private key: PKCS#8 "PRIVATE KEY" or a traditional RSA/EC/DSA key without
# the Proc-Type header an encrypted one has ("ENCRYPTED PRIVATE KEY" does not match).
_PLAIN_PEM = re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----")
_DIGIT_SEPARATOR = re.compile(r"(?<=[0-9])[ -](?=[0-9])")


@dataclass
class Scanner:
    needles: list[Needle]
    _pattern: re.Pattern[bytes] = field(init=False)
    _by_value: dict[bytes, Needle] = field(init=False)

    def __post_init__(self) -> None:
        values = sorted({n.value for n in self.needles if n.value}, key=len, reverse=True)
        if not values:
            raise ValueError("nothing to search for")
        self._by_value = {n.value.encode(): n for n in self.needles}
        self._pattern = re.compile(b"|".join(re.escape(v.encode()) for v in values))

    def scan(self, where: str, data: bytes | str) -> list[Hit]:
        """Hits of every needle (and of plain private keys) in ``data``; text is also searched
        with separators inside digit runs removed ("6222 0212 ..." counts too)."""
        blob = data.encode() if isinstance(data, str) else data
        hits = self._needles_in(where, blob)
        for match in _PLAIN_PEM.finditer(blob):
            if b"Proc-Type: 4,ENCRYPTED" not in blob[match.end():match.end() + 120]:
                hits.append(Hit(where, "unencrypted PEM private key",
                                self._context(blob, match.start(), match.end())))
        if isinstance(data, str):
            joined = _DIGIT_SEPARATOR.sub("", data)
            found = {h.what for h in hits}
            # The joined copy only adds what the text hid in digit groups.
            hits += [h for h in self._needles_in(where, joined.encode()) if h.what not in found]
        return hits

    def _needles_in(self, where: str, blob: bytes) -> list[Hit]:
        return [Hit(where, self._by_value[m.group(0)].what,
                    self._context(blob, m.start(), m.end()))
                for m in self._pattern.finditer(blob)]

    def scan_file(self, where: str, data: bytes) -> list[Hit]:
        """A file's raw bytes, and the members of a zip container (xlsx) unpacked."""
        hits = self.scan(where, data)
        if data[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    for name in z.namelist():
                        hits += self.scan(f"{where}!{name}", z.read(name))
            except zipfile.BadZipFile:
                pass
        return hits

    def _context(self, blob: bytes, start: int, end: int) -> str:
        """60 characters around a hit, with every needle in it masked: the report of a leak
        must not leak."""
        first, last = max(0, start - CONTEXT // 2), min(len(blob), end + CONTEXT // 2)
        # Never cut a number in two: a cut-off needle would not be masked below.
        for _ in range(40):
            if first > 0 and blob[first - 1:first].isalnum():
                first -= 1
            if last < len(blob) and blob[last:last + 1].isalnum():
                last += 1
        text = blob[first:last].decode("utf-8", "replace")
        for value, needle in self._by_value.items():
            shown = value.decode()
            if shown in text:
                text = text.replace(shown, mask_account(shown) if needle.what.startswith(
                    ("payee", "debtor", "our")) else "<secret>")
        return redact(" ".join(text.split()))


def account_needles(voucher_files: Iterable[Path], own: Iterable[tuple[str, str]]
                    ) -> list[Needle]:
    """Every account number of the voucher files (payee and debtor columns, quarantined rows
    too) and of our own accounts ((bank, number) pairs)."""
    needles: dict[str, Needle] = {}
    for bank, number in own:
        needles[number] = Needle(f"our account {bank} {mask_account(number)}", number)
    for path in voucher_files:
        rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        for row in rows:
            for column, role in (("收款账号", "payee"), ("付款账号", "debtor")):
                number = re.sub(r"[\s-]", "", row.get(column) or "")
                if len(number) >= 8 and number not in needles:
                    needles[number] = Needle(f"{role} account {mask_account(number)}", number)
    return list(needles.values())


def secret_needles(what: str, raw: bytes, *, text: str | None = None) -> list[Needle]:
    """A secret as given and in the encodings it would be written in."""
    forms = {text or "", base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("="),
             base64.urlsafe_b64encode(raw).decode().rstrip("="), raw.hex(), raw.hex().upper()}
    if text is None:
        try:
            forms.add(raw.decode("ascii"))
        except UnicodeDecodeError:
            pass
    return [Needle(what, f) for f in sorted(forms) if len(f) >= 12]


def totp_needles(username: str, secret: str) -> list[Needle]:
    padded = secret + "=" * (-len(secret) % 8)
    raw = base64.b32decode(padded.upper())
    return secret_needles(f"TOTP secret of {username}", raw, text=secret) + \
        [Needle(f"TOTP secret of {username}", secret.lower())]


def test_the_scanner_finds_a_planted_account_number_wherever_it_is() -> None:
    needles = account_needles([SHIPPED], [("icbc-sandbox", "1202021209900123456")])
    scanner = Scanner(needles + secret_needles("master secret", b"k" * 16 + b"master-secret!!"))
    payee = "3086271497094009492"  # a payee of the shipped voucher file
    assert any(n.value == payee for n in needles)
    found = scanner.scan("log line", f"2026-11-26 | INFO | paid to {payee} today")
    assert [(h.where, h.what) for h in found] == [("log line", "payee account ****9492")]
    assert payee not in str(found[0]) and "****9492" in found[0].context
    # Grouped digits in text, raw bytes of a binary file, a member of an xlsx container.
    assert scanner.scan("cli", "账号 3086 2714 9709 4009 492 已付")
    assert scanner.scan("db", b"\x00\x17\x01ICBC-1202021209900123456-20261126\x00")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/sharedStrings.xml", f"<si><t>{payee}</t></si>")
    assert [h.where for h in scanner.scan_file("report.xlsx", zipped.getvalue())] == \
        ["report.xlsx!xl/sharedStrings.xml"]
    # A secret in base64, an unencrypted private key; masked numbers and encrypted keys pass.
    assert scanner.scan("env dump", base64.b64encode(b"k" * 16 + b"master-secret!!"))
    assert scanner.scan("key file", b"-----BEGIN PRIVATE KEY-----\nMIIEvQ...")
    assert not scanner.scan("fine", "paid to ****9492; -----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert not scanner.scan("fine", b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED")


def test_the_scanner_finds_every_account_in_the_voucher_file_itself() -> None:
    # The needles are what the demo really uses: the file they come from is full of them.
    needles = account_needles([SHIPPED], [])
    hits = Scanner(needles).scan_file("vouchers.csv", SHIPPED.read_bytes())
    assert {h.what for h in hits} == {n.what for n in needles}
    assert len(needles) >= 10


# --- the demo run --------------------------------------------------------------------------


@dataclass
class Collected:
    """Everything of one demo run that may be read, by where it was found."""

    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    bank_side: dict[str, bytes] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)
    prefect: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    needles: list[Needle] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)


_PREFECT_READER = r"""
import json
from prefect.client.orchestration import get_client

def pages(read):
    out, offset = [], 0
    while True:
        page = read(limit=200, offset=offset)
        if not page:
            return out
        out += page
        offset += len(page)

with get_client(sync_client=True) as client:
    logs = pages(lambda **kw: client.read_logs(**kw))
    artifacts = pages(lambda **kw: client.read_artifacts(**kw))
    flow_runs = pages(lambda **kw: client.read_flow_runs(**kw))
    task_runs = pages(lambda **kw: client.read_task_runs(**kw))
print(json.dumps({
    "logs": [{"name": l.name, "level": l.level, "message": l.message} for l in logs],
    "artifacts": [{"key": a.key, "type": a.type, "description": a.description,
                   "data": a.data} for a in artifacts],
    "flow_runs": [{"name": r.name, "parameters": r.parameters,
                   "state": r.state.message if r.state else None} for r in flow_runs],
    "task_runs": [{"name": r.name, "state": r.state.message if r.state else None}
                  for r in task_runs],
}, default=str))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YINQI_", "PREFECT_"))}
    env.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180", **extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, text=True, capture_output=True, timeout=timeout)


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Collected:
    got = Collected()
    base = tmp_path_factory.mktemp("no-leaks")
    # INFO, not the demo's default WARNING: every line the tasks log reaches Prefect.
    proc = _run([sys.executable, "-m", "yinqi", "demo", "--json"],
                _env(YINQI_HOME=str(base / "home"), YINQI_ACTOR="service",
                     PREFECT_LOGGING_LEVEL="INFO"), timeout=DEMO_TIMEOUT)
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    got.texts["demo stdout"], got.texts["demo stderr"] = proc.stdout, proc.stderr
    got.summary = json.loads(proc.stdout)
    folder = Path(str(got.summary["home"]))
    home = folder / "yinqi"
    # The voucher files the demo hands Yinqi (an ERP's exports) are the input: their
    # account numbers are what must appear nowhere else.
    got.inputs = [Path(str(got.summary["voucher_file"])), *sorted(folder.glob("vouchers*"))]
    # The files exactly as the run left them (before any later command opens the database).
    for path in _files(base):
        if path in got.inputs:
            continue
        rel = path.relative_to(base).as_posix()
        inside = path.relative_to(home).parts[0] if path.is_relative_to(home) else None
        (got.bank_side if inside in BANK_SIDE else got.files)[rel] = path.read_bytes()

    # What an operator looks at next, in the same installation.
    cli_env = _env(YINQI_HOME=str(home), YINQI_MASTER_SECRET=DEMO_MASTER_SECRET,
                   YINQI_CONFIG_DIR=str(home / "config"), YINQI_ACTOR="service")
    day = str(got.summary["reconciliation"]["day"])  # type: ignore[index]
    export = folder / "exports" / "reconciliation.xlsx"
    commands = [
        ["payments", "list", "--limit", "1000", "--json"], ["payments", "list", "--limit", "1000"],
        ["batches", "list", "--json"], ["approvals", "list", "--json"],
        ["reconcile", "report", "--date", day, "--xlsx", str(export), "--json"],
        ["reconcile", "report", "--date", day],
        ["reconcile", "exceptions", "list", "--status", "written_off", "--json"],
        ["statements", "show", "1", "--json"], ["statements", "show", "1"],
        ["audit", "verify", "--json"], ["balances", "--json"],
    ]
    for args in commands:
        out = _run([sys.executable, "-m", "yinqi", *args], cli_env)
        got.texts[f"yinqi {' '.join(args)} (stdout)"] = out.stdout
        got.texts[f"yinqi {' '.join(args)} (stderr)"] = out.stderr
        if args[:2] in (["payments", "list"], ["reconcile", "report"]):
            assert out.returncode == 0, (args, out.stderr)
    got.files[export.relative_to(base).as_posix()] = export.read_bytes()

    reader = _run([sys.executable, "-c", _PREFECT_READER],
                  _env(PREFECT_HOME=str(folder / "prefect")))
    assert reader.returncode == 0, reader.stderr[-4000:]
    got.prefect = json.loads(reader.stdout)

    got.needles = _needles(home, got.inputs)
    return got


def _needles(home: Path, inputs: list[Path]) -> list[Needle]:
    """Account numbers of the voucher file and the config, and the secrets: read from the
    demo's own installation (TOTP secrets decrypted with its field cipher)."""
    from sqlalchemy import select

    from config import load_settings
    from yinqi.bootstrap import App
    from yinqi.store.auth import totp_secret
    from yinqi.store.models import User

    app = App(load_settings(home=home, database_url=f"sqlite:///{home / 'yinqi.db'}",
                            master_secret=DEMO_MASTER_SECRET, config_dir=home / "config"))
    try:
        needles = account_needles(inputs, [(a.bank, a.number) for a in app.config.accounts])
        needles += secret_needles("master secret", DEMO_MASTER_SECRET.encode(),
                                  text=DEMO_MASTER_SECRET)
        with app.sessions() as s:
            users = list(s.execute(select(User).where(User.totp_secret.is_not(None))).scalars())
            for user in users:
                needles += totp_needles(user.username, totp_secret(app.field_cipher, user))
    finally:
        app.close()
    assert users, "the demo has users with one-time codes"
    return needles


@pytest.mark.slow
def test_the_collection_is_not_empty(demo: Collected) -> None:
    # A search of nothing finds nothing: check the run left what the scan is meant to see.
    assert demo.summary["ok"] is True
    names = set(demo.files)
    assert any(n.endswith("/yinqi.db") for n in names)
    assert sum("/archive/" in n for n in names) >= 10, "bank messages and receipts"
    assert any(n.endswith("reconciliation.xlsx") for n in names)
    assert any(n.endswith("prefect.db") for n in names)
    keys = {a["key"] for a in demo.prefect["artifacts"]}
    assert {"batch-summary", "receipts", "reconciliation-report",
            "reconciliation-summary"} <= keys, keys
    assert len(demo.prefect["logs"]) >= 10
    assert len(demo.prefect["flow_runs"]) >= 2, "the payment run and the reconciliation"
    assert len(demo.prefect["task_runs"]) >= 10
    payments = json.loads(demo.texts["yinqi payments list --limit 1000 --json (stdout)"])
    assert len(payments) == demo.summary["payments"]
    kinds = {n.what.split(" ")[0] for n in demo.needles}
    assert {"payee", "debtor", "our", "master", "TOTP"} <= kinds
    # The bank's side holds the accounts it keeps: the scanner sees them in raw SQLite bytes.
    bank_db = [data for name, data in demo.bank_side.items() if name.endswith("bank.db")
               or name.endswith("bank.db-wal")]
    assert Scanner(demo.needles).scan("bank.db", b"".join(bank_db))


@pytest.mark.slow
def test_no_account_number_or_secret_anywhere(demo: Collected) -> None:
    scanner = Scanner(demo.needles)
    hits: list[Hit] = []
    for where, text in demo.texts.items():
        hits += scanner.scan(where, text)
    for name, data in demo.files.items():
        hits += scanner.scan_file(name, data)
    for kind, records in demo.prefect.items():
        for n, record in enumerate(records):
            label = record.get("key") or record.get("name") or n
            hits += scanner.scan(f"prefect {kind[:-1]} {label}",
                                 json.dumps(record, ensure_ascii=False, default=str))
    report = "\n".join(str(h) for h in hits[:100])
    assert not hits, f"{len(hits)} leak(s) in {len({h.where for h in hits})} place(s):\n{report}"
