"""batches set aside (INVALID) and dissolved (DISSOLVED)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_BEFORE = ('BUILT', 'SIGNED', 'SUBMITTING', 'UNKNOWN', 'ACCEPTED', 'PARTIAL', 'COMPLETED',
           'REJECTED')
_AFTER = (*_BEFORE, 'INVALID', 'DISSOLVED')


def _states(states: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(s) for s in states)})"


def _replace(states: tuple[str, ...]) -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_batches_state'), type_='check')
        batch_op.create_check_constraint(op.f('ck_batches_state'), _states(states))


def upgrade() -> None:
    _replace(_AFTER)


def downgrade() -> None:
    _replace(_BEFORE)
