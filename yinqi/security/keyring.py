"""Our signing keys as the database knows them: which one signs, which are retired, rotation.

The key material stays in its encrypted file (:mod:`yinqi.security.keystore`); a row in
``keys`` holds the certificate and the dates. Exactly one signing key is current; a rotation
retires it (``retired_at``) but keeps its certificate and file, so every file it signed stays
verifiable and a batch signed before the rotation is still sent with its original bytes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from yinqi.errors import InvalidValue
from yinqi.security.keystore import KeyInfo, create_signing_key, next_key_id
from yinqi.security.signatures import TrustedKey
from yinqi.store.audit_log import AuditLog
from yinqi.store.models import Key
from yinqi.store.types import utcnow

if TYPE_CHECKING:
    from yinqi.bootstrap import App

SIGNING = "signing"


@dataclass(frozen=True, slots=True)
class Rotation:
    new: KeyInfo
    retired: tuple[tuple[str, str], ...]  # (key id, fingerprint) of the keys it retired


def current_signing_key(session: Session) -> Key | None:
    return session.execute(
        select(Key).where(Key.purpose == SIGNING, Key.retired_at.is_(None))
        .order_by(Key.created_at.desc(), Key.id.desc())).scalars().first()


def all_keys(session: Session) -> list[Key]:
    return list(session.execute(select(Key).order_by(Key.purpose, Key.created_at, Key.id))
                .scalars())


def find_key(session: Session, key_id: str) -> Key | None:
    return session.execute(select(Key).where(Key.key_id == key_id)).scalars().first()


def trusted(key: Key) -> TrustedKey:
    return TrustedKey(key.key_id, key.fingerprint, key.certificate_pem.encode(),
                      key.not_before, key.retired_at)


def record_key(session: Session, audit: AuditLog, info: KeyInfo, *, actor: str) -> Key:
    """The ``keys`` row of a key just written to disk, and its audit event."""
    row = Key(key_id=info.key_id, purpose=info.purpose, algorithm=info.algorithm,
              fingerprint=info.fingerprint, certificate_pem=info.certificate_pem,
              path=str(info.key_path), not_before=info.not_before, not_after=info.not_after)
    session.add(row)
    audit.append(session, actor=actor, action="key.created", subject_type="key",
                 subject_ids=[info.key_id],
                 details={"purpose": info.purpose, "algorithm": info.algorithm,
                          "fingerprint": info.fingerprint,
                          "not_after": info.not_after.isoformat()})
    return row


def rotate_signing_key(app: App, *, actor: str, now: datetime | None = None) -> Rotation:
    """Make a new signing key current and retire the old one, in one audited transaction.

    The new files are written inside the transaction and removed again if it does not
    commit, so no key exists on disk that the database does not know about.
    """
    now = now or utcnow()
    written: list[Path] = []
    try:
        with app.sessions.begin() as session:
            # FOR UPDATE waits for a rotation in flight (SQLite's write lock already does);
            # the current keys are then read by a fresh statement, which sees the key that
            # rotation made, so two rotations at once still leave exactly one current key.
            session.execute(select(Key.id).where(Key.purpose == SIGNING,
                                                 Key.retired_at.is_(None))
                            .with_for_update()).all()
            old = list(session.execute(
                select(Key).where(Key.purpose == SIGNING, Key.retired_at.is_(None))
                .with_for_update()).scalars())
            used = session.execute(select(Key.key_id)).scalars().all()
            key_id = next_key_id(used, SIGNING)
            info = create_signing_key(app.settings.keys_dir, app.master_secret, key_id,
                                      app.config.company.name, now=now)
            written += [info.key_path, info.key_path.with_name(f"{key_id}.cert.pem")]
            for row in old:
                row.retired_at = now
            session.add(Key(key_id=info.key_id, purpose=info.purpose, algorithm=info.algorithm,
                            fingerprint=info.fingerprint, certificate_pem=info.certificate_pem,
                            path=str(info.key_path), not_before=info.not_before,
                            not_after=info.not_after, created_at=now))
            app.audit.append(
                session, actor=actor, action="key.rotated", subject_type="key",
                subject_ids=[key_id, *(r.key_id for r in old)],
                details={"purpose": SIGNING,
                         "old_key_ids": [r.key_id for r in old],
                         "old_fingerprints": [r.fingerprint for r in old],
                         "new_key_id": key_id, "new_fingerprint": info.fingerprint,
                         "algorithm": info.algorithm,
                         "not_after": info.not_after.isoformat()})
            retired = tuple((r.key_id, r.fingerprint) for r in old)
    except BaseException:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    return Rotation(info, retired)


def require_key(session: Session, key_id: str) -> Key:
    key = find_key(session, key_id)
    if key is None:
        known = ", ".join(k.key_id for k in all_keys(session)) or "none"
        raise InvalidValue(f"no key {key_id!r} in the keystore (known: {known})")
    return key
