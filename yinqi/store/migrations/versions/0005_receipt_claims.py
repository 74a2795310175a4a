"""receipt claims: who is downloading a payment's receipt, and until when

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import yinqi.store.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('receipt_claimed_by', sa.String(length=128),
                                      nullable=True))
        batch_op.add_column(sa.Column('receipt_lease_until',
                                      yinqi.store.types.UtcDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('receipt_lease_until')
        batch_op.drop_column('receipt_claimed_by')
