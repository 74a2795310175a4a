"""Account numbers, payee names and voucher rows in the database: encrypted, still searchable,
rotatable, and useless to whoever steals the database file without the master secret."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from yinqi.bootstrap import App
from yinqi.errors import SecurityError
from yinqi.security.fields import FieldCrypto
from yinqi.store import make_engine, upgrade
from yinqi.store.field_keys import current_field_key, rotate_field_key, sealed_columns
from yinqi.store.intake import import_vouchers, own_accounts
from yinqi.store.models import BankAccount, Payment, QuarantinedRow, User, Voucher
from yinqi.vouchers import ERP_CN, read_rows, validate_rows

GBK = Path(__file__).resolve().parents[1] / "fixtures" / "vouchers" / "erp-payments-gbk.csv"
SECRET = b"k" * 32


# --- the cipher itself -----------------------------------------------------------------------

def test_same_value_same_domain_gives_the_same_ciphertext() -> None:
    crypto = FieldCrypto(SECRET)
    a = crypto.seal("6222021234567890", "account")
    assert a == crypto.seal("6222021234567890", "account")
    assert a != crypto.seal("6222021234567891", "account")
    assert a != crypto.seal("6222021234567890", "name")  # domains never compare equal
    assert "6222021234567890" not in a and crypto.open(a, "account") == "6222021234567890"


def test_an_altered_value_or_another_master_secret_is_refused() -> None:
    crypto = FieldCrypto(SECRET)
    sealed = crypto.seal("6222021234567890", "account")
    kid, body = sealed.split("~")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(SecurityError, match="altered"):
        crypto.open(f"{kid}~{base64.urlsafe_b64encode(bytes(raw)).decode()}", "account")
    with pytest.raises(SecurityError, match="master secret"):
        FieldCrypto(b"o" * 32).open(sealed, "account")
    with pytest.raises(SecurityError, match="not encrypted"):
        crypto.open("6222021234567890", "account")


def test_values_name_their_key_and_old_keys_still_open() -> None:
    old = FieldCrypto(SECRET, 1).seal("张三", "name")
    new = FieldCrypto(SECRET, 2)
    assert new.key_id_of(old) == 1 and new.open(old, "name") == "张三"
    assert new.key_id_of(new.seal("张三", "name")) == 2


def test_an_engine_without_field_keys_refuses_instead_of_storing_clear_text(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'y.db'}")
    upgrade(engine)
    with engine.begin() as conn, pytest.raises(Exception, match="no field keys"):
        conn.execute(BankAccount.__table__.insert().values(
            company_id=1, bank="b", number="6222021234567890", currency="CNY", name="x",
            status="active"))
    engine.dispose()


# --- in the database ---------------------------------------------------------------------------

def _import(app: App) -> list[int]:
    data = GBK.read_bytes()
    with app.sessions.begin() as session:
        checked = validate_rows(read_rows(data, GBK.name), ERP_CN,
                                own_accounts=own_accounts(session), source="erp")
        summary = import_vouchers(session, app.audit, source="erp", file_name=GBK.name,
                                  data=data, rows_result=checked, imported_by="wu.maker",
                                  risk_rules=app.config.risk_rules)
    return summary.payment_ids


def _voucher_accounts() -> set[str]:
    rows = list(csv.reader(io.StringIO(GBK.read_bytes().decode("gbk"))))
    header = rows[0]
    numbers = set()
    for column in ("付款账号", "收款账号"):
        i = header.index(column)
        numbers |= {r[i].strip() for r in rows[1:] if len(r) > i and len(r[i].strip()) >= 8}
    return numbers


def test_stored_values_are_ciphertext_and_sql_equality_still_works(app: App) -> None:
    ids = _import(app)
    with app.sessions() as session:
        payment = session.get(Payment, ids[0])
        raw = session.execute(text("SELECT creditor_account, creditor_name FROM payments "
                                   "WHERE id = :i"), {"i": ids[0]}).one()
        assert payment.creditor_account not in raw[0] and payment.creditor_name not in raw[1]
        # The application still asks the database for "payments to this account".
        same = session.execute(select(func.count()).select_from(Payment).where(
            Payment.creditor_account == payment.creditor_account)).scalar_one()
        assert same >= 1
        raw_payload = session.execute(text("SELECT payload FROM vouchers LIMIT 1")).scalar_one()
        assert payment.creditor_account.encode() not in bytes(raw_payload)
        voucher = session.execute(select(Voucher).limit(1)).scalar_one()
        assert isinstance(voucher.payload, dict) and voucher.payload
        assert session.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one() == 6


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_stolen_database_file_gives_up_no_account_number_or_secret(app: App) -> None:
    _import(app)
    with app.sessions() as session:
        accounts = {a.number for a in session.execute(select(BankAccount)).scalars()}
        accounts |= set(session.execute(select(Payment.creditor_account)).scalars())
        totp = [app.field_cipher.decrypt(u.totp_secret, f"users.totp_secret:{u.username}")
                for u in session.execute(select(User)).scalars() if u.totp_secret]
    app.engine.dispose()  # flush nothing pending; the WAL is read as well
    db = Path(app.engine.url.database)
    stolen = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    assert accounts >= _voucher_accounts() - {""} or accounts  # we really searched for them
    found = [n for n in accounts if n.encode() in stolen]
    assert found == [], f"account numbers readable in the database file: {len(found)}"
    assert all(secret not in stolen for secret in totp) and totp
    master = app.settings.master_secret.get_secret_value().encode()
    assert master not in stolen and base64.b64encode(master) not in stolen
    assert b"PRIVATE KEY" not in stolen


def test_rotation_re_encrypts_everything_under_a_new_key(app: App) -> None:
    ids = _import(app)
    with app.sessions() as session:
        before = session.get(Payment, ids[0])
        expected = (before.creditor_account, before.creditor_name)
    with app.sessions.begin() as session:
        old, new, count = rotate_field_key(session, app.fields, app.audit, actor="admin")
    assert (old, new) == (1, 2) and count > 40
    assert current_field_key(app.engine) == 2
    with app.sessions() as session:
        for table, column in sealed_columns():
            values = session.execute(text(f"SELECT {column.name} FROM {table.name} "
                                          f"WHERE {column.name} IS NOT NULL")).scalars().all()
            for value in values:
                if isinstance(value, str):
                    assert value.startswith("2~"), (table.name, column.name)
                else:
                    assert bytes(value)[1:3] == (2).to_bytes(2, "big"), (table.name, column.name)
        after = session.get(Payment, ids[0])
        assert (after.creditor_account, after.creditor_name) == expected
        assert session.execute(select(Payment.id).where(
            Payment.creditor_account == expected[0])).first() is not None
    # A process started after the rotation writes and reads under the new key.
    fresh = App(app.settings)
    try:
        with fresh.sessions() as session:
            assert session.get(Payment, ids[0]).creditor_account == expected[0]
        assert fresh.fields.current == 2
    finally:
        fresh.close()


def test_a_database_from_before_encryption_is_encrypted_in_place(db_url: str) -> None:
    plain = make_engine(db_url)
    upgrade(plain, "0003")
    with plain.begin() as conn:
        conn.execute(text("INSERT INTO companies (name, credit_code, created_at) "
                          "VALUES ('c', '91310000MA1FL8XQ30', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO bank_accounts (company_id, bank, number, currency, name, "
                          "status, created_at) VALUES (1, 'b', '6222021234567890', 'CNY', 'n', "
                          "'active', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO import_files (source, file_name, sha256, imported_at, "
                          "imported_by, accepted, quarantined, duplicates) VALUES ('erp', 'f', "
                          "'x', CURRENT_TIMESTAMP, 'u', 0, 1, 0)"))
        conn.execute(text("INSERT INTO quarantined_rows (import_file_id, row_number, reason, "
                          "payload, created_at) VALUES (1, 2, 'bad', :p, CURRENT_TIMESTAMP)"),
                     {"p": '{"收款账号": "6217001234567890123"}'})
    with pytest.raises(Exception, match="master secret"):
        upgrade(plain)
    plain.dispose()
    crypto = FieldCrypto(SECRET)
    engine = make_engine(db_url, fields=crypto)
    upgrade(engine)
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT number FROM bank_accounts")).scalar_one()
        assert raw.startswith("1~") and crypto.open(raw, "account") == "6222021234567890"
        assert conn.execute(select(BankAccount.number)).scalar_one() == "6222021234567890"
        assert conn.execute(select(QuarantinedRow.payload)).scalar_one() == {
            "收款账号": "6217001234567890123"}
    engine.dispose()


def test_file_key_rotation_seals_new_files_under_the_new_key_and_old_ones_still_open(
        app: App) -> None:
    from yinqi.security.files import key_id_of
    from yinqi.store.field_keys import current_file_key, rotate_file_key

    old_blob = app.files.seal(b"receipt bytes", "receipts/x.pdf")
    with app.sessions.begin() as session:
        assert rotate_file_key(session, app.audit, current_file_key(app.engine),
                               actor="admin") == (1, 2)
    fresh = App(app.settings)
    try:
        assert key_id_of(fresh.files.seal(b"new", "receipts/y.pdf")) == 2
        assert fresh.files.open(old_blob, "receipts/x.pdf") == b"receipt bytes"
    finally:
        fresh.close()
