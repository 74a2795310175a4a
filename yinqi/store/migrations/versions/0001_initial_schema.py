"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 21:43:17.037493
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import yinqi.store.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('acknowledged_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('occurred_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject_type', sa.String(length=32), nullable=False),
    sa.Column('subject_ids', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.create_table('companies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_companies')),
    sa.UniqueConstraint('credit_code', name=op.f('uq_companies_credit_code'))
    )
    op.create_table('import_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('imported_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('imported_by', sa.String(length=64), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('quarantined', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_files')),
    sa.UniqueConstraint('source', 'sha256', name=op.f('uq_import_files_source_sha256'))
    )
    op.create_table('keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('certificate_pem', sa.Text(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('not_before', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('not_after', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('retired_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_keys_key_id'))
    )
    op.create_table('recon_matches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('proposed', 'confirmed', 'written_off')", name=op.f('ck_recon_matches_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_matches'))
    )
    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('totp_secret', sa.LargeBinary(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('failed_code_attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('bank_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('company_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bank', sa.String(length=64), nullable=False),
    sa.Column('number', sa.String(length=34), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name=op.f('ck_bank_accounts_status')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_bank_accounts_company_id_companies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_accounts')),
    sa.UniqueConstraint('bank', 'number', name=op.f('uq_bank_accounts_bank_number'))
    )
    op.create_table('otp_uses',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('time_step', sa.BigInteger(), nullable=False),
    sa.Column('used_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_otp_uses_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'time_step', name=op.f('pk_otp_uses'))
    )
    op.create_table('quarantined_rows',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('import_file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['import_file_id'], ['import_files.id'], name=op.f('fk_quarantined_rows_import_file_id_import_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_rows'))
    )
    op.create_table('user_roles',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'role', name=op.f('pk_user_roles'))
    )
    op.create_table('vouchers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('external_ref', sa.String(length=64), nullable=False),
    sa.Column('import_file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('row_number', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['import_file_id'], ['import_files.id'], name=op.f('fk_vouchers_import_file_id_import_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vouchers')),
    sa.UniqueConstraint('source', 'external_ref', name=op.f('uq_vouchers_source_external_ref'))
    )
    op.create_table('batches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('msg_id', sa.String(length=35), nullable=False),
    sa.Column('bank', sa.String(length=64), nullable=False),
    sa.Column('dialect', sa.String(length=32), nullable=False),
    sa.Column('debtor_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('payment_count', sa.Integer(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=True),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('claimed_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lease_until', yinqi.store.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('send_attempts', sa.Integer(), nullable=False),
    sa.Column('rerun_of_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('BUILT', 'SIGNED', 'SUBMITTING', 'UNKNOWN', 'ACCEPTED', 'PARTIAL', 'COMPLETED', 'REJECTED')", name=op.f('ck_batches_state')),
    sa.ForeignKeyConstraint(['debtor_account_id'], ['bank_accounts.id'], name=op.f('fk_batches_debtor_account_id_bank_accounts')),
    sa.ForeignKeyConstraint(['rerun_of_id'], ['batches.id'], name=op.f('fk_batches_rerun_of_id_batches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('msg_id', name=op.f('uq_batches_msg_id'))
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ix_batches_claim', ['state', 'lease_until'], unique=False)

    op.create_table('statements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bank_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('statement_id', sa.String(length=64), nullable=False),
    sa.Column('msg_id', sa.String(length=64), nullable=True),
    sa.Column('sequence', sa.String(length=32), nullable=True),
    sa.Column('from_date', sa.Date(), nullable=True),
    sa.Column('to_date', sa.Date(), nullable=True),
    sa.Column('opening_minor', sa.BigInteger(), nullable=True),
    sa.Column('closing_minor', sa.BigInteger(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('received_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('accepted', 'quarantined')", name=op.f('ck_statements_status')),
    sa.ForeignKeyConstraint(['bank_account_id'], ['bank_accounts.id'], name=op.f('fk_statements_bank_account_id_bank_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_statements')),
    sa.UniqueConstraint('content_sha256', name=op.f('uq_statements_content_sha256'))
    )
    with op.batch_alter_table('statements', schema=None) as batch_op:
        batch_op.create_index('ix_statements_account_stmt', ['account', 'statement_id'], unique=False)

    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('voucher_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('end_to_end_id', sa.String(length=35), nullable=False),
    sa.Column('debtor_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('creditor_name', sa.String(length=200), nullable=False),
    sa.Column('creditor_account', sa.String(length=64), nullable=False),
    sa.Column('creditor_bank_name', sa.String(length=200), nullable=False),
    sa.Column('creditor_cnaps', sa.String(length=12), nullable=True),
    sa.Column('creditor_bic', sa.String(length=11), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('purpose', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('requested_date', sa.Date(), nullable=False),
    sa.Column('maker', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('REQUESTED', 'PENDING_APPROVAL', 'APPROVED', 'BATCHED', 'SIGNED', 'SUBMITTING', 'ACCEPTED', 'SETTLED', 'RECEIPTED', 'RECONCILED', 'REJECTED', 'CANCELLED', 'HELD', 'FAILED', 'UNKNOWN', 'RETURNED')", name=op.f('ck_payments_state')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_payments_amount_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_payments_batch_id_batches')),
    sa.ForeignKeyConstraint(['debtor_account_id'], ['bank_accounts.id'], name=op.f('fk_payments_debtor_account_id_bank_accounts')),
    sa.ForeignKeyConstraint(['voucher_id'], ['vouchers.id'], name=op.f('fk_payments_voucher_id_vouchers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('end_to_end_id', name=op.f('uq_payments_end_to_end_id')),
    sa.UniqueConstraint('voucher_id', name=op.f('uq_payments_voucher_id'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_state'), ['state'], unique=False)
        batch_op.create_index('ix_payments_state_debtor', ['state', 'debtor_account_id'], unique=False)

    op.create_table('statement_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('statement_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('booking_date', sa.Date(), nullable=True),
    sa.Column('value_date', sa.Date(), nullable=True),
    sa.Column('end_to_end_id', sa.String(length=64), nullable=True),
    sa.Column('bank_reference', sa.String(length=64), nullable=True),
    sa.Column('counterparty_name', sa.String(length=200), nullable=True),
    sa.Column('counterparty_account', sa.String(length=64), nullable=True),
    sa.Column('remittance', sa.Text(), nullable=True),
    sa.Column('is_reversal', sa.Boolean(), nullable=False),
    sa.Column('entry_ref', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['statement_pk'], ['statements.id'], name=op.f('fk_statement_lines_statement_pk_statements')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_statement_lines')),
    sa.UniqueConstraint('statement_pk', 'line_no', name=op.f('uq_statement_lines_statement_pk_line_no'))
    )
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statement_lines_bank_reference'), ['bank_reference'], unique=False)
        batch_op.create_index(batch_op.f('ix_statement_lines_end_to_end_id'), ['end_to_end_id'], unique=False)

    op.create_table('approvals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('approver', sa.String(length=64), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('decided_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("decision IN ('approved', 'rejected')", name=op.f('ck_approvals_decision')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_approvals_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals')),
    sa.UniqueConstraint('payment_id', 'approver', name=op.f('uq_approvals_payment_id_approver')),
    sa.UniqueConstraint('payment_id', 'level', name=op.f('uq_approvals_payment_id_level'))
    )
    op.create_table('receipts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bank_reference', sa.String(length=64), nullable=False),
    sa.Column('verification_code', sa.String(length=64), nullable=False),
    sa.Column('file_path', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('signature_valid', sa.Boolean(), nullable=False),
    sa.Column('received_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_receipts_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_receipts')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_receipts_payment_id'))
    )
    op.create_table('recon_match_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('match_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('statement_line_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint('(payment_id IS NULL) <> (statement_line_id IS NULL)', name=op.f('ck_recon_match_items_one_side')),
    sa.ForeignKeyConstraint(['match_id'], ['recon_matches.id'], name=op.f('fk_recon_match_items_match_id_recon_matches')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_recon_match_items_payment_id_payments')),
    sa.ForeignKeyConstraint(['statement_line_id'], ['statement_lines.id'], name=op.f('fk_recon_match_items_statement_line_id_statement_lines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recon_match_items'))
    )
    with op.batch_alter_table('recon_match_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recon_match_items_match_id'), ['match_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recon_match_items_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recon_match_items_statement_line_id'), ['statement_line_id'], unique=False)

    op.create_table('status_reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('bank_msg_id', sa.String(length=64), nullable=True),
    sa.Column('group_status', sa.String(length=8), nullable=True),
    sa.Column('tx_status', sa.String(length=8), nullable=True),
    sa.Column('reason_code', sa.String(length=8), nullable=True),
    sa.Column('reason_text', sa.Text(), nullable=True),
    sa.Column('archive_path', sa.String(length=500), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('received_at', yinqi.store.types.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_status_reports_batch_id_batches')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_status_reports_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_reports'))
    )
    with op.batch_alter_table('status_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_reports_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_status_reports_payment_id'), ['payment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('status_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_reports_payment_id'))
        batch_op.drop_index(batch_op.f('ix_status_reports_batch_id'))

    op.drop_table('status_reports')
    with op.batch_alter_table('recon_match_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recon_match_items_statement_line_id'))
        batch_op.drop_index(batch_op.f('ix_recon_match_items_payment_id'))
        batch_op.drop_index(batch_op.f('ix_recon_match_items_match_id'))

    op.drop_table('recon_match_items')
    op.drop_table('receipts')
    op.drop_table('approvals')
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_statement_lines_end_to_end_id'))
        batch_op.drop_index(batch_op.f('ix_statement_lines_bank_reference'))

    op.drop_table('statement_lines')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_state_debtor')
        batch_op.drop_index(batch_op.f('ix_payments_state'))
        batch_op.drop_index(batch_op.f('ix_payments_batch_id'))

    op.drop_table('payments')
    with op.batch_alter_table('statements', schema=None) as batch_op:
        batch_op.drop_index('ix_statements_account_stmt')

    op.drop_table('statements')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ix_batches_claim')

    op.drop_table('batches')
    op.drop_table('vouchers')
    op.drop_table('user_roles')
    op.drop_table('quarantined_rows')
    op.drop_table('otp_uses')
    op.drop_table('bank_accounts')
    op.drop_table('users')
    op.drop_table('recon_matches')
    op.drop_table('keys')
    op.drop_table('import_files')
    op.drop_table('companies')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
    op.drop_table('alerts')
