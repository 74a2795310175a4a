"""Migration 0006 on a database with batches and payments in it (both backends): the batch
states INVALID and DISSOLVED become legal, and nothing already there is lost."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from conftest import MASTER_SECRET
from yinqi.security.fields import FieldCrypto
from yinqi.store import head_revision, make_engine, session_factory, upgrade
from yinqi.store.models import BankAccount, Batch, Company, Payment


def test_a_database_with_batches_migrates_to_the_set_aside_states(db_url: str) -> None:
    eng = make_engine(db_url, fields=FieldCrypto(MASTER_SECRET.encode()))
    try:
        upgrade(eng, "0005")
        sessions = session_factory(eng)
        with sessions.begin() as s:
            acct = BankAccount(company=Company(name="演示科技有限公司",
                                                       credit_code="91350100M000100Y43"),
                               bank="icbc-sandbox",
                               number="1202021209900123456", currency="CNY", name="基本户")
            s.add(acct)
            s.flush()
            batch = Batch(msg_id="YQB20261128A", bank="icbc-sandbox", dialect="iso20022",
                          debtor_account_id=acct.id, currency="CNY", state="BUILT",
                          payment_count=1, total_minor=100)
            s.add(batch)
            s.flush()
            s.add(Payment(end_to_end_id="E2E-MIGRATION-1", debtor_account_id=acct.id,
                          creditor_name="杨磊", creditor_account="49505976717236739",
                          amount_minor=100, currency="CNY", category="supplier",
                          requested_date=date(2026, 11, 28), maker="wu.maker",
                          state="BATCHED", batch_id=batch.id))
        with pytest.raises(IntegrityError), sessions.begin() as s:
            s.execute(text("UPDATE batches SET state = 'INVALID'"))

        upgrade(eng)
        with eng.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                == head_revision()
        with sessions.begin() as s:
            s.execute(text("UPDATE batches SET state = 'INVALID'"))
        with sessions.begin() as s:
            s.execute(text("UPDATE batches SET state = 'DISSOLVED'"))
        with pytest.raises(IntegrityError), sessions.begin() as s:
            s.execute(text("UPDATE batches SET state = 'LOST'"))
        with sessions() as s:
            [(msg_id, state)] = s.execute(select(Batch.msg_id, Batch.state)).all()
            [(e2e, batch_id, name)] = s.execute(
                select(Payment.end_to_end_id, Payment.batch_id, Payment.creditor_name)).all()
            assert (msg_id, state) == ("YQB20261128A", "DISSOLVED")
            assert (e2e, name) == ("E2E-MIGRATION-1", "杨磊")
            assert batch_id == s.execute(select(Batch.id)).scalar_one()
    finally:
        eng.dispose()
