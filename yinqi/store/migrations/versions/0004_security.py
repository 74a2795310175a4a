"""security: encrypted account numbers, names and voucher rows; sessions, risk, freezes, alert log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:30:00

Values already in the database are encrypted in place, under the field keys of the engine
running the migration (``yinqi init`` opens it with the master secret).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

import yinqi.store.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_TS = yinqi.store.types.UtcDateTime()

# table -> [(column, domain)]: deterministic, searchable.
_SEALED_TEXT = {
    'bank_accounts': [('number', 'account')],
    'payments': [('creditor_name', 'name'), ('creditor_account', 'account')],
    'statements': [('account', 'account')],
    'statement_lines': [('counterparty_name', 'name'), ('counterparty_account', 'account')],
    'recon_exceptions': [('account', 'account')],
}
# table -> column: JSON documents, encrypted with a fresh nonce.
_SEALED_JSON = {'vouchers': 'payload', 'quarantined_rows': 'payload'}


def _crypto() -> Any:
    return getattr(op.get_bind().dialect, 'yinqi_fields', None)


def _read(table: str, columns: list[str]) -> list[Any]:
    cols = ', '.join(['id', *columns])
    return list(op.get_bind().execute(sa.text(f'SELECT {cols} FROM {table}')))


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == 'postgresql'
    saved_text = {t: _read(t, [c for c, _ in cols]) for t, cols in _SEALED_TEXT.items()}
    saved_json = {t: _read(t, [c]) for t, c in _SEALED_JSON.items()}
    crypto = _crypto()
    if crypto is None and (any(saved_text.values()) or any(saved_json.values())):
        raise RuntimeError('this database holds account numbers to encrypt: run `yinqi init` '
                           'with the master secret available')

    for table, cols in _SEALED_TEXT.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, _ in cols:
                batch_op.alter_column(column, type_=sa.Text(), existing_nullable=True)
    for table, column in _SEALED_JSON.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, type_=sa.LargeBinary(), existing_nullable=False,
                postgresql_using=f"convert_to({column}::text, 'UTF8')" if pg else None)

    for table, rows in saved_text.items():
        cols = _SEALED_TEXT[table]
        sets = ', '.join(f'{c} = :{c}' for c, _ in cols)
        for row in rows:
            values = {c: None if row[i + 1] is None else crypto.seal(row[i + 1], d)
                      for i, (c, d) in enumerate(cols)}
            bind.execute(sa.text(f'UPDATE {table} SET {sets} WHERE id = :id'),
                         {**values, 'id': row[0]})
    for table, rows in saved_json.items():
        column = _SEALED_JSON[table]
        for row in rows:
            value = row[1] if not isinstance(row[1], (str, bytes)) else json.loads(row[1])
            data = json.dumps(value, ensure_ascii=False, separators=(',', ':')).encode()
            bind.execute(sa.text(f'UPDATE {table} SET {column} = :v WHERE id = :id'),
                         {'v': crypto.seal_bytes(data, f'{table}.{column}'), 'id': row[0]})

    # Deterministic encryption keeps equality lookups indexable (the risk screen's history).
    op.create_index('ix_payments_creditor_account', 'payments', ['creditor_account'])
    op.create_index('ix_payments_created_at', 'payments', ['created_at'])

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_enrolled_at', _TS, nullable=True))
        batch_op.add_column(sa.Column('password_set_at', _TS, nullable=True))
        batch_op.add_column(sa.Column('last_login_at', _TS, nullable=True))
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frozen', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))

    op.create_table(
        'user_sessions',
        sa.Column('id', _ID, nullable=False),
        sa.Column('user_id', _ID, nullable=False),
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('origin', sa.String(length=200), nullable=False),
        sa.Column('client', sa.String(length=200), nullable=False),
        sa.Column('created_at', _TS, nullable=False),
        sa.Column('expires_at', _TS, nullable=False),
        sa.Column('last_seen_at', _TS, nullable=True),
        sa.Column('ended_at', _TS, nullable=True),
        sa.Column('end_reason', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_user_sessions_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_sessions')),
        sa.UniqueConstraint('token_sha256', name=op.f('uq_user_sessions_token_sha256')),
    )
    op.create_index(op.f('ix_user_sessions_user_id'), 'user_sessions', ['user_id'])

    op.create_table(
        'risk_hits',
        sa.Column('id', _ID, nullable=False),
        sa.Column('rule', sa.String(length=40), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('subject_type', sa.String(length=16), nullable=False),
        sa.Column('subject_id', sa.BigInteger(), nullable=False),
        sa.Column('payment_id', _ID, nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('resolved_by', sa.String(length=64), nullable=True),
        sa.Column('resolved_at', _TS, nullable=True),
        sa.Column('resolution', sa.Text(), nullable=True),
        sa.Column('created_at', _TS, nullable=False),
        sa.CheckConstraint("action IN ('alert', 'hold', 'freeze')",
                           name=op.f('ck_risk_hits_action')),
        sa.CheckConstraint("status IN ('open', 'released', 'rejected', 'acknowledged')",
                           name=op.f('ck_risk_hits_status')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'],
                                name=op.f('fk_risk_hits_payment_id_payments')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_hits')),
    )
    op.create_index('ix_risk_hits_subject', 'risk_hits', ['subject_type', 'subject_id'])
    op.create_index(op.f('ix_risk_hits_payment_id'), 'risk_hits', ['payment_id'])

    op.create_table(
        'freezes',
        sa.Column('id', _ID, nullable=False),
        sa.Column('subject_type', sa.String(length=16), nullable=False),
        sa.Column('subject_id', sa.BigInteger(), nullable=False),
        sa.Column('rule', sa.String(length=40), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('frozen_by', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('unfreeze_requested_by', sa.String(length=64), nullable=True),
        sa.Column('unfreeze_requested_at', _TS, nullable=True),
        sa.Column('unfreeze_reason', sa.Text(), nullable=True),
        sa.Column('lifted_by', sa.String(length=64), nullable=True),
        sa.Column('lifted_at', _TS, nullable=True),
        sa.Column('created_at', _TS, nullable=False),
        sa.CheckConstraint("subject_type IN ('payment', 'batch', 'account', 'user')",
                           name=op.f('ck_freezes_subject_type')),
        sa.CheckConstraint("status IN ('active', 'lifted')", name=op.f('ck_freezes_status')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_freezes')),
    )
    op.create_index('ix_freezes_subject', 'freezes', ['subject_type', 'subject_id', 'status'])

    op.create_table(
        'alert_deliveries',
        sa.Column('id', _ID, nullable=False),
        sa.Column('alert_id', _ID, nullable=False),
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=300), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('next_attempt_at', _TS, nullable=True),
        sa.Column('delivered_at', _TS, nullable=True),
        sa.Column('created_at', _TS, nullable=False),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')",
                           name=op.f('ck_alert_deliveries_status')),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
                                name=op.f('fk_alert_deliveries_alert_id_alerts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries')),
        sa.UniqueConstraint('alert_id', 'channel', name=op.f('uq_alert_deliveries_alert_id_channel')),
    )
    op.create_index('ix_alert_deliveries_due', 'alert_deliveries',
                    ['status', 'next_attempt_at'])


def downgrade() -> None:
    raise NotImplementedError('0004 encrypts data in place; restore a backup to go back')
