"""reconciliation: statement kinds and checks, line status and charges, exceptions queue

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import yinqi.store.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('statements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('line_count', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('checks', sa.JSON(), nullable=True))
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=4), nullable=False,
                                      server_default='BOOK'))
        batch_op.add_column(sa.Column('charges_minor', sa.BigInteger(), nullable=True))
    op.create_table(
        'recon_exceptions',
        sa.Column('id', _ID, nullable=False),
        sa.Column('payment_id', _ID, nullable=True),
        sa.Column('statement_line_id', _ID, nullable=True),
        sa.Column('account', sa.String(length=34), nullable=False),
        sa.Column('day', sa.Date(), nullable=True),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('candidates', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('resolution', sa.Text(), nullable=True),
        sa.Column('resolved_by', sa.String(length=64), nullable=True),
        sa.Column('resolved_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('(payment_id IS NULL) <> (statement_line_id IS NULL)',
                           name=op.f('ck_recon_exceptions_one_side')),
        sa.CheckConstraint("status IN ('open', 'matched', 'written_off')",
                           name=op.f('ck_recon_exceptions_status')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'],
                                name=op.f('fk_recon_exceptions_payment_id_payments')),
        sa.ForeignKeyConstraint(['statement_line_id'], ['statement_lines.id'],
                                name=op.f('fk_recon_exceptions_statement_line_id_statement_lines')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_exceptions')),
    )
    with op.batch_alter_table('recon_exceptions', schema=None) as batch_op:
        batch_op.create_index('ix_recon_exceptions_status', ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_recon_exceptions_payment_id'), ['payment_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_recon_exceptions_statement_line_id'),
                              ['statement_line_id'], unique=False)


def downgrade() -> None:
    op.drop_table('recon_exceptions')
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        batch_op.drop_column('charges_minor')
        batch_op.drop_column('status')
    with op.batch_alter_table('statements', schema=None) as batch_op:
        batch_op.drop_column('checks')
        batch_op.drop_column('line_count')
        batch_op.drop_column('kind')
