"""Files at rest: the bank message archive and the 电子回单 are sealed with AES-256-GCM.

Unit: the sealed format (round trip, any flipped byte, wrong key, a file under another name,
rotation, legacy plaintext) and the archive that uses it. Integration: a pipeline run against
a real sandbox bank process, after which no archived byte shows an account number; a signed
batch file that no longer decrypts is never sent; operators see files only through
``yinqi receipts show`` / ``yinqi archive show``, audited.

The integration world runs on SQLite only: what is encrypted here is files, the same whatever
database records their hashes (the pipeline's own tests run both backends).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cli_support import as_user, yinqi
from sandbox_support import alert_only_risk_rules
from connectors.archive import Archive, context_of
from connectors.transport import RetryPolicy
from yinqi.bootstrap import App
from yinqi.cli.vouchers_cmd import run_import
from yinqi.demo.approve import approve_pending
from yinqi.demo.setup import DemoWorld, demo_world
from yinqi.demo.vouchers import HEADER
from yinqi.errors import InvalidValue, SecurityError
from yinqi.pipeline import BankPool, Pacing, drive, form_batches, open_work, send_batches
from yinqi.pipeline import sign_batches
from yinqi.pipeline.receipts import read_receipt
from yinqi.pipeline.signing import home_path, read_archived
from yinqi.security.files import MAGIC, FileCipher, file_cipher, key_id_of
from yinqi.security.master import derive_key
from yinqi.states import PaymentState as S
from yinqi.store.models import Alert, AuditEventRow, Batch, Payment, Receipt, StatusReport
from yinqi.vouchers import end_to_end_id_for

MASTER = b"file-encryption-tests-master-" + b"k" * 32
OTHER_MASTER = b"file-encryption-tests-other-" + b"k" * 32
CONTEXT = "archive/icbc-sandbox/2026-11-24/101010000000-receipt-R1.pdf"
PLAIN = b"%PDF-1.4 receipt: payee account 49727250562552316, amount 1234.56 CNY"


# --- the sealed format -------------------------------------------------------------------------


def test_a_sealed_file_opens_to_its_plaintext_and_shows_none_of_it() -> None:
    cipher = FileCipher.from_master(MASTER)
    for data in (PLAIN, b"", os.urandom(1 << 20)):
        blob = cipher.seal(data, CONTEXT)
        assert blob.startswith(MAGIC) and key_id_of(blob) == 1
        assert cipher.open(blob, CONTEXT) == data
    blob = cipher.seal(PLAIN, CONTEXT)
    assert b"49727250562552316" not in blob and b"%PDF" not in blob
    # A fresh nonce every time: the same file sealed twice gives unrelated bytes.
    assert cipher.seal(PLAIN, CONTEXT) != blob


def test_the_file_key_is_the_one_derived_from_the_master_secret_for_files() -> None:
    blob = FileCipher.from_master(MASTER).seal(PLAIN, CONTEXT)
    by_hand = FileCipher({1: derive_key(MASTER, "files/1")}, current=1)
    assert by_hand.open(blob, CONTEXT) == PLAIN
    field_key = FileCipher({1: derive_key(MASTER, "fields/1")}, current=1)
    with pytest.raises(SecurityError):
        field_key.open(blob, CONTEXT)


def test_every_flipped_byte_of_a_sealed_file_is_refused() -> None:
    cipher = FileCipher.from_master(MASTER)
    blob = cipher.seal(PLAIN, CONTEXT)
    # Key ID, nonce, ciphertext and tag: flipping any of them must not open.
    for at in range(len(MAGIC), len(blob)):
        damaged = blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:]
        with pytest.raises(SecurityError):
            cipher.open(damaged, CONTEXT)
    # A damaged magic makes it look like a legacy file: it comes back as it is, which is not
    # the plaintext, so the recorded SHA-256 every reader compares refuses it.
    damaged = bytes([blob[0] ^ 0x01]) + blob[1:]
    assert cipher.open(damaged, CONTEXT) == damaged != PLAIN
    for cut in (len(MAGIC), len(MAGIC) + 2, len(blob) - 1):
        with pytest.raises(SecurityError):
            cipher.open(blob[:cut], CONTEXT)


def test_a_file_sealed_under_another_master_secret_does_not_open() -> None:
    blob = FileCipher.from_master(OTHER_MASTER).seal(PLAIN, CONTEXT)
    with pytest.raises(SecurityError, match="master secret is not the one"):
        FileCipher.from_master(MASTER).open(blob, CONTEXT)


def test_a_file_under_another_name_does_not_open() -> None:
    cipher = FileCipher.from_master(MASTER)
    blob = cipher.seal(PLAIN, CONTEXT)
    for other in (CONTEXT.replace("R1", "R2"), CONTEXT.replace("icbc", "cmb"), ""):
        with pytest.raises(SecurityError, match="moved or swapped"):
            cipher.open(blob, other)


def test_after_rotation_old_files_open_and_new_ones_use_the_new_key() -> None:
    old = FileCipher.from_master(MASTER, current=1)
    new = FileCipher.from_master(MASTER, current=2)
    before = old.seal(PLAIN, CONTEXT)
    after = new.seal(PLAIN, CONTEXT)
    assert (key_id_of(before), key_id_of(after)) == (1, 2)
    assert new.open(before, CONTEXT) == new.open(after, CONTEXT) == PLAIN
    with pytest.raises(SecurityError, match="file key 2, which is not loaded"):
        old.open(after, CONTEXT)
    with pytest.raises(SecurityError):
        FileCipher({1: derive_key(MASTER, "files/1")}, current=2)


def test_a_legacy_plaintext_file_is_read_as_it_is() -> None:
    cipher = FileCipher.from_master(MASTER)
    for legacy in (PLAIN, b"<?xml version='1.0'?><Document/>", b'{"a": 1}', b""):
        assert key_id_of(legacy) is None
        assert cipher.open(legacy, CONTEXT) == legacy


def test_keys_are_derived_once_per_master_secret_and_shared_by_threads() -> None:
    assert file_cipher(MASTER) is file_cipher(MASTER)
    assert file_cipher(MASTER) is not file_cipher(OTHER_MASTER)
    cipher = file_cipher(MASTER)
    blobs: dict[int, bytes] = {}

    def seal(i: int) -> None:
        for j in range(200):
            blobs[i * 1000 + j] = cipher.seal(b"%d" % (i * 1000 + j), f"{CONTEXT}/{i}/{j}")

    threads = [threading.Thread(target=seal, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(blobs) == 800
    assert all(cipher.open(b, f"{CONTEXT}/{k // 1000}/{k % 1000}") == b"%d" % k
               for k, b in blobs.items())


# --- the archive -------------------------------------------------------------------------------


def test_the_archive_keeps_sealed_files_and_the_hash_of_their_plaintext(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", "icbc-sandbox", FileCipher.from_master(MASTER))
    path, digest = archive.keep("receipt", "R1", PLAIN, suffix=".pdf", durable=True)
    raw = path.read_bytes()
    assert digest == hashlib.sha256(PLAIN).hexdigest() != hashlib.sha256(raw).hexdigest()
    assert raw.startswith(MAGIC) and b"49727250562552316" not in raw
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0
    assert archive.read(path) == PLAIN
    assert context_of(path) == "archive/" + "/".join(path.parts[-3:])
    # The same home restored elsewhere: the file is bound to its place in the archive only.
    moved = tmp_path / "restored"
    (tmp_path / "archive").rename(moved)
    again = moved / path.relative_to(tmp_path / "archive")
    assert Archive(moved, "icbc-sandbox", FileCipher.from_master(MASTER)).read(again) == PLAIN


def test_two_archived_files_swapped_do_not_open(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", "icbc-sandbox", FileCipher.from_master(MASTER))
    first, _ = archive.keep("order", "MSG1", b"<order>pay 100 to 49727250562552316</order>")
    second, _ = archive.keep("order", "MSG2", b"<order>pay 999 to 84105404833470521</order>")
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    for path in (first, second):
        with pytest.raises(SecurityError, match="moved or swapped"):
            archive.read(path)


def test_a_file_archived_before_encryption_is_still_read(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", "icbc-sandbox", FileCipher.from_master(MASTER))
    legacy = tmp_path / "archive" / "icbc-sandbox" / "2025-01-02" / "090000000000-receipt-R9.pdf"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(PLAIN)
    assert archive.read(legacy) == PLAIN


def test_archived_file_names_show_no_account_number(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", "x", FileCipher.from_master(MASTER))
    names = {name: archive.keep("camt.053", name, b"{}", suffix=".xml")[0].name for name in (
        "1202021209900123456-2026-11-24", "DE89370400440532013000-2026-11-24",
        "YQB20261124ABCDEF0123456789", "YQ0123456789ABCDEF0123456789ABCDEF")}
    assert names["1202021209900123456-2026-11-24"].endswith("xxxx3456-2026-11-24.xml")
    assert names["DE89370400440532013000-2026-11-24"].endswith("xxxx3000-2026-11-24.xml")
    # Message and end-to-end IDs are not account numbers: they stay whole.
    assert names["YQB20261124ABCDEF0123456789"].endswith("YQB20261124ABCDEF0123456789.xml")
    assert names["YQ0123456789ABCDEF0123456789ABCDEF"].endswith(
        "YQ0123456789ABCDEF0123456789ABCDEF.xml")


# --- a pipeline run against the sandbox bank -----------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")
ICBC_DEBTOR, CMB_DEBTOR = "1202021209900123456", "755912345610808"
PAYEES = [  # (name, account, bank, CNAPS); ICBC customers, a CMB customer, another bank's
    ("杨磊", "49727250562552316", "中国工商银行北京分行营业部", "102100099996"),
    ("李娜", "45401636481574033", "中国工商银行北京分行营业部", "102100099996"),
    ("刘洋", "84105404833470521", "招商银行深圳分行", "308584000013"),
    ("杨磊", "49505976717236739", "中国建设银行上海浦东分行", "105290036005"),
]
CREDITORS = [p[1] for p in PAYEES]
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
FAST = Pacing(base=0.2, ceiling=1.0, lease=timedelta(seconds=60))


@dataclass
class World:
    demo: DemoWorld
    env: dict[str, str]
    moments: Iterator[datetime]

    @property
    def app(self) -> App:
        return self.demo.app

    def pay(self, lines: list[tuple[str, tuple[str, str, str, str], str]]) -> list[int]:
        """Import, approve: one payment per (debtor, payee, amount), in order."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(HEADER)
        tag = uuid.uuid4().hex[:8].upper()
        day = datetime.now(UTC).astimezone(SHANGHAI).date().isoformat()
        for i, (debtor, payee, amount) in enumerate(lines):
            w.writerow([f"F{tag}{i:03d}", day, debtor, *payee, amount, "CNY", "货款", "供应商",
                        "否", "wu.maker", day])
        path = self.demo.home / f"vouchers-{tag}.csv"
        path.write_text(out.getvalue(), encoding="utf-8")
        summary = run_import(self.app, path, imported_by="test")
        assert summary.accepted == len(lines), summary.quarantined
        path.unlink()
        approve_pending(self.app, next(self.moments))
        e2e = [end_to_end_id_for("erp", f"F{tag}{i:03d}") for i in range(len(lines))]
        with self.app.sessions() as s:
            by_e2e = dict(s.execute(select(Payment.end_to_end_id, Payment.id)
                                    .where(Payment.end_to_end_id.in_(e2e))).all())
        return [by_e2e[e] for e in e2e]

    def drive(self) -> None:
        drive(self.app, pacing=FAST, deadline=time.monotonic() + 120)
        assert open_work(self.app) == (0, 0), "the pipeline did not finish within its deadline"

    def states(self, ids: list[int]) -> dict[int, str]:
        with self.app.sessions() as s:
            return dict(s.execute(select(Payment.id, Payment.state)
                                  .where(Payment.id.in_(ids))).all())

    def events(self, action: str, subject: object) -> list[AuditEventRow]:
        with self.app.sessions() as s:
            rows = s.execute(select(AuditEventRow).where(AuditEventRow.action == action)
                             .order_by(AuditEventRow.seq)).scalars().all()
            s.expunge_all()
        return [r for r in rows if str(subject) in r.subject_ids]

    def batch_of(self, pid: int) -> Batch:
        with self.app.sessions() as s:
            batch = s.execute(select(Batch).join(Payment, Payment.batch_id == Batch.id)
                              .where(Payment.id == pid)).scalar_one()
            s.expunge(batch)
        return batch


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("file-encryption") / "home"
    alert_only_risk_rules(home / "config")
    with demo_world(home, settle_after=0.2, read_timeout=3.0) as demo:
        settings = demo.app.settings
        assert settings.master_secret is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("YINQI_")}
        env.update(YINQI_HOME=str(settings.home),
                   YINQI_DATABASE_URL=settings.resolved_database_url,
                   YINQI_MASTER_SECRET=settings.master_secret.get_secret_value(),
                   YINQI_CONFIG_DIR=str(settings.config_dir), COLUMNS="200")
        start = datetime.now(UTC)
        yield World(demo, env, (start + timedelta(seconds=60 * k) for k in itertools.count(1)))


@pytest.fixture(scope="module")
def paid(world: World) -> list[int]:
    """Every payee paid from both debtors and carried to its receipt."""
    ids = world.pay([(debtor, payee, f"{100 + i}.00") for i, (debtor, payee) in enumerate(
        itertools.product((ICBC_DEBTOR, CMB_DEBTOR), PAYEES))])
    world.drive()
    assert set(world.states(ids).values()) == {S.RECEIPTED.value}
    return ids


def _kept_files(app: App) -> list[Path]:
    home = app.settings.home
    return sorted(p for folder in (home / "archive", home / "receipts") if folder.exists()
                  for p in folder.rglob("*") if p.is_file())


def test_a_stolen_copy_of_the_archive_shows_no_account_number(world: World,
                                                              paid: list[int]) -> None:
    files = _kept_files(world.app)
    with world.app.sessions() as s:
        receipts = s.execute(select(Receipt.file_path).where(Receipt.payment_id.in_(paid))
                             ).scalars().all()
        batches = s.execute(select(Batch.file_path).join(Payment, Payment.batch_id == Batch.id)
                            .where(Payment.id.in_(paid)).distinct()).scalars().all()
        reports = s.execute(select(StatusReport.archive_path)
                            .where(StatusReport.payment_id.in_(paid))).scalars().all()
    kept = {home_path(world.app, p) for p in [*receipts, *batches, *reports]}
    assert len(receipts) == len(paid) and kept <= set(files)
    numbers = [n.encode() for n in [*CREDITORS, ICBC_DEBTOR, CMB_DEBTOR]]
    plaintext = b""
    for path in files:
        raw = path.read_bytes()
        assert raw.startswith(MAGIC), path
        leaked = [n for n in numbers if n in raw or n in path.name.encode()]
        assert leaked == [], f"{path} shows {len(leaked)} account number(s)"
        plaintext += read_archived(world.app, str(path))
    # The grep above can fail: the same files, decrypted, name every creditor account.
    assert all(n.encode() in plaintext for n in CREDITORS)


def test_every_kept_file_reads_back_as_the_document_whose_hash_was_recorded(
        world: World, paid: list[int]) -> None:
    with world.app.sessions() as s:
        receipts = s.execute(select(Receipt).where(Receipt.payment_id.in_(paid))).scalars().all()
        batch = s.execute(select(Batch).join(Payment, Payment.batch_id == Batch.id)
                          .where(Payment.id == paid[0])).scalar_one()
    for r in receipts:
        kept = read_receipt(world.app, r.payment_id)
        assert kept.content.startswith(b"%PDF") and kept.sha256 == r.sha256
        assert hashlib.sha256(kept.content).hexdigest() == r.sha256
    assert batch.file_path
    assert hashlib.sha256(read_archived(world.app, batch.file_path)).hexdigest() == \
        batch.file_sha256


def _sign_one(world: World) -> tuple[int, Batch]:
    [pid] = world.pay([(ICBC_DEBTOR, PAYEES[1], f"{uuid.uuid4().int % 900 + 1}.07")])
    form_batches(world.app)
    with BankPool(world.app, retry=NO_WAIT) as banks:
        while sign_batches(world.app, banks, "test-signer").signed:
            pass
    batch = world.batch_of(pid)
    assert batch.state == "SIGNED" and batch.file_path
    return pid, batch


def _tampered_alerts(world: World, batch: Batch) -> list[Alert]:
    with world.app.sessions() as s:
        rows = s.execute(select(Alert).where(Alert.kind == "batch.file_tampered")).scalars().all()
        return [a for a in rows if a.details["batch_id"] == batch.id]


@pytest.mark.parametrize("damage", ["one encrypted byte flipped", "sealed under another key",
                                    "plaintext put in its place"])
def test_a_signed_file_that_does_not_decrypt_is_never_sent(world: World, damage: str) -> None:
    pid, batch = _sign_one(world)
    assert batch.file_path
    path = home_path(world.app, batch.file_path)
    original = path.read_bytes()
    plain = read_archived(world.app, batch.file_path)
    if damage == "one encrypted byte flipped":
        at = len(original) // 2
        path.write_bytes(original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1:])
        problem = "does not decrypt"
    elif damage == "sealed under another key":
        path.write_bytes(FileCipher.from_master(OTHER_MASTER).seal(plain, context_of(path)))
        problem = "does not decrypt"
    else:
        # A legacy-looking file (no header) is read as it is, but it is not what was signed.
        path.write_bytes(plain.replace(PAYEES[1][1].encode(), b"62220212345678901"))
        problem = "hash mismatch"
    try:
        for _ in range(2):
            with BankPool(world.app, retry=NO_WAIT) as banks:
                refused = send_batches(world.app, banks, "test-sender", pacing=FAST)
            assert refused.blocked == [batch.id] and refused.sends == 0
            assert any(batch.msg_id in e and "does not decrypt" in e for e in refused.errors)
            with world.app.sessions.begin() as s:  # due again now, as a person would rerun it
                s.get_one(Batch, batch.id).next_poll_at = None
        after = world.batch_of(pid)
        assert (after.state, after.send_attempts) == ("SIGNED", 0)
        assert world.states([pid]) == {pid: "SIGNED"}
        alerts = _tampered_alerts(world, batch)
        assert len(alerts) == 1 and alerts[0].severity == "critical"
        events = world.events("batch.file_tampered", batch.id)
        assert len(events) == 2
        assert {e.details["problem"] for e in events} == {problem}
        assert events[0].details["expected_sha256"] == batch.file_sha256
        assert not world.events("batch.sending", batch.id)
        with world.app.sessions() as s:
            e2e = s.get_one(Payment, pid).end_to_end_id
        at_bank: list[dict] = world.demo.control(  # type: ignore[assignment, type-arg]
            "GET", "payments/icbc")
        assert e2e not in {row["end_to_end_id"] for row in at_bank}
    finally:
        path.write_bytes(original)
    # The signed file back as it was: the batch goes out as signed.
    with world.app.sessions.begin() as s:
        for alert in s.execute(select(Alert).where(Alert.kind == "batch.file_tampered")
                               ).scalars():
            alert.acknowledged_at = datetime.now(UTC)
    world.drive()
    assert world.states([pid]) == {pid: "RECEIPTED"}


def test_two_signed_files_swapped_are_both_refused(world: World) -> None:
    (first, a), (second, b) = _sign_one(world), _sign_one(world)
    assert a.id != b.id and a.file_path and b.file_path
    pa, pb = home_path(world.app, a.file_path), home_path(world.app, b.file_path)
    ra, rb = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(rb)
    pb.write_bytes(ra)
    try:
        with BankPool(world.app, retry=NO_WAIT) as banks:
            refused = send_batches(world.app, banks, "test-sender", pacing=FAST)
        assert sorted(refused.blocked) == sorted([a.id, b.id]) and refused.sends == 0
        for batch in (a, b):
            [event] = world.events("batch.file_tampered", batch.id)
            assert event.details["problem"] == "does not decrypt"
    finally:
        pa.write_bytes(ra)
        pb.write_bytes(rb)
    with world.app.sessions.begin() as s:
        for batch in (a, b):
            s.get_one(Batch, batch.id).next_poll_at = None
    world.drive()
    assert world.states([first, second]) == {first: "RECEIPTED", second: "RECEIPTED"}


def test_a_receipt_kept_before_encryption_is_still_read(world: World, paid: list[int]) -> None:
    pid = paid[-1]
    kept = read_receipt(world.app, pid)
    path = home_path(world.app, kept.file_path)
    sealed = path.read_bytes()
    path.write_bytes(kept.content)  # as an older Yinqi left it: the PDF itself
    try:
        again = read_receipt(world.app, pid)
        assert again.content == kept.content
    finally:
        path.write_bytes(sealed)


# --- operators see files through the CLI only ----------------------------------------------------


def one_line_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip()


def test_receipts_show_writes_the_decrypted_pdf_for_its_owner_only(
        world: World, paid: list[int], tmp_path: Path) -> None:
    env = as_user(world.env, "zhao.auditor")
    pid = paid[0]
    out = tmp_path / "receipt.pdf"
    shown = json.loads(yinqi("receipts", "show", str(pid), "--out", str(out), "--json", env=env).stdout)
    with world.app.sessions() as s:
        row = s.execute(select(Receipt).where(Receipt.payment_id == pid)).scalar_one()
        e2e = s.get_one(Payment, pid).end_to_end_id
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and hashlib.sha256(data).hexdigest() == row.sha256
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert shown["written_to"] == str(out) and shown["sha256"] == row.sha256
    assert shown["encrypted"] is True and shown["file"] == row.file_path
    [event] = world.events("receipt.viewed", pid)
    assert event.actor == "zhao.auditor" and event.details["written_to"] == str(out)

    # Never over an existing file; by end-to-end ID too; without --out, in a private folder.
    again = yinqi("receipts", "show", str(pid), "--out", str(out), env=env, check=2)
    assert "already exists" in one_line_error(again)
    line = yinqi("receipts", "show", e2e, env={**env, "TMPDIR": str(tmp_path)}).stdout
    written = Path(line.rsplit("written to ", 1)[1].split(" (")[0])
    assert written.parent.parent == tmp_path and written.read_bytes() == data
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    assert "decrypted and matches its recorded SHA-256" in line
    missing = yinqi("receipts", "show", "999999", env=env, check=2)
    assert "has no receipt" in one_line_error(missing)


def test_a_tampered_receipt_is_refused_and_the_refusal_audited(
        world: World, paid: list[int], tmp_path: Path) -> None:
    env = as_user(world.env, "zhao.auditor")
    pid = paid[1]
    with world.app.sessions() as s:
        stored = s.execute(select(Receipt.file_path).where(Receipt.payment_id == pid)
                           ).scalar_one()
    path = home_path(world.app, stored)
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0x80]))
    try:
        with pytest.raises(SecurityError, match="altered"):
            read_receipt(world.app, pid)
        proc = yinqi("receipts", "show", str(pid), "--out", str(tmp_path / "r.pdf"), env=env, check=1)
        assert f"receipt of payment {pid}" in one_line_error(proc)
        assert not (tmp_path / "r.pdf").exists()
        [event] = world.events("receipt.view_refused", pid)
        assert event.actor == "zhao.auditor" and "altered" in event.details["reason"]
    finally:
        path.write_bytes(original)


def test_archive_show_checks_the_recorded_hash_and_stays_inside_the_archive(
        world: World, paid: list[int], tmp_path: Path) -> None:
    env = as_user(world.env, "liu.treasurer")
    batch = world.batch_of(paid[0])
    assert batch.file_path
    out = tmp_path / "order.xml"
    shown = json.loads(yinqi("archive", "show", batch.file_path, "--out", str(out), "--json", env=env).stdout)
    assert out.read_bytes() == read_archived(world.app, batch.file_path)
    assert shown["sha256"] == batch.file_sha256 and shown["checked"] == \
        f"sha256 recorded for batch {batch.msg_id}"
    [event] = world.events("archive.viewed", batch.file_path)
    assert event.actor == "liu.treasurer"
    # Absolute paths work as well; nothing outside the archive is opened.
    absolute = str(home_path(world.app, batch.file_path))
    yinqi("archive", "show", absolute, "--out", str(tmp_path / "again.xml"), env=env)
    assert (tmp_path / "again.xml").read_bytes() == out.read_bytes()
    outside = yinqi("archive", "show", str(world.demo.home / "config" / "banks.toml"), env=env, check=2)
    assert "not in the archive" in one_line_error(outside)
    # A file that is not what the database recorded is refused.
    path = home_path(world.app, batch.file_path)
    original = path.read_bytes()
    path.write_bytes(FileCipher.from_master(world.app.master_secret).seal(
        b"<Document>something else</Document>", context_of(path)))
    try:
        proc = yinqi("archive", "show", batch.file_path, "--out", str(tmp_path / "x.xml"),
                     env=env, check=1)
        assert "does not match the SHA-256 recorded" in one_line_error(proc)
        [refusal] = world.events("archive.view_refused", batch.file_path)
        assert refusal.actor == "liu.treasurer"
    finally:
        path.write_bytes(original)


def test_show_commands_refuse_bad_input(world: World) -> None:
    env = as_user(world.env, "zhao.auditor")
    with pytest.raises(InvalidValue):
        read_receipt(world.app, 987654321)
    proc = yinqi("receipts", "show", "NO-SUCH-E2E", env=env,
                 check=2)
    assert "no payment" in one_line_error(proc)
