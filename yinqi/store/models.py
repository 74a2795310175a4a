"""Yinqi's tables (SQLAlchemy 2 typed models).

Money is stored as integer minor units beside its ISO 4217 currency: exact on SQLite (whose
NUMERIC is a float) and on PostgreSQL alike, and cheap to sum in SQL or pandas.
Idempotency keys are unique constraints, so a duplicate is refused by the database itself,
whatever the code above it does.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from yinqi.payments import BatchState
from yinqi.states import PaymentState
from yinqi.store.types import BigId, SealedJSON, SealedText, UtcDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Account numbers and payee names never reach the database in the clear: a stolen database
# file without the master secret gives none of them up (see yinqi.security.fields).
ACCOUNT = SealedText("account")
NAME = SealedText("name")


def _in(column: str, values: object) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"  # type: ignore[attr-defined]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), list[str]: JSON(),
                           list[Any]: JSON()}


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    accounts: Mapped[list[BankAccount]] = relationship(back_populates="company")


class BankAccount(Base):
    """One of the company's own accounts at one of its banks."""

    __tablename__ = "bank_accounts"
    __table_args__ = (
        UniqueConstraint("bank", "number"),
        CheckConstraint(_in("status", ("active", "frozen", "closed")), name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    bank: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(ACCOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    company: Mapped[Company] = relationship(back_populates="accounts")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Encrypted under a key derived from the master secret, never stored in the clear.
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    # Set when the user proved the authenticator works (first valid code after enrolment).
    totp_enrolled_at: Mapped[datetime | None]
    password_set_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan")


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class OtpUse(Base):
    """A one-time code's time step, once used, can never be used again by that user."""

    __tablename__ = "otp_uses"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    time_step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    used_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportFile(Base):
    __tablename__ = "import_files"
    __table_args__ = (UniqueConstraint("source", "sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)


class Voucher(Base):
    __tablename__ = "vouchers"
    __table_args__ = (UniqueConstraint("source", "external_ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_ref: Mapped[str] = mapped_column(String(64))
    import_file_id: Mapped[int | None] = mapped_column(ForeignKey("import_files.id"))
    row_number: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(SealedJSON("vouchers.payload"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuarantinedRow(Base):
    """A voucher row that failed validation, kept with its reason: nothing is dropped."""

    __tablename__ = "quarantined_rows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_file_id: Mapped[int] = mapped_column(ForeignKey("import_files.id"))
    row_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(SealedJSON("quarantined_rows.payload"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(_in("state", PaymentState), name="state"),
        Index("ix_payments_state_debtor", "state", "debtor_account_id"),
        # The risk screen's history: payments to one payee account, payments of a period.
        Index("ix_payments_creditor_account", "creditor_account"),
        Index("ix_payments_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id"), unique=True)
    end_to_end_id: Mapped[str] = mapped_column(String(35), unique=True)
    debtor_account_id: Mapped[int] = mapped_column(ForeignKey("bank_accounts.id"))
    creditor_name: Mapped[str] = mapped_column(NAME)
    creditor_account: Mapped[str] = mapped_column(ACCOUNT)
    creditor_bank_name: Mapped[str] = mapped_column(String(200), default="")
    creditor_cnaps: Mapped[str | None] = mapped_column(String(12))
    creditor_bic: Mapped[str | None] = mapped_column(String(11))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    purpose: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str] = mapped_column(String(16))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_date: Mapped[date] = mapped_column(Date)
    maker: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default=PaymentState.REQUESTED.value, index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), index=True)
    # The bank's own reference once it booked the payment (流水号), for receipts and matching.
    bank_reference: Mapped[str | None] = mapped_column(String(64))
    # Who is downloading this payment's receipt, and until when (yinqi.store.claims): two
    # collectors at once never ask the bank for the same receipt while the lease holds.
    receipt_claimed_by: Mapped[str | None] = mapped_column(String(128))
    receipt_lease_until: Mapped[datetime | None]
    # 1 for the first message; a rerun after a definitive rejection sends the payment again
    # under a new end-to-end ID (the bank's idempotency key would otherwise replay the refusal).
    send_round: Mapped[int] = mapped_column(Integer, default=1)
    # Which approvals count: a rerun whose amount or payee changed starts a new round, and
    # only approvals of the current round let the payment go to the bank.
    approval_round: Mapped[int] = mapped_column(Integer, default=1)
    # SHA-256 of what the approvers approved (amount, currency, payee, accounts), set when the
    # last level is filled: a rerun compares it to decide whether approval must be given again.
    approved_digest: Mapped[str | None] = mapped_column(String(64))
    # Bumped on every change, so two writers racing on one payment cannot both win.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}


class Batch(Base):
    """One bank message: the unit that is signed, sent, claimed and asked about."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("state", BatchState), name="state"),
        Index("ix_batches_claim", "state", "lease_until"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(35), unique=True)
    bank: Mapped[str] = mapped_column(String(64))
    dialect: Mapped[str] = mapped_column(String(32))
    debtor_account_id: Mapped[int] = mapped_column(ForeignKey("bank_accounts.id"))
    currency: Mapped[str] = mapped_column(String(3))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=BatchState.BUILT.value)
    payment_count: Mapped[int] = mapped_column(Integer, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    execution_date: Mapped[date | None] = mapped_column(Date)
    # The signed bytes, archived once: every (re)send of the message sends exactly these.
    file_path: Mapped[str | None] = mapped_column(String(500))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    signed_at: Mapped[datetime | None]
    # Status polling: when to ask next, and how often we asked (the back-off grows with it).
    next_poll_at: Mapped[datetime | None]
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A frozen batch is never claimed, signed or sent until two people lift the freeze.
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    rerun_of_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("payment_id", "approval_round", "level"),
        # One person never fills two levels of one payment, whatever the code does.
        UniqueConstraint("payment_id", "approval_round", "approver"),
        CheckConstraint(_in("decision", ("approved", "rejected")), name="decision"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    # The payment's approval round this decision is for: a corrected payment sent again after
    # a bank rejection is approved afresh when its amount or payee changed.
    approval_round: Mapped[int] = mapped_column(Integer, default=1)
    level: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    approver: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatusReport(Base):
    __tablename__ = "status_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    bank_msg_id: Mapped[str | None] = mapped_column(String(64))
    group_status: Mapped[str | None] = mapped_column(String(8))
    tx_status: Mapped[str | None] = mapped_column(String(8))
    reason_code: Mapped[str | None] = mapped_column(String(8))
    reason_text: Mapped[str | None] = mapped_column(Text)
    archive_path: Mapped[str | None] = mapped_column(String(500))
    sha256: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Receipt(Base):
    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), unique=True)
    bank_reference: Mapped[str] = mapped_column(String(64))
    verification_code: Mapped[str] = mapped_column(String(64))
    file_path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    signature_valid: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Statement(Base):
    __tablename__ = "statements"
    __table_args__ = (
        CheckConstraint(_in("status", ("accepted", "quarantined")), name="status"),
        Index("ix_statements_account_stmt", "account", "statement_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank_account_id: Mapped[int | None] = mapped_column(ForeignKey("bank_accounts.id"))
    account: Mapped[str] = mapped_column(ACCOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    statement_id: Mapped[str] = mapped_column(String(64))
    msg_id: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[str | None] = mapped_column(String(32))
    from_date: Mapped[date | None] = mapped_column(Date)
    to_date: Mapped[date | None] = mapped_column(Date)
    opening_minor: Mapped[int | None] = mapped_column(BigInteger)
    closing_minor: Mapped[int | None] = mapped_column(BigInteger)
    # A re-delivered statement has the same bytes: the hash recognises it.
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # camt.053, camt.052, camt.054, mt940, mt942, cn-h2h: only end-of-day kinds are matched.
    kind: Mapped[str] = mapped_column(String(16), default="")
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    # The data-quality checks' result (great-expectations), shown to the operator.
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatementLine(Base):
    __tablename__ = "statement_lines"
    __table_args__ = (UniqueConstraint("statement_pk", "line_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    statement_pk: Mapped[int] = mapped_column(ForeignKey("statements.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # signed: + in, - out
    currency: Mapped[str] = mapped_column(String(3))
    booking_date: Mapped[date | None] = mapped_column(Date)
    value_date: Mapped[date | None] = mapped_column(Date)
    end_to_end_id: Mapped[str | None] = mapped_column(String(64), index=True)
    bank_reference: Mapped[str | None] = mapped_column(String(64), index=True)
    counterparty_name: Mapped[str | None] = mapped_column(NAME)
    counterparty_account: Mapped[str | None] = mapped_column(ACCOUNT)
    remittance: Mapped[str | None] = mapped_column(Text)
    is_reversal: Mapped[bool] = mapped_column(Boolean, default=False)
    entry_ref: Mapped[str | None] = mapped_column(String(64))
    # BOOK, PDNG or INFO as the file says: only booked entries are matched.
    status: Mapped[str] = mapped_column(String(4), default="BOOK")
    charges_minor: Mapped[int | None] = mapped_column(BigInteger)


class ReconMatch(Base):
    __tablename__ = "recon_matches"
    __table_args__ = (
        CheckConstraint(_in("status", ("proposed", "confirmed", "written_off")), name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    score: Mapped[float] = mapped_column(Float)  # explanation weight, not money
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReconMatchItem(Base):
    __tablename__ = "recon_match_items"
    __table_args__ = (
        CheckConstraint(
            "(payment_id IS NULL) <> (statement_line_id IS NULL)", name="one_side"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    match_id: Mapped[int] = mapped_column(ForeignKey("recon_matches.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    statement_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("statement_lines.id"), index=True
    )


class ReconException(Base):
    """What matching could not explain: a payment without its line, or a line without its
    payment; open until an operator confirms a candidate, re-matches or writes it off."""

    __tablename__ = "recon_exceptions"
    __table_args__ = (
        CheckConstraint("(payment_id IS NULL) <> (statement_line_id IS NULL)", name="one_side"),
        CheckConstraint(_in("status", ("open", "matched", "written_off")), name="status"),
        Index("ix_recon_exceptions_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    statement_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("statement_lines.id"), index=True)
    account: Mapped[str] = mapped_column(ACCOUNT)
    day: Mapped[date | None] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # [{"ids": [...], "score": 0.9, "why": "..."}]: what the engine would suggest.
    candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]

    @validates("subject", "message", "details")
    def _masked(self, _key: str, value: Any) -> Any:
        # Alerts leave Yinqi (e-mail, webhooks, the CLI): whatever text a caller put in,
        # account numbers in it are masked (``****1234``) before it is stored or sent.
        from yinqi.security.masking import redact_deep

        return redact_deep(value)


class UserSession(Base):
    """One login: who, from where, until when. The token itself is never stored, only its hash."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The network place (IP address or host) and the client (OS user, terminal, program).
    origin: Mapped[str] = mapped_column(String(200))
    client: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))


class RiskHit(Base):
    """A risk rule that fired, with what it did; open until someone deals with it."""

    __tablename__ = "risk_hits"
    __table_args__ = (
        CheckConstraint(_in("action", ("alert", "hold", "freeze")), name="action"),
        CheckConstraint(_in("status", ("open", "released", "rejected", "acknowledged")),
                        name="status"),
        Index("ix_risk_hits_subject", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(16))
    # payment, batch, account or user: what the rule looked at.
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Freeze(Base):
    """A payment, batch, account or user blocked until two different people lift it."""

    __tablename__ = "freezes"
    __table_args__ = (
        CheckConstraint(_in("subject_type", ("payment", "batch", "account", "user")),
                        name="subject_type"),
        CheckConstraint(_in("status", ("active", "lifted")), name="status"),
        Index("ix_freezes_subject", "subject_type", "subject_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    # The risk rule that froze it, or "manual".
    rule: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    frozen_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Lifting takes two people: one asks, another (never the same) confirms.
    unfreeze_requested_by: Mapped[str | None] = mapped_column(String(64))
    unfreeze_requested_at: Mapped[datetime | None]
    unfreeze_reason: Mapped[str | None] = mapped_column(Text)
    lifted_by: Mapped[str | None] = mapped_column(String(64))
    lifted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertDelivery(Base):
    """One alert on one channel (an email address list, a webhook): the alert log."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel"),
        CheckConstraint(_in("status", ("pending", "sent", "failed")), name="status"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    channel: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Key(Base):
    """Metadata of a key in the keystore; the key material stays in its encrypted file."""

    __tablename__ = "keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    algorithm: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64))
    certificate_pem: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(String(500))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class AuditEventRow(Base):
    """Append-only; see yinqi.audit for how the chain makes edits visible."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_ids: Mapped[list[str]]
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))
