"""The sandbox bank's own tables, in its own database: it is another bank, not Yinqi."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from yinqi.store.types import BigId, UtcDateTime


class SandboxBase(DeclarativeBase):
    metadata = MetaData()
    type_annotation_map = {datetime: UtcDateTime()}


class Account(SandboxBase):
    """Customer accounts and the bank's own internal accounts (capital, suspense, clearing)."""

    __tablename__ = "sb_accounts"
    __table_args__ = (UniqueConstraint("bank", "number", "currency"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank: Mapped[str] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # customer | capital | suspense | clearing
    status: Mapped[str] = mapped_column(String(16), default="open")
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    overdraft_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    per_tx_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    daily_limit_minor: Mapped[int | None] = mapped_column(BigInteger)


class Booking(SandboxBase):
    """One journal entry; its legs always sum to zero."""

    __tablename__ = "sb_bookings"
    __table_args__ = (
        # A payment is held, settled, released or returned at most once each.
        UniqueConstraint("bank", "payment_id", "kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # opening | hold | settle | release | return
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("sb_payments.id"))
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    booked_at: Mapped[datetime]
    booking_date: Mapped[date] = mapped_column(Date)
    value_date: Mapped[date] = mapped_column(Date)


class Leg(SandboxBase):
    __tablename__ = "sb_legs"
    __table_args__ = (Index("ix_sb_legs_account", "account_id", "booking_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("sb_bookings.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("sb_accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # + credit to the account, - debit
    currency: Mapped[str] = mapped_column(String(3))


class Message(SandboxBase):
    """Every accepted request by its idempotency key, with the exact answer given."""

    __tablename__ = "sb_messages"
    __table_args__ = (UniqueConstraint("bank", "msg_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank: Mapped[str] = mapped_column(String(32))
    msg_id: Mapped[str] = mapped_column(String(64))
    dialect: Mapped[str] = mapped_column(String(16))
    message_name: Mapped[str] = mapped_column(String(32))
    request_sha256: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    response_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]


class Payment(SandboxBase):
    __tablename__ = "sb_payments"
    __table_args__ = (
        UniqueConstraint("bank", "end_to_end_id"),
        Index("ix_sb_payments_due", "bank", "status", "due_at"),
        Index("ix_sb_payments_msg", "bank", "msg_id"),
        # Settlement looks for due payments and due returns of every bank at once.
        Index("ix_sb_payments_settle", "status", "due_at"),
        Index("ix_sb_payments_returns", "status", "return_due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank: Mapped[str] = mapped_column(String(32))
    msg_id: Mapped[str] = mapped_column(String(64))
    end_to_end_id: Mapped[str] = mapped_column(String(64))  # ISO EndToEndId / 业务参考号
    instr_id: Mapped[str | None] = mapped_column(String(64))
    pmt_inf_id: Mapped[str | None] = mapped_column(String(64))
    bank_reference: Mapped[str] = mapped_column(String(40), unique=True)
    debtor_account: Mapped[str] = mapped_column(String(40))
    debtor_name: Mapped[str] = mapped_column(String(200))
    creditor_account: Mapped[str] = mapped_column(String(40))
    creditor_name: Mapped[str] = mapped_column(String(200))
    creditor_agent: Mapped[str | None] = mapped_column(String(16))
    creditor_bank_name: Mapped[str | None] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    purpose: Mapped[str | None] = mapped_column(Text)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Payments sharing a key are shown as one batch-booked debit on the statement.
    batch_key: Mapped[str | None] = mapped_column(String(140))
    # ACSP (accepted, settlement in process) -> ACSC (settled) -> RTND (returned, 退票)
    status: Mapped[str] = mapped_column(String(8))
    reason_code: Mapped[str | None] = mapped_column(String(8))
    reason_text: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
    execution_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    return_due_at: Mapped[datetime | None]
    returned_at: Mapped[datetime | None]
    # How many status reports the bank has sent about it (drives out-of-order faults).
    reports_sent: Mapped[int] = mapped_column(Integer, default=0)


class Rejection(SandboxBase):
    """An instruction refused at intake: reported in status queries, never booked."""

    __tablename__ = "sb_rejections"
    __table_args__ = (Index("ix_sb_rejections_msg", "bank", "msg_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank: Mapped[str] = mapped_column(String(32))
    msg_id: Mapped[str] = mapped_column(String(64))
    end_to_end_id: Mapped[str] = mapped_column(String(64))
    instr_id: Mapped[str | None] = mapped_column(String(64))
    pmt_inf_id: Mapped[str | None] = mapped_column(String(64))
    reason_code: Mapped[str] = mapped_column(String(8))
    reason_text: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
