"""The approval gate's rules as pure functions: who may fill which level of which payment.

Nothing here touches the database. The store (:mod:`yinqi.store.approvals`) loads the facts,
asks these functions and records the answer, so the CLI and the Prefect approval form are
judged by one rulebook.

Rules, in the order they are checked (the first that fails is the reason given):

1. the user is active and not locked out after wrong one-time codes;
2. the payment is PENDING_APPROVAL;
3. the policy has levels for it: tiers compare amounts in the policy's currency, and Yinqi
   does not convert, so a payment in another currency is refused (known limitation);
4. maker-checker: whoever entered the payment never approves (or rejects) it;
5. levels are filled in order, and a payment whose levels are all filled takes no more;
6. one person fills one level of a payment at most;
7. the user holds the role of the next level. A user with several roles fills whichever
   role that level needs, still one level per payment.

A rejection is judged by the same rules: only someone who could approve the next level may
reject the payment there.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pyotp

from config.policy import ApprovalPolicy
from yinqi.approvals import Decision, User
from yinqi.errors import InvalidValue
from yinqi.money import Money
from yinqi.states import PaymentState

#: Consecutive wrong codes that lock a user out, and for how long.
LOCK_AFTER_FAILURES = 5
LOCK_DURATION = timedelta(minutes=15)


class Reason(StrEnum):
    """Why an approval or rejection was refused; stable codes for scripts and the audit log."""

    # The person or the one-time code: nothing at all is decided.
    UNKNOWN_USER = "UNKNOWN_USER"
    USER_INACTIVE = "USER_INACTIVE"
    USER_LOCKED = "USER_LOCKED"
    CODE_NOT_ENROLLED = "CODE_NOT_ENROLLED"
    CODE_WRONG = "CODE_WRONG"
    CODE_REUSED = "CODE_REUSED"
    # One payment.
    PAYMENT_NOT_FOUND = "PAYMENT_NOT_FOUND"
    NOT_PENDING = "NOT_PENDING"
    POLICY_CURRENCY = "POLICY_CURRENCY"
    POLICY_CATEGORY = "POLICY_CATEGORY"
    MAKER_CANNOT_APPROVE = "MAKER_CANNOT_APPROVE"
    ALREADY_COMPLETE = "ALREADY_COMPLETE"
    ALREADY_APPROVED_BY_USER = "ALREADY_APPROVED_BY_USER"
    ROLE_MISSING = "ROLE_MISSING"


@dataclass(frozen=True, slots=True)
class Refusal:
    code: Reason
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class Given:
    """A level already filled on a payment."""

    level: int
    role: str
    approver: str


@dataclass(frozen=True, slots=True)
class Case:
    """A payment as the rules see it; ``label`` (its end-to-end ID) names it in messages."""

    label: str
    amount: Money
    category: str
    maker: str
    state: str
    given: tuple[Given, ...] = ()


@dataclass(frozen=True, slots=True)
class Fill:
    """The candidate may fill ``level`` (1-based) as ``role``; ``completes`` if it is the last."""

    level: int
    role: str
    completes: bool


def check_user(
    user: User, *, locked_until: datetime | None = None, now: datetime | None = None
) -> Refusal | None:
    """Refuse an inactive or locked-out user before anything else is looked at."""
    if not user.active:
        return Refusal(Reason.USER_INACTIVE, f"{user.username} is deactivated")
    if locked_until is not None and now is not None and locked_until > now:
        until = locked_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return Refusal(
            Reason.USER_LOCKED,
            f"{user.username} is locked until {until} after {LOCK_AFTER_FAILURES} "
            "wrong one-time codes",
        )
    return None


def levels_for(policy: ApprovalPolicy, case: Case) -> tuple[str, ...] | Refusal:
    """The roles that must approve ``case`` in order, or why the policy cannot say."""
    if case.amount.currency.code != policy.currency:
        return Refusal(
            Reason.POLICY_CURRENCY,
            f"payment {case.label} is in {case.amount.currency.code} but the approval tiers "
            f"are in {policy.currency}; Yinqi does not convert amounts for approval, "
            "so it cannot be approved here",
        )
    try:
        return tuple(policy.levels_for(case.amount.amount, case.category))
    except InvalidValue as exc:
        return Refusal(Reason.POLICY_CATEGORY, f"payment {case.label}: {exc}")


def next_level(levels: Sequence[str], given: Sequence[Given]) -> int | None:
    """The lowest level not yet filled (1-based), or None when every level is."""
    filled = {g.level for g in given}
    return next((n for n in range(1, len(levels) + 1) if n not in filled), None)


def decide(
    case: Case,
    levels: Sequence[str] | Refusal,
    user: User,
    decision: Decision = Decision.APPROVED,
    *,
    maker_checker: bool = True,
    locked_until: datetime | None = None,
    now: datetime | None = None,
) -> Fill | Refusal:
    """Which level ``user`` fills on ``case`` with ``decision``, or why they may not."""
    refused = check_user(user, locked_until=locked_until, now=now)
    if refused is not None:
        return refused
    if case.state != PaymentState.PENDING_APPROVAL:
        return Refusal(Reason.NOT_PENDING,
                       f"payment {case.label} is {case.state}, not {PaymentState.PENDING_APPROVAL}")
    if isinstance(levels, Refusal):
        return levels
    verb = "approve" if decision is Decision.APPROVED else "reject"
    if maker_checker and user.username == case.maker:
        return Refusal(Reason.MAKER_CANNOT_APPROVE,
                       f"{user.username} entered payment {case.label} and cannot {verb} it")
    level = next_level(levels, case.given)
    if level is None:
        return Refusal(Reason.ALREADY_COMPLETE,
                       f"payment {case.label} already has all {len(levels)} approval levels filled")
    earlier = next((g for g in case.given if g.approver == user.username), None)
    if earlier is not None:
        return Refusal(
            Reason.ALREADY_APPROVED_BY_USER,
            f"{user.username} already approved level {earlier.level} ({earlier.role}) of "
            f"payment {case.label}; level {level} needs another person",
        )
    role = levels[level - 1]
    if not user.has_role(role):
        return Refusal(Reason.ROLE_MISSING,
                       f"{user.username} lacks the {role} role needed for level {level} "
                       f"of payment {case.label}")
    return Fill(level=level, role=role, completes=level == len(levels))


def judge(
    policy: ApprovalPolicy,
    case: Case,
    user: User,
    decision: Decision = Decision.APPROVED,
    *,
    locked_until: datetime | None = None,
    now: datetime | None = None,
) -> Fill | Refusal:
    """:func:`decide` with the levels and the maker-checker switch taken from ``policy``."""
    return decide(case, levels_for(policy, case), user, decision,
                  maker_checker=policy.maker_checker, locked_until=locked_until, now=now)


def verify_code(secret: str, code: str, at: datetime, window: int = 1) -> int | None:
    """The TOTP time step (30 s) ``code`` belongs to, within ``window`` steps of ``at``; or None.

    Every step in the window is compared, in constant time, whether or not an earlier one
    matched, so the time taken does not tell which step (if any) was right.
    """
    if at.tzinfo is None:
        raise ValueError("verify_code needs a timezone-aware time")
    totp = pyotp.TOTP(secret)
    given = "".join(code.split())  # "123 456" as an authenticator app shows it
    if len(given) != totp.digits or not (given.isascii() and given.isdigit()):
        return None
    centre = totp.timecode(at)
    matched: int | None = None
    for step in range(centre - window, centre + window + 1):
        if hmac.compare_digest(totp.generate_otp(step), given) and matched is None:
            matched = step
    return matched
