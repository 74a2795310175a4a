"""payment pipeline: signed files, polling and bank references

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import yinqi.store.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('execution_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('file_path', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('signed_at', yinqi.store.types.UtcDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('next_poll_at',
                                      yinqi.store.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('poll_count', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bank_reference', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('send_round', sa.Integer(), nullable=False,
                                      server_default='1'))
        batch_op.add_column(sa.Column('approval_round', sa.Integer(), nullable=False,
                                      server_default='1'))
        batch_op.add_column(sa.Column('approved_digest', sa.String(length=64), nullable=True))
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_round', sa.Integer(), nullable=False,
                                      server_default='1'))
        batch_op.drop_constraint('uq_approvals_payment_id_level', type_='unique')
        batch_op.drop_constraint('uq_approvals_payment_id_approver', type_='unique')
        batch_op.create_unique_constraint('uq_approvals_payment_id_approval_round_level',
                                          ['payment_id', 'approval_round', 'level'])
        batch_op.create_unique_constraint('uq_approvals_payment_id_approval_round_approver',
                                          ['payment_id', 'approval_round', 'approver'])


def downgrade() -> None:
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_constraint('uq_approvals_payment_id_approval_round_level', type_='unique')
        batch_op.drop_constraint('uq_approvals_payment_id_approval_round_approver', type_='unique')
        batch_op.create_unique_constraint('uq_approvals_payment_id_level',
                                          ['payment_id', 'level'])
        batch_op.create_unique_constraint('uq_approvals_payment_id_approver',
                                          ['payment_id', 'approver'])
        batch_op.drop_column('approval_round')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('approved_digest')
        batch_op.drop_column('approval_round')
        batch_op.drop_column('send_round')
        batch_op.drop_column('bank_reference')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        for name in ('last_error', 'poll_count', 'next_poll_at', 'signed_at', 'file_path',
                     'execution_date'):
            batch_op.drop_column(name)
