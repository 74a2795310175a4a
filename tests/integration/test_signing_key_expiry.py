"""Our signing certificate expired: the signing stage signs nothing new, says what expired,
when, and what to do, in one line per batch and one alert (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from yinqi.bootstrap import App
from yinqi.pipeline import BankPool, sign_batches
from yinqi.security.keyring import rotate_signing_key
from yinqi.store.models import Alert, BankAccount, Batch


def test_an_expired_signing_certificate_signs_nothing_new_and_says_what_to_do(
        app: App) -> None:
    # The current key was made three years ago; its certificate was valid for two.
    rotation = rotate_signing_key(app, actor="test",
                                  now=datetime.now(UTC) - timedelta(days=3 * 365))
    with app.sessions.begin() as s:
        account = s.execute(select(BankAccount).order_by(BankAccount.id)).scalars().first()
        assert account is not None
        batch = Batch(msg_id="YQB20261128EXPIRED", bank=account.bank,
                      dialect=str(app.config.banks[account.bank].dialect),
                      debtor_account_id=account.id, currency=account.currency, state="BUILT")
        s.add(batch)
        s.flush()
        batch_id = batch.id

    errors = []
    for _ in range(2):
        with app.sessions.begin() as s:  # due again at once: the second run of the day
            s.execute(update(Batch).values(next_poll_at=None))
        with BankPool(app) as banks:
            result = sign_batches(app, banks, "test-signer")
        assert (result.signed, result.blocked, result.set_aside) == ([], [batch_id], [])
        errors += result.errors
    expired_on = rotation.new.not_after.strftime("%Y-%m-%d")
    assert errors == [
        f"our signing certificate {rotation.new.key_id} EXPIRED on {expired_on}: no new "
        "payment order is signed with it (the bank would refuse it); an administrator "
        "rotates it (`yinqi keys rotate`) and registers the new certificate with the bank "
        "(docs/keys.md)"] * 2
    with app.sessions() as s:
        after = s.get_one(Batch, batch_id)
        assert (after.state, after.file_path, after.last_error) == ("BUILT", None, errors[0])
        alerts = s.execute(select(Alert).where(Alert.kind == "key.cannot_sign")).scalars().all()
    assert [(a.subject, a.severity, a.message) for a in alerts] == \
        [("our signing key", "critical", errors[0])]
